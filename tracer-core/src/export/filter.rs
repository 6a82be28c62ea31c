//! Which part of a trace an export looks at.

use crate::trace::StreamInfo;

/// Selects processes, threads and a time window. The default selects everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Only streams of this process id.
    pub pid: Option<u32>,
    /// Only streams of this thread (`worker_threads.threadId`; 0 is the main thread).
    pub thread: Option<u32>,
    /// Start of the window, ns since the trace start. Time before it is not counted; resources
    /// created before it still give their frames to the paths of later ones.
    pub from_ns: Option<u64>,
    /// End of the window, ns since the trace start (exclusive).
    pub to_ns: Option<u64>,
}

impl Filter {
    /// Whether events of this stream are exported.
    pub fn selects(&self, info: &StreamInfo) -> bool {
        self.pid.is_none_or(|p| p == info.pid) && self.thread.is_none_or(|t| t == info.thread)
    }

    /// The part of `[start, end)` inside the window, in ns.
    #[inline]
    pub(crate) fn clip(&self, start: u64, end: u64) -> u64 {
        let s = self.from_ns.map_or(start, |f| start.max(f));
        let e = self.to_ns.map_or(end, |t| end.min(t));
        e.saturating_sub(s)
    }

    /// Whether the instant `t` is inside the window.
    #[inline]
    pub(crate) fn contains(&self, t: u64) -> bool {
        self.from_ns.is_none_or(|f| t >= f) && self.to_ns.is_none_or(|e| t < e)
    }
}
