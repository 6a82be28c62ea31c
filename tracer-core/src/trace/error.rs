//! Why a trace file could not be read.

use std::{io, path::PathBuf};

/// An error reading a trace file. A file that merely ends early (the recorder was killed) is
/// not an error: the reader yields what is there and reports
/// [`truncated`](super::TraceReader::truncated).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// Reading the input failed; `path` is known when the reader was made with [`super::open`].
    #[error("cannot read {}: {source}", describe(path))]
    Io {
        path: Option<PathBuf>,
        #[source]
        source: io::Error,
    },
    /// The path names a directory.
    #[error(
        "{} is a directory; pass the trace file written by `asynctrace record`",
        path.display()
    )]
    IsDirectory { path: PathBuf },
    /// The input has no bytes at all.
    #[error(
        "the trace file is empty; the recorder probably failed before writing anything, \
         record again with `asynctrace record`"
    )]
    Empty,
    /// The input does not start with the trace magic.
    #[error("not an asynctrace trace file (bad magic); pass a file written by `asynctrace record`")]
    NotATrace,
    /// The input starts like a trace but ends before its header and metadata are complete.
    #[error(
        "the trace file ends inside its header, so it holds no events; the recorder was \
         stopped right after it started, record again"
    )]
    TruncatedHeader,
    /// The file was written in a format version this build does not read.
    #[error(
        "trace format version {found} is newer than version {supported} that this asynctrace \
         reads; upgrade asynctrace to read it"
    )]
    Version { found: u32, supported: u32 },
    /// A checksum failed or the bytes make no sense at `offset`: the file was damaged after
    /// it was written.
    #[error(
        "the trace file is corrupt at byte {offset}: {what}; it was damaged after it was \
         written (disk, copy or edit), record again or restore it from a good copy"
    )]
    Corrupt { offset: u64, what: String },
}

fn describe(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => format!("trace file {}", p.display()),
        None => String::from("the trace"),
    }
}
