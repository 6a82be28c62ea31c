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
use std::io::BufReader;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use tracer_core::trace::{self, TraceReader};

use crate::cli::{Cli, Command};

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
