//! The requests of a run still going: what a live view shows while the pass runs, from the
//! same model as the report (membership, sync and wait, where a request waits).

use super::{Acc, Request, RequestState, Requests};
use crate::analysis::Context;
use crate::trace::{StreamId, StringId};

/// Requests open now and the latest closed ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestsNow {
    /// Open now, oldest first, at most the number asked for; `latency_ms` is their age, and
    /// `waiting` where each waits now.
    pub open: Vec<Request>,
    /// All requests open now (of the threads asked for).
    pub open_count: u64,
    /// The latest closed requests, newest first (finished, aborted, or left unfinished by
    /// a thread that ended).
    pub recent: Vec<Request>,
    /// Requests closed so far (all threads): finished, aborted, left unfinished.
    pub finished: u64,
    pub aborted: u64,
    pub unfinished: u64,
    /// Latency percentiles of the finished and aborted ones (all threads), ms.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// Past this many live resources in a thread, where open requests wait is not looked up
/// for a frame: one scan of them per frame would cost the UI more than a frame's time.
const LEAF_SCAN_MAX: usize = 500_000;

impl Requests {
    /// The requests open at `now_ns` (the oldest `max_open`) and the latest closed ones
    /// (at most [`super::RequestOptions::recent`]), of one thread or all.
    pub fn now(&mut self, cx: &mut Context, now_ns: u64, stream: Option<StreamId>, max_open: usize) -> RequestsNow {
        let mine = |s: StreamId| stream.is_none_or(|x| x == s);
        let mut open: Vec<(u64, StreamId, u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, a)| a.open && mine(a.stream))
            .map(|(i, a)| (a.start_ns, a.stream, a.number, i as u32))
            .collect();
        let open_count = open.len() as u64;
        open.sort_unstable();
        open.truncate(max_open);
        let mut streams: Vec<StreamId> = open.iter().map(|o| o.1).collect();
        streams.sort_unstable();
        streams.dedup();
        let scan = self.life.len() <= LEAF_SCAN_MAX;
        for &s in streams.iter().filter(|_| scan) {
            self.find_leaves(s, None);
        }
        let rows = open
            .iter()
            .filter_map(|&(_, _, _, slot)| {
                let mut a: Acc = self.slots.get(slot as usize)?.clone();
                a.end_ns = now_ns.max(a.start_ns);
                a.state = RequestState::Unfinished;
                Some(self.row(cx, &a))
            })
            .collect();
        // The leaves found are of this moment; a request that finishes later must not show
        // where it once waited.
        for a in self.slots.iter_mut().filter(|a| a.open) {
            a.leaf = None;
        }
        let recent = self
            .recent
            .iter()
            .rev()
            .filter(|a| mine(a.stream))
            .map(|a| self.row(cx, a))
            .collect();
        let pct = |p| self.latency.percentile_ns(p).map(super::super::ms);
        RequestsNow {
            open: rows,
            open_count,
            recent,
            finished: self.count - self.aborted - self.unfinished,
            aborted: self.aborted,
            unfinished: self.unfinished,
            p50_ms: pct(50.0),
            p99_ms: pct(99.0),
        }
    }

    /// The labels this pass still shows: of the requests open, recent and kept (a view's
    /// string table must not forget them).
    pub(crate) fn held_labels(&self) -> crate::analysis::lifecycle::FxSet<StringId> {
        let open = self.slots.iter().filter(|a| a.open);
        open.chain(&self.recent)
            .chain(&self.kept)
            .filter_map(|a| a.label)
            .collect()
    }

    /// The requests open now, as (thread, number in it, label, start): cheap, no scan of
    /// live resources (what warnings read every frame).
    pub fn open_requests(&self) -> impl Iterator<Item = OpenRequest> + '_ {
        self.slots.iter().filter(|a| a.open).map(|a| OpenRequest {
            stream: a.stream,
            number: a.number,
            label: a.label,
            start_ns: a.start_ns,
        })
    }
}

/// One open request, in brief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenRequest {
    pub stream: StreamId,
    pub number: u64,
    pub label: Option<StringId>,
    pub start_ns: u64,
}
