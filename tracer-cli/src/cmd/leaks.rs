//! `asynctrace leaks trace.bin`: leaks by class and site; `--fail` for CI.

use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, LeakOptions, Leaks, TextOptions};

use crate::cli::LeaksArgs;
use crate::cmd::{open_trace, print_report};

pub fn run(args: LeaksArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut pass = Leaks::new(LeakOptions::default());
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    print_report(args.format, &report, &args.trace, report.truncated, |out| {
        let mut text = TextOptions::default();
        text.all = args.all;
        analysis::write_leaks_text(out, &report, &text)
    })?;
    // Why 1 and not 2: 2 means the command failed; 1 means it worked and found leaks.
    Ok(if args.fail && !report.leaks.is_empty() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
