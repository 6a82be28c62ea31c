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
use super::cpu::{self, Cpu, CpuStep, CpuSummary, Profile, Windows};
use super::lifecycle::{FxMap, Key, Lifecycle, Step};
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
    /// False for a resource created before the agent's hook (a worker's internal port): its
    /// type is the one the agent learned at its first callback.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_init: bool,
    /// What ran in it, from the CPU samples (absent when the trace has none for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<CpuSummary>,
    /// The HTTP request it ran for (`GET /report #12`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Its site is the nearest trigger's: Node created it without user frames (an accepted
    /// socket, a request's parser).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub site_inherited: bool,
    /// Its stack was not taken (the agent's budget): the site is that of the resources
    /// created at the same point of the program (see [`Context::observe`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub site_inferred: bool,
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
    /// Its CPU profile in [`Slow::profiles`] (0: none).
    token: u64,
    no_init: bool,
    owner: Owner,
    /// The nearest trigger's stack, when it has none of its own.
    inherited: Option<StringId>,
}

/// The type of a resource whose init is not in the trace and of which no note says more.
const NO_TYPE: StringId = StringId::MAX;

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
    cpu: Cpu,
    windows: Windows,
    /// CPU samples of the slow callbacks, by token.
    profiles: FxMap<u64, Profile>,
    next_token: u64,
    /// Running callbacks of resources whose init is not in the trace: their start.
    unseen: FxMap<Key, u64>,
    unseen_types: FxMap<Key, StringId>,
    unseen_callbacks: FxMap<Key, u32>,
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
            cpu: Cpu::default(),
            windows: Windows::default(),
            profiles: FxMap::default(),
            next_token: 1,
            unseen: FxMap::default(),
            unseen_types: FxMap::default(),
            unseen_callbacks: FxMap::default(),
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
            if let Some(Reverse(out)) = self.top.pop() {
                self.profiles.remove(&out.token);
            }
            self.top.push(Reverse(e));
        } else {
            self.profiles.remove(&e.token);
        }
    }

    /// A CPU note: samples go to the slow callback they fell in.
    fn cpu_note(&mut self, cx: &Context, ev: &Event) -> bool {
        match self.cpu.apply(cx, ev) {
            CpuStep::None => {
                if let EventKind::Note {
                    code: notes::UNSEEN_TYPE,
                    text: Some(t),
                    ..
                } = ev.kind
                {
                    self.unseen_types.insert((ev.stream, ev.id), t);
                    return true;
                }
                false
            }
            CpuStep::Sample(s) => {
                if let Some(p) = self
                    .windows
                    .find(s.stream, s.time_ns)
                    .and_then(|t| self.profiles.get_mut(&t))
                {
                    p.add(&s);
                }
                true
            }
            CpuStep::ChunkEnd { stream, time_ns } => {
                self.windows.prune(stream, time_ns);
                true
            }
            CpuStep::Other => true,
        }
    }

    /// A token for the samples of a callback over the threshold (0: not slow).
    fn token_for(&mut self, sync_ns: u64) -> u64 {
        if sync_ns <= self.opts.threshold_ns || self.opts.limit == 0 {
            return 0;
        }
        let t = self.next_token;
        self.next_token += 1;
        self.profiles.insert(t, Profile::default());
        t
    }

    /// A callback of a resource whose init is not in the trace (created before the hook).
    fn unseen_event(&mut self, ev: &Event) {
        let key = (ev.stream, ev.id);
        match ev.kind {
            EventKind::Before => {
                self.unseen.insert(key, ev.time_ns);
                *self.unseen_callbacks.entry(key).or_default() += 1;
                self.windows.open(ev.stream, ev.id, ev.time_ns, 0);
            }
            EventKind::After => {
                let Some(start) = self.unseen.remove(&key) else {
                    return;
                };
                let sync_ns = ev.time_ns.saturating_sub(start);
                let token = self.token_for(sync_ns);
                self.windows.close(ev.stream, ev.id, ev.time_ns, token);
                if sync_ns > self.opts.threshold_ns {
                    self.offer(Entry {
                        sync_ns,
                        start: Reverse(start),
                        stream: ev.stream,
                        id: ev.id,
                        callback: self.unseen_callbacks.get(&key).copied().unwrap_or(1),
                        finished: true,
                        type_name: self.unseen_types.get(&key).copied().unwrap_or(NO_TYPE),
                        stack: None,
                        token,
                        no_init: true,
                        owner: Owner::default(),
                        inherited: None,
                    });
                }
            }
            EventKind::Destroy => {
                self.unseen_types.remove(&key);
                self.unseen_callbacks.remove(&key);
            }
            _ => {}
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
                    type_name: if e.type_name == NO_TYPE {
                        "(no init)".to_owned()
                    } else {
                        cx.string(e.type_name).to_owned()
                    },
                    site: cx.site_string(site),
                    sync_ms: super::ms(e.sync_ns),
                    start_ms: super::ms(e.start.0),
                    callback: e.callback,
                    finished: e.finished,
                    stack: cx.stack_frames(e.stack),
                    no_init: e.no_init,
                    cpu: self
                        .profiles
                        .get(&e.token)
                        .and_then(|p| cpu::summarize(&self.cpu, cx, p, 5)),
                    request,
                    site_inherited: e.stack.is_none() && e.inherited.is_some(),
                    site_inferred: cx.is_inferred(e.stack.or(e.inherited)),
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
    fn event(&mut self, cx: &mut Context, ev: &Event) {
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
            EventKind::Note { .. } if self.cpu_note(cx, ev) => return,
            _ => {}
        }
        match self.life.apply(ev) {
            Step::Before { .. } => self.windows.open(ev.stream, ev.id, ev.time_ns, 0),
            Step::Unknown => self.unseen_event(ev),
            Step::After { res, start_ns, sync_ns } => {
                let (callbacks, type_name, stack) = (res.callbacks, res.type_name, res.stack());
                let (owner, inherited) = res.data;
                let token = self.token_for(sync_ns);
                self.windows.close(ev.stream, ev.id, ev.time_ns, token);
                if sync_ns > self.opts.threshold_ns {
                    let e = Entry {
                        sync_ns,
                        start: Reverse(start_ns),
                        stream: ev.stream,
                        id: ev.id,
                        callback: callbacks,
                        finished: true,
                        type_name,
                        stack,
                        token,
                        no_init: false,
                        owner,
                        inherited,
                    };
                    self.offer(e);
                }
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        let lossy = cx.stream(stream).dropped > 0;
        let mut open = Vec::new();
        self.life.drain_stream(stream, |(_, id), res| {
            if let Some(start) = res.before_ns() {
                open.push(Entry {
                    sync_ns: end_ns.saturating_sub(start),
                    start: Reverse(start),
                    stream,
                    id,
                    callback: res.callbacks,
                    finished: false,
                    type_name: res.type_name,
                    stack: res.stack(),
                    token: 0,
                    no_init: false,
                    owner: res.data.0,
                    inherited: res.data.1,
                });
            }
        });
        self.windows.clear(stream);
        self.unseen.retain(|k, _| k.0 != stream);
        self.unseen_types.retain(|k, _| k.0 != stream);
        self.unseen_callbacks.retain(|k, _| k.0 != stream);
        if lossy {
            self.unended_at_end += open.len() as u64;
            return;
        }
        for e in open {
            self.offer(e);
        }
    }
}
