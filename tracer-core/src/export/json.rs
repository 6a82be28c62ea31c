//! Hand-rolled JSON output for the streaming exports.
//!
//! Why not serde_json per event: the exports write one small object per hook event, tens of
//! millions of them; formatting into a reused byte buffer is several times faster.

/// Appends `s` as a JSON string literal.
pub(crate) fn quote_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `s` as a JSON string literal.
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    quote_into(&mut out, s);
    out
}

/// Appends the decimal digits of `n`.
#[inline]
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends nanoseconds as microseconds with up to three decimals (`1234.5` for 1234500 ns).
#[inline]
pub(crate) fn push_us(out: &mut Vec<u8>, ns: u64) {
    push_u64(out, ns / 1000);
    let frac = ns % 1000;
    if frac != 0 {
        out.push(b'.');
        let d = [(frac / 100) as u8, (frac / 10 % 10) as u8, (frac % 10) as u8];
        let len = if d[2] != 0 {
            3
        } else if d[1] != 0 {
            2
        } else {
            1
        };
        out.extend(d[..len].iter().map(|x| b'0' + x));
    }
}
