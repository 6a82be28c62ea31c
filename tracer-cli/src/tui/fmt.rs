//! Numbers and names as the views show them.

pub use tracer_core::live::fmt_ns;

/// `950`, `12.3k`, `4.5M`.
pub fn count(n: u64) -> String {
    match n {
        0..10_000 => n.to_string(),
        10_000..10_000_000 => format!("{:.1}k", n as f64 / 1e3),
        _ => format!("{:.1}M", n as f64 / 1e6),
    }
}

/// A rate per second, `-` for none.
pub fn rate(r: f64) -> String {
    if r <= 0.0 {
        "-".into()
    } else if r < 10.0 {
        format!("{r:.1}")
    } else {
        count(r.round() as u64)
    }
}

/// A site relative to the app's directory (what a person reads in their editor).
pub fn site<'a>(site: &'a str, cwd: &str) -> &'a str {
    if cwd.is_empty() {
        return site;
    }
    site.strip_prefix(cwd).and_then(|s| s.strip_prefix('/')).unwrap_or(site)
}

/// Cuts `text` to `width` characters, keeping its end (a path's file and line).
pub fn tail(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        return text.to_owned();
    }
    if width == 0 {
        return String::new();
    }
    let skip = n - (width - 1);
    format!("…{}", text.chars().skip(skip).collect::<String>())
}
