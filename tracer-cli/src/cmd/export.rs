//! `asynctrace export trace.bin --format chrome|speedscope|folded -o out.json`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use tracer_core::export::{write_chrome, write_speedscope, ChromeOptions};

use crate::cli::{ExportArgs, ExportFormat};
use crate::cmd::flame::{fold_trace, output, to_filter};
use crate::cmd::{open_trace, warn_truncated};

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let out = output(args.output.as_deref())?;
    let name = args.trace.display().to_string();
    match args.format {
        ExportFormat::Chrome => {
            let mut opts = ChromeOptions::default();
            opts.filter = to_filter(&args.filter)?;
            let reader = open_trace(&args.trace)?;
            let mut counted = Counted { inner: out, bytes: 0 };
            let stats = write_chrome(reader, &opts, &mut counted).with_context(|| format!("exporting {name}"))?;
            if stats.truncated {
                warn_truncated(&args.trace, "export");
            }
            if counted.bytes > large_bytes()? {
                // Why say it: a few seconds of a busy server is a file of a gigabyte, which
                // Perfetto may not open; the way to a smaller one is a narrower selection.
                say!(
                    "asynctrace: wrote {:.1} MB of Chrome trace events ({} events); to export less, select a time window \
                     (--from-ms/--to-ms), a process (--pid) or a thread (--thread)",
                    counted.bytes as f64 / 1e6,
                    stats.events_out
                );
            }
        }
        ExportFormat::Speedscope => {
            let folded = fold_trace(&args.trace, args.weight, &args.filter, false)?;
            write_speedscope(&folded, &name, out).context("writing the speedscope file")?;
        }
        ExportFormat::Folded => {
            let folded = fold_trace(&args.trace, args.weight, &args.filter, false)?;
            folded.write_lines(out).context("writing the folded stacks")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Above this many bytes a Chrome export says its size: 100 MB, or
/// `ASYNCTRACE_EXPORT_LARGE_MB` megabytes.
fn large_bytes() -> anyhow::Result<u64> {
    match std::env::var("ASYNCTRACE_EXPORT_LARGE_MB") {
        Ok(v) => {
            let mb: f64 = v
                .parse()
                .ok()
                .filter(|m: &f64| m.is_finite() && *m >= 0.0)
                .with_context(|| format!("ASYNCTRACE_EXPORT_LARGE_MB must be a number of megabytes, not {v:?}"))?;
            Ok((mb * 1e6) as u64)
        }
        Err(_) => Ok(100_000_000),
    }
}

/// A writer that counts what goes through it.
struct Counted<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
