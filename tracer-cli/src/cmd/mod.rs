//! One module per subcommand.

mod export;
mod flame;
mod info;
mod leaks;
mod record;
mod requests;
mod slow;
mod tree;

use std::fs::File;
use std::io::{BufReader, StdoutLock, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracer_core::trace::{self, TraceReader};

use crate::cli::{Cli, Command, Format};

pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Info(args) => info::run(args),
        Command::Tree(args) => tree::run(args),
        Command::Leaks(args) => leaks::run(args),
        Command::Slow(args) => slow::run(args),
        Command::Requests(args) => requests::run(args),
        Command::Flame(args) => flame::run(args),
        Command::Export(args) => export::run(args),
    }
}

/// Opens a trace for a report, with the file name in any error.
pub fn open_trace(path: &Path) -> anyhow::Result<TraceReader<BufReader<File>>> {
    trace::open(path).with_context(|| format!("cannot read {}", path.display()))
}

/// Prints a report on stdout, as JSON or through `text`, then warns on stderr when the trace
/// was cut short (the report then covers its complete prefix).
pub fn print_report<T: serde::Serialize>(
    format: Format,
    report: &T,
    trace: &Path,
    truncated: bool,
    text: impl FnOnce(&mut StdoutLock<'static>) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut out, report)?;
            writeln!(out)?;
        }
        Format::Text => text(&mut out)?,
    }
    out.flush()?;
    if truncated {
        warn_truncated(trace, "analysis");
    }
    Ok(())
}

/// The one warning every command gives for a trace without its end marker.
pub fn warn_truncated(trace: &Path, what: &str) {
    eprintln!(
        "asynctrace: warning: {} is truncated; this is the {what} of its complete prefix",
        trace.display()
    );
}
