//! `asynctrace slow trace.bin`: the callbacks that blocked the event loop longest.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{ensure, Context as _};
use tracer_core::analysis::{self, Slow, SlowOptions};

use crate::cli::{Format, SlowArgs};
use crate::cmd::open_trace;

pub fn run(args: SlowArgs) -> anyhow::Result<ExitCode> {
    ensure!(
        args.threshold_ms.is_finite() && args.threshold_ms >= 0.0,
        "--threshold-ms must be a number of milliseconds, 0 or more (got {})",
        args.threshold_ms
    );
    let mut reader = open_trace(&args.trace)?;
    let mut opts = SlowOptions::default();
    opts.threshold_ns = (args.threshold_ms * 1e6).round() as u64;
    opts.limit = args.limit;
    let mut pass = Slow::new(opts);
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => analysis::write_slow_text(&mut out, &report)?,
    }
    out.flush()?;
    if report.truncated {
        eprintln!(
            "asynctrace: warning: {} is truncated; this is the analysis of its complete prefix",
            args.trace.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
