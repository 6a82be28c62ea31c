//! `requests`: one row per incoming HTTP request, its latency and where it waited.
//!
//! - A request is an `HTTPINCOMINGMESSAGE` resource (Node's server-side parser), named by
//!   the agent's label (`GET /slow`) when recorded. A kept-alive connection reuses one
//!   parser: each further label on it starts a new request.
//! - Its subtree: every resource whose trigger, at init, was the request resource or in its
//!   subtree (membership is inherited at init, so it costs one lookup per init).
//! - Latency: from the request's start (the before in which Node emitted it, i.e. its label;
//!   unlabelled: the parser's first before; none: its init) to the last after of any
//!   callback in its subtree.
//! - Sync: the time its subtree's callbacks ran, as an interval union (a callback nested in
//!   another of the same request counts once). Wait = latency - sync: time the request was
//!   not running its own code (I/O, timers, other requests' callbacks).
//! - Segments: the [`SEGMENTS`] longest async waits in its subtree (before_k minus the
//!   previous after or init, from the request's start on), with type and site: where it
//!   waited. Waits of PROMISE resources come second: a promise waits exactly as long as
//!   what it awaits (the timer, the socket), which is the site worth naming; the longest
//!   promise wait is listed only when it exceeds every other by more than 1 ms (the request
//!   waited on something outside its subtree, e.g. another request's promise).
//!
//! Memory: a request is *open* while a non-PROMISE resource of its subtree is alive (the
//! parser itself lives until the response is done; promises are left out because their
//! destroy waits for GC). A closed request keeps 4 bytes (its latency, for the
//! percentiles), and only the `limit` slowest keep their row; slots of closed requests are
//! reused (with a generation, so late promise callbacks of a closed request are ignored
//! instead of landing in its slot's next request). So memory grows with open requests, the
//! live resources and 4 bytes per request.

use serde::Serialize;

use super::context::{Context, Pass};
use super::lifecycle::{FxHasher, Key, Lifecycle, Resource, Step};
use crate::trace::{Event, EventKind, StreamId, StringId};
use std::hash::Hasher;

/// Slowest segments kept per request.
pub const SEGMENTS: usize = 3;
const NONE: u32 = u32::MAX;
/// Callbacks of members open at once per thread before the oldest is given up (its `after`
/// was dropped); real nesting is a few levels deep.
const MAX_ACTIVE: usize = 256;
/// Direct-mapped cache of destroyed members, so late children still find their request.
const TOMBS: usize = 1 << 14;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Rows to list, slowest first; 0 = all (default 20). Percentiles cover all requests.
    pub limit: usize,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions { limit: 20 }
    }
}

/// Where a request waited.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Segment {
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    pub wait_ms: f64,
    /// When the wait ended (the callback ran), ms since the trace start.
    pub at_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Request {
    pub pid: u32,
    pub thread: u32,
    /// The HTTPINCOMINGMESSAGE resource.
    pub id: u64,
    /// `GET /slow`, when the agent recorded it.
    pub label: Option<String>,
    pub start_ms: f64,
    pub latency_ms: f64,
    pub sync_ms: f64,
    pub wait_ms: f64,
    /// Resources in its subtree, itself included.
    pub resources: u64,
    pub segments: Vec<Segment>,
    /// Its sync time by the functions that ran in its callbacks (CPU samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::cpu::CpuSummary>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestReport {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Slowest first, at most `limit`.
    pub requests: Vec<Request>,
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub invalid_ids: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy, Default)]
struct Seg {
    wait_ns: u64,
    at_ns: u64,
    id: u64,
    type_name: StringId,
    stack: Option<StringId>,
}

#[derive(Debug, Clone)]
struct Acc {
    stream: StreamId,
    id: u64,
    /// Bumped when the slot is reused.
    gen: u32,
    open: bool,
    /// Live non-PROMISE members.
    live: u32,
    label: Option<StringId>,
    start_ns: Option<u64>,
    init_ns: u64,
    end_ns: u64,
    sync_ns: u64,
    resources: u64,
    segs: [Seg; SEGMENTS],
    promise_seg: Seg,
}

impl Acc {
    fn latency_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns.unwrap_or(self.init_ns))
    }
}

/// A resource's request: a slot and its generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    slot: u32,
    gen: u32,
}

impl Default for Member {
    fn default() -> Self {
        Member { slot: NONE, gen: 0 }
    }
}

/// The pass.
#[derive(Debug, Default)]
pub struct Requests {
    opts: RequestOptions,
    life: Lifecycle<Member>,
    slots: Vec<Acc>,
    free: Vec<u32>,
    /// Latency of every closed request, µs (4 bytes each, for the percentiles).
    latencies_us: Vec<u32>,
    /// Closed requests kept for the report (the slowest `limit`, pruned now and then).
    kept: Vec<Acc>,
    /// Type ids of HTTPINCOMINGMESSAGE and PROMISE, once defined.
    incoming: Option<StringId>,
    promise: Option<StringId>,
    /// Per stream: callbacks of members running now (nested when > 1).
    active: Vec<Vec<(u64, Member)>>,
    tombs: Vec<Option<(Key, Member)>>,
    cpu: super::cpu::CpuByToken,
}

impl Requests {
    pub fn new(opts: RequestOptions) -> Self {
        Requests {
            opts,
            life: Lifecycle::with_tombstones(0),
            tombs: vec![None; TOMBS],
            ..Default::default()
        }
    }

    fn tomb_slot(key: Key) -> usize {
        let mut h = FxHasher::default();
        h.write_u32(key.0);
        h.write_u64(key.1);
        (h.finish() >> 32) as usize & (TOMBS - 1)
    }

    /// The open request a member refers to.
    fn acc(&mut self, m: Member) -> Option<&mut Acc> {
        self.slots.get_mut(m.slot as usize).filter(|a| a.open && a.gen == m.gen)
    }

    fn member_of(&self, key: Key) -> Member {
        if let Some(r) = self.life.get(key) {
            return r.data;
        }
        match self.tombs.get(Self::tomb_slot(key)) {
            Some(Some((k, m))) if *k == key => *m,
            _ => Member::default(),
        }
    }

    fn open(&mut self, stream: StreamId, id: u64, now: u64) -> Member {
        let fresh = |gen| Acc {
            stream,
            id,
            gen,
            open: true,
            live: 1,
            label: None,
            start_ns: None,
            init_ns: now,
            end_ns: now,
            sync_ns: 0,
            resources: 1,
            segs: [Seg::default(); SEGMENTS],
            promise_seg: Seg::default(),
        };
        if let Some(slot) = self.free.pop() {
            if let Some(a) = self.slots.get_mut(slot as usize) {
                let gen = a.gen.wrapping_add(1);
                *a = fresh(gen);
                return Member { slot, gen };
            }
        }
        let slot = u32::try_from(self.slots.len()).unwrap_or(NONE - 1).min(NONE - 1);
        self.slots.push(fresh(0));
        Member { slot, gen: 0 }
    }

    /// Closes a request: its latency joins the percentiles, its row may be kept.
    fn close(&mut self, slot: u32) {
        let Some(a) = self.slots.get_mut(slot as usize).filter(|a| a.open) else {
            return;
        };
        a.open = false;
        let us = (a.latency_ns() / 1000).min(u64::from(u32::MAX)) as u32;
        self.latencies_us.push(us);
        self.kept.push(a.clone());
        self.free.push(slot);
        let limit = self.opts.limit;
        if limit > 0 && self.kept.len() >= 2 * limit.max(512) {
            self.kept.sort_by_key(|a| std::cmp::Reverse(a.latency_ns()));
            self.kept.truncate(limit);
        }
    }

    /// A non-PROMISE member is gone: the request closes when it was the last.
    fn release(&mut self, m: Member) {
        let slot = m.slot;
        if let Some(a) = self.acc(m) {
            a.live = a.live.saturating_sub(1);
            if a.live == 0 {
                self.close(slot);
            }
        }
    }

    fn is_promise<X>(&self, res: &Resource<X>) -> bool {
        Some(res.type_name) == self.promise
    }

    fn active(&mut self, stream: StreamId) -> &mut Vec<(u64, Member)> {
        let s = stream as usize;
        if self.active.len() <= s {
            self.active.resize_with(s + 1, Vec::new);
        }
        &mut self.active[s]
    }

    pub fn finish(mut self, cx: &mut Context) -> RequestReport {
        for slot in 0..self.slots.len() {
            self.close(slot as u32);
        }
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_by(|a, b| {
            b.latency_ns()
                .cmp(&a.latency_ns())
                .then(a.start_ns.cmp(&b.start_ns))
                .then(a.id.cmp(&b.id))
        });
        if self.opts.limit > 0 {
            kept.truncate(self.opts.limit);
        }
        let cpu_of = |cx: &Context, a: &Acc| {
            let token = super::cpu::CpuByToken::token(a.stream, a.id, a.init_ns);
            self.cpu.summary(cx, token, 5)
        };
        let rows = kept
            .iter()
            .map(|a| Request {
                cpu: cpu_of(cx, a),
                ..row(cx, a)
            })
            .collect();
        let mut lat = std::mem::take(&mut self.latencies_us);
        lat.sort_unstable();
        let pct = |p| percentile(&lat, p);
        RequestReport {
            count: lat.len() as u64,
            p50_ms: pct(50.0),
            p95_ms: pct(95.0),
            p99_ms: pct(99.0),
            max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1e3),
            requests: rows,
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }
}

fn row(cx: &mut Context, a: &Acc) -> Request {
    let start = a.start_ns.unwrap_or(a.init_ns);
    let latency = a.latency_ns();
    let s = cx.stream(a.stream);
    let mut segs: Vec<Seg> = a.segs.iter().copied().filter(|s| s.wait_ns > 0).collect();
    let longest = segs.iter().map(|s| s.wait_ns).max().unwrap_or(0);
    if a.promise_seg.wait_ns > longest + 1_000_000 {
        segs.push(a.promise_seg);
    }
    segs.sort_by(|x, y| y.wait_ns.cmp(&x.wait_ns).then(x.at_ns.cmp(&y.at_ns)));
    let segments = segs
        .iter()
        .map(|g| {
            let site = cx.site(g.stack);
            Segment {
                id: g.id,
                type_name: cx.string(g.type_name).to_owned(),
                site: cx.site_string(site),
                wait_ms: super::ms(g.wait_ns),
                at_ms: super::ms(g.at_ns),
            }
        })
        .collect();
    Request {
        pid: s.pid,
        thread: s.thread,
        id: a.id,
        label: a.label.map(|l| cx.string(l).to_owned()),
        start_ms: super::ms(start),
        latency_ms: super::ms(latency),
        sync_ms: super::ms(a.sync_ns.min(latency)),
        wait_ms: super::ms(latency.saturating_sub(a.sync_ns)),
        resources: a.resources,
        segments,
        cpu: None,
    }
}

/// Nearest-rank percentile of sorted latencies in µs, as ms (0 for none).
fn percentile(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted_us.len() as f64).ceil() as usize;
    f64::from(sorted_us[rank.clamp(1, sorted_us.len()) - 1]) / 1e3
}

impl Pass for Requests {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        let (stream, t) = (ev.stream, ev.time_ns);
        if self.cpu.note(cx, ev) {
            return;
        }
        if let EventKind::Init { type_name, trigger, .. } = ev.kind {
            if self.incoming.is_none() && cx.string(type_name) == "HTTPINCOMINGMESSAGE" {
                self.incoming = Some(type_name);
            }
            if self.promise.is_none() && cx.string(type_name) == "PROMISE" {
                self.promise = Some(type_name);
            }
            let m = if Some(type_name) == self.incoming {
                self.open(stream, ev.id, t)
            } else {
                let m = self.member_of((stream, trigger));
                let counts = Some(type_name) != self.promise;
                match self.acc(m) {
                    Some(a) => {
                        a.resources += 1;
                        a.live += u32::from(counts);
                        m
                    }
                    None => Member::default(),
                }
            };
            if let Step::Init(res) = self.life.apply(ev) {
                res.data = m;
            }
            return;
        }
        let promise = self.promise;
        match self.life.apply(ev) {
            Step::Before { res, wait_ns } if res.data.slot != NONE => {
                let (m, idle, type_name, stack) = (res.data, res.idle_since_ns, res.type_name, res.stack);
                let active = self.active(stream);
                if active.len() >= MAX_ACTIVE {
                    // The oldest never ended (its `after` was dropped): forget it, so that
                    // memory and the search below stay bounded.
                    active.remove(0);
                }
                active.push((ev.id, m));
                if let Some(k) = self
                    .acc(m)
                    .map(|a| super::cpu::CpuByToken::token(a.stream, a.id, a.init_ns))
                {
                    self.cpu.before(stream, ev.id, t, k);
                }
                let Some(a) = self.acc(m) else { return };
                let start = *a.start_ns.get_or_insert(t);
                let wait = if idle >= start {
                    wait_ns
                } else {
                    t.saturating_sub(start)
                };
                let seg = Seg {
                    wait_ns: wait,
                    at_ns: t,
                    id: ev.id,
                    type_name,
                    stack,
                };
                if Some(type_name) == promise {
                    if wait > a.promise_seg.wait_ns {
                        a.promise_seg = seg;
                    }
                } else if let Some(min) = a
                    .segs
                    .iter_mut()
                    .min_by_key(|s| s.wait_ns)
                    .filter(|min| wait > min.wait_ns)
                {
                    *min = seg;
                }
            }
            Step::After { res, sync_ns, .. } if res.data.slot != NONE => {
                let m = res.data;
                // The request as it is now: a kept-alive parser's callback starts with the
                // previous request and is labelled with the next.
                let k = self
                    .acc(m)
                    .map(|a| super::cpu::CpuByToken::token(a.stream, a.id, a.init_ns));
                self.cpu.after(stream, ev.id, t, k);
                let active = self.active(stream);
                if let Some(pos) = active.iter().rposition(|&(id, _)| id == ev.id) {
                    active.remove(pos);
                }
                let nested = active.iter().any(|&(_, r)| r == m);
                let Some(a) = self.acc(m) else { return };
                a.end_ns = a.end_ns.max(t);
                if !nested {
                    a.sync_ns += sync_ns;
                }
            }
            Step::Label(res) if Some(res.type_name) == self.incoming => {
                let (Some(text), old) = (res.label, res.data) else {
                    return;
                };
                let labelled = self.acc(old).map(|a| a.label.is_some());
                let m = if labelled == Some(true) {
                    // A kept-alive connection: the next request on the same parser, which
                    // moves from the old request's live members to the new one's.
                    let m = self.open(stream, ev.id, t);
                    if let Some(res) = self.life.get_mut((stream, ev.id)) {
                        res.data = m;
                    }
                    self.release(old);
                    m
                } else {
                    old
                };
                if let Some(a) = self.acc(m) {
                    a.label = Some(text);
                    a.start_ns = Some(t);
                }
            }
            Step::Destroy(res) if res.data.slot != NONE => {
                self.tombs[Self::tomb_slot((stream, ev.id))] = Some(((stream, ev.id), res.data));
                if !self.is_promise(&res) {
                    self.release(res.data);
                }
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, _cx: &mut Context, stream: StreamId, _end_ns: u64) {
        self.life.drain_stream(stream, |_, _| {});
        if let Some(a) = self.active.get_mut(stream as usize) {
            a.clear();
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot].stream == stream {
                self.close(slot as u32);
            }
        }
    }
}
