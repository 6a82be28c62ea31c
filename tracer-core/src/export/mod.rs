//! Exports of a trace to the formats other tools draw: folded stacks (inferno, flamegraph.pl),
//! Chrome Trace Event JSON (Perfetto, `chrome://tracing`) and speedscope.
//!
//! Each export is one streaming pass over a [`TraceReader`](crate::trace::TraceReader):
//! memory grows with the number of live resources and distinct stacks, never with the number
//! of events. A truncated trace exports its complete prefix; the result says it was cut.
//!
//! A resource's *stack* here is its async path: the chain of `triggerAsyncId`s from a root of
//! its thread down to it, one frame per resource, `TYPE site` (the creation site where the
//! agent recorded a stack, else just `TYPE`). Folding adds up a [`Weight`] per distinct path.

mod chrome;
mod error;
mod filter;
mod folded;
mod frames;
mod hash;
mod input;
mod json;
mod speedscope;

pub use chrome::{write_chrome, ChromeOptions, ChromeStats};
pub use error::ExportError;
pub use filter::Filter;
pub use folded::{fold, FoldOptions, Folded, Stack, Weight};
pub use frames::FrameInfo;
pub use speedscope::write_speedscope;

#[cfg(test)]
mod tests;
