//! `asynctrace`: record what a Node.js app does asynchronously, then explain it.
//!
//! A thin command line over `tracer-core`: argument parsing, files, processes and exit codes
//! live here; formats and analyses live in the library.
#![forbid(unsafe_code)]

mod cli;
mod cmd;
mod session;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match cmd::run(cli) {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("asynctrace: error: {err:#}");
            ExitCode::from(2)
        }
    }
}

/// A reader that closed our stdout early (`asynctrace tree t.bin | head`) is not an error.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
