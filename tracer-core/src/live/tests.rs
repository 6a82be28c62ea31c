use std::collections::BTreeMap;

use super::*;
use crate::analysis::synth::Synth;
use crate::analysis::{run, Context, Lifecycle, Pass, SiteId};
use crate::trace::{Event, TraceReader};

const CACHE: &str = "get\t/srv/app/lib/cache.js:12:5";
const POLL: &str = "poll\t/srv/app/lib/poll.js:3:9";
const QUERY: &str = "query\t/srv/app/lib/db.js:40:11";

/// One thread, 20 s: a cache that keeps a promise per key forever (one more every 100 ms), a
/// poller that re-arms a 1 ms timer from its own callback, queries that come and go, and one
/// callback that blocks for 30 ms at t = 3 s.
fn app_trace() -> Vec<u8> {
    let mut s = Synth::in_memory();
    let st = s.stream(100, 0).unwrap();
    let mut id = 10;
    for k in 0..200u64 {
        let t = k as f64 * 100.0;
        s.init(st, t, id, "PROMISE", 1, Some(CACHE)).unwrap();
        id += 1;
        // A query: created, one callback, destroyed 20 ms later.
        s.init(st, t + 1.0, id, "PROMISE", 1, Some(QUERY)).unwrap();
        s.resolve(st, t + 15.0, id).unwrap();
        s.callback(st, t + 16.0, id, if k == 30 { 30.0 } else { 0.5 }).unwrap();
        s.destroy(st, t + 60.0, id).unwrap();
        id += 1;
    }
    // The poller: each timer created inside the previous one's callback (which runs from
    // 0.90 to 0.95 ms after its init), for about 2 s.
    let mut prev = 1;
    for k in 0..2000u64 {
        let t = 3000.0 + 0.92 * k as f64;
        s.init(st, t, id, "Timeout", prev, Some(POLL)).unwrap();
        s.callback(st, t + 0.9, id, 0.05).unwrap();
        s.destroy(st, t + 0.96, id).unwrap();
        prev = id;
        id += 1;
    }
    // A worker thread: a socket every 100 ms, each closed 250 ms later. Its events come
    // after all of the main thread's in the file.
    let w = s.stream(100, 1).unwrap();
    for k in 0..150u64 {
        let t = k as f64 * 100.0 + 7.0;
        s.init(w, t, 10 + k, "TCPWRAP", 1, Some("\t/srv/app/lib/worker.js:7:20"))
            .unwrap();
        s.destroy(w, t + 250.0, 10 + k).unwrap();
    }
    s.end_stream(st, 0).unwrap();
    s.end_stream(w, 0).unwrap();
    s.finish().unwrap()
}

/// The reference: the shared lifecycle over the events up to `t`, live counts by
/// (type, site).
struct LiveAt {
    t: u64,
    life: Lifecycle<Option<SiteId>>,
}

impl Pass for LiveAt {
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        if ev.time_ns > self.t {
            return;
        }
        if let crate::analysis::Step::Init(res) = self.life.apply(ev) {
            let stack = res.stack();
            res.data = cx.site(stack);
        }
    }
    fn stream_end(&mut self, _cx: &mut Context, _stream: StreamId, _end_ns: u64) {}
}

fn reference(trace: &[u8], t: u64) -> BTreeMap<(StreamId, String, String), u64> {
    let mut pass = LiveAt {
        t,
        life: Lifecycle::default(),
    };
    let mut reader = TraceReader::new(trace).unwrap();
    let cx = run(&mut reader, &mut pass).unwrap();
    let mut out = BTreeMap::new();
    for (k, r) in pass.life.iter_all() {
        let site = r.data.map_or("-".to_owned(), |s| cx.site_text(s).to_owned());
        *out.entry((k.0, cx.string(r.type_name).to_owned(), site)).or_insert(0) += 1;
    }
    out
}

fn replay_to(trace: &[u8], t: u64, opts: LiveOptions) -> LiveState {
    let mut replay = Replay::new(TraceReader::new(trace).unwrap());
    let mut state = replay.state(opts);
    // Small batches: the state must not depend on how events are cut into batches.
    while replay.advance(&mut state, t, 97).unwrap() == Progress::More {}
    state
}

fn live_by_site(s: &Snapshot) -> BTreeMap<(StreamId, String, String), u64> {
    s.rows
        .iter()
        .filter(|r| r.live > 0)
        .map(|r| ((r.stream, r.type_name.clone(), r.site.clone()), r.live))
        .collect()
}

#[test]
fn replay_at_t_shows_the_live_counts_of_the_shared_lifecycle_at_t() {
    // Every thread is at T, although the worker's events come after the main thread's
    // later ones in the file.
    let trace = app_trace();
    for t_ms in [0u64, 950, 3_001, 4_500, 12_345, 30_000] {
        let t = t_ms * 1_000_000;
        let state = replay_to(&trace, t, LiveOptions::default());
        let snap = state.snapshot(&Filter::default(), SortKey::Live, false);
        let want = reference(&trace, t);
        assert_eq!(live_by_site(&snap), want, "at {t_ms} ms");
        if (300..15_000).contains(&t_ms) {
            assert!(
                want.keys().any(|k| k.0 == 1),
                "the worker has live sockets at {t_ms} ms"
            );
        }
        assert_eq!(snap.header.live, reference(&trace, t).values().sum::<u64>());
    }
    // And the cache's count is what the app did: one promise per 100 ms.
    let state = replay_to(&trace, 12_345_000_000, LiveOptions::default());
    let snap = state.snapshot(&Filter::default(), SortKey::Live, false);
    assert_eq!(snap.rows[0].site, "/srv/app/lib/cache.js:12:5");
    let worker = Filter {
        stream: Some(1),
        text: String::new(),
    };
    let w = state.snapshot(&worker, SortKey::Live, false);
    assert_eq!(w.rows.len(), 1);
    assert_eq!(w.rows[0].live, 3);
    assert_eq!(w.header.threads, 1);
    assert_eq!(snap.rows[0].live, 124);
}

#[test]
fn warnings_name_the_culprit_sites_and_each_can_be_allowed() {
    let trace = app_trace();
    let at = |ms: u64, allow: Allow| {
        let opts = LiveOptions {
            allow,
            unsettled_ns: 1_000_000_000,
            growth_slice_ns: 200_000_000,
            ..Default::default()
        };
        let state = replay_to(&trace, ms * 1_000_000, opts);
        state
            .snapshot(&Filter::default(), SortKey::Live, false)
            .warnings
            .iter()
            .map(|w| (w.kind, w.text.clone()))
            .collect::<Vec<_>>()
    };
    let w = at(4_000, Allow::default());
    let kinds: Vec<WarningKind> = w.iter().map(|w| w.0).collect();
    // (The worker's sockets come and go: no warning.)
    assert_eq!(
        kinds,
        [
            WarningKind::Blocking,
            WarningKind::Unsettled,
            WarningKind::Growing,
            WarningKind::TimerLoop
        ],
        "{w:#?}"
    );
    assert!(w[0].1.contains("lib/db.js:40:11"), "{}", w[0].1);
    assert!(w[1].1.contains("lib/cache.js:12:5"), "{}", w[1].1);
    assert!(w[2].1.contains("lib/cache.js:12:5"), "{}", w[2].1);
    assert!(w[3].1.contains("lib/poll.js:3:9"), "{}", w[3].1);
    // Before the poller started, no timer loop; after it stopped (5 s window), none either.
    assert!(!at(2_900, Allow::default())
        .iter()
        .any(|w| w.0 == WarningKind::TimerLoop));
    assert!(!at(12_000, Allow::default())
        .iter()
        .any(|w| w.0 == WarningKind::TimerLoop));
    let all = Allow {
        growing: true,
        blocking: true,
        unsettled: true,
        timer_loop: true,
        slow_request: true,
    };
    assert!(at(4_000, all).is_empty());
}

#[test]
fn completed_resources_are_kept_for_a_bounded_time_and_number() {
    let trace = app_trace();
    let opts = LiveOptions {
        retain_ns: 1_000_000_000,
        retain_max: 500,
        ..Default::default()
    };
    let state = replay_to(&trace, 4_000_000_000, opts);
    // 2,000 timers completed in the last second: only the last 500 are kept.
    assert_eq!(state.recent().count(), 500);
    let state = replay_to(&trace, 20_000_000_000, opts);
    // Long after the poller: only the queries of the last second or so.
    let n = state.recent().count();
    // (Retired once a second: between one and two seconds' worth.)
    assert!((9..=21).contains(&n), "{n}");
    assert!(state.recent().all(|c| c.end_ns + 2_000_000_000 > state.now_ns));
}

#[test]
fn rows_filter_by_type_or_path_and_sort_by_any_column() {
    let trace = app_trace();
    let state = replay_to(&trace, 3_500_000_000, LiveOptions::default());
    let names = |f: &str, k: SortKey, asc: bool| {
        let filter = Filter {
            stream: None,
            text: f.to_owned(),
        };
        state
            .snapshot(&filter, k, asc)
            .rows
            .iter()
            .map(|r| r.site.rsplit('/').next().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(names("", SortKey::Live, false)[0], "cache.js:12:5");
    assert_eq!(names("", SortKey::Live, true).last().unwrap(), "cache.js:12:5");
    assert_eq!(names("", SortKey::Created, false)[0], "poll.js:3:9");
    assert_eq!(
        names("", SortKey::Site, false),
        ["cache.js:12:5", "db.js:40:11", "poll.js:3:9", "worker.js:7:20"]
    );
    assert_eq!(names("timeout", SortKey::Live, false), ["poll.js:3:9"]);
    assert_eq!(names("LIB/DB", SortKey::Live, false), ["db.js:40:11"]);
    assert!(names("nothing", SortKey::Live, false).is_empty());
}

#[test]
fn details_give_percentiles_examples_with_chains_and_the_stack() {
    let trace = app_trace();
    let state = replay_to(&trace, 3_500_000_000, LiveOptions::default());
    let snap = state.snapshot(&Filter::default(), SortKey::Site, false);
    let poll = snap.rows.iter().find(|r| r.site.ends_with("poll.js:3:9")).unwrap();
    let d = state.details(poll.row).unwrap();
    // Timers k = 0..=543 were created by 3.5 s (every 0.92 ms from 3 s); all but the last
    // one are done.
    assert_eq!(d.lifetimes.total, 543);
    assert_eq!(d.callback_ns.total, 543);
    assert_eq!(d.stack, ["poll (/srv/app/lib/poll.js:3:9)"]);
    assert!(!d.examples.is_empty());
    // Each timer's trigger is the previous one: the chain folds into one repeated link.
    let chain = &d.examples[0].chain;
    assert!(chain[0].count > 1, "{chain:?}");
    assert_eq!(chain[0].type_name.as_deref(), Some("Timeout"));
    assert!(state.details(9999).is_none());
}

#[test]
fn an_empty_trace_and_empty_batches_do_not_panic() {
    let s = Synth::in_memory();
    let trace = s.finish().unwrap();
    let mut state = replay_to(&trace, u64::MAX, LiveOptions::default());
    state.events(&[]);
    let snap = state.snapshot(&Filter::default(), SortKey::Oldest, true);
    assert!(snap.rows.is_empty());
    assert_eq!(snap.header.live, 0);
}

#[test]
fn a_replay_past_a_thread_that_ended_reads_on_to_the_next_thread_and_the_end() {
    // The main thread ends before a second thread's first event is in the file.
    let mut s = Synth::in_memory();
    let a = s.stream(100, 0).unwrap();
    s.init(a, 1.0, 10, "Timeout", 1, Some(POLL)).unwrap();
    s.destroy(a, 2.0, 10).unwrap();
    s.end_stream(a, 0).unwrap();
    let b = s.stream(100, 1).unwrap();
    s.init(b, 3.0, 10, "PROMISE", 1, Some(QUERY)).unwrap();
    s.end_stream(b, 0).unwrap();
    let trace = s.finish().unwrap();
    for until in [u64::MAX, 10_000_000] {
        let mut replay = Replay::new(TraceReader::new(&trace[..]).unwrap());
        let mut state = replay.state(LiveOptions::default());
        let mut calls = 0;
        let last = loop {
            let p = replay.advance(&mut state, until, 100).unwrap();
            calls += 1;
            if p != Progress::More || calls > 100 {
                break p;
            }
        };
        let end = replay.advance(&mut state, u64::MAX, 100).unwrap();
        assert_eq!(state.events, 3, "until {until}: {last:?} after {calls} calls");
        assert_eq!(end, Progress::End, "until {until}");
        assert_eq!(state.live(), 1);
    }
}

#[test]
fn requests_in_flight_come_from_the_requests_pass_and_end_as_it_reports_them() {
    let trace = crate::analysis::synth::stuck_request_trace();
    let mut state = replay_to(&trace, 2_750_000_000, LiveOptions::default());
    let now = state.requests_now(None, 10);
    assert_eq!((now.open_count, now.finished, now.aborted), (1, 29, 0));
    let open = &now.open[0];
    assert_eq!(open.label.as_deref(), Some("POST /checkout"));
    assert!((open.latency_ms - 2250.0).abs() < 1.0, "{}", open.latency_ms);
    let waiting = open.waiting.as_ref().expect("where it waits");
    assert_eq!(waiting.site.as_deref(), Some("/srv/app/lib/pool.js:23:9"));
    assert_eq!(now.recent[0].label.as_deref(), Some("GET /orders/30"));
    assert!(now.p99_ms.is_some_and(|p| p >= 12.5));
    // The leaf is of that moment: a later finished request does not keep it.
    assert!(now.recent.iter().all(|r| r.waiting.is_none()));
    let snap = state.snapshot(&Filter::default(), SortKey::Live, false);
    let w: Vec<_> = snap
        .warnings
        .iter()
        .filter(|w| w.kind == WarningKind::SlowRequest)
        .collect();
    assert_eq!(w.len(), 1, "{:?}", snap.warnings);
    assert!(w[0].text.contains("POST /checkout #1"), "{}", w[0].text);
    let mut allowed = replay_to(
        &trace,
        2_750_000_000,
        LiveOptions {
            allow: Allow {
                slow_request: true,
                ..Default::default()
            },
            ..Default::default()
        },
    );
    let snap = allowed.snapshot(&Filter::default(), SortKey::Live, false);
    assert!(snap.warnings.iter().all(|w| w.kind != WarningKind::SlowRequest));
    let _ = allowed.requests_now(None, 10);

    // At the end of the thread the open request is left unfinished, as `requests` says.
    let mut state = replay_to(&trace, u64::MAX, LiveOptions::default());
    let now = state.requests_now(None, 10);
    assert_eq!((now.open_count, now.finished, now.unfinished), (0, 39, 1));
    let mut pass = crate::analysis::Requests::new(crate::analysis::RequestOptions::default());
    let mut cx = run(&mut TraceReader::new(&trace[..]).unwrap(), &mut pass).unwrap();
    let report = pass.finish(&mut cx);
    let want = &report.requests[0];
    let got = now.recent.iter().find(|r| r.number == 1).expect("request 1");
    assert_eq!(got.state, want.state);
    assert_eq!(got.latency_ms, want.latency_ms);
    assert_eq!(got.waiting, want.waiting);
    assert_eq!(report.count, 40);
}

#[test]
fn distinct_urls_do_not_grow_the_view_and_the_labels_on_screen_stay_readable() {
    // A request that never finishes, then many more, each with its own URL.
    let n = 5 * crate::trace::ONCE_HORIZON;
    let mut s = Synth::in_memory();
    let st = s.stream(100, 0).unwrap();
    s.init(st, 0.0, 6, "TCPWRAP", 1, None).unwrap();
    s.init(st, 0.0, 7, "HTTPINCOMINGMESSAGE", 6, None).unwrap();
    s.before(st, 0.0, 7).unwrap();
    s.request_start(st, 0.0, 7, 1, 6, "POST /stuck").unwrap();
    s.after(st, 0.1, 7).unwrap();
    for i in 2..=n {
        let t = i as f64 * 0.01;
        s.before(st, t, 7).unwrap();
        s.request_start(st, t, 7, i, 6, &format!("GET /user/{i}")).unwrap();
        s.request_finish(st, t + 0.005, i, 200).unwrap();
        s.after(st, t + 0.006, 7).unwrap();
    }
    s.end_stream(st, 0).unwrap();
    let trace = s.finish().unwrap();
    // Just after the last request finished (times in the synth are ms: 0.01 ms apart).
    let mut state = replay_to(&trace, n * 10_000 + 5_500, LiveOptions::default());
    let held = state.cx.strings_held() as u64;
    assert!(
        held < crate::trace::ONCE_HORIZON * 3,
        "{held} strings held after {n} distinct URLs"
    );
    let now = state.requests_now(None, 10);
    assert_eq!(
        now.open[0].label.as_deref(),
        Some("POST /stuck"),
        "a label on screen is held"
    );
    let last = now.recent.first().expect("recent requests (newest first)");
    assert_eq!(last.label.as_deref(), Some(&*format!("GET /user/{n}")));
    // A report keeps every string.
    let mut pass = crate::analysis::Requests::new(crate::analysis::RequestOptions::default());
    let cx = run(&mut TraceReader::new(&trace[..]).unwrap(), &mut pass).unwrap();
    assert!(cx.strings_held() as u64 > n);
}
