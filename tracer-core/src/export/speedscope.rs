//! speedscope's file format (https://www.speedscope.app/file-format-schema.json): one
//! "sampled" profile per process/thread, one sample per folded stack, weighted.

use std::io::{self, Write};

use super::folded::{Folded, Weight};
use super::json::{push_u64, quote};

/// Writes `folded` as a speedscope file named `name` (shown in speedscope's title bar).
pub fn write_speedscope(folded: &Folded, name: &str, mut out: impl Write) -> io::Result<()> {
    write!(
        out,
        "{{\"$schema\":\"https://www.speedscope.app/file-format-schema.json\",\"name\":{},\"exporter\":{},\"activeProfileIndex\":0,",
        quote(name),
        quote(&format!("asynctrace {}", env!("CARGO_PKG_VERSION")))
    )?;
    out.write_all(b"\"shared\":{\"frames\":[")?;
    for (i, f) in folded.frames.iter().enumerate() {
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(out, "\n{{\"name\":{}", quote(&f.name))?;
        if let Some(file) = &f.file {
            write!(out, ",\"file\":{}", quote(file))?;
        }
        if let Some(line) = f.line {
            write!(out, ",\"line\":{line}")?;
        }
        if let Some(col) = f.col {
            write!(out, ",\"col\":{col}")?;
        }
        out.write_all(b"}")?;
    }
    out.write_all(b"]},\"profiles\":[")?;
    let unit = match folded.weight {
        Weight::Sync | Weight::Async | Weight::Cpu => "microseconds",
        Weight::Count => "none",
    };
    let mut buf = Vec::new();
    for (i, s) in folded.streams.iter().enumerate() {
        let stacks: Vec<_> = folded.stacks.iter().filter(|st| st.stream == s.stream).collect();
        let total: u64 = stacks.iter().map(|st| st.weight).sum();
        let pname = match s.thread {
            0 => format!("pid {} main thread ({} weight)", s.pid, folded.weight.name()),
            t => format!("pid {} thread {t} ({} weight)", s.pid, folded.weight.name()),
        };
        if i > 0 {
            out.write_all(b",")?;
        }
        write!(
            out,
            "\n{{\"type\":\"sampled\",\"name\":{},\"unit\":\"{unit}\",\"startValue\":0,\"endValue\":{total},\"samples\":[",
            quote(&pname)
        )?;
        for (j, st) in stacks.iter().enumerate() {
            buf.clear();
            if j > 0 {
                buf.push(b',');
            }
            buf.push(b'[');
            // Root first, as speedscope wants; the stream's own frame is the profile itself.
            for (k, f) in folded.frames_of(st.path).into_iter().skip(1).enumerate() {
                if k > 0 {
                    buf.push(b',');
                }
                push_u64(&mut buf, u64::from(f));
            }
            buf.push(b']');
            out.write_all(&buf)?;
        }
        out.write_all(b"],\"weights\":[")?;
        for (j, st) in stacks.iter().enumerate() {
            buf.clear();
            if j > 0 {
                buf.push(b',');
            }
            push_u64(&mut buf, st.weight);
            out.write_all(&buf)?;
        }
        out.write_all(b"]}")?;
    }
    out.write_all(b"]}\n")?;
    out.flush()
}
