//! Render tests: every view drawn on a `TestBackend` and compared with a snapshot file in
//! `src/tui/snapshots/` (`ASYNCTRACE_BLESS=1` rewrites them). Tiny terminals must not panic.

use std::path::PathBuf;

use ratatui::backend::TestBackend;
use ratatui::Terminal;
use tracer_core::analysis::synth::Synth;
use tracer_core::live::{LiveOptions, LiveState, Progress, Replay};
use tracer_core::trace::TraceReader;

use super::input::Action;
use super::{App, Clock, View};

const CACHE: &str = "get\t/srv/app/lib/cache.js:12:5\nhandle\t/srv/app/server.js:30:7";
const POLL: &str = "poll\t/srv/app/lib/poll.js:3:9";
const QUERY: &str = "query\t/srv/app/lib/db.js:40:11";

/// Two threads of a small app: a cache keeping a pending promise per key (one per 100 ms),
/// queries that come and go (one blocks the loop for 30 ms), a timer re-arming itself; a
/// worker with sockets.
fn state() -> LiveState {
    let mut s = Synth::in_memory();
    let st = s.stream(100, 0).unwrap();
    let w = s.stream(100, 1).unwrap();
    let mut id = 10;
    s.init(st, 0.0, 5, "TCPSERVERWRAP", 1, Some("\t/srv/app/server.js:50:3"))
        .unwrap();
    for k in 0..60u64 {
        let t = k as f64 * 100.0;
        s.init(st, t, id, "PROMISE", 5, Some(CACHE)).unwrap();
        let cache = id;
        id += 1;
        s.init(st, t + 1.0, id, "PROMISE", cache, Some(QUERY)).unwrap();
        s.resolve(st, t + 15.0, id).unwrap();
        s.callback(st, t + 16.0, id, if k == 30 { 30.0 } else { 0.5 }).unwrap();
        s.destroy(st, t + 60.0, id).unwrap();
        id += 1;
    }
    let mut prev = 1;
    for k in 0..2000u64 {
        let t = 3000.0 + 0.92 * k as f64;
        s.init(st, t, id, "Timeout", prev, Some(POLL)).unwrap();
        s.callback(st, t + 0.9, id, 0.05).unwrap();
        s.destroy(st, t + 0.96, id).unwrap();
        prev = id;
        id += 1;
    }
    for k in 0..40u64 {
        s.init(
            w,
            100.0 * k as f64,
            100 + k,
            "TCPWRAP",
            1,
            Some("\t/srv/app/lib/worker.js:7:20"),
        )
        .unwrap();
    }
    s.end_stream(st, 0).unwrap();
    s.end_stream_dropped(w, 0, 12).unwrap();
    let trace = s.finish().unwrap();
    let mut replay = Replay::new(TraceReader::new(&trace[..]).unwrap());
    let mut state = replay.state(LiveOptions {
        unsettled_ns: 1_000_000_000,
        ..Default::default()
    });
    while replay.advance(&mut state, 4_000_000_000, 1000).unwrap() == Progress::More {}
    state
}

/// `synth::stuck_request_trace` at 2.9 s: request #1 has been open for 2.4 s.
fn requests_state() -> LiveState {
    let trace = tracer_core::analysis::synth::stuck_request_trace();
    let mut replay = Replay::new(TraceReader::new(&trace[..]).unwrap());
    let mut state = replay.state(LiveOptions::default());
    while replay.advance(&mut state, 2_900_000_000, 1000).unwrap() == Progress::More {}
    state
}

fn app() -> App {
    app_of(state())
}

fn app_of(state: LiveState) -> App {
    App::new(
        state,
        Clock {
            live: false,
            paused: true,
            ended: false,
            speed: 1.0,
        },
    )
}

fn render(app: &mut App, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| app.draw(f)).unwrap();
    let buf = term.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let mut line = String::new();
        for x in 0..buf.area.width {
            line.push_str(buf[(x, y)].symbol());
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn check(name: &str, text: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/tui/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("ASYNCTRACE_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|_| panic!("no snapshot {}: run with ASYNCTRACE_BLESS=1", path.display()));
    assert_eq!(
        text, want,
        "snapshot {name} differs (ASYNCTRACE_BLESS=1 rewrites it):\n{text}"
    );
}

#[test]
fn resources_view_at_120x30_and_80x24() {
    let mut app = app();
    check("resources_120x30", &render(&mut app, 120, 30));
    check("resources_80x24", &render(&mut app, 80, 24));
}

#[test]
fn sorting_and_filtering_change_the_table() {
    let mut app = app();
    app.act(Action::SortLeft); // Live -> Site
    app.act(Action::Invert);
    check("resources_by_site_ascending", &render(&mut app, 100, 16));
    app.filter.text = "lib/db".into();
    let text = render(&mut app, 100, 16);
    assert!(text.contains("lib/db.js:40:11"), "{text}");
    assert!(!text.contains("lib/cache.js"), "{text}");
}

#[test]
fn details_view() {
    let mut app = app();
    app.act(Action::Enter);
    assert!(matches!(app.view, View::Details(_)));
    check("details_120x40", &render(&mut app, 120, 40));
    app.act(Action::Back);
    assert_eq!(app.view, View::Resources);
}

#[test]
fn warnings_tree_help_and_threads_views() {
    let mut app = app();
    app.act(Action::Warnings);
    check("warnings_100x20", &render(&mut app, 100, 20));
    app.act(Action::Tree);
    check("tree_100x20", &render(&mut app, 100, 20));
    app.act(Action::Down);
    app.act(Action::Enter); // closes the server's node
    check("tree_collapsed_100x20", &render(&mut app, 100, 20));
    app.act(Action::Help);
    check("help_100x24", &render(&mut app, 100, 24));
    app.act(Action::Back);
    assert_eq!(app.view, View::Tree);
    app.act(Action::Resources);
    app.act(Action::Threads);
    app.act(Action::Threads); // the worker
    check("resources_worker_thread_100x12", &render(&mut app, 100, 12));
}

#[test]
fn requests_view_shows_the_open_request_where_it_waits_and_the_latest_finished() {
    let mut app = app_of(requests_state());
    app.act(Action::Requests);
    let text = render(&mut app, 120, 24);
    check("requests_120x24", &text);
    let open = text.lines().position(|l| l.contains("Open now")).unwrap();
    let recent = text.lines().position(|l| l.contains("Latest closed")).unwrap();
    let stuck = text.lines().position(|l| l.contains("POST /checkout")).unwrap();
    assert!(stuck > open && stuck < recent, "{text}");
    let line = text.lines().nth(stuck).unwrap();
    assert!(
        line.contains("2.40s") && line.contains("PROMISE at lib/pool.js:23:9"),
        "{line}"
    );
    let newest = text.lines().nth(recent + 2).unwrap();
    assert!(newest.contains("GET /orders/32") && newest.contains("200"), "{text}");
    assert!(text.contains("1 open") && text.contains("31 finished"), "{text}");
    check("requests_80x24", &render(&mut app, 80, 24));
    app.act(Action::Warnings);
    let text = render(&mut app, 120, 12);
    assert!(
        text.contains("request POST /checkout #1 (thread 0) open for 2.40s"),
        "{text}"
    );
    app.act(Action::NextView);
    assert_eq!(app.view, View::Tree);
}

#[test]
fn tiny_terminals_do_not_panic() {
    let mut reqs = app_of(requests_state());
    reqs.act(Action::Requests);
    for (w, h) in [(1, 1), (2, 2), (10, 3), (20, 5), (30, 8), (200, 4)] {
        render(&mut reqs, w, h);
    }
    let mut app = app();
    for view in [
        Action::Resources,
        Action::Requests,
        Action::Warnings,
        Action::Tree,
        Action::Help,
    ] {
        app.act(view);
        for (w, h) in [(1, 1), (2, 2), (10, 3), (20, 5), (30, 8), (200, 4)] {
            render(&mut app, w, h);
        }
    }
    app.act(Action::Resources);
    app.act(Action::Enter);
    for (w, h) in [(1, 1), (5, 5), (30, 8), (40, 12)] {
        render(&mut app, w, h);
    }
}
