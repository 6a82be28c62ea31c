//! One module per subcommand.

mod bubble;
mod export;
mod flame;
mod info;
mod leaks;
pub mod record;
mod requests;
mod slow;
mod top;
mod tree;

use std::io::{BufWriter, StdoutLock, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracer_core::trace::{TraceError, TraceReader};

use crate::cli::{Cli, Command, Format};
use crate::input::{self, Input};

pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    // `-o -` is stdout, as for most Unix tools.
    match &mut cli.command {
        Command::Flame(args) => stdout_dash(&mut args.output),
        Command::Export(args) => stdout_dash(&mut args.output),
        _ => {}
    }
    match cli.command {
        Command::Record(args) => record::run(args),
        Command::Info(args) => info::run(args),
        Command::Tree(args) => tree::run(args),
        Command::Leaks(args) => leaks::run(args),
        Command::Slow(args) => slow::run(args),
        Command::Requests(args) => requests::run(args),
        Command::Flame(args) => flame::run(args),
        Command::Export(args) => export::run(args),
        Command::Bubble(args) => bubble::run(args),
        Command::Top(args) => top::run(args),
    }
}

fn stdout_dash(output: &mut Option<std::path::PathBuf>) {
    if output.as_deref() == Some(Path::new("-")) {
        *output = None;
    }
}

/// Opens a trace for a report, with the file name in any error. Never waits for a writer that
/// is not there (see [`input`]).
pub fn open_trace(path: &Path) -> anyhow::Result<TraceReader<Input>> {
    match TraceReader::new(input::open(path)?) {
        Ok(reader) => Ok(reader),
        Err(TraceError::Io { source, .. }) => {
            Err(source).with_context(|| format!("cannot read trace file {}", path.display()))
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Where reports are written: stdout, buffered (a report can be many lines).
pub type Stdout = BufWriter<StdoutLock<'static>>;

/// Prints a report on stdout, as JSON or through `text`, then warns on stderr when the trace
/// was cut short (the report then covers its complete prefix).
pub fn print_report<T: serde::Serialize>(
    format: Format,
    report: &T,
    trace: &Path,
    truncated: bool,
    text: impl FnOnce(&mut Stdout) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    let write = || -> std::io::Result<()> {
        match format {
            Format::Json => {
                // Why convert: a write error inside serde_json's error does not show as an
                // `io::Error` in the chain, so a closed stdout would not be recognised.
                serde_json::to_writer_pretty(&mut out, report).map_err(std::io::Error::from)?;
                writeln!(out)?;
            }
            Format::Text => text(&mut out)?,
        }
        out.flush()
    };
    write().context("writing the report to stdout")?;
    if truncated {
        warn_truncated(trace, "analysis");
    }
    Ok(())
}

/// The one warning every command gives for a trace without its end marker.
pub fn warn_truncated(trace: &Path, what: &str) {
    say!(
        "asynctrace: warning: {} is truncated; this is the {what} of its complete prefix",
        trace.display()
    );
}
