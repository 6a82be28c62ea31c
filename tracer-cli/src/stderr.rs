//! Lines on stderr that cannot panic, and error chains that do not repeat themselves.

use std::fmt;
use std::io::Write;

/// Writes `args` and a newline on stderr with one write, ignoring errors. Use [`say!`].
pub fn line(args: fmt::Arguments<'_>) {
    let mut text = args.to_string();
    text.push('\n');
    // Why ignore: stderr closed or a broken pipe means nobody reads these lines; `eprintln!`
    // would panic here and turn the app's exit status into 101.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}

/// An error and its causes, joined with ": ", leaving out a cause whose text the message
/// before it already ends with. Why: some errors print their source in their own message and
/// also return it as their source, which `{:#}` then prints twice
/// ("No such file or directory (os error 2): No such file or directory (os error 2)").
pub fn chain(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !last.is_empty() && last.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        last = text;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[derive(Debug)]
    struct Repeats(std::io::Error);

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read trace file t.bin: {}", self.0)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_source_already_in_the_message_is_printed_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let expected = format!("reading: cannot read trace file t.bin: {io}");
        let err = anyhow::Error::new(Repeats(io)).context("reading");
        assert_eq!(chain(&err), expected);
    }

    #[test]
    fn distinct_causes_are_all_printed() {
        let err = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(chain(&err), "outer: middle: inner");
    }
}
