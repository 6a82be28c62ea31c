//! `asynctrace leaks trace.bin`: leaks by class and site; `--fail` for CI.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, LeakOptions, Leaks, TextOptions};

use crate::cli::{Format, LeaksArgs};
use crate::cmd::open_trace;

pub fn run(args: LeaksArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut pass = Leaks::new(LeakOptions::default());
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => {
            let mut text = TextOptions::default();
            text.all = args.all;
            analysis::write_leaks_text(&mut out, &report, &text)?;
        }
    }
    out.flush()?;
    if report.truncated {
        eprintln!(
            "asynctrace: warning: {} is truncated; this is the analysis of its complete prefix",
            args.trace.display()
        );
    }
    // Why 1 and not 2: 2 means the command failed; 1 means it worked and found leaks.
    Ok(if args.fail && !report.leaks.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
