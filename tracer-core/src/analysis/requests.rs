//! `requests`: one row per incoming HTTP request, its latency and what it waited for.
//!
//! - A request runs from Node's `http.server.request.start` (before the handler runs) to
//!   `http.server.response.finish` (the response flushed), or to its socket's destroy (the
//!   connection closed or was aborted first), as the agent notes them
//!   ([`notes::REQUEST_START`], [`notes::REQUEST_FINISH`]). Keep-alive and pipelined
//!   requests on one connection are rows of their own. A request still open when its thread
//!   ended (the app exited or was stopped) is *unfinished*: listed first, with the pending
//!   resource at the leaf of its wait chain.
//! - Its members: resources created, while it was open, by its parser's callback or by a
//!   member (membership is inherited at init). Work a member armed but that runs after the
//!   response finished (Node's Date-header timer, fire-and-forget logging) does not stretch
//!   the request: its latency ends at the finish.
//! - Sync: the time its members' callbacks ran while it was open (a callback nested in
//!   another of the same request counts once; a parser callback that handles pipelined
//!   requests is split at each start). Wait = latency - sync.
//! - Segments: its [`SEGMENTS`] longest waits, each with its cause from the wait model
//!   ([`super::waits`]): a wait explained by a deeper one of the same request (an await
//!   chain) is not listed again; a wait settled from another request (a queue, a lock)
//!   names the settler and its request; a late timer names the callback that blocked the
//!   loop.
//! - Percentiles over finished requests, overall and per route (method and path with ids
//!   folded, `/orders/:n`).
//!
//! Memory: open requests, live resources (16 bytes each), the `limit` slowest rows, and
//! 4 bytes per request for the percentiles.

use serde::Serialize;

use super::blame::Blame;
use super::context::{Context, Pass};
use super::http::route_of;
use super::lifecycle::{FxMap, Key, Lifecycle, Step};
use super::waits::{Cause, Owner, Waiting, Waits};
use crate::trace::{notes, Event, EventKind, StreamId, StringId};

#[path = "requests_now.rs"]
mod now;
pub use now::{OpenRequest, RequestsNow};

/// Longest waits shown per request.
pub const SEGMENTS: usize = 3;
/// Candidates kept per request while it runs: waits that are one wait seen from several
/// resources (a socket's wait and the outgoing call's) are folded into one before the
/// [`SEGMENTS`] are chosen.
const CANDIDATES: usize = 8;
/// Slack when comparing wait intervals (the clock word ticks every 100 µs).
const NEST_SLACK_NS: u64 = 500_000;
const NONE: u32 = u32::MAX;
/// Callbacks of members open at once per thread before the oldest is given up (its `after`
/// was dropped); real nesting is a few levels deep.
const MAX_ACTIVE: usize = 256;
/// Distinct routes with percentiles of their own; further ones are counted as `(other)`.
const MAX_ROUTES: usize = 2000;

#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RequestOptions {
    /// Rows to list, unfinished then slowest first; 0 = all (default 20). Percentiles cover
    /// all requests.
    pub limit: usize,
    /// Closed requests kept, newest last, for [`Requests::now`] (default 0: none).
    pub recent: usize,
    /// Keep every latency for the report's percentiles (4 bytes a request). A live view,
    /// which must stay flat over a long run, keeps a histogram of its own instead.
    pub percentiles: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            limit: 20,
            recent: 0,
            percentiles: true,
        }
    }
}

/// A resource, named for people.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Named {
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    /// The request it worked for (`POST /checkout #12`), when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
}

/// What ended a wait (see [`super::waits`]).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WaitCause {
    /// A promise settled by `by`'s callback.
    Settled {
        /// The promise waited for, when it is not the waiting resource itself.
        awaited: Option<Named>,
        by: Option<Named>,
        /// The outgoing call whose response settled it (`GET api.internal/users`).
        #[serde(skip_serializing_if = "Option::is_none")]
        outgoing: Option<String>,
        /// Settled by a message from another thread: the long callback that started last
        /// on the other threads of the process before it (the job that posted it).
        #[serde(skip_serializing_if = "Option::is_none")]
        job: Option<Job>,
    },
    /// A timer that fired late: the loop was busy with `blocker`.
    LateTimer {
        delay_ms: f64,
        late_ms: f64,
        blocker: Option<Blocked>,
    },
    /// The response of an outgoing call.
    Outgoing { call: String },
}

/// The callback that blocked the loop.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Blocked {
    #[serde(flatten)]
    pub resource: Named,
    pub sync_ms: f64,
    pub start_ms: f64,
}

/// A callback on another thread.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Job {
    /// `worker_threads.threadId` (0: the main thread).
    pub thread: u32,
    #[serde(flatten)]
    pub callback: Blocked,
}

/// One wait of a request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Segment {
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    pub wait_ms: f64,
    /// When the wait ended (the callback ran), ms since the trace start.
    pub at_ms: f64,
    pub cause: Option<WaitCause>,
}

/// Where an unfinished request waits now.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pending {
    pub id: u64,
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    /// When its site is not its own: the nearest trigger's with one.
    pub site_inherited: bool,
    /// Its stack was not taken (the agent's budget): the site is that of the resources
    /// created at the same point of the program (see [`Context::observe`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub site_inferred: bool,
    /// Since when, ms since the trace start.
    pub since_ms: f64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// The response finished.
    Finished,
    /// The connection closed before the response finished.
    Aborted,
    /// Still open when its thread (or the trace) ended.
    Unfinished,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Request {
    pub pid: u32,
    pub thread: u32,
    /// The request's number in its thread (from 1, in the order Node began them).
    pub number: u64,
    /// The parser resource (HTTPINCOMINGMESSAGE) that handled it.
    pub id: u64,
    /// The socket it came on (its async id; 0: unknown).
    pub connection: u64,
    /// `GET /orders/7`.
    pub label: Option<String>,
    /// `GET /orders/:n`.
    pub route: Option<String>,
    pub state: RequestState,
    pub status: Option<u32>,
    pub start_ms: f64,
    pub latency_ms: f64,
    pub sync_ms: f64,
    pub wait_ms: f64,
    /// Resources created for it.
    pub resources: u64,
    pub segments: Vec<Segment>,
    /// Unfinished or aborted: the pending resource at the leaf of its wait chain (at the
    /// end, or when its connection went).
    pub waiting: Option<Pending>,
    /// Its sync time by the functions that ran in its callbacks (CPU samples).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::cpu::CpuSummary>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RouteStats {
    pub route: String,
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestReport {
    /// Requests in the trace, unfinished ones included.
    pub count: u64,
    pub unfinished: u64,
    pub aborted: u64,
    /// Over finished and aborted requests.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Unfinished first, then slowest first; at most `limit`.
    pub requests: Vec<Request>,
    /// Slowest p95 first.
    pub routes: Vec<RouteStats>,
    pub dropped: u64,
    /// Hook events skipped because the app gave them invalid async ids.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub invalid_ids: u64,
    pub truncated: bool,
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    wait_ns: u64,
    at_ns: u64,
    id: u64,
    type_name: StringId,
    stack: Option<StringId>,
    blame: Blame,
}

#[derive(Debug, Clone, Copy)]
struct Leaf {
    id: u64,
    type_name: StringId,
    stack: Option<StringId>,
    inherited: bool,
    since_ns: u64,
}

#[derive(Debug, Clone)]
struct Acc {
    stream: StreamId,
    parser: u64,
    number: u64,
    socket: u64,
    gen: u32,
    open: bool,
    state: RequestState,
    status: Option<u32>,
    label: Option<StringId>,
    start_ns: u64,
    end_ns: u64,
    sync_ns: u64,
    resources: u64,
    segs: Vec<Seg>,
    leaf: Option<Leaf>,
}

impl Acc {
    fn latency_ns(&self) -> u64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
    fn rank(&self) -> (bool, u64) {
        (self.state == RequestState::Unfinished, self.latency_ns())
    }
}

/// A resource's request: a slot, its generation, and the request's number and label (kept
/// for naming it after the request closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    slot: u32,
    gen: u32,
    owner: Owner,
}

impl Default for Member {
    fn default() -> Self {
        Member {
            slot: NONE,
            gen: 0,
            owner: Owner::default(),
        }
    }
}

/// A callback of a member running now.
#[derive(Debug, Clone, Copy)]
struct Active {
    id: u64,
    member: Member,
    /// Since when its sync time counts for `member`.
    from_ns: u64,
}

/// The pass.
#[derive(Debug, Default)]
pub struct Requests {
    opts: RequestOptions,
    life: Lifecycle<Member>,
    waits: Waits,
    slots: Vec<Acc>,
    free: Vec<u32>,
    /// Latency of every finished or aborted request, µs.
    latencies_us: Vec<u32>,
    routes: FxMap<String, Vec<u32>>,
    /// Closed requests kept for the report (the slowest `limit`, pruned now and then).
    kept: Vec<Acc>,
    /// Open requests by (stream, number).
    by_number: FxMap<(StreamId, u64), Member>,
    /// Open requests by their socket.
    by_socket: FxMap<Key, Vec<Member>>,
    promise: Option<StringId>,
    parser_type: Option<StringId>,
    active: Vec<Vec<Active>>,
    /// CPU samples by request (token: [`cpu_token`]).
    cpu: super::cpu::CpuByToken,
    unfinished: u64,
    aborted: u64,
    count: u64,
    /// Live resources aborted requests may still look through for where they waited.
    abort_scans: u64,
    /// Every type id the pass looks for is known: no more string lookups at init.
    types_known: bool,
    /// The last [`RequestOptions::recent`] closed requests, oldest first.
    recent: std::collections::VecDeque<Acc>,
    /// Without [`RequestOptions::percentiles`]: the latencies of finished and aborted
    /// requests, in fixed memory.
    latency: crate::live::Histogram,
}

/// Resources visited, over all aborted requests, to find where each was waiting: a few
/// tenths of a second of work at most.
const ABORT_SCANS: u64 = 50_000_000;

impl Requests {
    pub fn new(opts: RequestOptions) -> Self {
        Requests {
            opts,
            life: Lifecycle::with_tombstones(1 << 12),
            abort_scans: ABORT_SCANS,
            ..Default::default()
        }
    }

    /// The open request a member refers to.
    fn acc(&mut self, m: Member) -> Option<&mut Acc> {
        self.slots.get_mut(m.slot as usize).filter(|a| a.open && a.gen == m.gen)
    }

    fn open(
        &mut self,
        stream: StreamId,
        parser: u64,
        number: u64,
        socket: u64,
        label: Option<StringId>,
        now: u64,
    ) -> Member {
        let fresh = |gen| Acc {
            stream,
            parser,
            number,
            socket,
            gen,
            open: true,
            state: RequestState::Unfinished,
            status: None,
            label,
            start_ns: now,
            end_ns: now,
            sync_ns: 0,
            resources: 0,
            segs: Vec::new(),
            leaf: None,
        };
        let owner = Owner { number, label };
        if let Some(slot) = self.free.pop() {
            if let Some(a) = self.slots.get_mut(slot as usize) {
                let gen = a.gen.wrapping_add(1);
                *a = fresh(gen);
                return Member { slot, gen, owner };
            }
        }
        let slot = u32::try_from(self.slots.len()).unwrap_or(NONE - 1).min(NONE - 1);
        self.slots.push(fresh(0));
        Member { slot, gen: 0, owner }
    }

    /// Closes a request at `end_ns`.
    fn close(&mut self, m: Member, end_ns: u64, state: RequestState, status: Option<u32>, cx: &Context) {
        let Some(a) = self.acc(m) else { return };
        a.open = false;
        a.state = state;
        a.status = status;
        a.end_ns = end_ns.max(a.start_ns);
        let a = a.clone();
        self.free.push(m.slot);
        self.by_number.remove(&(a.stream, a.number));
        self.count += 1;
        match state {
            RequestState::Unfinished => self.unfinished += 1,
            RequestState::Aborted => self.aborted += 1,
            RequestState::Finished => {}
        }
        if self.opts.recent > 0 {
            if self.recent.len() >= self.opts.recent {
                self.recent.pop_front();
            }
            self.recent.push_back(a.clone());
        }
        if state != RequestState::Unfinished && !self.opts.percentiles {
            self.latency.add(a.latency_ns());
        }
        if state != RequestState::Unfinished && self.opts.percentiles {
            let us = (a.latency_ns() / 1000).min(u64::from(u32::MAX)) as u32;
            self.latencies_us.push(us);
            let route = a
                .label
                .map_or_else(|| "(no label)".to_owned(), |l| route_of(cx.string(l)));
            let n = self.routes.len();
            match self.routes.get_mut(&route) {
                Some(v) => v.push(us),
                None if n < MAX_ROUTES => {
                    self.routes.insert(route, vec![us]);
                }
                None => self.routes.entry("(other)".to_owned()).or_default().push(us),
            }
        }
        self.kept.push(a);
        let limit = self.opts.limit;
        if limit > 0 && self.kept.len() >= 2 * limit.max(512) {
            self.kept.sort_by_key(|a| std::cmp::Reverse(a.rank()));
            self.kept.truncate(limit);
        }
    }

    fn active(&mut self, stream: StreamId) -> &mut Vec<Active> {
        let s = stream as usize;
        if self.active.len() <= s {
            self.active.resize_with(s + 1, Vec::new);
        }
        &mut self.active[s]
    }

    /// Adds `ns` of sync time to `m`, unless another callback of `m` encloses this one.
    fn credit(&mut self, stream: StreamId, m: Member, ns: u64) {
        if m.slot == NONE {
            return;
        }
        let nested = self.active(stream).iter().any(|x| x.member == m);
        if let Some(a) = self.acc(m).filter(|_| !nested) {
            a.sync_ns += ns;
        }
    }

    fn start(&mut self, ev: &Event, number: u64, socket: u64, text: Option<StringId>) {
        let (stream, t) = (ev.stream, ev.time_ns);
        let m = self.open(stream, ev.id, number, socket, text, t);
        if let Some(a) = self.acc(m) {
            a.resources = 1;
        }
        self.by_number.insert((stream, number), m);
        if socket != 0 {
            let list = self.by_socket.entry((stream, socket)).or_default();
            let slots = &self.slots;
            list.retain(|x| slots.get(x.slot as usize).is_some_and(|a| a.open && a.gen == x.gen));
            list.push(m);
        }
        if let Some(res) = self.life.get_mut((stream, ev.id)) {
            res.data = m;
        }
        // The parser's callback running now handles this request from here on (pipelined
        // requests start one after another in the same callback).
        let switched = self.active(stream).iter_mut().rev().find(|x| x.id == ev.id).map(|x| {
            let old = (x.member, x.from_ns);
            x.member = m;
            x.from_ns = t;
            old
        });
        if let Some((old, from)) = switched {
            if old.slot != NONE {
                self.credit(stream, old, t.saturating_sub(from));
            }
        }
    }

    /// The wait that ends now, with its cause, offered to the request's segments.
    fn segment(&mut self, m: Member, w: Waiting, stack: Option<StringId>) {
        let Some(start) = self.acc(m).map(|a| a.start_ns) else {
            return;
        };
        let wait = w.at_ns.saturating_sub(w.wait_from_ns.max(start));
        if wait == 0 {
            return;
        }
        let blame = Blame::capture(&self.waits, &self.life, &w, |r| r.data.owner);
        if blame.cause.explained() && blame.settler_owner.number == m.owner.number && m.owner.number != 0 {
            // Inside a deeper wait of the same request (an await chain): counted there.
            return;
        }
        let seg = Seg {
            wait_ns: wait,
            at_ns: w.at_ns,
            id: w.key.1,
            type_name: w.type_name,
            stack,
            blame,
        };
        let Some(a) = self.acc(m) else { return };
        if a.segs.len() < CANDIDATES {
            a.segs.push(seg);
        } else if let Some(min) = a
            .segs
            .iter_mut()
            .min_by_key(|s| s.wait_ns)
            .filter(|min| wait > min.wait_ns)
        {
            *min = seg;
        }
    }

    /// Where each open request of `stream` waits now: the pending member at the leaf of its
    /// chain: the latest unsettled promise that awaits no other unsettled promise of the
    /// request, else the latest handle with no callback running.
    /// With `only`, just for that request (one being aborted).
    fn find_leaves(&mut self, stream: StreamId, only: Option<Member>) {
        let mut best: FxMap<u32, (bool, u64, u64)> = FxMap::default();
        for (key, r) in self.life.iter_stream(stream) {
            let m = r.data;
            if only.is_some_and(|o| o != m) {
                continue;
            }
            let Some(a) = self.slots.get(m.slot as usize).filter(|a| a.open && a.gen == m.gen) else {
                continue;
            };
            if key.1 == a.parser || Some(r.type_name) == self.parser_type || r.before_ns().is_some() {
                continue;
            }
            let promise = Some(r.type_name) == self.promise;
            if promise {
                if r.resolve_ns().is_some() {
                    continue;
                }
                let waits_on_pending = self
                    .life
                    .get((stream, r.trigger))
                    .is_some_and(|p| Some(p.type_name) == self.promise && p.resolve_ns().is_none() && p.data == m);
                if waits_on_pending {
                    continue;
                }
            }
            // An unsettled promise is what the handler awaits; a handle it opened (a log
            // stream, a background timer) comes second.
            let rank = (promise, r.init_ns, key.1);
            let e = best.entry(m.slot).or_insert((false, 0, 0));
            if rank >= *e {
                *e = rank;
            }
        }
        for (slot, (_, _, id)) in best {
            let Some(r) = self.life.get((stream, id)) else { continue };
            let (type_name, mut stack, since_ns) = (r.type_name, r.stack(), r.idle_since_ns());
            let mut inherited = false;
            if stack.is_none() {
                stack = self.life.chain((stream, id), 16).iter().find_map(|l| l.stack);
                inherited = stack.is_some();
            }
            if let Some(a) = self.slots.get_mut(slot as usize) {
                a.leaf = Some(Leaf {
                    id,
                    type_name,
                    stack,
                    inherited,
                    since_ns,
                });
            }
        }
    }

    pub fn finish(mut self, cx: &mut Context) -> RequestReport {
        let open: Vec<Member> = self.by_number.values().copied().collect();
        let end = cx.end_ns();
        for m in open {
            self.close(m, end, RequestState::Unfinished, None, cx);
        }
        let mut kept = std::mem::take(&mut self.kept);
        kept.sort_by(|a, b| {
            b.rank()
                .cmp(&a.rank())
                .then(a.start_ns.cmp(&b.start_ns))
                .then(a.number.cmp(&b.number))
        });
        if self.opts.limit > 0 {
            kept.truncate(self.opts.limit);
        }
        let rows = kept.iter().map(|a| self.row(cx, a)).collect();
        let mut lat = std::mem::take(&mut self.latencies_us);
        lat.sort_unstable();
        let mut routes: Vec<RouteStats> = std::mem::take(&mut self.routes)
            .into_iter()
            .map(|(route, mut v)| {
                v.sort_unstable();
                RouteStats {
                    route,
                    count: v.len() as u64,
                    p50_ms: percentile(&v, 50.0),
                    p95_ms: percentile(&v, 95.0),
                    p99_ms: percentile(&v, 99.0),
                    max_ms: v.last().map_or(0.0, |&us| f64::from(us) / 1e3),
                }
            })
            .collect();
        routes.sort_by(|a, b| b.p95_ms.total_cmp(&a.p95_ms).then(a.route.cmp(&b.route)));
        RequestReport {
            count: self.count,
            unfinished: self.unfinished,
            aborted: self.aborted,
            p50_ms: percentile(&lat, 50.0),
            p95_ms: percentile(&lat, 95.0),
            p99_ms: percentile(&lat, 99.0),
            max_ms: lat.last().map_or(0.0, |&us| f64::from(us) / 1e3),
            requests: rows,
            routes,
            dropped: cx.dropped,
            invalid_ids: cx.invalid_ids,
            truncated: cx.truncated,
        }
    }

    fn row(&self, cx: &mut Context, a: &Acc) -> Request {
        let latency = a.latency_ns();
        let s = cx.stream(a.stream);
        let segs = distinct_waits(&a.segs);
        let segments = segs.iter().map(|g| self.segment_out(cx, a.stream, g)).collect();
        let waiting = a.leaf.map(|l| {
            let site = cx.site(l.stack);
            Pending {
                id: l.id,
                type_name: cx.string(l.type_name).to_owned(),
                site: cx.site_string(site),
                site_inherited: l.inherited,
                site_inferred: cx.is_inferred(l.stack),
                since_ms: super::ms(l.since_ns),
            }
        });
        let label = a.label.map(|l| cx.string(l).to_owned());
        Request {
            pid: s.pid,
            thread: s.thread,
            number: a.number,
            id: a.parser,
            connection: a.socket,
            route: label.as_deref().map(route_of),
            label,
            state: a.state,
            status: a.status,
            start_ms: super::ms(a.start_ns),
            latency_ms: super::ms(latency),
            sync_ms: super::ms(a.sync_ns.min(latency)),
            wait_ms: super::ms(latency.saturating_sub(a.sync_ns)),
            resources: a.resources,
            segments,
            waiting,
            cpu: self.cpu.summary(cx, cpu_token(a.stream, a.number), 5),
        }
    }

    fn segment_out(&self, cx: &mut Context, stream: StreamId, g: &Seg) -> Segment {
        let site = cx.site(g.stack);
        let cause = g.blame.render(cx, &self.waits, stream);
        Segment {
            id: g.id,
            type_name: cx.string(g.type_name).to_owned(),
            site: cx.site_string(site),
            wait_ms: super::ms(g.wait_ns),
            at_ms: super::ms(g.at_ns),
            cause,
        }
    }
}

/// The [`SEGMENTS`] longest waits, one per group of waits that overlap over 80% of the
/// shorter: the one whose cause is
/// known (the outgoing call rather than its socket), else the innermost (the deepest) that
/// covers most of it.
/// The CPU-sample token of request `number` of `stream`.
fn cpu_token(stream: StreamId, number: u64) -> u64 {
    super::cpu::CpuByToken::token(stream, number, 0)
}

fn distinct_waits(all: &[Seg]) -> Vec<Seg> {
    let mut segs = all.to_vec();
    segs.sort_by(|x, y| y.wait_ns.cmp(&x.wait_ns).then(x.at_ns.cmp(&y.at_ns)));
    let span = |g: &Seg| (g.at_ns.saturating_sub(g.wait_ns), g.at_ns);
    // One wait seen from several resources: they overlap over most of the shorter one.
    let nested = |a: &Seg, b: &Seg| {
        let ((a0, a1), (b0, b1)) = (span(a), span(b));
        let overlap = a1.min(b1).saturating_sub(a0.max(b0)) + NEST_SLACK_NS;
        overlap * 5 >= a.wait_ns.min(b.wait_ns) * 4
    };
    let known = |g: &Seg| g.blame.cause != Cause::Own;
    let mut out: Vec<Seg> = Vec::new();
    for g in segs {
        match out.iter_mut().find(|k| nested(k, &g)) {
            // Sorted longest first: `g` is inside `k`, or nearly. A known cause wins; between equals
            // the inner (deeper) one, unless it covers under half of `k` (a short wait at
            // the end of a long one is not what the long one waited for).
            Some(k) => {
                let deeper = known(&g) == known(k) && g.wait_ns * 2 >= k.wait_ns;
                if (known(&g) && !known(k)) || deeper {
                    *k = g;
                }
            }
            None => out.push(g),
        }
    }
    out.sort_by(|x, y| y.wait_ns.cmp(&x.wait_ns).then(x.at_ns.cmp(&y.at_ns)));
    out.truncate(SEGMENTS);
    out
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
        if matches!(ev.kind, EventKind::Note { .. }) && self.cpu.note(cx, ev) {
            return;
        }
        self.waits.event(ev);
        match ev.kind {
            EventKind::Init { type_name, trigger, .. } => {
                if !self.types_known {
                    let text = cx.string(type_name);
                    self.waits.learn_type(type_name, text);
                    match text {
                        "PROMISE" => self.promise = Some(type_name),
                        "HTTPINCOMINGMESSAGE" => self.parser_type = Some(type_name),
                        _ => {}
                    }
                    self.types_known = self.promise.is_some() && self.parser_type.is_some() && self.waits.knows_types();
                }
                let parent = self.life.get((stream, trigger)).map(|r| r.data).unwrap_or_default();
                let m = match self.acc(parent) {
                    Some(a) => {
                        a.resources += 1;
                        parent
                    }
                    None => Member::default(),
                };
                if let Step::Init(res) = self.life.apply(ev) {
                    res.data = m;
                }
                return;
            }
            EventKind::Note { code, a, b, text } => {
                match code {
                    notes::REQUEST_START => self.start(ev, a, b, text),
                    notes::REQUEST_FINISH => {
                        if let Some(m) = self.by_number.get(&(stream, a)).copied() {
                            let status = u32::try_from(b).ok();
                            self.close(m, t, RequestState::Finished, status, cx);
                        }
                    }
                    _ => {}
                }
                return;
            }
            EventKind::Destroy => {
                if let Some(list) = self.by_socket.remove(&(stream, ev.id)) {
                    for m in list {
                        // Where it was waiting when its connection went: one look over the
                        // stream's live resources, within a budget so that a trace of
                        // mass aborts over many live resources still finishes soon.
                        let live = self.life.len() as u64;
                        if self.abort_scans >= live {
                            self.abort_scans -= live;
                            self.find_leaves(stream, Some(m));
                        }
                        self.close(m, t, RequestState::Aborted, None, cx);
                    }
                }
            }
            _ => {}
        }
        match self.life.apply(ev) {
            Step::Before { res, .. } => {
                let m = res.data;
                let w = Waiting::of((stream, ev.id), res, t);
                let stack = res.stack();
                // Every callback is tracked, members or not: a parser's callback becomes a
                // request's when Node starts one in it.
                let active = self.active(stream);
                if active.len() >= MAX_ACTIVE {
                    // The oldest never ended (its `after` was dropped): forget it, so that
                    // memory and the searches stay bounded.
                    active.remove(0);
                }
                active.push(Active {
                    id: ev.id,
                    member: m,
                    from_ns: t,
                });
                self.cpu.before(stream, ev.id, t, 0);
                if m.slot != NONE {
                    self.segment(m, w, stack);
                }
            }
            Step::After { res, .. } => {
                self.waits.after(ev, Some(&*res), res.data.owner);
                let active = self.active(stream);
                if let Some(pos) = active.iter().rposition(|x| x.id == ev.id) {
                    let x = active.remove(pos);
                    self.credit(stream, x.member, t.saturating_sub(x.from_ns));
                    // The callback's samples go to the request it ran for last (a kept-alive
                    // parser's callback that started the next request: that one).
                    let token = (x.member.slot != NONE).then(|| cpu_token(stream, x.member.owner.number));
                    self.cpu.after(stream, ev.id, t, token);
                }
            }
            Step::Unknown if ev.kind == EventKind::After => {
                self.waits.after::<Member>(ev, None, Owner::default());
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        self.find_leaves(stream, None);
        let open: Vec<Member> = self
            .by_number
            .iter()
            .filter(|(k, _)| k.0 == stream)
            .map(|(_, m)| *m)
            .collect();
        for m in open {
            self.close(m, end_ns, RequestState::Unfinished, None, cx);
        }
        self.life.clear_stream(stream);
        self.waits.stream_end(stream);
        self.by_socket.retain(|k, _| k.0 != stream);
        if let Some(a) = self.active.get_mut(stream as usize) {
            a.clear();
        }
    }
}
