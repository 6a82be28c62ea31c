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
//! Memory: one row (~150 bytes) per request, plus the live resources.

use serde::Serialize;

use super::context::{Context, Pass};
use super::lifecycle::{FxHasher, Key, Lifecycle, Step};
use crate::trace::{Event, EventKind, StreamId, StringId};
use std::hash::Hasher;

/// Slowest segments kept per request.
pub const SEGMENTS: usize = 3;
const NONE: u32 = u32::MAX;
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
    label: Option<StringId>,
    start_ns: Option<u64>,
    init_ns: u64,
    end_ns: u64,
    sync_ns: u64,
    resources: u64,
    segs: [Seg; SEGMENTS],
    promise_seg: Seg,
}

/// The pass.
#[derive(Debug, Default)]
pub struct Requests {
    opts: RequestOptions,
    life: Lifecycle<u32>,
    reqs: Vec<Acc>,
    /// Type id of HTTPINCOMINGMESSAGE, once defined.
    incoming: Option<StringId>,
    promise: Option<StringId>,
    /// Per stream: callbacks of members running now (nested when > 1).
    active: Vec<Vec<(u64, u32)>>,
    tombs: Vec<Option<(Key, u32)>>,
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

    fn slot(key: Key) -> usize {
        let mut h = FxHasher::default();
        h.write_u32(key.0);
        h.write_u64(key.1);
        (h.finish() >> 32) as usize & (TOMBS - 1)
    }

    fn request_of(&self, key: Key) -> u32 {
        if let Some(r) = self.life.get(key) {
            return r.data;
        }
        match self.tombs.get(Self::slot(key)) {
            Some(Some((k, req))) if *k == key => *req,
            _ => NONE,
        }
    }

    fn open(&mut self, stream: StreamId, id: u64, now: u64) -> u32 {
        let i = u32::try_from(self.reqs.len())
            .unwrap_or(NONE - 1)
            .min(NONE - 1);
        self.reqs.push(Acc {
            stream,
            id,
            label: None,
            start_ns: None,
            init_ns: now,
            end_ns: now,
            sync_ns: 0,
            resources: 1,
            segs: [Seg::default(); SEGMENTS],
            promise_seg: Seg::default(),
        });
        i
    }

    fn active(&mut self, stream: StreamId) -> &mut Vec<(u64, u32)> {
        let s = stream as usize;
        if self.active.len() <= s {
            self.active.resize_with(s + 1, Vec::new);
        }
        &mut self.active[s]
    }

    pub fn finish(self, cx: &mut Context) -> RequestReport {
        let mut rows: Vec<Request> = Vec::with_capacity(self.reqs.len());
        for a in &self.reqs {
            let start = a.start_ns.unwrap_or(a.init_ns);
            let latency = a.end_ns.saturating_sub(start);
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
            rows.push(Request {
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
            });
        }
        let mut lat: Vec<f64> = rows.iter().map(|r| r.latency_ms).collect();
        lat.sort_by(f64::total_cmp);
        rows.sort_by(|a, b| {
            b.latency_ms
                .total_cmp(&a.latency_ms)
                .then(a.start_ms.total_cmp(&b.start_ms))
                .then(a.id.cmp(&b.id))
        });
        if self.opts.limit > 0 {
            rows.truncate(self.opts.limit);
        }
        RequestReport {
            count: lat.len() as u64,
            p50_ms: percentile(&lat, 50.0),
            p95_ms: percentile(&lat, 95.0),
            p99_ms: percentile(&lat, 99.0),
            max_ms: lat.last().copied().unwrap_or(0.0),
            requests: rows,
            dropped: cx.dropped,
            truncated: cx.truncated,
        }
    }
}

/// Nearest-rank percentile of sorted values (0 for none).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Pass for Requests {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        let (stream, t) = (ev.stream, ev.time_ns);
        if let EventKind::Init {
            type_name, trigger, ..
        } = ev.kind
        {
            if self.incoming.is_none() && cx.string(type_name) == "HTTPINCOMINGMESSAGE" {
                self.incoming = Some(type_name);
            }
            if self.promise.is_none() && cx.string(type_name) == "PROMISE" {
                self.promise = Some(type_name);
            }
            let req = if Some(type_name) == self.incoming {
                self.open(stream, ev.id, t)
            } else {
                let req = self.request_of((stream, trigger));
                if let Some(a) = self.reqs.get_mut(req as usize) {
                    a.resources += 1;
                }
                req
            };
            if let Step::Init(res) = self.life.apply(ev) {
                res.data = req;
            }
            return;
        }
        match self.life.apply(ev) {
            Step::Before { res, wait_ns } if res.data != NONE => {
                let (req, idle, type_name, stack) =
                    (res.data, res.idle_since_ns, res.type_name, res.stack);
                self.active(stream).push((ev.id, req));
                let Some(a) = self.reqs.get_mut(req as usize) else {
                    return;
                };
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
                if Some(type_name) == self.promise {
                    if wait > a.promise_seg.wait_ns {
                        a.promise_seg = seg;
                    }
                } else if let Some(m) = a
                    .segs
                    .iter_mut()
                    .min_by_key(|s| s.wait_ns)
                    .filter(|m| wait > m.wait_ns)
                {
                    *m = seg;
                }
            }
            Step::After { res, sync_ns, .. } if res.data != NONE => {
                let req = res.data;
                let active = self.active(stream);
                if let Some(pos) = active.iter().rposition(|&(id, _)| id == ev.id) {
                    active.remove(pos);
                }
                let nested = active.iter().any(|&(_, r)| r == req);
                let Some(a) = self.reqs.get_mut(req as usize) else {
                    return;
                };
                a.end_ns = a.end_ns.max(t);
                if !nested {
                    a.sync_ns += sync_ns;
                }
            }
            Step::Label(res) if Some(res.type_name) == self.incoming => {
                let Some(text) = res.label else { return };
                let labelled = self
                    .reqs
                    .get(res.data as usize)
                    .is_some_and(|a| a.label.is_some());
                if labelled {
                    // A kept-alive connection: the next request on the same parser.
                    let req = self.open(stream, ev.id, t);
                    if let Some(res) = self.life.get_mut((stream, ev.id)) {
                        res.data = req;
                    }
                    if let Some(a) = self.reqs.get_mut(req as usize) {
                        a.label = Some(text);
                        a.start_ns = Some(t);
                    }
                } else if let Some(a) = self.reqs.get_mut(res.data as usize) {
                    a.label = Some(text);
                    a.start_ns = Some(t);
                }
            }
            Step::Destroy(res) if res.data != NONE => {
                self.tombs[Self::slot((stream, ev.id))] = Some(((stream, ev.id), res.data));
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, _cx: &mut Context, stream: StreamId, _end_ns: u64) {
        self.life.drain_stream(stream, |_, _| {});
        if let Some(a) = self.active.get_mut(stream as usize) {
            a.clear();
        }
    }
}
