//! `asynctrace`: record what a Node.js app does asynchronously, then explain it.
//!
//! A thin command line over `tracer-core`: argument parsing, files, processes and exit codes
//! live here; formats and analyses live in the library.
//!
//! Output never panics: `println!`/`eprintln!` panic when the other end of a pipe is gone, so
//! stdout goes through writers whose errors are returned (a reader that went away ends the
//! command quietly, with status 0) and stderr lines through [`say!`], which ignores errors.
#![forbid(unsafe_code)]
#![deny(clippy::print_stdout, clippy::print_stderr)]

/// Writes one line on stderr, ignoring a closed or broken stderr (the line was for a reader
/// who is gone; failing or panicking over it would cost the user the exit status).
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::stderr::line(format_args!($($arg)*))
    };
}

mod cli;
mod cmd;
mod input;
mod session;
mod stderr;
mod trace_file;
mod tui;

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
            say!("asynctrace: error: {}", stderr::chain(&err));
            ExitCode::from(2)
        }
    }
}

/// A reader that closed our stdout early (`asynctrace tree t.bin | head`) is not an error: the
/// command ends quietly with status 0, as `rg` and `git log` do.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        let kind = match (
            e.downcast_ref::<std::io::Error>(),
            e.downcast_ref::<serde_json::Error>(),
        ) {
            (Some(io), _) => Some(io.kind()),
            (None, Some(json)) => json.io_error_kind(),
            (None, None) => None,
        };
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
