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
    let mut opts = BubbleOptions::default();
    opts.max_bubbles = args.bubbles.max(1);
    opts.slow_threshold_ns = (args.threshold_ms.max(0.0) * 1e6) as u64;
    let report = if std::fs::metadata(&args.trace).is_ok_and(|m| m.is_file()) {
        in_four_reads(&args.trace, opts)?
    } else {
        // A pipe is read once: every pass in it.
        let mut pass = Bubbles::new(opts);
        let mut cx = read(&args.trace, &mut pass)?;
        pass.finish(&mut cx)
    };
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

fn read(trace: &Path, pass: &mut impl analysis::Pass) -> anyhow::Result<analysis::Context> {
    let mut reader = open_trace(trace)?;
    analysis::run(&mut reader, pass).with_context(|| format!("reading {}", trace.display()))
}

/// The bubbles, then the leaks, slow callbacks and requests that mark them, each in a read of
/// its own: decoding is cheap, and one lifecycle at a time keeps memory at a quarter on traces
/// with millions of live resources.
fn in_four_reads(trace: &Path, opts: BubbleOptions) -> anyhow::Result<BubbleReport> {
    let (mut leaks, mut slow, mut requests) = Bubbles::finding_passes(&opts);
    let mut cx = read(trace, &mut leaks)?;
    let leaks = leaks.finish(&mut cx);
    let mut cx = read(trace, &mut slow)?;
    let slow = slow.finish(&mut cx);
    let mut cx = read(trace, &mut requests)?;
    let requests = requests.finish(&mut cx);
    let mut pass = Bubbles::without_findings(opts);
    pass.want(slow.callbacks.iter().map(|c| (c.pid, c.thread, c.id)));
    let mut cx = read(trace, &mut pass)?;
    Ok(pass.finish_with(&mut cx, &leaks, &slow, &requests))
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
