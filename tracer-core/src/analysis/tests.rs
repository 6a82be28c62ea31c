//! Unit tests of the analyses on synthetic traces, and golden tests of their text reports.

use super::synth::Synth;
use super::*;
use crate::trace::{StreamId, TraceReader};

mod golden;

fn analyse<P: Pass>(buf: &[u8], pass: &mut P) -> Context {
    let mut reader = TraceReader::new(buf).expect("synthetic trace");
    run(&mut reader, pass).expect("synthetic trace reads")
}

/// A small app: timers, promises, sockets, two HTTP requests (one slow), a blocking callback,
/// leaks of every class, and a growing cache freed at exit.
pub(super) fn app_trace() -> Vec<u8> {
    let mut s = Synth::in_memory();
    let st: StreamId = s.stream(4242, 0).unwrap();
    // Server and two requests.
    s.init(st, 0.0, 5, "TCPSERVERWRAP", 1, Some("\tapp.js:40:8\nmain\tapp.js:50:1"))
        .unwrap();
    s.init(st, 1.0, 10, "TCPWRAP", 5, None).unwrap();
    s.init(st, 1.0, 11, "HTTPINCOMINGMESSAGE", 10, None).unwrap();
    s.before(st, 1.1, 11).unwrap();
    s.request_start(st, 1.1, 11, 1, 10, "GET /slow").unwrap();
    s.init(st, 1.1, 12, "PROMISE", 11, Some("handler\tapp.js:12:9"))
        .unwrap();
    s.init(
        st,
        1.1,
        13,
        "Timeout",
        12,
        Some("sleep\tapp.js:5:30\nhandler\tapp.js:13:3"),
    )
    .unwrap();
    s.after(st, 1.3, 11).unwrap();
    s.init(st, 2.0, 20, "TCPWRAP", 5, None).unwrap();
    s.init(st, 2.0, 21, "HTTPINCOMINGMESSAGE", 20, None).unwrap();
    s.before(st, 2.1, 21).unwrap();
    s.request_start(st, 2.1, 21, 2, 20, "GET /fast").unwrap();
    s.after(st, 2.5, 21).unwrap();
    s.request_finish(st, 2.5, 2, 200).unwrap();
    s.destroy(st, 3.0, 21).unwrap();
    s.destroy(st, 3.0, 20).unwrap();
    s.callback(st, 101.3, 13, 0.1).unwrap();
    s.ev_resolve_by(st, 101.3, 12, 13).unwrap();
    s.callback(st, 101.4, 12, 0.6).unwrap();
    s.request_finish(st, 102.0, 1, 200).unwrap();
    s.destroy(st, 102.0, 13).unwrap();
    s.destroy(st, 102.0, 11).unwrap();
    s.destroy(st, 102.0, 10).unwrap();
    // A blocking timer, and noise: 3 fast timers from one site.
    s.init(st, 0.0, 30, "Timeout", 1, Some("\tapp.js:21:3")).unwrap();
    s.callback(st, 10.0, 30, 52.5).unwrap();
    s.destroy(st, 62.5, 30).unwrap();
    for i in 0..3 {
        let id = 31 + i;
        s.init(st, 0.0, id, "Timeout", 1, Some("\tapp.js:26:3")).unwrap();
        s.callback(st, 1.0 + i as f64, id, 0.05).unwrap();
        s.destroy(st, 1.1 + i as f64, id).unwrap();
    }
    // Leaks: 2 intervals, 3 never-settled promises, 1 client socket, 1 settled promise.
    s.init(st, 0.5, 40, "Timeout", 1, Some("\tapp.js:44:1")).unwrap();
    s.init(st, 0.5, 41, "Timeout", 1, Some("\tapp.js:44:1")).unwrap();
    for id in 42..45 {
        s.init(st, 0.5, id, "PROMISE", 1, Some("\tapp.js:50:16")).unwrap();
    }
    s.init(st, 0.5, 45, "PROMISE", 1, Some("\tapp.js:40:16")).unwrap();
    s.resolve(st, 0.5, 45).unwrap();
    s.init(st, 1.0, 46, "TickObject", 5, None).unwrap();
    s.before(st, 1.0, 46).unwrap();
    s.init(st, 1.0, 47, "TCPWRAP", 46, Some("connect\tapp.js:60:17"))
        .unwrap();
    s.after(st, 1.0, 46).unwrap();
    s.destroy(st, 1.0, 46).unwrap();
    s.init(st, 0.0, 48, "PIPEWRAP", 1, Some("\tapp.js:3:9")).unwrap();
    // A cache that grows by one timer per ms and is cleared at exit.
    for i in 0..100u64 {
        s.init(
            st,
            2.0 + i as f64,
            100 + i,
            "Timeout",
            1,
            Some("remember\tapp.js:70:20"),
        )
        .unwrap();
    }
    for i in 0..100u64 {
        s.destroy(st, 110.0, 100 + i).unwrap();
    }
    // The exit, from inside a timer's callback.
    s.init(st, 0.0, 49, "Timeout", 1, Some("\tapp.js:65:1")).unwrap();
    s.before(st, 105.0, 49).unwrap();
    s.end_stream(st, 0).unwrap();
    s.finish().unwrap()
}

#[test]
fn lifecycle_times_follow_the_design() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 7, "Timeout", 1, None).unwrap();
    s.callback(st, 10.0, 7, 2.0).unwrap();
    s.callback(st, 20.0, 7, 1.0).unwrap();
    s.destroy(st, 30.0, 7).unwrap();
    s.destroy(st, 31.0, 8).unwrap();
    let buf = s.finish().unwrap();
    let mut life: Lifecycle = Lifecycle::default();
    let mut destroyed = None;
    let mut unknown = 0;
    let mut reader = TraceReader::new(&buf[..]).unwrap();
    while let Some(item) = reader.next_item().unwrap() {
        if let crate::trace::Item::Event(ev) = item {
            match life.apply(&ev) {
                Step::Destroy(r) => destroyed = Some(r),
                Step::Unknown => unknown += 1,
                _ => {}
            }
        }
    }
    let r = destroyed.expect("destroyed");
    assert_eq!((r.callbacks, r.wait_ns, r.sync_ns), (2, 18_000_000, 3_000_000));
    assert_eq!(unknown, 1, "an id without init is skipped");
    assert!(life.is_empty());
}

#[test]
fn chain_continues_through_recently_destroyed_ancestors() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 2, "TCPSERVERWRAP", 1, None).unwrap();
    s.init(st, 0.0, 3, "TickObject", 2, None).unwrap();
    s.init(st, 0.0, 4, "TCPWRAP", 3, None).unwrap();
    s.destroy(st, 0.0, 3).unwrap();
    let buf = s.finish().unwrap();
    let mut life: Lifecycle = Lifecycle::default();
    let mut reader = TraceReader::new(&buf[..]).unwrap();
    while let Some(item) = reader.next_item().unwrap() {
        if let crate::trace::Item::Event(ev) = item {
            life.apply(&ev);
        }
    }
    let chain: Vec<u64> = life.chain((0, 4), 10).iter().map(|l| l.id).collect();
    assert_eq!(chain, vec![3, 2]);
    assert!(life.chain((0, 4), 10).iter().all(|l| l.type_name.is_some()));
}

#[test]
fn leaks_are_classified_grouped_and_growth_is_seen_before_the_final_free() {
    let buf = app_trace();
    let mut pass = Leaks::new(LeakOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let got: Vec<(LeakClass, &str, Option<&str>, u64)> = r
        .leaks
        .iter()
        .map(|g| (g.class, g.type_name.as_str(), g.site.as_deref(), g.count))
        .collect();
    assert_eq!(
        got,
        vec![
            (LeakClass::OpenHandle, "TCPSERVERWRAP", Some("app.js:40:8"), 1),
            (LeakClass::OpenHandle, "TCPWRAP", Some("app.js:60:17"), 1),
            (LeakClass::PendingTimer, "Timeout", Some("app.js:44:1"), 2),
            (LeakClass::NeverSettledPromise, "PROMISE", Some("app.js:50:16"), 3),
            (LeakClass::Growth, "Timeout", Some("app.js:70:20"), 100),
        ]
    );
    assert_eq!(r.settled_not_collected, 2);
    assert_eq!(r.running_at_exit, 1, "the Timeout that exits is not a leak");
    assert_eq!(
        r.other_alive.get("PIPEWRAP"),
        Some(&1),
        "stdio pipe is not an open handle"
    );
    let sock = &r.leaks[1];
    assert_eq!(sock.example.id, 47);
    assert_eq!(sock.example.chain.iter().map(|l| l.id).collect::<Vec<_>>(), vec![46, 5]);
    assert_eq!(sock.stack, vec!["connect (app.js:60:17)".to_owned()]);
    assert_eq!(r.leaks[2].example.id, 40, "the oldest (then lowest id) is the example");
}

#[test]
fn slow_lists_the_longest_callbacks_first_and_the_one_running_at_exit() {
    let buf = app_trace();
    let mut pass = Slow::new(SlowOptions {
        threshold_ns: 1_000_000,
        limit: 2,
    });
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.count, 2);
    assert_eq!(r.callbacks[0].site.as_deref(), Some("app.js:21:3"));
    assert_eq!(r.callbacks[0].sync_ms, 52.5);
    assert!(r.callbacks[0].finished);
    assert!(r.callbacks.iter().all(|c| c.sync_ms > 1.0));
    let mut pass = Slow::new(SlowOptions {
        threshold_ns: 0,
        limit: 1,
    });
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.callbacks.len(), 1, "limit");
}

#[test]
fn requests_rank_the_slow_one_first_and_name_the_timer() {
    let buf = app_trace();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.count, 2);
    let slow = &r.requests[0];
    assert_eq!(slow.label.as_deref(), Some("GET /slow"));
    assert!(
        (slow.latency_ms - (102.0 - 1.1)).abs() < 1e-9,
        "from its start to its finish: {slow:?}"
    );
    assert_eq!(slow.resources, 3);
    assert_eq!(slow.segments[0].type_name, "Timeout");
    assert_eq!(slow.segments[0].site.as_deref(), Some("app.js:5:30"));
    assert!((slow.segments[0].wait_ms - 100.2).abs() < 1e-9);
    assert_eq!(slow.status, Some(200));
    assert_eq!(r.requests[1].label.as_deref(), Some("GET /fast"));
    assert!(
        (r.requests[1].sync_ms - 0.4).abs() < 1e-9,
        "the handler's own work counts"
    );
    assert_eq!(r.p50_ms, r.requests[1].latency_ms);
    assert_eq!(r.p99_ms, slow.latency_ms);
}

#[test]
fn kept_alive_and_pipelined_requests_are_rows_of_their_own() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 3, "TCPWRAP", 1, None).unwrap();
    s.init(st, 0.0, 2, "HTTPINCOMINGMESSAGE", 3, None).unwrap();
    for (i, at) in [1.0, 5.0, 9.0].iter().enumerate() {
        s.before(st, *at, 2).unwrap();
        s.request_start(st, *at, 2, i as u64 + 1, 3, &format!("GET /{i}"))
            .unwrap();
        s.after(st, at + 0.5, 2).unwrap();
        s.request_finish(st, at + 0.5, i as u64 + 1, 200).unwrap();
    }
    // Two pipelined requests parsed in one callback; the second waits for a timer.
    s.before(st, 20.0, 2).unwrap();
    s.request_start(st, 20.0, 2, 4, 3, "GET /p1").unwrap();
    s.request_start(st, 20.2, 2, 5, 3, "GET /p2").unwrap();
    s.init(st, 20.2, 6, "Timeout", 2, Some("\tapp.js:1:1")).unwrap();
    // p1's res.end arms Node's Date-header timer, which fires long after it finished.
    s.init(st, 20.1, 7, "Timeout", 2, Some("end\tapp.js:14:9")).unwrap();
    s.after(st, 20.4, 2).unwrap();
    s.request_finish(st, 20.5, 4, 200).unwrap();
    s.callback(st, 1000.0, 7, 0.1).unwrap();
    s.callback(st, 30.0, 6, 0.1).unwrap();
    s.request_finish(st, 30.1, 5, 200).unwrap();
    let buf = s.finish().unwrap();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.count, 5);
    let by = |l: &str| r.requests.iter().find(|q| q.label.as_deref() == Some(l)).unwrap();
    for i in 0..3 {
        assert!(
            (by(&format!("GET /{i}")).latency_ms - 0.5).abs() < 1e-9,
            "{:?}",
            r.requests
        );
    }
    assert!((by("GET /p1").sync_ms - 0.2).abs() < 1e-9, "{:?}", by("GET /p1"));
    assert!(
        (by("GET /p1").latency_ms - 0.5).abs() < 1e-9,
        "not stretched by the Date timer"
    );
    let p2 = by("GET /p2");
    assert!((p2.latency_ms - 9.9).abs() < 1e-9, "{p2:?}");
    assert_eq!(p2.segments[0].type_name, "Timeout");
    assert!(r.requests.iter().all(|q| q.connection == 3));
}

#[test]
fn an_unfinished_request_comes_first_with_the_promise_it_waits_on() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 2, "HTTPINCOMINGMESSAGE", 1, None).unwrap();
    s.before(st, 1.0, 2).unwrap();
    s.request_start(st, 1.0, 2, 1, 0, "GET /slowish").unwrap();
    s.after(st, 1.1, 2).unwrap();
    s.request_finish(st, 80.0, 1, 200).unwrap();
    s.before(st, 90.0, 2).unwrap();
    s.request_start(st, 90.0, 2, 2, 0, "GET /hang").unwrap();
    // handler() -> await warmup(): the handler's promise, the never-settled one, the await's.
    s.init(st, 90.0, 3, "PROMISE", 2, Some("handler\tapp.js:3:1")).unwrap();
    s.init(st, 90.0, 4, "PROMISE", 2, Some("warmup\tcache.js:5:21"))
        .unwrap();
    s.init(st, 90.0, 5, "PROMISE", 4, Some("handler\tapp.js:4:3")).unwrap();
    s.after(st, 90.1, 2).unwrap();
    let buf = s.finish().unwrap();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!((r.count, r.unfinished), (2, 1));
    let hung = &r.requests[0];
    assert_eq!(hung.label.as_deref(), Some("GET /hang"));
    assert_eq!(hung.state, RequestState::Unfinished);
    let w = hung.waiting.as_ref().expect("where it waits");
    assert_eq!((w.id, w.site.as_deref()), (4, Some("cache.js:5:21")));
}

#[test]
fn a_promise_settled_by_another_request_names_it_and_a_late_timer_its_blocker() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 2, "HTTPINCOMINGMESSAGE", 1, None).unwrap();
    s.init(st, 0.0, 3, "HTTPINCOMINGMESSAGE", 1, None).unwrap();
    // A holds the permit; B queues on it (promise 11, awaited by 12).
    s.before(st, 1.0, 2).unwrap();
    s.request_start(st, 1.0, 2, 1, 0, "POST /checkout").unwrap();
    s.init(st, 1.0, 10, "Timeout", 2, Some("\tdb.js:4:35")).unwrap();
    s.note(st, 1.0, 10, crate::trace::notes::TIMER, 40_000, 0, None)
        .unwrap();
    s.after(st, 1.1, 2).unwrap();
    s.before(st, 2.0, 3).unwrap();
    s.request_start(st, 2.0, 3, 2, 0, "POST /checkout").unwrap();
    s.init(st, 2.0, 11, "PROMISE", 3, Some("acquire\tsemaphore.js:14:11"))
        .unwrap();
    s.init(st, 2.0, 12, "PROMISE", 11, Some("acquire\tsemaphore.js:14:5"))
        .unwrap();
    s.after(st, 2.1, 3).unwrap();
    // A report blocks the loop from 5 to 61 ms: A's 40 ms timer fires 20 ms late.
    s.init(st, 4.0, 20, "Immediate", 1, Some("\treport-builder.js:12:35"))
        .unwrap();
    s.callback(st, 5.0, 20, 56.0).unwrap();
    s.before(st, 61.0, 10).unwrap();
    s.ev_resolve_by(st, 61.0, 11, 10).unwrap();
    s.after(st, 61.1, 10).unwrap();
    s.request_finish(st, 61.2, 1, 201).unwrap();
    s.callback(st, 61.2, 12, 0.1).unwrap();
    s.request_finish(st, 61.4, 2, 201).unwrap();
    let buf = s.finish().unwrap();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let a = r.requests.iter().find(|q| q.number == 1).unwrap();
    match &a.segments[0].cause {
        Some(WaitCause::LateTimer {
            late_ms,
            blocker: Some(b),
            ..
        }) => {
            assert!((late_ms - 20.0).abs() < 1e-9, "{a:?}");
            assert_eq!(b.resource.site.as_deref(), Some("report-builder.js:12:35"));
        }
        other => panic!("a late timer: {other:?}"),
    }
    let b = r.requests.iter().find(|q| q.number == 2).unwrap();
    match &b.segments[0].cause {
        Some(WaitCause::Settled {
            awaited: Some(p),
            by: Some(by),
            ..
        }) => {
            assert_eq!(p.site.as_deref(), Some("semaphore.js:14:11"));
            assert_eq!(by.request.as_deref(), Some("POST /checkout #1"));
        }
        other => panic!("settled by the holder: {other:?}"),
    }
}

#[test]
fn tree_folds_siblings_and_loops() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    s.init(st, 0.0, 2, "Immediate", 1, Some("\ta.js:1:1")).unwrap();
    let mut parent = 2;
    // An immediate hop chain: each hop creates the next from the same site.
    for id in 3..50 {
        s.init(st, 0.0, id, "Immediate", parent, Some("\ta.js:1:1")).unwrap();
        parent = id;
    }
    for id in 100..2100 {
        s.init(st, 0.0, id, "PROMISE", 2, Some("\ta.js:2:9")).unwrap();
    }
    let buf = s.finish().unwrap();
    let mut pass = Tree::new(TreeOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let roots = &r.streams[0].roots;
    assert_eq!(roots.len(), 1);
    assert_eq!((roots[0].count, roots[0].recursive), (48, true));
    assert_eq!(roots[0].children.len(), 1);
    assert_eq!(roots[0].children[0].count, 2000);
    assert_eq!(r.streams[0].resources, 2048);

    let mut pass = Tree::new(TreeOptions {
        depth: 1,
        ..Default::default()
    });
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.streams[0].roots[0].hidden_resources, 2000);

    let mut pass = Tree::new(TreeOptions {
        root: Some(2),
        ..Default::default()
    });
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let top = &r.streams[0].roots;
    assert_eq!(top.len(), 1, "only the subtree of #2");
    assert_eq!(
        (top[0].first_id, top[0].count, top[0].recursive),
        (2, 48, true),
        "its hop chain folds into it"
    );
    assert_eq!(top[0].children[0].count, 2000);
}

#[test]
fn a_truncated_trace_is_analysed_up_to_the_cut() {
    let buf = app_trace();
    let cut = &buf[..buf.len() - 20];
    let mut pass = Leaks::new(LeakOptions::default());
    let mut reader = TraceReader::new(cut).unwrap();
    let res = run(&mut reader, &mut pass);
    // Either the cut lands inside the last block (truncated) or the end marker (corrupt);
    // never a panic.
    if let Ok(mut cx) = res {
        assert!(cx.truncated);
        let _ = pass.finish(&mut cx);
    }
}

#[test]
fn site_is_the_first_frame_location() {
    assert_eq!(site_of_stack("fn\tapp.js:1:2\ng\tb.js:3:4"), Some("app.js:1:2"));
    assert_eq!(site_of_stack("\t/abs/x.mjs:9:1"), Some("/abs/x.mjs:9:1"));
    assert_eq!(site_of_stack(""), None);
    assert_eq!(format_frame("fn\tapp.js:1:2"), "fn (app.js:1:2)");
    assert_eq!(format_frame("\tapp.js:1:2"), "app.js:1:2");
}

#[test]
fn a_closed_request_frees_its_slot_and_late_promise_callbacks_do_not_leak_into_the_next() {
    let mut s = Synth::in_memory();
    let st = s.stream(1, 0).unwrap();
    // Request A: parser 2, a promise 3 that outlives it (GC) and runs late.
    s.init(st, 0.0, 2, "HTTPINCOMINGMESSAGE", 1, None).unwrap();
    s.before(st, 1.0, 2).unwrap();
    s.request_start(st, 1.0, 2, 1, 0, "GET /a").unwrap();
    s.init(st, 1.0, 3, "PROMISE", 2, None).unwrap();
    s.after(st, 2.0, 2).unwrap();
    s.request_finish(st, 2.0, 1, 200).unwrap();
    s.destroy(st, 3.0, 2).unwrap();
    // Request B reuses A's slot; then A's promise runs: it must not count for B.
    s.init(st, 4.0, 4, "HTTPINCOMINGMESSAGE", 1, None).unwrap();
    s.before(st, 5.0, 4).unwrap();
    s.request_start(st, 5.0, 4, 2, 0, "GET /b").unwrap();
    s.after(st, 5.5, 4).unwrap();
    s.request_finish(st, 5.5, 2, 200).unwrap();
    s.destroy(st, 6.0, 4).unwrap();
    s.callback(st, 50.0, 3, 1.0).unwrap();
    let buf = s.finish().unwrap();
    let mut pass = Requests::new(RequestOptions::default());
    let mut cx = analyse(&buf, &mut pass);
    let r = pass.finish(&mut cx);
    let got: Vec<(&str, f64, f64)> = r
        .requests
        .iter()
        .map(|q| (q.label.as_deref().unwrap_or("?"), q.latency_ms, q.sync_ms))
        .collect();
    assert_eq!(got, vec![("GET /a", 1.0, 1.0), ("GET /b", 0.5, 0.5)]);
}

// See: `slow` on a trace with heavy drops printed "653675.7 ms blocked" for a 1 s run: callbacks
// whose `after` was dropped counted as blocking up to the end of the run.
#[test]
fn r7_callbacks_with_no_recorded_end_are_counted_not_timed() {
    let trace = |dropped: u64| {
        let mut s = Synth::in_memory();
        let st = s.stream(1, 0).unwrap();
        for i in 0..100 {
            // 100 timers whose `after` was lost.
            s.init(st, 1.0, 10 + i, "Timeout", 1, Some("app.js:5:1")).unwrap();
            s.before(st, 2.0 + i as f64, 10 + i).unwrap();
        }
        // An interval whose first `after` was lost, then a real 20 ms callback.
        s.init(st, 1.0, 2, "Timeout", 1, Some("app.js:9:1")).unwrap();
        s.before(st, 300.0, 2).unwrap();
        s.callback(st, 500.0, 2, 20.0).unwrap();
        s.callback(st, 999.0, 3, 0.1).unwrap();
        s.end_stream_dropped(st, 0, dropped).unwrap();
        s.finish().unwrap()
    };
    let mut pass = Slow::new(SlowOptions::default());
    let mut cx = analyse(&trace(500), &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.count, 1, "{r:?}");
    assert_eq!(r.blocked_ms, 20.0);
    assert_eq!(r.unended, 101);
    let mut text = Vec::new();
    write_slow_text(&mut text, &r).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains("101 callbacks with no recorded end (events dropped)"),
        "{text}"
    );
    // Without drops, callbacks open at the end are what ran `process.exit`: unfinished, timed.
    let mut pass = Slow::new(SlowOptions::default());
    let mut cx = analyse(&trace(0), &mut pass);
    let r = pass.finish(&mut cx);
    assert_eq!(r.unended, 1, "the interval's lost after is still seen");
    assert_eq!(
        r.callbacks.iter().filter(|c| !c.finished).count(),
        20.min(r.callbacks.len())
    );
}
