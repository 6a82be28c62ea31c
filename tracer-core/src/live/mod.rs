//! The state behind `asynctrace top`: what is alive now, by creation site, and what looks
//! wrong, updated in bounded batches of events.
//!
//! The same state serves a running app (the recorder's drained batches) and a recorded trace
//! ([`Replay`]). It is a [`Pass`] over the shared [`Lifecycle`], so a resource is live,
//! created or destroyed here exactly when every report says so; what it adds is the
//! aggregation a screen needs: one [`Row`] per `(thread, type, site)` with counters, two
//! fixed-size [`Histogram`]s and a short per-second history for rates and growth.
//!
//! Memory: the live resources (as in every pass), the rows (distinct sites), and the
//! completed resources of the last [`LiveOptions::retain_ns`] (at most
//! [`LiveOptions::retain_max`]), so it stays flat on a long run.

pub mod hist;
mod replay;
mod tap;
#[cfg(test)]
mod tests;
mod tree;

use std::collections::{HashMap, VecDeque};

pub use hist::Histogram;
pub use replay::{feed_all, Progress, Replay};
pub use tap::{Tap, TapReceiver};
pub use tree::TreeLine;

use crate::analysis::FxMap;
use crate::analysis::{
    fold_chain, Context, FoldedLink, GrowthRule, Lifecycle, Pass, RequestOptions, Requests, SiteId, Step, StreamDesc,
};
use crate::trace::{Event, EventKind, Item, StreamId, StringId};

/// Index of a [`Row`] in [`LiveState::rows`].
pub type RowId = u32;

/// Seconds of per-second history kept per row and per thread.
pub const HISTORY: usize = 10;
/// Rates (created/s, events/s, busy %) are taken over this many seconds.
const RATE_WINDOW: u64 = 5;
const SEC: u64 = 1_000_000_000;

/// Which warnings are switched off (`true`: allowed, not shown), as tokio-console's
/// `--allow` does for its lints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// A site whose live count keeps growing.
    pub growing: bool,
    /// A callback that blocked the loop over [`LiveOptions::blocking_ns`].
    pub blocking: bool,
    /// Promises unsettled for longer than [`LiveOptions::unsettled_ns`].
    pub unsettled: bool,
    /// Timers created by a timer of the same site over [`LiveOptions::timer_loop_per_s`].
    pub timer_loop: bool,
    /// HTTP requests open for longer than [`LiveOptions::request_ns`].
    pub slow_request: bool,
}

/// Thresholds and bounds of the live state.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// How long completed resources are kept (for the details view's recent examples).
    pub retain_ns: u64,
    /// At most this many completed resources are kept.
    pub retain_max: usize,
    /// A callback longer than this blocked the loop (DESIGN.md: 10 ms).
    pub blocking_ns: u64,
    /// A promise pending for longer than this is reported as never settling.
    pub unsettled_ns: u64,
    /// Timers per second re-armed from a timer of the same site that count as a tight loop.
    pub timer_loop_per_s: f64,
    /// An HTTP request open for longer than this is reported.
    pub request_ns: u64,
    /// Length of one sample of the growth series.
    pub growth_slice_ns: u64,
    pub growth: GrowthRule,
    pub allow: Allow,
}

impl Default for LiveOptions {
    fn default() -> Self {
        LiveOptions {
            retain_ns: 10 * SEC,
            retain_max: 50_000,
            blocking_ns: 10_000_000,
            unsettled_ns: 5 * SEC,
            timer_loop_per_s: 100.0,
            request_ns: 2 * SEC,
            growth_slice_ns: SEC,
            growth: GrowthRule::default(),
            allow: Allow::default(),
        }
    }
}

/// Counts of one second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Sec {
    sec: u64,
    created: u64,
    destroyed: u64,
    reschedules: u64,
}

/// One creation site of one thread: every resource of one type created there.
#[derive(Debug, Clone)]
pub struct Row {
    pub stream: StreamId,
    pub type_name: StringId,
    pub site: Option<SiteId>,
    /// The first creation stack seen at this site.
    pub stack: Option<StringId>,
    pub live: u64,
    pub created: u64,
    pub destroyed: u64,
    pub callbacks: u64,
    pub sync_ns: u64,
    pub wait_ns: u64,
    /// Callbacks over the blocking threshold, and the longest callback.
    pub blocking: u64,
    pub max_sync_ns: u64,
    /// Timers this site created from inside a callback of one of its own timers.
    pub reschedules: u64,
    /// Lifetimes of the destroyed resources.
    pub lifetimes: Histogram,
    /// Sync time of each callback.
    pub callback_ns: Histogram,
    secs: VecDeque<Sec>,
    /// Peak live count per growth slice, from `series_from`, slices of `slice_ns`.
    peaks: Vec<u64>,
    series_from: u64,
    slice_ns: u64,
}

impl Row {
    fn sec(&mut self, now_ns: u64) -> &mut Sec {
        let sec = now_ns / SEC;
        if self.secs.back().is_none_or(|s| s.sec != sec) {
            if self.secs.len() == HISTORY {
                self.secs.pop_front();
            }
            self.secs.push_back(Sec {
                sec,
                ..Default::default()
            });
        }
        self.secs.back_mut().expect("pushed above")
    }

    /// Records the live count in the growth series. The series spans the row's whole life:
    /// when it has [`2 * HISTORY`] slices, neighbours merge (peak of both) and slices double,
    /// as `asynctrace leaks` does, so memory is fixed per row.
    fn peak(&mut self, now_ns: u64, first_slice_ns: u64, before: u64) {
        if self.slice_ns == 0 {
            self.slice_ns = first_slice_ns.max(1);
            self.series_from = now_ns;
        }
        let mut i = (now_ns.saturating_sub(self.series_from) / self.slice_ns) as usize;
        while i >= 2 * HISTORY {
            let merged: Vec<u64> = self
                .peaks
                .chunks(2)
                .map(|c| c.iter().copied().max().unwrap_or(0))
                .collect();
            self.peaks = merged;
            self.slice_ns *= 2;
            i = (now_ns.saturating_sub(self.series_from) / self.slice_ns) as usize;
        }
        // Slices without an event keep the count of the last one.
        while self.peaks.len() <= i {
            self.peaks.push(before);
        }
        self.peaks[i] = self.peaks[i].max(self.live);
    }

    /// (created, destroyed, reschedules) per second over the rate window ending at `now_ns`.
    fn rates(&self, now_ns: u64) -> (f64, f64, f64) {
        let now = now_ns / SEC;
        let from = now.saturating_sub(RATE_WINDOW - 1);
        let span = window_secs(now_ns);
        let (mut c, mut d, mut r) = (0, 0, 0);
        for s in self.secs.iter().filter(|s| s.sec >= from && s.sec <= now) {
            c += s.created;
            d += s.destroyed;
            r += s.reschedules;
        }
        (c as f64 / span, d as f64 / span, r as f64 / span)
    }

    /// Has the live count risen over the row's life, in the shape `asynctrace leaks` calls
    /// growth: cut into [`HISTORY`] parts, the part peaks never fall, rise in enough steps,
    /// and the last is enough above (and times) the first.
    fn growing(&self, rule: GrowthRule) -> bool {
        let n = self.peaks.len();
        if n < HISTORY {
            return false;
        }
        let p: Vec<u64> = (0..HISTORY)
            .map(|b| {
                let (from, to) = (b * n / HISTORY, ((b + 1) * n / HISTORY).max(b * n / HISTORY + 1));
                self.peaks[from..to.min(n)].iter().copied().max().unwrap_or(0)
            })
            .collect();
        let (first, last) = (p[0], p[HISTORY - 1]);
        let steps = p.windows(2).filter(|w| w[1] > w[0]).count();
        p.windows(2).all(|w| w[1] >= w[0])
            && last as f64 >= rule.min_ratio * first.max(1) as f64
            && last - first >= u64::from(rule.min_rise)
            && steps >= rule.min_steps
    }
}

/// Seconds the rate window covers at `now_ns` (shorter at the start of a run).
fn window_secs(now_ns: u64) -> f64 {
    let full = (RATE_WINDOW * SEC) as f64;
    (now_ns as f64).clamp(SEC as f64 / 10.0, full) / SEC as f64
}

/// Per thread: counts for the header.
#[derive(Debug, Clone, Default)]
pub struct Thread {
    pub events: u64,
    /// Callbacks running now (nested callbacks count once towards busy time).
    depth: u32,
    busy_from: u64,
    pub busy_ns: u64,
    /// (second, events, busy ns) of the last [`HISTORY`] seconds.
    secs: VecDeque<(u64, u64, u64)>,
}

impl Thread {
    fn sec(&mut self, now_ns: u64) -> &mut (u64, u64, u64) {
        let sec = now_ns / SEC;
        if self.secs.back().is_none_or(|s| s.0 != sec) {
            if self.secs.len() == HISTORY {
                self.secs.pop_front();
            }
            self.secs.push_back((sec, 0, 0));
        }
        self.secs.back_mut().expect("pushed above")
    }
}

/// A resource that completed recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub row: RowId,
    pub id: u64,
    pub init_ns: u64,
    pub end_ns: u64,
    pub callbacks: u32,
}

/// The live state. Feed it with [`LiveState::item`] and [`LiveState::events`] (or drive it
/// as a [`Pass`]), read it with [`LiveState::snapshot`] and [`LiveState::details`].
#[derive(Debug)]
pub struct LiveState {
    pub opts: LiveOptions,
    pub cx: Context,
    life: Lifecycle<RowId>,
    pub rows: Vec<Row>,
    row_ids: FxMap<(StreamId, StringId, u32), RowId>,
    /// Row of each (stream, stack string): the site of a stack is computed once.
    stack_rows: FxMap<(StreamId, StringId, StringId), RowId>,
    pub threads: Vec<Thread>,
    recent: VecDeque<Completed>,
    /// Time of the latest event, ns since the trace start.
    pub now_ns: u64,
    pub events: u64,
    /// When completed resources were last retired.
    retired_at: u64,
    timeout_type: Option<StringId>,
    promise_type: Option<StringId>,
    /// HTTP requests, by the same pass as `asynctrace requests`.
    pub requests: Requests,
    /// The last scan of the live resources (see `live_scan`).
    scan: std::cell::RefCell<Option<view::LiveScan>>,
    /// The last tree built (see `tree`).
    tree_cache: std::cell::RefCell<Option<tree::TreeCache>>,
    /// The oldest live resources of the row last detailed (see `details`).
    details_cache: std::cell::RefCell<Option<view::RowScan>>,
}

/// Closed requests the requests view lists.
pub const RECENT_REQUESTS: usize = 50;

impl Default for LiveState {
    fn default() -> Self {
        Self::new(LiveOptions::default())
    }
}

impl LiveState {
    pub fn new(opts: LiveOptions) -> Self {
        LiveState {
            opts,
            // Why forget: a service with a distinct URL per request would otherwise grow the
            // table by every label for as long as it is watched.
            cx: Context::default().forgetting_strings(),
            life: Lifecycle::default(),
            rows: Vec::new(),
            row_ids: HashMap::default(),
            stack_rows: HashMap::default(),
            threads: Vec::new(),
            recent: VecDeque::new(),
            now_ns: 0,
            events: 0,
            retired_at: 0,
            timeout_type: None,
            promise_type: None,
            requests: Requests::new(RequestOptions {
                // Why 1: the pass keeps its slowest rows for a report this state never asks
                // for; the view reads the recent ones.
                limit: 1,
                recent: RECENT_REQUESTS,
                percentiles: false,
                ..Default::default()
            }),
            scan: std::cell::RefCell::new(None),
            tree_cache: std::cell::RefCell::new(None),
            details_cache: std::cell::RefCell::new(None),
        }
    }

    /// Takes one non-event item of a trace (as [`crate::analysis::run`] does).
    pub fn item(&mut self, item: Item) {
        match item {
            Item::String { id, text } => {
                match text.as_str() {
                    "Timeout" => self.timeout_type = Some(id),
                    "PROMISE" => self.promise_type = Some(id),
                    _ => {}
                }
                self.cx.define_string(id, text);
            }
            Item::StreamStart(info) => {
                let i = info.stream as usize;
                if self.cx.streams.len() <= i {
                    self.cx.streams.resize(i + 1, StreamDesc::default());
                }
                self.cx.streams[i] = StreamDesc {
                    pid: info.pid,
                    thread: info.thread,
                    ..Default::default()
                };
            }
            Item::StreamMeta { .. } => {}
            Item::Event(ev) => self.events(std::slice::from_ref(&ev)),
            Item::StreamEnd(end) => {
                let end_ns = self.cx.stream(end.stream).last_ns.max(self.now_ns);
                let mut cx = std::mem::take(&mut self.cx);
                self.requests.stream_end(&mut cx, end.stream, end_ns);
                self.cx = cx;
                self.cx.dropped += end.dropped;
                if let Some(desc) = self.cx.streams.get_mut(end.stream as usize) {
                    desc.dropped = end.dropped;
                    desc.ended = true;
                }
                // Why not drain the stream's live resources: a thread that ended shows what it
                // left alive, which is what a person watching wants to see last.
            }
        }
    }

    /// Takes a batch of events of one stream, in time order.
    pub fn events(&mut self, events: &[Event]) {
        let mut cx = std::mem::take(&mut self.cx);
        for ev in events {
            let ev = cx.observe(ev);
            self.event(&mut cx, &ev);
        }
        if let Some(desc) = events.last().and_then(|last| cx.streams.get_mut(last.stream as usize)) {
            let last = events.last().expect("checked above");
            desc.last_ns = desc.last_ns.max(last.time_ns);
        }
        if self.now_ns / SEC != self.retired_at / SEC {
            self.retired_at = self.now_ns;
            self.retire();
        }
        cx.forget_strings(|| {
            let held = self.requests.held_labels();
            move |id| held.contains(&id)
        });
        self.cx = cx;
    }

    fn thread(&mut self, stream: StreamId) -> &mut Thread {
        let i = stream as usize;
        if self.threads.len() <= i {
            self.threads.resize(i + 1, Thread::default());
        }
        &mut self.threads[i]
    }

    fn row_of(&mut self, cx: &mut Context, stream: StreamId, type_name: StringId, stack: Option<StringId>) -> RowId {
        if let Some(s) = stack {
            if let Some(&r) = self.stack_rows.get(&(stream, type_name, s)) {
                return r;
            }
        }
        let site = cx.site(stack);
        let key = (stream, type_name, site.unwrap_or(u32::MAX));
        let rows = &mut self.rows;
        let r = *self.row_ids.entry(key).or_insert_with(|| {
            rows.push(Row {
                stream,
                type_name,
                site,
                stack,
                live: 0,
                created: 0,
                destroyed: 0,
                callbacks: 0,
                sync_ns: 0,
                wait_ns: 0,
                blocking: 0,
                max_sync_ns: 0,
                reschedules: 0,
                lifetimes: Histogram::default(),
                callback_ns: Histogram::default(),
                secs: VecDeque::new(),
                peaks: Vec::new(),
                series_from: 0,
                slice_ns: 0,
            });
            (rows.len() - 1) as RowId
        });
        if let Some(s) = stack {
            self.stack_rows.insert((stream, type_name, s), r);
        }
        r
    }

    fn retire(&mut self) {
        let horizon = self.now_ns.saturating_sub(self.opts.retain_ns);
        // Why not pop from the front: threads are fed one after the other, so the queue is in
        // time order per thread only.
        self.recent.retain(|c| c.end_ns >= horizon);
    }

    /// Moves the state's clock to `now_ns` (ns since the trace start) when no event did: a
    /// replay reached a time between events, or a live app stayed quiet (a hung app records
    /// nothing, yet its requests and promises keep ageing).
    pub fn advance_clock(&mut self, now_ns: u64) {
        if now_ns > self.now_ns && now_ns != u64::MAX {
            self.now_ns = now_ns;
            if self.now_ns / SEC != self.retired_at / SEC {
                self.retired_at = self.now_ns;
                self.retire();
            }
        }
    }

    /// Live resources now, over all threads.
    pub fn live(&self) -> usize {
        self.life.len()
    }

    /// The completed resources still retained.
    pub fn recent(&self) -> impl Iterator<Item = &Completed> {
        self.recent.iter()
    }
}

impl Pass for LiveState {
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        self.requests.event(cx, ev);
        let t = ev.time_ns;
        if t > self.now_ns {
            self.now_ns = t;
        }
        self.events += 1;
        let slice = self.opts.growth_slice_ns;
        let th = self.thread(ev.stream);
        th.events += 1;
        th.sec(t).1 += 1;
        // Who was running when a Timeout was created: a timer of the same site re-arming.
        let creator = match ev.kind {
            EventKind::Init { type_name, exec, .. } if Some(type_name) == self.timeout_type => self
                .life
                .get((ev.stream, exec))
                .filter(|r| r.type_name == type_name)
                .map(|r| r.data),
            _ => None,
        };
        match self.life.apply(ev) {
            Step::Init(res) => {
                let (type_name, stack) = (res.type_name, res.stack());
                let row = self.row_of(cx, ev.stream, type_name, stack);
                if let Some(res) = self.life.get_mut((ev.stream, ev.id)) {
                    res.data = row;
                }
                let r = &mut self.rows[row as usize];
                r.live += 1;
                r.created += 1;
                r.sec(t).created += 1;
                r.peak(t, slice, r.live - 1);
                if creator == Some(row) {
                    r.reschedules += 1;
                    r.sec(t).reschedules += 1;
                }
            }
            Step::Before { res, wait_ns } => {
                let row = res.data as usize;
                if let Some(r) = self.rows.get_mut(row) {
                    r.callbacks += 1;
                    r.wait_ns += wait_ns;
                }
                let th = self.thread(ev.stream);
                if th.depth == 0 {
                    th.busy_from = t;
                }
                th.depth += 1;
            }
            Step::After { res, sync_ns, .. } => {
                let row = res.data as usize;
                let blocking = self.opts.blocking_ns;
                if let Some(r) = self.rows.get_mut(row) {
                    r.sync_ns += sync_ns;
                    r.callback_ns.add(sync_ns);
                    r.max_sync_ns = r.max_sync_ns.max(sync_ns);
                    if sync_ns > blocking {
                        r.blocking += 1;
                    }
                }
                let th = self.thread(ev.stream);
                if th.depth > 0 {
                    th.depth -= 1;
                    if th.depth == 0 {
                        let busy = t.saturating_sub(th.busy_from);
                        th.busy_ns += busy;
                        th.sec(t).2 += busy;
                    }
                }
            }
            Step::Destroy(res) => {
                let row = res.data;
                if let Some(r) = self.rows.get_mut(row as usize) {
                    r.live = r.live.saturating_sub(1);
                    r.destroyed += 1;
                    r.sec(t).destroyed += 1;
                    r.lifetimes.add(t.saturating_sub(res.init_ns));
                    r.peak(t, slice, r.live + 1);
                }
                if t + self.opts.retain_ns >= self.now_ns {
                    self.recent.push_back(Completed {
                        row,
                        id: ev.id,
                        init_ns: res.init_ns,
                        end_ns: t,
                        callbacks: res.callbacks,
                    });
                    if self.recent.len() > self.opts.retain_max {
                        self.recent.pop_front();
                    }
                }
            }
            Step::Resolve(_) | Step::Label(_) | Step::Note | Step::Unknown => {}
        }
    }

    fn stream_end(&mut self, _cx: &mut Context, _stream: StreamId, _end_ns: u64) {}
}

mod view;
pub use view::{fmt_ns, Details, Example, Filter, Header, RowView, Snapshot, SortKey, Warning, WarningKind};

/// Folds the trigger chain of a live or recently destroyed resource for display.
fn folded_chain(state: &LiveState, stream: StreamId, id: u64) -> Vec<FoldedLink> {
    let links = state.life.chain((stream, id), 64);
    let mut cx_sites = Vec::with_capacity(links.len());
    for l in &links {
        let ty = l.type_name.map(|t| state.cx.string(t).to_owned());
        let site = l
            .stack
            .and_then(|s| crate::analysis::site_of_stack(state.cx.string(s)).map(str::to_owned));
        cx_sites.push((l.id, ty, site));
    }
    fold_chain(cx_sites.iter().map(|(id, t, s)| (*id, t.as_deref(), s.as_deref())))
}

impl LiveState {
    /// The requests open now (the oldest `max_open`) and the latest closed, of one thread or
    /// all, from the same pass as `asynctrace requests`.
    pub fn requests_now(&mut self, stream: Option<StreamId>, max_open: usize) -> crate::analysis::RequestsNow {
        let mut cx = std::mem::take(&mut self.cx);
        let now = self.requests.now(&mut cx, self.now_ns, stream, max_open);
        self.cx = cx;
        now
    }
}
