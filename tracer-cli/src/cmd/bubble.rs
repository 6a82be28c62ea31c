//! `asynctrace bubble trace.bin`: the bubble view, as a self-contained HTML page (`-o`), JSON
//! or a ranked summary.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;
use tracer_core::analysis::{self, BubbleOptions, BubbleReport, Bubbles};

use crate::cli::BubbleArgs;
use crate::cmd::{open_trace, print_report, warn_truncated};

const PAGE: &str = include_str!("../bubble_page/page.html");
const CSS: &str = include_str!("../bubble_page/page.css");
const JS: &str = include_str!("../bubble_page/page.js");

pub fn run(args: BubbleArgs) -> anyhow::Result<ExitCode> {
    let mut reader = open_trace(&args.trace)?;
    let mut opts = BubbleOptions::default();
    opts.max_bubbles = args.bubbles.max(1);
    opts.slow_threshold_ns = (args.threshold_ms.max(0.0) * 1e6) as u64;
    let mut pass = Bubbles::new(opts);
    let mut cx = analysis::run(&mut reader, &mut pass).with_context(|| format!("reading {}", args.trace.display()))?;
    let report = pass.finish(&mut cx);
    match &args.output {
        Some(path) => {
            write_page(path, &args.trace, &report)?;
            if report.truncated {
                warn_truncated(&args.trace, "bubble view");
            }
        }
        None => print_report(args.format, &report, &args.trace, report.truncated, |out| {
            analysis::write_bubbles_text(out, &report)
        })?,
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(path: &Path, trace: &Path, report: &BubbleReport) -> anyhow::Result<()> {
    let json = serde_json::to_string(report).context("encoding the bubbles")?;
    // Inside <script>, `</` could close the element: JSON allows `<\/` for it.
    let json = json.replace("</", "<\\/");
    let title = html_escape(&trace.display().to_string());
    let page = PAGE
        .replace("__TITLE__", &title)
        .replace("__CSS__", CSS)
        .replace("__JS__", JS)
        .replace("__DATA__", &json);
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::new(file);
    out.write_all(page.as_bytes())
        .and_then(|()| out.flush())
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
