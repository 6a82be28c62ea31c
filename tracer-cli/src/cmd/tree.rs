//! `asynctrace tree trace.bin`: the async resource tree, folded so it stays readable.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, Tree, TreeOptions};

use crate::cli::{Format, TreeArgs};
use crate::cmd::open_trace;

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
    let mut out = std::io::stdout().lock();
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        Format::Text => analysis::write_tree_text(&mut out, &report)?,
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
