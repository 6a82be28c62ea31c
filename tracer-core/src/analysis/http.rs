//! HTTP names: route templates for per-route percentiles.

/// `GET /orders/42/items?x=1` as `GET /orders/:n/items`: the query is dropped and path
/// segments that look like ids (numbers, hex or UUID-like strings with a digit) are folded,
/// so one route's requests share one name.
pub fn route_of(label: &str) -> String {
    let (method, url) = label.split_once(' ').unwrap_or(("?", label));
    let path = url.split(['?', '#']).next().unwrap_or("");
    let mut out = String::with_capacity(label.len());
    out.push_str(method);
    out.push(' ');
    for (i, seg) in path.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(fold_segment(seg));
    }
    out
}

fn fold_segment(seg: &str) -> &str {
    if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
        return ":n";
    }
    let idish = seg.len() >= 8
        && seg.bytes().any(|b| b.is_ascii_digit())
        && seg.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if idish {
        ":id"
    } else {
        seg
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;

    #[test]
    fn ids_fold_and_queries_go() {
        assert_eq!(route_of("GET /orders/42?x=1"), "GET /orders/:n");
        assert_eq!(route_of("POST /checkout"), "POST /checkout");
        assert_eq!(
            route_of("GET /u/3f2a9c1e-77aa-4b1c-9d2e-0a1b2c3d4e5f/cart"),
            "GET /u/:id/cart"
        );
        assert_eq!(route_of("GET /"), "GET /");
        assert_eq!(route_of("GET /static/app.js"), "GET /static/app.js");
        assert_eq!(route_of("GET /deadbeef"), "GET /deadbeef", "no digit: a word");
    }
}
