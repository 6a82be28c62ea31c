//! Analyses over a trace: `tree`, `leaks`, `slow`, `requests`, and the pieces they share.
//!
//! Every analysis is one streaming pass: memory grows with the number of *live* resources,
//! distinct sites and (for `requests`) requests, never with the number of events. The
//! definitions follow DESIGN.md section 3.
//!
//! # Building your own pass
//!
//! Implement [`Pass`] and hand it to [`run`]. The driver keeps the [`Context`] (strings,
//! streams, sites, the last time of each stream) up to date and calls the pass for every
//! event and at the end of every stream:
//!
//! ```
//! use tracer_core::analysis::{run, Context, Lifecycle, Pass, Step};
//! use tracer_core::trace::{Event, StreamId};
//!
//! /// Counts callbacks longer than 1 ms.
//! #[derive(Default)]
//! struct LongCallbacks { life: Lifecycle, long: u64 }
//!
//! impl Pass for LongCallbacks {
//!     fn event(&mut self, _cx: &mut Context, ev: &Event) {
//!         if let Step::After { sync_ns, .. } = self.life.apply(ev) {
//!             if sync_ns > 1_000_000 { self.long += 1; }
//!         }
//!     }
//!     fn stream_end(&mut self, _cx: &mut Context, stream: StreamId, _end_ns: u64) {
//!         self.life.clear_stream(stream);
//!     }
//! }
//! # let mut buf = Vec::new();
//! # let w = tracer_core::trace::TraceWriter::new(&mut buf, &Default::default()).unwrap();
//! # w.finish().unwrap();
//! let mut reader = tracer_core::trace::TraceReader::new(&buf[..]).unwrap();
//! let mut pass = LongCallbacks::default();
//! let cx = run(&mut reader, &mut pass).unwrap();
//! assert_eq!(pass.long, 0);
//! assert!(!cx.truncated);
//! ```
//!
//! [`Lifecycle`] is the per-resource state machine (see its docs): feed it every event with
//! [`Lifecycle::apply`], read the [`Step`] it returns (callback times arrive with the `After`,
//! the whole [`Resource`] at its destroy), and attach your own per-resource data through its
//! type parameter. [`Lifecycle::chain`] walks the trigger chain of a resource, also through
//! recently destroyed ancestors.

mod alive;
mod blame;
mod bubbles;
mod bubbles_time;
mod chain;
mod context;
pub mod cpu;
pub mod growth;
mod http;
mod leaks;
mod lifecycle;
mod position;
mod report;
mod requests;
mod resource_table;
mod slow;
mod strings;
pub mod synth;
mod tree;
pub mod waits;

#[cfg(test)]
mod bubbles_tests;
#[cfg(test)]
mod tests;

pub use alive::{signal_name, AliveGroup, StreamEndInfo, WarningGroup};
pub use bubbles::{
    category_of, party_of, write_bubbles_text, Aggregate, Bubble, BubbleOptions, BubbleReport, BubbleViewData, Bubbles,
    Category, Folded, Link, Mark, Party, PathWait, RequestPath, RequestSummary, RequestWaits,
};
pub use chain::{fold_chain, FoldedLink};
pub use context::{format_frame, run, site_of_stack, Context, Pass, SiteId, StreamDesc};
pub use growth::GrowthRule;
pub use http::route_of;
pub use leaks::{LeakClass, LeakExample, LeakGroup, LeakLink, LeakOptions, LeakReport, Leaks, HANDLE_TYPES};
pub(crate) use lifecycle::FxMap;
pub use lifecycle::{ChainLink, Key, Lifecycle, Resource, Step};
pub use report::{ms, write_leaks_text, write_requests_text, write_slow_text, write_tree_text, TextOptions};
pub use requests::{
    Blocked, Job, Named, OpenRequest, Pending, Request, RequestOptions, RequestReport, RequestState, Requests,
    RequestsNow, RouteStats, Segment, WaitCause,
};
pub use slow::{Slow, SlowCallback, SlowOptions, SlowReport};
pub use tree::{Tree, TreeNode, TreeOptions, TreeReport, TreeStream};

/// For `skip_serializing_if`: counts of what went wrong are left out of JSON when zero.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Async ids below this are not resources: 0 is "no context" and 1 the bootstrap's
/// execution context. A trigger below it makes a resource a root.
pub const FIRST_RESOURCE_ID: u64 = 2;
