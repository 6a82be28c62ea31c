//! The library behind `asynctrace`: the formats the agent and the reader share, the trace
//! file, and the analyses every command runs.
//!
//! Data flows one way. The agent in each Node thread writes fixed-size [`record`]s into a
//! shared-memory [`ring`] ([`shm`] maps it); `asynctrace record` drains the rings and writes a
//! [`trace`] file; the commands read that file as a stream of events.
//!
//! Unsafe code lives only in [`ring`] (atomics and copies on a raw region) and [`shm`] (the
//! mapping), each block with a `// SAFETY:` line.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod analysis;
pub mod codec;
pub mod export;
pub mod ingest;
pub mod live;
mod promise_ends;
pub mod record;
pub mod recorder;
pub mod ring;
pub mod shm;
pub mod summary;
pub mod trace;
