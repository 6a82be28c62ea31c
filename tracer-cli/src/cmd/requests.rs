//! `asynctrace requests trace.bin`: incoming HTTP requests by latency, and where they waited.

use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, RequestOptions, Requests};

use crate::cli::RequestsArgs;
use crate::cmd::{open_trace, print_report};

pub fn run(args: RequestsArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut opts = RequestOptions::default();
    opts.limit = args.limit;
    let mut pass = Requests::new(opts);
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    print_report(args.format, &report, &args.trace, report.truncated, |out| {
        analysis::write_requests_text(out, &report)
    })?;
    Ok(ExitCode::SUCCESS)
}
