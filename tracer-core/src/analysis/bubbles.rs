//! `bubble`: Bubbleprof's picture of async flow (DESIGN.md section 3, Bubbles).
//!
//! Resources of the same type and creation site under the same parent aggregate form an
//! *aggregate*; an aggregate joins its parent's *bubble* unless control passes there between
//! parties (user code, external code in `node_modules`, node core) or, in user code, between
//! user code and an operation it started (a timer, a file read, a socket). Times follow
//! "Time per callback": per bubble the sync time inside it, per link the async wait of the
//! resources it leads to, both also as interval unions so concurrency is not counted twice.
//!
//! One streaming pass: the resources' own lifecycle plus the `leaks`, `slow` and `requests`
//! passes fed the same events (or run in reads of their own, see [`Bubbles::finding_passes`]),
//! whose findings become the bubbles' marks and request waits (the
//! same wait model as those reports). Memory grows with live resources and distinct
//! aggregates: a recursion (an aggregate whose type and site repeat an ancestor's) folds into
//! that ancestor, and past [`MAX_AGGREGATES`] new aggregates drop their parent.

use std::collections::BTreeMap;

use serde::Serialize;

use super::bubbles_time::{Hist, Union, BINS};
use super::lifecycle::FxMap;
use super::{
    Context, LeakClass, LeakOptions, LeakReport, Leaks, Lifecycle, Pass, RequestOptions, RequestReport, RequestState,
    Requests, SiteId, Slow, SlowOptions, SlowReport, Step, WaitCause,
};
use crate::trace::{Event, StreamId, StringId};

/// Aggregates kept with their parent; past this, new ones hang from the root.
pub const MAX_AGGREGATES: usize = 200_000;
/// How far up an aggregate's ancestors a repeated (type, site) is folded into.
const RECURSION_DEPTH: usize = 16;
const NO_AGG: u32 = u32::MAX;

/// What the view shows.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BubbleOptions {
    /// Bubbles to show per view before the least busy unmarked ones fold into their parent.
    pub max_bubbles: usize,
    /// Callbacks with more sync time than this are blocking (default 10 ms).
    pub slow_threshold_ns: u64,
}

impl Default for BubbleOptions {
    fn default() -> Self {
        BubbleOptions {
            max_bubbles: 40,
            slow_threshold_ns: 10_000_000,
        }
    }
}

/// Who wrote the code that created a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Party {
    User,
    External,
    NodeCore,
}

/// What kind of work a resource is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Category {
    Network,
    FilesStreams,
    Crypto,
    TimersPromises,
    Other,
}

/// The category of a resource type, and whether it is glue (a promise, tick or microtask:
/// the continuation of code rather than an operation it waits for).
pub fn category_of(type_name: &str) -> (Category, bool) {
    let glue = matches!(type_name, "PROMISE" | "TickObject" | "Microtask");
    let c = match type_name {
        "PROMISE" | "TickObject" | "Microtask" | "Timeout" | "Immediate" => Category::TimersPromises,
        t if t.starts_with("TCP")
            || t.starts_with("HTTP")
            || t.starts_with("UDP")
            || t.starts_with("PIPE")
            || t.starts_with("TLS")
            || t.starts_with("GETADDRINFO")
            || t.starts_with("GETNAMEINFO")
            || t.starts_with("DNS")
            || t.starts_with("QUERY")
            || t.starts_with("HTTP2")
            || t == "JSSTREAM" =>
        {
            Category::Network
        }
        t if t.starts_with("FS")
            || t.starts_with("FILE")
            || t.starts_with("STATWATCHER")
            || t == "ZLIB"
            || t == "WRITEWRAP"
            || t == "SHUTDOWNWRAP"
            || t == "TTYWRAP"
            || t == "STREAMPIPE" =>
        {
            Category::FilesStreams
        }
        t if t.contains("CRYPTO")
            || t.starts_with("PBKDF2")
            || t.starts_with("RANDOM")
            || t.starts_with("SCRYPT")
            || t.starts_with("SIGN")
            || t.starts_with("VERIFY")
            || t.starts_with("HASH")
            || t.starts_with("HMAC")
            || t.starts_with("CIPHER")
            || t.starts_with("KEY")
            || t.contains("KEYGEN")
            || t.starts_with("DERIVEBITS")
            || t.starts_with("CHECKPRIME") =>
        {
            Category::Crypto
        }
        _ => Category::Other,
    };
    (c, glue)
}

/// The party of a creation site: node core when there is no frame outside Node's internals.
pub fn party_of(site: Option<&str>) -> Party {
    match site {
        None => Party::NodeCore,
        Some(s) if s.starts_with("node:") || s.starts_with("internal/") => Party::NodeCore,
        Some(s) if s.contains("node_modules/") || s.contains("node_modules\\") => Party::External,
        Some(_) => Party::User,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct AggKey {
    stream: StreamId,
    parent: u32,
    type_name: StringId,
    site: Option<SiteId>,
}

#[derive(Debug, Clone)]
struct Agg {
    key: AggKey,
    party: Party,
    category: Category,
    glue: bool,
    bubble: u32,
    stack: Option<StringId>,
    resources: u64,
    callbacks: u64,
    sync_ns: u64,
    wait_ns: u64,
}

/// A bubble while streaming.
#[derive(Debug, Clone)]
struct Bub {
    stream: StreamId,
    /// The bubble of the parent aggregate of its first aggregate.
    parent: u32,
    root_agg: u32,
    party: Party,
    category: Category,
    aggs: Vec<u32>,
    sync: Union,
    /// Async waits of resources inside it created inside it.
    inner_wait: Union,
    sync_hist: Hist,
    first_ns: u64,
    last_ns: u64,
}

#[derive(Debug, Clone, Default)]
struct LinkAcc {
    /// Resources of `to` created from `from`, and their async waits.
    resources: u64,
    wait_ns: u64,
    wait: Union,
    /// Promises of `to` settled by a callback in `from`.
    settled: u64,
}

/// The pass.
#[derive(Debug)]
pub struct Bubbles {
    opts: BubbleOptions,
    life: Lifecycle<u32>,
    aggs: Vec<Agg>,
    agg_ids: FxMap<AggKey, u32>,
    bubs: Vec<Bub>,
    /// The bubble started by each (stream, type, site): the same code reached again by
    /// another path joins it.
    bub_ids: FxMap<(StreamId, StringId, SiteId), u32>,
    /// (from bubble, to bubble, settles) → link.
    links: FxMap<(u32, u32, bool), LinkAcc>,
    /// Per type string: category and glue, computed once.
    kinds: Vec<Option<(Category, bool)>>,
    /// The passes whose findings become marks, fed the same events (`None`: the caller runs
    /// them over the trace separately and hands their reports to [`Bubbles::finish_with`]).
    findings: Option<(Leaks, Slow, Requests)>,
    /// `(pid, thread, id)` of resources whose aggregate the report needs exactly (the slow
    /// callbacks, when `slow` ran first), and the aggregate once seen.
    wanted: FxMap<(u32, u32, u64), u32>,
    overflowed: u64,
}

impl Bubbles {
    /// The bubble pass with the `leaks`, `slow` and `requests` passes inside: one read of
    /// the trace, memory of four lifecycles.
    pub fn new(opts: BubbleOptions) -> Self {
        let findings = Self::finding_passes(&opts);
        let mut b = Self::without_findings(opts);
        b.findings = Some(findings);
        b
    }

    /// The passes whose reports [`Bubbles::finish_with`] takes, as the view configures them.
    /// Running them in reads of their own keeps one lifecycle in memory at a time (a trace
    /// with millions of live resources needs that).
    pub fn finding_passes(opts: &BubbleOptions) -> (Leaks, Slow, Requests) {
        let slow_opts = SlowOptions {
            threshold_ns: opts.slow_threshold_ns,
            limit: 50,
        };
        // Requests whose waits are placed in the view: unfinished and slowest first.
        let req_opts = RequestOptions {
            limit: 500,
            ..Default::default()
        };
        (
            Leaks::new(LeakOptions::default()),
            Slow::new(slow_opts),
            Requests::new(req_opts),
        )
    }

    /// The bubble pass alone; finish it with [`Bubbles::finish_with`].
    pub fn without_findings(opts: BubbleOptions) -> Self {
        Bubbles {
            opts,
            life: Lifecycle::with_tombstones(1 << 14),
            aggs: Vec::new(),
            agg_ids: FxMap::default(),
            bubs: Vec::new(),
            bub_ids: FxMap::default(),
            links: FxMap::default(),
            kinds: Vec::new(),
            findings: None,
            wanted: FxMap::default(),
            overflowed: 0,
        }
    }

    fn kind(&mut self, cx: &Context, type_name: StringId) -> (Category, bool) {
        let i = type_name as usize;
        if self.kinds.len() <= i {
            self.kinds.resize(i + 1, None);
        }
        *self.kinds[i].get_or_insert_with(|| category_of(cx.string(type_name)))
    }

    /// The aggregate of a new resource, created on first sight.
    fn aggregate(
        &mut self,
        cx: &mut Context,
        ev: &Event,
        type_name: StringId,
        trigger: u64,
        stack: Option<StringId>,
    ) -> u32 {
        let stream = ev.stream;
        let site = cx.site(stack);
        let mut parent = self.life.get((stream, trigger)).map_or(NO_AGG, |r| r.data);
        // A recursion (a loop of awaits, a timer that re-arms itself) is one aggregate.
        let mut up = parent;
        for _ in 0..RECURSION_DEPTH {
            let Some(a) = self.aggs.get(up as usize) else { break };
            if a.key.type_name == type_name && a.key.site == site {
                return up;
            }
            up = a.key.parent;
        }
        if self.aggs.len() >= MAX_AGGREGATES {
            parent = NO_AGG;
            self.overflowed += 1;
        }
        let key = AggKey {
            stream,
            parent,
            type_name,
            site,
        };
        if let Some(&id) = self.agg_ids.get(&key) {
            return id;
        }
        let (category, glue) = self.kind(cx, type_name);
        let party = party_of(site.map(|s| cx.site_text(s)));
        let id = self.aggs.len() as u32;
        let bubble = match self.aggs.get(parent as usize) {
            Some(p) if !splits(p, party, category, glue, type_name) => p.bubble,
            p => {
                // The same code reached again by another path (the first requests of a
                // keep-alive client start from the listen callback, the rest from the response
                // before; node core's parents differ where the user's code does not): one
                // bubble, with a link from each path (a loop is a link back up). The layout
                // follows each bubble's first parent, which stays a tree.
                if let Some(b) = site.and_then(|s| self.bub_ids.get(&(stream, type_name, s)).copied()) {
                    self.bubs[b as usize].aggs.push(id);
                    self.push_agg(Agg {
                        key,
                        party,
                        category,
                        glue,
                        bubble: b,
                        stack,
                        resources: 0,
                        callbacks: 0,
                        sync_ns: 0,
                        wait_ns: 0,
                    });
                    return id;
                }
                if let Some(s) = site {
                    self.bub_ids.insert((stream, type_name, s), self.bubs.len() as u32);
                }
                let b = self.bubs.len() as u32;
                self.bubs.push(Bub {
                    stream,
                    parent: p.map_or(NO_AGG, |p| p.bubble),
                    root_agg: id,
                    party,
                    category,
                    aggs: Vec::new(),
                    sync: Union::default(),
                    inner_wait: Union::default(),
                    sync_hist: Hist::default(),
                    first_ns: ev.time_ns,
                    last_ns: ev.time_ns,
                });
                b
            }
        };
        self.bubs[bubble as usize].aggs.push(id);
        self.push_agg(Agg {
            key,
            party,
            category,
            glue,
            bubble,
            stack,
            resources: 0,
            callbacks: 0,
            sync_ns: 0,
            wait_ns: 0,
        });
        id
    }

    fn push_agg(&mut self, agg: Agg) {
        self.agg_ids.insert(agg.key, self.aggs.len() as u32);
        self.aggs.push(agg);
    }

    fn parent_bubble(&self, agg: u32, res_trigger: u64, stream: StreamId) -> u32 {
        // The bubble this resource was created from: its trigger's, when still known.
        self.life
            .get((stream, res_trigger))
            .and_then(|r| self.aggs.get(r.data as usize))
            .map_or_else(
                || self.bubs[self.aggs[agg as usize].bubble as usize].parent,
                |a| a.bubble,
            )
    }

    pub fn finish(mut self, cx: &mut Context) -> BubbleReport {
        let (leaks, slow, requests) = match self.findings.take() {
            Some((l, s, r)) => (l.finish(cx), s.finish(cx), r.finish(cx)),
            None => (
                Leaks::new(LeakOptions::default()).finish(cx),
                Slow::new(SlowOptions::default()).finish(cx),
                Requests::new(RequestOptions::default()).finish(cx),
            ),
        };
        self.finish_with(cx, &leaks, &slow, &requests)
    }

    /// Resources (`pid`, `thread`, async id) to place exactly: a report read before this pass
    /// (the slow callbacks) names them; otherwise they are placed by type and site.
    pub fn want(&mut self, resources: impl IntoIterator<Item = (u32, u32, u64)>) {
        self.wanted.extend(resources.into_iter().map(|k| (k, NO_AGG)));
    }

    /// The report, with the findings of the passes from [`Bubbles::finding_passes`] run over
    /// the same trace.
    pub fn finish_with(
        self,
        cx: &mut Context,
        leaks: &LeakReport,
        slow: &SlowReport,
        requests: &RequestReport,
    ) -> BubbleReport {
        build_report(
            cx,
            &self.opts,
            &self.aggs,
            &self.bubs,
            &self.links,
            leaks,
            slow,
            requests,
            &self.wanted,
            self.overflowed,
        )
    }
}

/// Whether an aggregate starts a bubble of its own rather than joining its parent's.
fn splits(parent: &Agg, party: Party, category: Category, glue: bool, type_name: StringId) -> bool {
    if parent.party != party {
        return true;
    }
    match party {
        // In user code, an operation is a bubble of its own (what the code waited for), and
        // the code that continues after it too.
        Party::User => (!glue || !parent.glue) && parent.key.type_name != type_name,
        _ => parent.category != category && !(glue && parent.glue),
    }
}

impl Pass for Bubbles {
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        if let Some((l, s, r)) = &mut self.findings {
            l.event(cx, ev);
            s.event(cx, ev);
            r.event(cx, ev);
        }
        if let crate::trace::EventKind::Init {
            type_name,
            trigger,
            stack,
            ..
        } = ev.kind
        {
            let agg = self.aggregate(cx, ev, type_name, trigger, stack);
            if !self.wanted.is_empty() {
                let d = cx.stream(ev.stream);
                if let Some(w) = self.wanted.get_mut(&(d.pid, d.thread, ev.id)) {
                    *w = agg;
                }
            }
            let from = self.parent_bubble(agg, trigger, ev.stream);
            if let Step::Init(res) = self.life.apply(ev) {
                res.data = agg;
            }
            let a = &mut self.aggs[agg as usize];
            a.resources += 1;
            let to = a.bubble;
            if from != NO_AGG && from != to {
                self.links.entry((from, to, false)).or_default().resources += 1;
            }
            return;
        }
        let by = match ev.kind {
            crate::trace::EventKind::PromiseResolve { by } => by,
            _ => 0,
        };
        let stream = ev.stream;
        let settler = if by >= super::FIRST_RESOURCE_ID {
            self.life.get((stream, by)).map(|r| self.aggs[r.data as usize].bubble)
        } else {
            None
        };
        match self.life.apply(ev) {
            Step::Before { res, wait_ns } => {
                let (agg, trigger, from_ns) = (res.data, res.trigger, res.wait_from_ns);
                let a = &mut self.aggs[agg as usize];
                a.callbacks += 1;
                a.wait_ns += wait_ns;
                let to = a.bubble;
                let from = self
                    .life
                    .get((stream, trigger))
                    .map(|r| self.aggs[r.data as usize].bubble)
                    .unwrap_or(self.bubs[to as usize].parent);
                if from == to || from == NO_AGG {
                    self.bubs[to as usize].inner_wait.add(from_ns, ev.time_ns);
                } else {
                    let l = self.links.entry((from, to, false)).or_default();
                    l.wait_ns += wait_ns;
                    l.wait.add(from_ns, ev.time_ns);
                }
            }
            Step::After { res, start_ns, sync_ns } => {
                let agg = res.data;
                let a = &mut self.aggs[agg as usize];
                a.sync_ns += sync_ns;
                let b = &mut self.bubs[a.bubble as usize];
                b.sync.add(start_ns, ev.time_ns);
                b.sync_hist.add(start_ns, ev.time_ns);
                b.last_ns = b.last_ns.max(ev.time_ns);
            }
            Step::Resolve(res) => {
                // A promise settled by a callback of another bubble: control came back from
                // there (the wait model's "settled by").
                let to = self.aggs[res.data as usize].bubble;
                if res.resolve_ns() == Some(ev.time_ns) && res.resolved_by == by {
                    if let Some(from) = settler.filter(|&f| f != to) {
                        let since = res.init_ns;
                        let l = self.links.entry((from, to, true)).or_default();
                        l.settled += 1;
                        l.wait_ns += ev.time_ns.saturating_sub(since);
                        l.wait.add(since, ev.time_ns);
                    }
                }
            }
            _ => {}
        }
    }

    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        if let Some((l, s, r)) = &mut self.findings {
            l.stream_end(cx, stream, end_ns);
            s.stream_end(cx, stream, end_ns);
            r.stream_end(cx, stream, end_ns);
        }
        self.life.clear_stream(stream);
    }
}

// ---- the report ----

/// The bubble view of a trace: one view per process and thread.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BubbleReport {
    pub views: Vec<BubbleViewData>,
    /// Aggregates that hang from the root because the aggregate budget ran out.
    #[serde(skip_serializing_if = "super::is_zero")]
    pub overflowed: u64,
    pub dropped: u64,
    pub truncated: bool,
}

/// The bubbles of one thread.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BubbleViewData {
    pub pid: u32,
    pub thread: u32,
    /// Time of the thread's last event, ms since the trace start.
    pub end_ms: f64,
    /// Sync time of all its callbacks (a union: one thread runs one callback at a time).
    pub sync_ms: f64,
    /// Width of a timeline bin (ms); `timeline` has the sync ms per bin over all bubbles.
    pub bin_ms: f64,
    pub timeline: Vec<f64>,
    pub bubbles: Vec<Bubble>,
    pub links: Vec<Link>,
    pub requests: RequestSummary,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Bubble {
    pub id: u32,
    /// The bubble it was created from (`null`: the root).
    pub parent: Option<u32>,
    /// Its name: the site of its first aggregate (or its type when it has none).
    pub name: String,
    pub party: Party,
    pub category: Category,
    pub resources: u64,
    pub callbacks: u64,
    /// Sync time of its callbacks, as a union.
    pub sync_ms: f64,
    /// Async waits between its own aggregates, as a union.
    pub inner_wait_ms: f64,
    /// The ranking weight: sync plus inner wait, folded bubbles included.
    pub time_ms: f64,
    pub first_ms: f64,
    pub last_ms: f64,
    pub aggregates: Vec<Aggregate>,
    pub marks: Vec<Mark>,
    /// Waits of HTTP requests spent on its resources (from `requests`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_waits: Option<RequestWaits>,
    /// Bubbles folded into this one (too small to act on): their ids and names.
    pub folded: Vec<Folded>,
    /// Sync ms per timeline bin.
    pub hist: Vec<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Folded {
    pub id: u32,
    pub name: String,
    pub party: Party,
    pub category: Category,
    pub resources: u64,
    pub sync_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Aggregate {
    #[serde(rename = "type")]
    pub type_name: String,
    pub site: Option<String>,
    pub resources: u64,
    pub callbacks: u64,
    pub sync_ms: f64,
    /// Sum of the async waits before its callbacks.
    pub wait_ms: f64,
    pub stack: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Link {
    pub from: u32,
    pub to: u32,
    /// `created`: `to`'s resources were created from `from` and waited for their callbacks;
    /// `settled`: promises of `to` were settled by callbacks of `from`.
    pub kind: &'static str,
    pub resources: u64,
    /// Sum of the waits, and their union.
    pub wait_ms: f64,
    pub wait_union_ms: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Mark {
    /// `open-handle`, `pending-timer`, `never-settled-promise`, `growth`, `blocking`,
    /// `unfinished-request`.
    pub kind: String,
    pub count: u64,
    pub text: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestWaits {
    /// Waits of the listed requests on its resources.
    pub waits: u64,
    pub wait_ms: f64,
    /// What ended them, most frequent first (e.g. `settled by Timeout lib/db.js:3:5`).
    pub causes: Vec<(String, u64)>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestSummary {
    /// Requests in the whole trace (all processes and threads), and how many are unfinished.
    pub count: u64,
    pub unfinished: u64,
    /// The requests the bubble view took waits from (unfinished and slowest first), with
    /// the bubbles their waits fell in.
    pub examples: Vec<RequestPath>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestPath {
    pub label: Option<String>,
    pub state: RequestState,
    pub latency_ms: f64,
    pub sync_ms: f64,
    pub wait_ms: f64,
    /// Its waits in order; with its sync time they add up to its latency.
    pub waits: Vec<PathWait>,
}

/// One wait of a request, placed in the view.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PathWait {
    /// The bubble of the resource that waited (`null`: not in this view's bubbles).
    pub bubble: Option<u32>,
    /// The bubble of what ended the wait (the settler, per `requests`' wait model), when known.
    pub ended_by: Option<u32>,
    pub wait_ms: f64,
    /// The part of the wait after the previous wait of the request ended (waits in order of
    /// their end): with the request's sync time these add up to its latency.
    pub critical_ms: f64,
}

fn ms(ns: u64) -> f64 {
    super::ms(ns)
}

#[allow(clippy::too_many_arguments)]
fn build_report(
    cx: &mut Context,
    opts: &BubbleOptions,
    aggs: &[Agg],
    bubs: &[Bub],
    links: &FxMap<(u32, u32, bool), LinkAcc>,
    leaks: &LeakReport,
    slow: &SlowReport,
    requests: &RequestReport,
    wanted: &FxMap<(u32, u32, u64), u32>,
    overflowed: u64,
) -> BubbleReport {
    // (stream, type, site) → bubbles holding such an aggregate: where findings land.
    let mut by_site: BTreeMap<(StreamId, String, Option<String>), Vec<u32>> = BTreeMap::new();
    for a in aggs {
        let key = (
            a.key.stream,
            cx.string(a.key.type_name).to_owned(),
            cx.site_string(a.key.site),
        );
        let v = by_site.entry(key).or_default();
        if !v.contains(&a.bubble) {
            v.push(a.bubble);
        }
    }
    let stream_of = |cx: &Context, pid: u32, thread: u32| -> Option<StreamId> {
        cx.streams
            .iter()
            .position(|s| s.pid == pid && s.thread == thread)
            .map(|i| i as StreamId)
    };
    let mut marks: FxMap<u32, Vec<Mark>> = FxMap::default();
    for g in &leaks.leaks {
        let Some(s) = stream_of(cx, g.example.pid, g.example.thread) else {
            continue;
        };
        let kind = match g.class {
            LeakClass::OpenHandle => "open-handle",
            LeakClass::PendingTimer => "pending-timer",
            LeakClass::NeverSettledPromise => "never-settled-promise",
            LeakClass::Growth => "growth",
        };
        for &b in by_site
            .get(&(s, g.type_name.clone(), g.site.clone()))
            .into_iter()
            .flatten()
        {
            marks.entry(b).or_default().push(Mark {
                kind: kind.to_owned(),
                count: g.count,
                text: format!("{} {} {}", g.count, g.type_name, g.class.name()),
            });
        }
    }
    for c in &slow.callbacks {
        let Some(s) = stream_of(cx, c.pid, c.thread) else {
            continue;
        };
        let exact = wanted
            .get(&(c.pid, c.thread, c.id))
            .and_then(|&a| aggs.get(a as usize))
            .map(|a| a.bubble);
        let by_type_site = by_site
            .get(&(s, c.type_name.clone(), c.site.clone()))
            .and_then(|v| v.first().copied());
        if let Some(b) = exact.or(by_type_site) {
            let v = marks.entry(b).or_default();
            match v.iter_mut().find(|m| m.kind == "blocking") {
                Some(m) => m.count += 1,
                None => v.push(Mark {
                    kind: "blocking".to_owned(),
                    count: 1,
                    text: format!("blocked the loop {:.1} ms ({})", c.sync_ms, c.type_name),
                }),
            }
        }
    }
    // Request waits by bubble (the same segments and causes `requests` shows).
    let mut req_waits: FxMap<u32, (u64, u64, BTreeMap<String, u64>)> = FxMap::default();
    let mut paths: FxMap<StreamId, Vec<RequestPath>> = FxMap::default();
    for r in &requests.requests {
        let Some(s) = stream_of(cx, r.pid, r.thread) else {
            continue;
        };
        let mut waits = Vec::new();
        let mut segs: Vec<&super::Segment> = r.segments.iter().collect();
        segs.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
        let mut prev_end = r.start_ms;
        for seg in segs {
            let critical_ms = seg.wait_ms.min((seg.at_ms - prev_end).max(0.0));
            prev_end = prev_end.max(seg.at_ms);
            let b = by_site
                .get(&(s, seg.type_name.clone(), seg.site.clone()))
                .and_then(|v| v.first().copied());
            let ended_by = match &seg.cause {
                Some(WaitCause::Settled { by: Some(n), .. }) => by_site
                    .get(&(s, n.type_name.clone(), n.site.clone()))
                    .and_then(|v| v.first().copied()),
                _ => b,
            };
            waits.push(PathWait {
                bubble: b,
                ended_by,
                wait_ms: seg.wait_ms,
                critical_ms: (critical_ms * 1000.0).round() / 1000.0,
            });
            if let Some(b) = b {
                let e = req_waits.entry(b).or_default();
                e.0 += 1;
                e.1 += (seg.wait_ms * 1e6) as u64;
                if let Some(c) = &seg.cause {
                    *e.2.entry(cause_text(c)).or_default() += 1;
                }
            }
        }
        if r.state == RequestState::Unfinished {
            if let Some(p) = &r.waiting {
                for &b in by_site
                    .get(&(s, p.type_name.clone(), p.site.clone()))
                    .into_iter()
                    .flatten()
                {
                    let v = marks.entry(b).or_default();
                    match v.iter_mut().find(|m| m.kind == "unfinished-request") {
                        Some(m) => m.count += 1,
                        None => v.push(Mark {
                            kind: "unfinished-request".to_owned(),
                            count: 1,
                            text: format!(
                                "{} unfinished, waiting on {}",
                                r.label.as_deref().unwrap_or("request"),
                                p.type_name
                            ),
                        }),
                    }
                }
            }
        }
        paths.entry(s).or_default().push(RequestPath {
            label: r.label.clone(),
            state: r.state,
            latency_ms: r.latency_ms,
            sync_ms: r.sync_ms,
            wait_ms: r.wait_ms,
            waits,
        });
    }

    let mut views = Vec::new();
    for (si, desc) in cx.streams.clone().iter().enumerate() {
        let stream = si as StreamId;
        let ids: Vec<u32> = (0..bubs.len() as u32)
            .filter(|&b| bubs[b as usize].stream == stream)
            .collect();
        if ids.is_empty() {
            continue;
        }
        // The timeline's bin width: the widest any bubble of the view needed.
        let mut timeline = Hist::default();
        timeline.widen_to(desc.last_ns);
        for &b in &ids {
            timeline.widen_to(bubs[b as usize].sync_hist.width_ns * BINS as u64 - 1);
        }
        let weight = |b: u32| -> u64 {
            let x = &bubs[b as usize];
            x.sync.total() + x.inner_wait.total()
        };
        // Keep the marked bubbles, the root's, and the busiest; fold the rest into the
        // nearest kept ancestor.
        let mut ranked = ids.clone();
        // User code first: it is what a reader can change; node core and node_modules rank
        // at a quarter of their time.
        ranked.sort_by_key(|&b| {
            let w = weight(b);
            std::cmp::Reverse(if bubs[b as usize].party == Party::User {
                w
            } else {
                w / 4
            })
        });
        let mut keep: FxMap<u32, bool> = FxMap::default();
        for (i, &b) in ranked.iter().enumerate() {
            let x = &bubs[b as usize];
            let k = i < opts.max_bubbles || marks.contains_key(&b) || x.parent == NO_AGG && i < opts.max_bubbles * 2;
            keep.insert(b, k);
        }
        // The path from each kept bubble to the root stays (so the flow reads).
        for &b in &ids {
            if keep[&b] {
                let mut p = bubs[b as usize].parent;
                while p != NO_AGG {
                    if keep.insert(p, true) == Some(true) {
                        break;
                    }
                    p = bubs[p as usize].parent;
                }
            }
        }
        let kept_of = |mut b: u32| -> u32 {
            while !keep.get(&b).copied().unwrap_or(false) {
                let p = bubs[b as usize].parent;
                if p == NO_AGG {
                    return b;
                }
                b = p;
            }
            b
        };
        let mut out: BTreeMap<u32, Bubble> = BTreeMap::new();
        let mut total_sync = 0u64;
        for &b in &ids {
            let x = &bubs[b as usize];
            total_sync += x.sync.total();
            let mut hist = x.sync_hist.clone();
            hist.merge(&Hist::default());
            let mut h = Hist {
                width_ns: timeline.width_ns,
                bins: vec![0; BINS],
            };
            h.merge(&hist);
            for (t, v) in timeline.bins.iter_mut().zip(&h.bins) {
                *t += v;
            }
            let owner = kept_of(b);
            let first = &aggs[x.root_agg as usize];
            let name = cx
                .site_string(first.key.site)
                .map_or_else(|| cx.string(first.key.type_name).to_owned(), |s| short_site(&s));
            let resources: u64 = x.aggs.iter().map(|&a| aggs[a as usize].resources).sum();
            let callbacks: u64 = x.aggs.iter().map(|&a| aggs[a as usize].callbacks).sum();
            if owner != b {
                let o = out.entry(owner).or_insert_with(|| empty_bubble(owner));
                o.folded.push(Folded {
                    id: b,
                    name,
                    party: x.party,
                    category: x.category,
                    resources,
                    sync_ms: ms(x.sync.total()),
                });
                o.time_ms += ms(weight(b));
                add_hist(&mut o.hist, &h);
                continue;
            }
            let o = out.entry(b).or_insert_with(|| empty_bubble(b));
            let mut aggregates: Vec<Aggregate> = x
                .aggs
                .iter()
                .map(|&a| {
                    let a = &aggs[a as usize];
                    Aggregate {
                        type_name: cx.string(a.key.type_name).to_owned(),
                        site: cx.site_string(a.key.site),
                        resources: a.resources,
                        callbacks: a.callbacks,
                        sync_ms: ms(a.sync_ns),
                        wait_ms: ms(a.wait_ns),
                        stack: cx.stack_frames(a.stack).into_iter().take(8).collect(),
                    }
                })
                .collect();
            aggregates.sort_by(|a, b| b.sync_ms.total_cmp(&a.sync_ms).then(b.resources.cmp(&a.resources)));
            aggregates.truncate(30);
            o.parent = (x.parent != NO_AGG).then(|| kept_of(x.parent));
            o.name = name;
            o.party = x.party;
            o.category = x.category;
            o.resources = resources;
            o.callbacks = callbacks;
            o.sync_ms = ms(x.sync.total());
            o.inner_wait_ms = ms(x.inner_wait.total());
            o.time_ms += ms(weight(b));
            o.first_ms = ms(x.first_ns);
            o.last_ms = ms(x.last_ns);
            o.aggregates = aggregates;
            o.marks = marks.get(&b).cloned().unwrap_or_default();
            if let Some((n, w, causes)) = req_waits.get(&b) {
                let mut c: Vec<(String, u64)> = causes.iter().map(|(k, v)| (k.clone(), *v)).collect();
                c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                c.truncate(5);
                o.request_waits = Some(RequestWaits {
                    waits: *n,
                    wait_ms: ms(*w),
                    causes: c,
                });
            }
            add_hist(&mut o.hist, &h);
        }
        let mut view_links: BTreeMap<(u32, u32, bool), Link> = BTreeMap::new();
        for (&(from, to, settled), l) in links {
            if bubs[from as usize].stream != stream {
                continue;
            }
            let (f, t) = (kept_of(from), kept_of(to));
            if f == t {
                continue;
            }
            let e = view_links.entry((f, t, settled)).or_insert_with(|| Link {
                from: f,
                to: t,
                kind: if settled { "settled" } else { "created" },
                resources: 0,
                wait_ms: 0.0,
                wait_union_ms: 0.0,
            });
            e.resources += if settled { l.settled } else { l.resources };
            e.wait_ms += ms(l.wait_ns);
            // Unions of merged links are summed: an upper bound of their union.
            e.wait_union_ms += ms(l.wait.total());
        }
        let bin_ms = ms(timeline.width_ns);
        let mut bubbles: Vec<Bubble> = out.into_values().collect();
        for b in &mut bubbles {
            b.hist.truncate(last_nonzero(&timeline.bins));
        }
        let end_bin = last_nonzero(&timeline.bins);
        let mut rq = paths.remove(&stream).unwrap_or_default();
        rq.truncate(20);
        views.push(BubbleViewData {
            pid: desc.pid,
            thread: desc.thread,
            end_ms: ms(desc.last_ns),
            sync_ms: ms(total_sync),
            bin_ms,
            timeline: timeline.bins[..end_bin].iter().map(|&v| ms(v)).collect(),
            bubbles,
            links: view_links.into_values().collect(),
            requests: RequestSummary {
                count: requests.count,
                unfinished: requests.unfinished,
                examples: rq,
            },
        });
    }
    BubbleReport {
        views,
        overflowed,
        dropped: cx.dropped,
        truncated: cx.truncated,
    }
}

fn last_nonzero(bins: &[u64]) -> usize {
    bins.iter().rposition(|&v| v > 0).map_or(0, |i| i + 1)
}

fn add_hist(into: &mut Vec<f64>, h: &Hist) {
    if into.len() < h.bins.len() {
        into.resize(h.bins.len(), 0.0);
    }
    for (a, &b) in into.iter_mut().zip(&h.bins) {
        *a += ms(b);
    }
}

fn empty_bubble(id: u32) -> Bubble {
    Bubble {
        id,
        parent: None,
        name: String::new(),
        party: Party::NodeCore,
        category: Category::Other,
        resources: 0,
        callbacks: 0,
        sync_ms: 0.0,
        inner_wait_ms: 0.0,
        time_ms: 0.0,
        first_ms: 0.0,
        last_ms: 0.0,
        aggregates: Vec::new(),
        marks: Vec::new(),
        request_waits: None,
        folded: Vec::new(),
        hist: Vec::new(),
    }
}

/// `lib/db.js:3:5` from a long path: the last two path components are what people scan for.
fn short_site(site: &str) -> String {
    // In a package, its name says more than any path: `express/lib/response.js:232:10`.
    if let Some((_, inside)) = site.rsplit_once("node_modules/") {
        return inside.to_owned();
    }
    let parts: Vec<&str> = site.rsplitn(3, '/').collect();
    if parts.len() == 3 {
        format!("{}/{}", parts[1], parts[0])
    } else {
        site.to_owned()
    }
}

fn cause_text(c: &WaitCause) -> String {
    match c {
        WaitCause::Settled { by, outgoing, job, .. } => {
            if let Some(o) = outgoing {
                return format!("response of {o}");
            }
            if let Some(j) = job {
                return format!("job on thread {}", j.thread);
            }
            match by {
                Some(n) => format!(
                    "settled by {} {}",
                    n.type_name,
                    n.site.as_deref().map(short_site).unwrap_or_default()
                ),
                None => "settled".to_owned(),
            }
        }
        WaitCause::LateTimer { blocker, .. } => match blocker {
            Some(b) => format!(
                "late timer, loop blocked by {} {}",
                b.resource.type_name,
                b.resource.site.as_deref().map(short_site).unwrap_or_default()
            ),
            None => "late timer".to_owned(),
        },
        WaitCause::Outgoing { call } => format!("response of {call}"),
    }
}

/// The ranked summary `bubble --format text` prints.
pub fn write_bubbles_text(out: &mut impl std::io::Write, report: &BubbleReport) -> std::io::Result<()> {
    for v in &report.views {
        writeln!(
            out,
            "process {} thread {}: {} bubbles, {:.1} ms of callbacks over {:.1} ms; {} requests in the trace ({} unfinished)",
            v.pid,
            v.thread,
            v.bubbles.len(),
            v.sync_ms,
            v.end_ms,
            v.requests.count,
            v.requests.unfinished
        )?;
        let mut ranked: Vec<&Bubble> = v.bubbles.iter().collect();
        ranked.sort_by(|a, b| {
            (!b.marks.is_empty())
                .cmp(&!a.marks.is_empty())
                .then(b.time_ms.total_cmp(&a.time_ms))
        });
        for b in ranked.iter().take(25) {
            let party = match b.party {
                Party::User => "user",
                Party::External => "external",
                Party::NodeCore => "node core",
            };
            write!(
                out,
                "  #{:<4} {:>9.1} ms sync {:>9.1} ms wait  {:<9} {:<40} {} resources",
                b.id, b.sync_ms, b.inner_wait_ms, party, b.name, b.resources
            )?;
            if !b.folded.is_empty() {
                write!(out, " (+{} folded)", b.folded.len())?;
            }
            writeln!(out)?;
            for m in &b.marks {
                writeln!(out, "         ! {}: {}", m.kind, m.text)?;
            }
            if let Some(r) = &b.request_waits {
                if let Some((c, n)) = r.causes.first() {
                    writeln!(
                        out,
                        "         requests waited here {:.1} ms ({} waits; {c} x{n})",
                        r.wait_ms, r.waits
                    )?;
                }
            }
        }
        let mut links: Vec<&Link> = v.links.iter().collect();
        links.sort_by(|a, b| b.wait_union_ms.total_cmp(&a.wait_union_ms));
        if !links.is_empty() {
            writeln!(out, "  longest waits between bubbles:")?;
        }
        for l in links.iter().take(10) {
            writeln!(
                out,
                "    #{} -> #{} ({}, {} resources): {:.1} ms (union)",
                l.from, l.to, l.kind, l.resources, l.wait_union_ms
            )?;
        }
    }
    if report.truncated {
        writeln!(out, "(the trace is truncated: this covers its complete prefix)")?;
    }
    Ok(())
}
