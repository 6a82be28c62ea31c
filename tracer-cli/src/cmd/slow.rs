//! `asynctrace slow trace.bin`: the callbacks that blocked the event loop longest.

use std::process::ExitCode;

use anyhow::{ensure, Context as _};
use tracer_core::analysis::{self, Slow, SlowOptions};

use crate::cli::SlowArgs;
use crate::cmd::{open_trace, print_report};

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
    print_report(args.format, &report, &args.trace, report.truncated, |out| {
        analysis::write_slow_text(out, &report)
    })?;
    Ok(ExitCode::SUCCESS)
}
