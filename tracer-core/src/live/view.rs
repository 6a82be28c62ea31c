//! What the views read: a snapshot of the live state, filtered and sorted, computed once per
//! frame (one scan of the live resources, for ages and unsettled promises, reused for a while
//! when millions are alive).

use super::{folded_chain, window_secs, Completed, Histogram, LiveState, RowId, SEC};
use crate::analysis::FoldedLink;
use crate::trace::StreamId;

/// Live resources from which [`LiveState::live_scan`] reuses a scan (a scan of this many
/// takes about a millisecond).
pub const SCAN_CACHED_FROM: usize = 100_000;

/// When a scan of the live resources was taken, and how long it took.
#[derive(Debug, Clone, Copy)]
pub(super) struct ScanTime {
    at: std::time::Instant,
    took: std::time::Duration,
}

impl ScanTime {
    pub(super) fn start() -> Self {
        ScanTime {
            at: std::time::Instant::now(),
            took: std::time::Duration::ZERO,
        }
    }

    pub(super) fn done(self) -> Self {
        ScanTime {
            took: self.at.elapsed(),
            ..self
        }
    }
}

/// The oldest live resources of one row, as (init, id, callbacks), and when they were found.
pub(super) type RowScan = (RowId, ScanTime, Vec<(u64, u64, u32)>);

/// One scan of the live resources, per row.
#[derive(Debug)]
pub(super) struct LiveScan {
    oldest: Vec<Option<u64>>,
    unsettled: Vec<u64>,
    when: ScanTime,
}

/// Which rows a view shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// One thread only (`None`: all).
    pub stream: Option<StreamId>,
    /// Case-insensitive substring of the type or the site (path).
    pub text: String,
}

/// Columns of the resources table, in display order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SortKey {
    Type,
    Site,
    Live,
    Created,
    Destroyed,
    Callbacks,
    Sync,
    Wait,
    Oldest,
}

impl SortKey {
    pub const ALL: [SortKey; 9] = [
        SortKey::Type,
        SortKey::Site,
        SortKey::Live,
        SortKey::Created,
        SortKey::Destroyed,
        SortKey::Callbacks,
        SortKey::Sync,
        SortKey::Wait,
        SortKey::Oldest,
    ];

    pub fn title(self) -> &'static str {
        match self {
            SortKey::Type => "Type",
            SortKey::Site => "Site",
            SortKey::Live => "Live",
            SortKey::Created => "New/s",
            SortKey::Destroyed => "Done/s",
            SortKey::Callbacks => "Calls",
            SortKey::Sync => "Sync",
            SortKey::Wait => "Wait",
            SortKey::Oldest => "Oldest",
        }
    }
}

/// One row of the resources table.
#[derive(Debug, Clone, PartialEq)]
pub struct RowView {
    pub row: RowId,
    pub stream: StreamId,
    pub pid: u32,
    pub thread: u32,
    pub type_name: String,
    /// `path:line:col`, or `-` without a recorded stack.
    pub site: String,
    pub live: u64,
    pub created: u64,
    pub created_per_s: f64,
    pub destroyed_per_s: f64,
    pub callbacks: u64,
    pub sync_ns: u64,
    pub wait_ns: u64,
    /// Age of its oldest live resource.
    pub oldest_ns: Option<u64>,
}

/// Kinds of warnings, each with its allow switch in [`super::Allow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WarningKind {
    Blocking,
    Unsettled,
    Growing,
    TimerLoop,
    SlowRequest,
}

/// One warning, about one row (or, for requests, none).
#[derive(Debug, Clone, PartialEq)]
pub struct Warning {
    pub kind: WarningKind,
    pub row: Option<RowId>,
    pub text: String,
}

/// The header line's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub command: String,
    pub now_ns: u64,
    pub events: u64,
    pub events_per_s: f64,
    pub live: u64,
    /// Share of the rate window the threads shown spent in callbacks, averaged (0..=100).
    pub busy_pct: f64,
    pub processes: usize,
    pub threads: usize,
    pub dropped: u64,
}

/// A frame's worth of the state.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub header: Header,
    pub rows: Vec<RowView>,
    pub warnings: Vec<Warning>,
}

/// One example resource of a row.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: u64,
    pub age_ns: u64,
    /// `false`: completed recently (kept for [`super::LiveOptions::retain_ns`]).
    pub live: bool,
    pub callbacks: u32,
    pub chain: Vec<FoldedLink>,
}

/// The details of one row.
#[derive(Debug, Clone)]
pub struct Details {
    pub row: RowView,
    pub lifetimes: Histogram,
    pub callback_ns: Histogram,
    pub blocking: u64,
    pub max_sync_ns: u64,
    pub examples: Vec<Example>,
    /// The creation stack, one frame per line.
    pub stack: Vec<String>,
}

/// Examples shown in the details view.
const EXAMPLES: usize = 5;

impl LiveState {
    fn row_view(&self, i: RowId, oldest: Option<u64>) -> RowView {
        let r = &self.rows[i as usize];
        let desc = self.cx.stream(r.stream);
        let (c, d, _) = r.rates(self.now_ns);
        RowView {
            row: i,
            stream: r.stream,
            pid: desc.pid,
            thread: desc.thread,
            type_name: self.cx.string(r.type_name).to_owned(),
            site: r
                .site
                .map_or_else(|| "-".to_owned(), |s| self.cx.site_text(s).to_owned()),
            live: r.live,
            created: r.created,
            created_per_s: c,
            destroyed_per_s: d,
            callbacks: r.callbacks,
            sync_ns: r.sync_ns,
            wait_ns: r.wait_ns,
            oldest_ns: oldest.map(|init| self.now_ns.saturating_sub(init)),
        }
    }

    /// The header, rows (filtered, sorted by `sort`, descending unless `ascending`; rows with
    /// nothing live and nothing created in the rate window are left out) and warnings.
    /// Oldest init and unsettled promises per row, from one scan of the live resources. Why
    /// cached: a scan costs in proportion to what is alive, so on millions of live resources
    /// a scan per frame would slow the view below the app's event rate, and a view that falls
    /// behind skips the destroys that would shrink the set. Above [`SCAN_CACHED_FROM`] live
    /// resources, a scan is reused until ten times its own duration has passed, so these two
    /// columns take at most a tenth of the view's time (and lag a little on such runs).
    fn live_scan(&self) -> std::cell::Ref<'_, LiveScan> {
        let fresh = self.scan.borrow().as_ref().is_some_and(|s| self.reuse_scan(&s.when));
        if !fresh {
            let when = ScanTime::start();
            let mut oldest: Vec<Option<u64>> = vec![None; self.rows.len()];
            let mut unsettled: Vec<u64> = vec![0; self.rows.len()];
            let horizon = self.now_ns.saturating_sub(self.opts.unsettled_ns);
            for (_, res) in self.life.iter_all() {
                let i = res.data as usize;
                if let Some(o) = oldest.get_mut(i) {
                    *o = Some(o.map_or(res.init_ns, |v| v.min(res.init_ns)));
                }
                if Some(res.type_name) == self.promise_type
                    && res.resolve_ns().is_none()
                    && res.init_ns < horizon
                    && self.now_ns >= self.opts.unsettled_ns
                {
                    if let Some(u) = unsettled.get_mut(i) {
                        *u += 1;
                    }
                }
            }
            *self.scan.borrow_mut() = Some(LiveScan {
                oldest,
                unsettled,
                when: when.done(),
            });
        }
        std::cell::Ref::map(self.scan.borrow(), |s| s.as_ref().expect("set above"))
    }

    /// May a scan taken `when` serve now? Only on a huge live set, while less than ten times
    /// its duration has passed. Why not also while no event came: a hung app records none,
    /// yet its promises keep ageing past the unsettled threshold.
    pub(super) fn reuse_scan(&self, when: &ScanTime) -> bool {
        self.life.len() >= SCAN_CACHED_FROM && when.at.elapsed() < when.took * 10
    }

    pub fn snapshot(&self, filter: &Filter, sort: SortKey, ascending: bool) -> Snapshot {
        let scan = self.live_scan();
        let (oldest, unsettled) = (&scan.oldest, &scan.unsettled);
        let needle = filter.text.to_lowercase();
        let mut rows: Vec<RowView> = (0..self.rows.len() as RowId)
            .filter(|&i| {
                let r = &self.rows[i as usize];
                filter.stream.is_none_or(|s| s == r.stream) && (r.live > 0 || r.rates(self.now_ns).0 > 0.0)
            })
            .map(|i| self.row_view(i, oldest.get(i as usize).copied().flatten()))
            .filter(|v| {
                needle.is_empty()
                    || v.type_name.to_lowercase().contains(&needle)
                    || v.site.to_lowercase().contains(&needle)
            })
            .collect();
        sort_rows(&mut rows, sort, ascending);

        let mut warnings = Vec::new();
        let allow = self.opts.allow;
        for (i, r) in self.rows.iter().enumerate() {
            if filter.stream.is_some_and(|s| s != r.stream) {
                continue;
            }
            let i = i as RowId;
            let name = || self.describe_row(i);
            if !allow.blocking && r.blocking > 0 {
                warnings.push(Warning {
                    kind: WarningKind::Blocking,
                    row: Some(i),
                    text: format!(
                        "{} callback(s) of {} blocked the loop over {}; longest {}",
                        r.blocking,
                        name(),
                        fmt_ns(self.opts.blocking_ns),
                        fmt_ns(r.max_sync_ns)
                    ),
                });
            }
            if !allow.unsettled && unsettled.get(i as usize).is_some_and(|&u| u > 0) {
                warnings.push(Warning {
                    kind: WarningKind::Unsettled,
                    row: Some(i),
                    text: format!(
                        "{} promise(s) of {} pending for over {}",
                        unsettled[i as usize],
                        name(),
                        fmt_ns(self.opts.unsettled_ns)
                    ),
                });
            }
            if !allow.growing && r.growing(self.opts.growth) {
                warnings.push(Warning {
                    kind: WarningKind::Growing,
                    row: Some(i),
                    text: format!("{} keeps growing: {} live", name(), r.live),
                });
            }
            let per_s = r.rates(self.now_ns).2;
            // Why only with a site: Node's own timers (socket timeouts) re-arm from timer
            // callbacks too, and a warning must name code a person can change.
            if !allow.timer_loop && r.site.is_some() && per_s > self.opts.timer_loop_per_s {
                warnings.push(Warning {
                    kind: WarningKind::TimerLoop,
                    row: Some(i),
                    text: format!("{} re-arms itself {per_s:.0} times/s", name()),
                });
            }
        }
        if !allow.slow_request {
            self.request_warning(filter.stream, &mut warnings);
        }
        warnings.sort_by_key(|w| (w.kind, w.row));

        Snapshot {
            header: self.header(filter.stream),
            rows,
            warnings,
        }
    }

    /// Requests open for longer than the threshold: how many, and the oldest by name.
    fn request_warning(&self, stream: Option<StreamId>, out: &mut Vec<Warning>) {
        let horizon = self.now_ns.saturating_sub(self.opts.request_ns);
        if self.now_ns < self.opts.request_ns {
            return;
        }
        let over: Vec<_> = self
            .requests
            .open_requests()
            .filter(|r| r.start_ns < horizon && stream.is_none_or(|s| s == r.stream))
            .collect();
        let Some(oldest) = over.iter().min_by_key(|r| r.start_ns) else {
            return;
        };
        let name = oldest
            .label
            .map_or_else(|| "a request".to_owned(), |l| self.cx.string(l).to_owned());
        let thread = self.cx.stream(oldest.stream).thread;
        let text = if over.len() == 1 {
            format!(
                "request {name} #{} (thread {thread}) open for {} (over {}); see the requests view",
                oldest.number,
                fmt_ns(self.now_ns.saturating_sub(oldest.start_ns)),
                fmt_ns(self.opts.request_ns)
            )
        } else {
            format!(
                "{} requests open for over {}; the oldest, {name} #{} (thread {thread}), for {}; see the requests view",
                over.len(),
                fmt_ns(self.opts.request_ns),
                oldest.number,
                fmt_ns(self.now_ns.saturating_sub(oldest.start_ns))
            )
        };
        out.push(Warning {
            kind: WarningKind::SlowRequest,
            row: None,
            text,
        });
    }

    /// `Type at site (pid/thread)`.
    pub fn describe_row(&self, i: RowId) -> String {
        let r = &self.rows[i as usize];
        let site = r.site.map_or("an unknown site", |s| self.cx.site_text(s));
        format!("{} at {}", self.cx.string(r.type_name), site)
    }

    fn header(&self, stream: Option<StreamId>) -> Header {
        let now = self.now_ns / SEC;
        let from = now.saturating_sub(super::RATE_WINDOW - 1);
        let span = window_secs(self.now_ns);
        let (mut events, mut busy, mut n) = (0u64, 0u64, 0u64);
        for (s, th) in self.threads.iter().enumerate() {
            if stream.is_some_and(|x| x as usize != s) {
                continue;
            }
            n += 1;
            for &(sec, e, b) in th.secs.iter().filter(|x| x.0 >= from && x.0 <= now) {
                let _ = sec;
                events += e;
                busy += b;
            }
        }
        let streams: Vec<_> = self
            .cx
            .streams
            .iter()
            .enumerate()
            .filter(|(s, _)| stream.is_none_or(|x| x as usize == *s))
            .map(|(_, d)| d)
            .collect();
        let mut pids: Vec<u32> = streams.iter().map(|d| d.pid).collect();
        pids.sort_unstable();
        pids.dedup();
        let live = match stream {
            None => self.life.len() as u64,
            Some(s) => self.rows.iter().filter(|r| r.stream == s).map(|r| r.live).sum(),
        };
        Header {
            command: self.cx.meta.command.join(" "),
            now_ns: self.now_ns,
            events: match stream {
                None => self.events,
                Some(s) => self.threads.get(s as usize).map_or(0, |t| t.events),
            },
            events_per_s: events as f64 / span,
            live,
            busy_pct: if n == 0 {
                0.0
            } else {
                (busy as f64 / (span * SEC as f64 * n as f64) * 100.0).min(100.0)
            },
            processes: pids.len(),
            threads: streams.len(),
            dropped: streams.iter().map(|d| d.dropped).sum(),
        }
    }

    /// The details of a row: histograms, examples (oldest live first, then recently
    /// completed) with their folded trigger chains, and the creation stack.
    /// The [`EXAMPLES`] oldest live resources of a row, as (init, id, callbacks), oldest
    /// first: one pass over the thread's live resources, without sorting them all, reused
    /// on huge live sets as the live scan is.
    fn oldest_of_row(&self, i: RowId, stream: StreamId) -> Vec<(u64, u64, u32)> {
        if let Some((row, when, v)) = self.details_cache.borrow().as_ref() {
            if *row == i && self.reuse_scan(when) {
                return v.clone();
            }
        }
        let when = ScanTime::start();
        let mut oldest: Vec<(u64, u64, u32)> = Vec::with_capacity(EXAMPLES + 1);
        for (k, res) in self.life.iter_stream(stream) {
            let e = (res.init_ns, k.1, res.callbacks);
            if res.data != i || oldest.len() == EXAMPLES && oldest.last().is_some_and(|l| *l <= e) {
                continue;
            }
            let at = oldest.partition_point(|o| *o < e);
            oldest.insert(at, e);
            oldest.truncate(EXAMPLES);
        }
        *self.details_cache.borrow_mut() = Some((i, when.done(), oldest.clone()));
        oldest
    }

    pub fn details(&self, i: RowId) -> Option<Details> {
        let r = self.rows.get(i as usize)?;
        let live = self.oldest_of_row(i, r.stream);
        let oldest = live.first().map(|l| l.0);
        let mut examples: Vec<Example> = live
            .iter()
            .take(EXAMPLES)
            .map(|&(init, id, callbacks)| Example {
                id,
                age_ns: self.now_ns.saturating_sub(init),
                live: true,
                callbacks,
                chain: folded_chain(self, r.stream, id),
            })
            .collect();
        let done: Vec<&Completed> = self.recent.iter().rev().filter(|c| c.row == i).take(EXAMPLES).collect();
        for c in done.into_iter().take(EXAMPLES.saturating_sub(examples.len())) {
            examples.push(Example {
                id: c.id,
                age_ns: c.end_ns.saturating_sub(c.init_ns),
                live: false,
                callbacks: c.callbacks,
                chain: folded_chain(self, r.stream, c.id),
            });
        }
        Some(Details {
            row: self.row_view(i, oldest),
            lifetimes: r.lifetimes.clone(),
            callback_ns: r.callback_ns.clone(),
            blocking: r.blocking,
            max_sync_ns: r.max_sync_ns,
            examples,
            stack: self.cx.stack_frames(r.stack),
        })
    }
}

fn sort_rows(rows: &mut [RowView], key: SortKey, ascending: bool) {
    rows.sort_by(|a, b| {
        let o = match key {
            SortKey::Type => a.type_name.cmp(&b.type_name).reverse(),
            SortKey::Site => a.site.cmp(&b.site).reverse(),
            SortKey::Live => a.live.cmp(&b.live),
            SortKey::Created => a.created_per_s.total_cmp(&b.created_per_s),
            SortKey::Destroyed => a.destroyed_per_s.total_cmp(&b.destroyed_per_s),
            SortKey::Callbacks => a.callbacks.cmp(&b.callbacks),
            SortKey::Sync => a.sync_ns.cmp(&b.sync_ns),
            SortKey::Wait => a.wait_ns.cmp(&b.wait_ns),
            SortKey::Oldest => a.oldest_ns.cmp(&b.oldest_ns),
        };
        // Why reverse by default: the biggest numbers are what a person looks for; names
        // sort A to Z by default (reversed twice).
        let o = if ascending { o } else { o.reverse() };
        // Ties in a stable, readable order.
        o.then_with(|| a.type_name.cmp(&b.type_name))
            .then_with(|| a.site.cmp(&b.site))
    });
}

/// `850ns`, `12.3µs`, `4.5ms`, `2.31s`, `3m05s`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..1_000 => format!("{ns}ns"),
        1_000..1_000_000 => format!("{:.1}µs", ns as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}ms", ns as f64 / 1e6),
        1_000_000_000..60_000_000_000 => format!("{:.2}s", ns as f64 / 1e9),
        _ => format!("{}m{:02}s", ns / 60_000_000_000, (ns / 1_000_000_000) % 60),
    }
}
