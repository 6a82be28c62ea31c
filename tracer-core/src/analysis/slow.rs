//! Callbacks that blocked the event loop: sync time (before to after) above a threshold.
//!
//! Keeps the `limit` longest in a heap, so memory is bounded whatever the trace. A callback
//! still running when its stream ended (the app called `process.exit` inside it) counts up
//! to the stream's last event and is marked unfinished, unless the agent dropped events in
//! that stream: then its `after` may just have been lost, its sync time is unknown, and it
//! is counted in [`SlowReport::unended`] instead of as blocking time (as are callbacks
//! followed by another callback of the same resource without an `after` between them).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

use super::context::{Context, Pass};
use super::lifecycle::{Lifecycle, Step};
use super::waits::Owner;
use crate::trace::{notes, Event, EventKind, StreamId, StringId};

/// What `slow` looks for.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SlowOptions {
    /// Callbacks with more sync time than this blocked the loop (default 10 ms).
    pub threshold_ns: u64,
    /// How many to list, longest first (default 20).
    pub limit: usize,
}

impl Default for SlowOptions {
    fn default() -> Self {
        SlowOptions {
            threshold_ns: 10_000_000,
            limit: 20,
        }
    }
}

/// One blocking callback.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowCallback {
    pub pid: u32,
    pub thread: u32,
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    pub sync_ms: f64,
    /// When the callback started, ms since the trace start.
    pub start_ms: f64,
    /// Which callback of the resource (1 = first).
    pub callback: u32,
    /// False when the stream ended inside the callback.
    pub finished: bool,
    pub stack: Vec<String>,
    /// The HTTP request it ran for (`GET /report #12`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Its site is the nearest trigger's: Node created it without user frames (an accepted
    /// socket, a request's parser).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub site_inherited: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SlowReport {
    pub threshold_ms: f64,
    /// Callbacks over the threshold, in all (the list holds at most `limit`).
    pub count: u64,
    /// Their sync time summed (they run on one thread each, so this is time the loop was
    /// blocked, per thread).
    pub blocked_ms: f64,
    pub callbacks: Vec<SlowCallback>,
    /// Callbacks with no recorded end (events dropped): their sync time is unknown and in
    /// neither `count` nor `blocked_ms`.
    pub unended: u64,
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub invalid_ids: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    sync_ns: u64,
    /// Ties: the earlier callback ranks higher.
    start: Reverse<u64>,
    stream: StreamId,
    id: u64,
    callback: u32,
    finished: bool,
    type_name: StringId,
    stack: Option<StringId>,
    owner: Owner,
    /// The nearest trigger's stack, when it has none of its own.
    inherited: Option<StringId>,
}

/// The pass.
#[derive(Debug)]
pub struct Slow {
    opts: SlowOptions,
    /// Each resource's request, inherited at init from its trigger (see `requests`), and
    /// the nearest stack on its trigger chain (its own, or inherited at init).
    life: Lifecycle<(Owner, Option<StringId>)>,
    top: BinaryHeap<Reverse<Entry>>,
    count: u64,
    blocked_ns: u64,
    /// Open at the end of a stream that dropped events.
    unended_at_end: u64,
}

impl Slow {
    pub fn new(opts: SlowOptions) -> Self {
        Slow {
            opts,
            life: Lifecycle::with_tombstones(0),
            top: BinaryHeap::new(),
            count: 0,
            blocked_ns: 0,
            unended_at_end: 0,
        }
    }

    fn offer(&mut self, e: Entry) {
        if e.sync_ns <= self.opts.threshold_ns {
            return;
        }
        self.count += 1;
        self.blocked_ns += e.sync_ns;
        if self.opts.limit == 0 {
            return;
        }
        if self.top.len() < self.opts.limit {
            self.top.push(Reverse(e));
        } else if self.top.peek().is_some_and(|min| e > min.0) {
            self.top.pop();
            self.top.push(Reverse(e));
        }
    }

    pub fn finish(self, cx: &mut Context) -> SlowReport {
        let mut entries: Vec<Entry> = self.top.into_iter().map(|r| r.0).collect();
        entries.sort_unstable_by(|a, b| b.cmp(a));
        let callbacks = entries
            .into_iter()
            .map(|e| {
                let s = cx.stream(e.stream);
                let site = cx.site(e.stack.or(e.inherited));
                let request = e.owner.label.map(|l| format!("{} #{}", cx.string(l), e.owner.number));
                SlowCallback {
                    pid: s.pid,
                    thread: s.thread,
                    id: e.id,
                    type_name: cx.string(e.type_name).to_owned(),
                    site: cx.site_string(site),
                    sync_ms: super::ms(e.sync_ns),
                    start_ms: super::ms(e.start.0),
                    callback: e.callback,
                    finished: e.finished,
                    stack: cx.stack_frames(e.stack),
                    request,
                    site_inherited: e.stack.is_none() && e.inherited.is_some(),
                }
            })
            .collect();
        SlowReport {
            threshold_ms: super::ms(self.opts.threshold_ns),
            count: self.count,
            blocked_ms: super::ms(self.blocked_ns),
            callbacks,
            unended: self.unended_at_end + self.life.unended(),
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }
}

impl Pass for Slow {
    #[inline]
    fn event(&mut self, _cx: &mut Context, ev: &Event) {
        match ev.kind {
            EventKind::Init { trigger, stack, .. } => {
                let (owner, up) = self.life.get((ev.stream, trigger)).map(|r| r.data).unwrap_or_default();
                if let Step::Init(res) = self.life.apply(ev) {
                    res.data = (owner, stack.or(up));
                }
                return;
            }
            EventKind::Note {
                code: notes::REQUEST_START,
                a,
                text,
                ..
            } => {
                // The parser's callbacks, and what they create, now work for this request.
                if let Some(res) = self.life.get_mut((ev.stream, ev.id)) {
                    res.data.0 = Owner { number: a, label: text };
                }
                return;
            }
            _ => {}
        }
        if let Step::After { res, start_ns, sync_ns } = self.life.apply(ev) {
            if sync_ns > self.opts.threshold_ns {
                let e = Entry {
                    sync_ns,
                    start: Reverse(start_ns),
                    stream: ev.stream,
                    id: ev.id,
                    callback: res.callbacks,
                    finished: true,
                    type_name: res.type_name,
                    stack: res.stack,
                    owner: res.data.0,
                    inherited: res.data.1,
                };
                self.offer(e);
            }
        }
    }

    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        let lossy = cx.stream(stream).dropped > 0;
        let mut open = Vec::new();
        self.life.drain_stream(stream, |(_, id), res| {
            if let Some(start) = res.before_ns {
                open.push(Entry {
                    sync_ns: end_ns.saturating_sub(start),
                    start: Reverse(start),
                    stream,
                    id,
                    callback: res.callbacks,
                    finished: false,
                    type_name: res.type_name,
                    stack: res.stack,
                    owner: res.data.0,
                    inherited: res.data.1,
                });
            }
        });
        if lossy {
            self.unended_at_end += open.len() as u64;
            return;
        }
        for e in open {
            self.offer(e);
        }
    }
}
