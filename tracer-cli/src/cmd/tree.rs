//! `asynctrace tree trace.bin`: the async resource tree, folded so it stays readable.

use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, Tree, TreeOptions};

use crate::cli::TreeArgs;
use crate::cmd::{open_trace, print_report};

pub fn run(args: TreeArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut opts = TreeOptions::default();
    opts.root = args.root;
    opts.pid = args.pid;
    opts.thread = args.thread;
    opts.exec = args.exec;
    opts.depth = args.depth;
    opts.children = args.children;
    opts.lines = args.lines;
    let mut pass = Tree::new(opts);
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    print_report(args.format, &report, &args.trace, report.truncated, |out| {
        analysis::write_tree_text(out, &report)
    })?;
    Ok(ExitCode::SUCCESS)
}
