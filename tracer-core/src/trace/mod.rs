//! The trace file: what `asynctrace record` writes and every other command reads.
//!
//! # Layout
//!
//! ```text
//! magic        8 bytes  89 'A' 'T' 'R' 'A' 'C' 'E' 0a
//! version      u32 LE   TRACE_FORMAT_VERSION
//! block*                kind u8 | len u32 LE | payload crc32 | header crc32 | payload
//! ```
//!
//! The magic's first byte has the high bit set and its last is a newline, as in PNG: a
//! 7-bit or newline-translating copy damages it and the reader says "not a trace" instead of
//! misreading. The blocks, in file order:
//!
//! - `Meta`, always first: the [`TraceMeta`].
//! - `Strings`: definitions of string ids, dense from 0 in definition order. Each id is
//!   defined before any block that uses it.
//! - `StreamStart`, `StreamMeta`, `StreamEnd`: a writer thread appeared, described itself,
//!   ended. Streams are numbered 0, 1, 2 .. in order of their start.
//! - `Events`: a run of consecutive events of one stream (see `events.rs` for the encoding,
//!   about 2-3 bytes per event). Blocks of different streams interleave; within a stream the
//!   order of blocks is the order of events.
//! - `End`: the recording finished. A file without it was cut off (the recorder was killed
//!   or is still writing; `asynctrace record` writes `<output>.partial` and renames it only
//!   after `End`): the reader yields every complete block and then reports
//!   [`TraceReader::truncated`]. Damage to a complete block (checksum, impossible contents)
//!   is [`TraceError::Corrupt`] instead.
//!
//! Each block decodes on its own, so the reader holds one block at a time.

mod block;
mod error;
mod events;
pub mod model;
pub mod reader;
mod varint;
pub mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod workload;

pub use error::TraceError;
pub use model::*;
pub use reader::{open, Batch, TraceReader};
pub use writer::{TraceWriter, ONCE_HORIZON};

/// First bytes of every trace file.
pub const MAGIC: [u8; 8] = *b"\x89ATRACE\n";

/// Version of the trace layout after the magic. Bump it when a block kind is added, a payload
/// or the event encoding changes, or [`crate::codec`] switches serializer; readers refuse
/// newer versions with [`TraceError::Version`] rather than misread them. Older versions stay
/// readable: each bump only adds to what a reader understands.
///
/// - 1: the first layout.
/// - 2: a stream can end as [`Ending::Terminated`] (`worker.terminate()`).
/// - 3: events may be [`EventKind::Note`]s, and a promiseResolve may say which resource
///   settled the promise (`by`).
/// - 4: events blocks of kind `Events2`, whose ids may come from two ranges (promises of a
///   thread recorded with V8's promise hooks, and the rest; see `events.rs`).
pub const TRACE_FORMAT_VERSION: u32 = 4;
