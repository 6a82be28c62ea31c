//! Folding a trigger chain for people: the links of one await loop or retry loop (the same
//! type at the same site, one after the other) become one link with a count, so a chain
//! says what led to a resource in a line rather than a screenful of `PROMISE` links.

use serde::Serialize;

/// A run of consecutive links with the same type and site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoldedLink {
    /// Id of the run's first link (the nearest to the resource).
    pub id: u64,
    /// `None` when the ancestor is no longer known.
    pub type_name: Option<String>,
    pub site: Option<String>,
    /// Links in the run (1 for a link that does not repeat).
    pub count: u64,
}

impl FoldedLink {
    /// `PROMISE x15 (leaky.js:11:48)`, `TCPWRAP #12`, `#7 (gone)`.
    pub fn text(&self) -> String {
        let mut s = match &self.type_name {
            None => return format!("#{} (gone)", self.id),
            Some(t) if self.count > 1 => format!("{t} x{}", self.count),
            Some(t) => format!("{t} #{}", self.id),
        };
        if let Some(site) = &self.site {
            s.push_str(&format!(" ({site})"));
        }
        s
    }
}

/// Folds `(id, type, site)` links, in chain order, into runs of equal type and site. Unknown
/// links (`type` `None`) never fold.
pub fn fold_chain<'a>(links: impl IntoIterator<Item = (u64, Option<&'a str>, Option<&'a str>)>) -> Vec<FoldedLink> {
    let mut out: Vec<FoldedLink> = Vec::new();
    for (id, type_name, site) in links {
        if let Some(last) = out.last_mut() {
            if type_name.is_some() && last.type_name.as_deref() == type_name && last.site.as_deref() == site {
                last.count += 1;
                continue;
            }
        }
        out.push(FoldedLink {
            id,
            type_name: type_name.map(str::to_owned),
            site: site.map(str::to_owned),
            count: 1,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_await_loop_folds_into_one_link_with_its_count() {
        let mut links = vec![(100, Some("TCPWRAP"), None)];
        links.clear();
        for i in 0..15 {
            links.push((200 - i, Some("PROMISE"), Some("leaky.js:11:48")));
        }
        links.push((50, Some("TCPWRAP"), None));
        links.push((40, None, None));
        links.push((30, None, None));
        let f = fold_chain(links);
        let texts: Vec<String> = f.iter().map(FoldedLink::text).collect();
        assert_eq!(
            texts,
            [
                "PROMISE x15 (leaky.js:11:48)",
                "TCPWRAP #50",
                "#40 (gone)",
                "#30 (gone)"
            ]
        );
        assert_eq!(f[0].id, 200);
    }

    #[test]
    fn different_sites_do_not_fold() {
        let f = fold_chain([
            (3, Some("PROMISE"), Some("a.js:1:1")),
            (2, Some("PROMISE"), Some("a.js:2:1")),
        ]);
        assert_eq!(f.len(), 2);
    }
}
