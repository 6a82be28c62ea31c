//! Why an export failed.

use std::io;

use crate::trace::TraceError;

/// An export stopped: the trace could not be read or the output could not be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// Reading or decoding the trace failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Write(#[from] io::Error),
}
