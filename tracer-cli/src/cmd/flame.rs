//! `asynctrace flame trace.bin > out.svg`: a flame graph of async paths, drawn by inferno.

use std::fs::File;
use std::io::{BufWriter, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context};
use inferno::flamegraph::{self, color::BasicPalette, Palette, TextTruncateDirection};
use tracer_core::export::{fold, Filter, FoldOptions, Folded, Weight};

use crate::cli::{FilterArgs, FlameArgs, WeightArg};
use crate::cmd::{open_trace, warn_truncated};

pub fn run(args: FlameArgs) -> anyhow::Result<ExitCode> {
    if !args.folded && args.output.is_none() && std::io::stdout().is_terminal() {
        bail!(
            "refusing to write an SVG to a terminal; redirect it (`asynctrace flame {} > flame.svg`), \
             pass `-o flame.svg`, or print the folded stacks with `--folded`",
            args.trace.display()
        );
    }
    let folded = fold_trace(&args.trace, args.weight, &args.filter, args.flamechart)?;
    let out = output(args.output.as_deref())?;
    if args.folded {
        folded.write_lines(out).context("writing the folded stacks")?;
    } else {
        draw(&args.trace, &folded, args.flamechart, out)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Folds the trace, warning on stderr when it was truncated.
pub(super) fn fold_trace(
    trace: &Path,
    weight: WeightArg,
    filter: &FilterArgs,
    time_order: bool,
) -> anyhow::Result<Folded> {
    let reader = open_trace(trace)?;
    let mut opts = FoldOptions::default();
    opts.weight = weight.into();
    opts.filter = to_filter(filter)?;
    opts.time_order = time_order;
    let folded = fold(reader, &opts).with_context(|| format!("reading {}", trace.display()))?;
    if folded.truncated {
        warn_truncated(trace, "graph");
    }
    if folded.unended > 0 {
        say!(
            "asynctrace: warning: {} callbacks with no recorded end (events dropped): their time is unknown and not in the graph",
            folded.unended
        );
    }
    if folded.streams.is_empty() && (filter.pid.is_some() || filter.thread.is_some()) {
        bail!("no process or thread of {} matches --pid/--thread", trace.display());
    }
    Ok(folded)
}

fn draw(trace: &Path, folded: &Folded, flamechart: bool, out: impl Write) -> anyhow::Result<()> {
    let mut lines = folded.lines();
    if flamechart {
        // Why: inferno's flame chart draws its input right to left (it reverses the lines
        // for its merge); hand it the newest stack first so that time runs left to right.
        lines.reverse();
    }
    let what = match folded.weight {
        Weight::Sync => "time in callbacks",
        Weight::Async => "async wait",
        Weight::Cpu => "CPU samples",
        _ => "resources created",
    };
    if lines.is_empty() && folded.weight == Weight::Cpu {
        bail!(
            "nothing to draw: no CPU samples in {} (recorded with --cpu off, or by an older asynctrace)",
            trace.display()
        );
    }
    if lines.is_empty() {
        bail!(
            "nothing to draw: no {what} in {} (try another --weight or a wider selection)",
            trace.display()
        );
    }
    let name = trace
        .file_name()
        .map_or_else(|| trace.display().to_string(), |n| n.to_string_lossy().into_owned());
    let mut opt = flamegraph::Options::default();
    opt.title = format!("{name}: {what} ({} weight)", folded.weight.name());
    opt.subtitle = Some(format!(
        "one stack per resource: its trigger path, frames TYPE site; {}",
        if flamechart {
            "time order"
        } else {
            "merged, alphabetical"
        }
    ));
    opt.count_name = folded.weight.unit().to_string();
    opt.name_type = "Resource:".to_string();
    // Why hash + deterministic: the same frame gets the same colour in every run and graph.
    opt.hash = true;
    opt.deterministic = true;
    opt.colors = Palette::Basic(match folded.weight {
        Weight::Async => BasicPalette::Aqua,
        Weight::Sync => BasicPalette::Hot,
        Weight::Cpu => BasicPalette::Orange,
        _ => BasicPalette::Green,
    });
    opt.flame_chart = flamechart;
    // Why: a frame name starts with its type, the part worth keeping when space runs out.
    opt.text_truncate_direction = TextTruncateDirection::Right;
    // Why: the lines are already sorted (or in time order for a flame chart).
    opt.no_sort = true;
    flamegraph::from_lines(&mut opt, lines.iter().map(String::as_str), out).context("drawing the flame graph")?;
    Ok(())
}

/// Stdout, or a new file.
pub(super) fn output(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    })
}

pub(super) fn to_filter(f: &FilterArgs) -> anyhow::Result<Filter> {
    let ns = |ms: f64, flag: &str| -> anyhow::Result<u64> {
        if !ms.is_finite() || ms < 0.0 {
            bail!("{flag} must be a non-negative number of milliseconds, not {ms}");
        }
        Ok((ms * 1e6) as u64)
    };
    let mut filter = Filter::default();
    filter.pid = f.pid;
    filter.thread = f.thread;
    filter.from_ns = f.from_ms.map(|m| ns(m, "--from-ms")).transpose()?;
    filter.to_ns = f.to_ms.map(|m| ns(m, "--to-ms")).transpose()?;
    if let (Some(a), Some(b)) = (filter.from_ns, filter.to_ns) {
        if a >= b {
            bail!("--from-ms must be before --to-ms");
        }
    }
    Ok(filter)
}

impl From<WeightArg> for Weight {
    fn from(w: WeightArg) -> Self {
        match w {
            WeightArg::Sync => Weight::Sync,
            WeightArg::Async => Weight::Async,
            WeightArg::Count => Weight::Count,
            WeightArg::Cpu => Weight::Cpu,
        }
    }
}
