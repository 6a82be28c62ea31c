//! `asynctrace requests trace.bin`: incoming HTTP requests by latency, and where they waited.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, RequestOptions, Requests};

use crate::cli::{Format, RequestsArgs};
use crate::cmd::open_trace;

pub fn run(args: RequestsArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut opts = RequestOptions::default();
    opts.limit = args.limit;
    let mut pass = Requests::new(opts);
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => analysis::write_requests_text(&mut out, &report)?,
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
