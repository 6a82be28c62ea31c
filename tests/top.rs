//! `asynctrace top` end to end: the real binary in a real terminal (tmux), driven by keys,
//! on the `top-shop` fixture. Screens are polled until they show what is expected, with a
//! generous overall timeout: nothing here depends on how fast the machine is.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{asynctrace, fixture, info, node, record_node, Scratch};

/// How long any one screen may take to appear (a loaded 2-core machine).
const PATIENCE: Duration = Duration::from_secs(90);

/// A private tmux server with one 120x60 window (room for every row of the fixture) running `cmd` (a shell line); the line
/// `TOP-EXIT=<status>` follows when it ends, and the window stays.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn start(tag: &str, cmd: &str, dir: &Path) -> Tmux {
        let socket = format!("asynctrace-test-{tag}-{}", std::process::id());
        let t = Tmux { socket };
        let line = format!("{cmd}; echo TOP-EXIT=$?; sleep 600");
        let ok = t
            .tmux()
            .args(["new-session", "-d", "-x", "120", "-y", "60", "-c"])
            .arg(dir)
            .args(["sh", "-c", &line])
            .status()
            .expect("tmux is on PATH (scripts/ensure-tmux.sh installs it)");
        assert!(ok.success(), "tmux new-session failed");
        t
    }

    fn tmux(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    fn screen(&self) -> String {
        let out = self.tmux().args(["capture-pane", "-p", "-t", "0"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn display(&self, format: &str) -> String {
        let out = self
            .tmux()
            .args(["display-message", "-p", "-t", "0", format])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Polls the screen until `pred` holds; panics with the last screen after [`PATIENCE`].
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if pred(&s) {
                return s;
            }
            assert!(start.elapsed() < PATIENCE, "waited for {what}; the screen was:\n{s}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// As [`Tmux::wait`], on a screen that stayed the same below the header for 300 ms: a
    /// capture can land in the middle of a frame being drawn (the new header over the old
    /// rows), which only a still screen rules out. For paused replays, whose table is still.
    fn wait_still(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let body = |s: &str| s.lines().skip(3).map(str::to_owned).collect::<Vec<_>>();
        let start = Instant::now();
        loop {
            let s = self.wait(what, &pred);
            std::thread::sleep(Duration::from_millis(300));
            let again = self.screen();
            if pred(&again) && body(&again) == body(&s) {
                return again;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "waited for a still {what}; the screen was:\n{again}"
            );
        }
    }

    fn keys(&self, keys: &[&str]) {
        for k in keys {
            let ok = self.tmux().args(["send-keys", "-t", "0", k]).status().unwrap();
            assert!(ok.success());
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

fn quote(p: impl AsRef<std::ffi::OsStr>) -> String {
    format!("'{}'", p.as_ref().to_string_lossy().replace('\'', "'\\''"))
}

/// The types of the table's rows, top to bottom.
fn row_types(screen: &str) -> Vec<String> {
    screen
        .lines()
        .skip_while(|l| !l.contains("Live"))
        .skip(1)
        .filter_map(|l| l.strip_prefix('│'))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|w| w != "│")
        .collect()
}

fn record_shop(scratch: &Scratch, seconds: &str) -> std::path::PathBuf {
    let trace = scratch.path("shop.bin");
    let out = record_node(&trace)
        .arg(fixture("top-shop/server.js"))
        .env("TOP_SECONDS", seconds)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    trace
}

/// The promise each new session leaves behind (one request in 97: about a hundred in 3 s
/// here, most without a stack) is one group at its line, though the export route goes
/// through the same point of the handler once: `top` shows what `leaks` says.
fn sessions_leak_is_one_group_at_its_line(trace: &Path) {
    let out = Command::new(asynctrace())
        .args(["leaks", "--format", "json"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let never: Vec<&serde_json::Value> = r["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["class"] == "never-settled-promise")
        .collect();
    let sessions = never
        .iter()
        .find(|g| {
            g["site"]
                .as_str()
                .is_some_and(|s| s.ends_with("top-shop/lib/sessions.js:8:10"))
        })
        .unwrap_or_else(|| panic!("no sessions group: {r:#}"));
    // Why not more: a loaded machine serves fewer requests in the 3 s.
    assert!(sessions["count"].as_u64().unwrap() >= 5, "{sessions:#}");
    assert!(
        never.iter().all(|g| !g["site"].is_null()),
        "a never-settled group without a site: {r:#}"
    );
}

#[test]
fn replay_shows_the_fixture_sites_filters_sorts_and_quits_restoring_the_terminal() {
    let scratch = Scratch::new("top-replay");
    let trace = record_shop(&scratch, "3");
    sessions_leak_is_one_group_at_its_line(&trace);
    let end_ms = info(&trace)["duration_ms"].as_f64().unwrap_or(3000.0);
    // Near the end of the run, paused: the screen holds still while the test reads it.
    let at = format!("{:.0}ms", end_ms - 200.0);
    let cmd = format!(
        "{} top {} --at {at} --paused --unsettled-s 0.5",
        quote(asynctrace()),
        quote(&trace)
    );
    let t = Tmux::start("replay", &cmd, &scratch.0);
    let s = t.wait_still("the table", |s| {
        s.contains("Resources by site") && s.contains("⏸ paused")
    });
    // The fixture's own sites, relative to where it was recorded.
    assert!(s.contains("top-shop/lib/sessions.js:"), "{s}");
    assert!(s.contains("top-shop/lib/poller.js:"), "{s}");
    assert!(s.contains("Live▼"), "sorted by live count at first:\n{s}");

    // `/` filters by path.
    t.keys(&["/", "poller", "Enter"]);
    let s = t.wait_still("the filtered table", |s| s.contains("filter: poller"));
    assert!(s.contains("top-shop/lib/poller.js:"), "{s}");
    assert!(!s.contains("sessions.js"), "{s}");
    assert!(row_types(&s).iter().all(|ty| ty == "Timeout"), "{s}");
    // Filtering by type; then Esc in the prompt clears the filter.
    t.keys(&[
        "/", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "BSpace", "timeout", "Enter",
    ]);
    let s = t.wait_still("the table filtered by type", |s| s.contains("filter: timeout"));
    assert!(row_types(&s).iter().all(|ty| ty == "Timeout"), "{s}");
    t.keys(&["/", "Escape"]);
    let s = t.wait_still("the whole table", |s| {
        !s.contains("filter:") && s.contains("sessions.js")
    });

    // `h` moves the sort one column left (site, then type: A to Z), `i` inverts it.
    let before = row_types(&s);
    t.keys(&["h"]);
    t.wait_still("sorted by site", |s| s.contains("Site▼"));
    t.keys(&["h"]);
    let s = t.wait_still("sorted by type", |s| s.contains("Type▼"));
    let by_type = row_types(&s);
    let mut sorted = by_type.clone();
    sorted.sort();
    assert_eq!(by_type, sorted, "{s}");
    assert_ne!(by_type, before, "{s}");
    t.keys(&["i"]);
    let s = t.wait_still("sorted by type, inverted", |s| s.contains("Type▲"));
    let mut inverted = row_types(&s);
    inverted.reverse();
    assert_eq!(inverted, sorted, "{s}");

    // Warnings name the helper that leaks promises.
    t.keys(&["w"]);
    let s = t.wait_still("the warnings", |s| s.contains("Warnings ("));
    assert!(
        s.lines()
            .any(|l| l.contains("unsettled") && l.contains("lib/sessions.js")),
        "{s}"
    );

    // The export request that never gets its reply: a warning, and in the requests view it
    // is open, with where it waits.
    assert!(s.lines().any(|l| l.contains("request GET /export?format=csv #")), "{s}");
    t.keys(&["R"]);
    let s = t.wait_still("the requests", |s| {
        s.contains("Requests:") && s.contains("Latest closed")
    });
    let open = s.lines().position(|l| l.contains("Open now")).unwrap_or(usize::MAX);
    let closed = s.lines().position(|l| l.contains("Latest closed")).unwrap_or(0);
    let export = s.lines().position(|l| l.contains("GET /export?format=csv"));
    assert!(export.is_some_and(|e| e > open && e < closed), "{s}");
    let line = s.lines().nth(export.unwrap()).unwrap();
    assert!(
        line.contains("PROMISE at ") && line.contains("top-shop/lib/exports.js:10:"),
        "{line}"
    );
    // The oldest open request, first (other requests may be in flight at that moment).
    assert_eq!(export, Some(open + 2), "{s}");
    assert!(
        s.lines().any(|l| l.contains("GET /cart/") && l.contains(" 200 ")),
        "{s}"
    );

    // Details of the top row, then back.
    t.keys(&["r", "Enter"]);
    t.wait_still("the details", |s| {
        s.contains("Lifetimes") && s.contains("Creation stack")
    });
    t.keys(&["Escape", "t"]);
    t.wait_still("the tree", |s| {
        s.contains("Trigger tree of live resources") && s.contains("TCPSERVERWRAP")
    });

    t.keys(&["q"]);
    let s = t.wait_still("top to exit", |s| s.contains("TOP-EXIT="));
    assert!(s.contains("TOP-EXIT=0"), "{s}");
    assert!(!s.contains("Resources by site"), "the UI is gone:\n{s}");
    assert_eq!(t.display("#{alternate_on}"), "0", "the alternate screen was left");
    assert_eq!(t.display("#{cursor_flag}"), "1", "the cursor is shown again");
}

#[test]
fn live_shows_the_app_records_every_event_and_exits_with_its_status() {
    let scratch = Scratch::new("top-live");
    let trace = scratch.path("live.bin");
    let cmd = format!(
        "TOP_SECONDS=8 {} top -o {} -- {} {}",
        quote(asynctrace()),
        quote(&trace),
        quote(node()),
        quote(fixture("top-shop/server.js"))
    );
    let t = Tmux::start("live", &cmd, &scratch.0);
    let s = t.wait("the live table", |s| {
        s.contains("● live") && s.contains("lib/poller.js")
    });
    assert!(s.contains("Resources by site"), "{s}");
    // The app's own output does not go over the UI.
    assert!(!s.lines().any(|l| l.trim() == "ready"), "{s}");
    let s = t.wait("the app to end", |s| s.contains("TOP-EXIT="));
    assert!(s.contains("TOP-EXIT=0"), "{s}");
    assert!(s.contains("the app exited with code 0"), "{s}");
    assert_eq!(t.display("#{alternate_on}"), "0");
    let i = info(&trace);
    assert_eq!(i["dropped"].as_u64(), Some(0), "{i}");
    assert!(i["events"]["init"].as_u64().unwrap() > 10_000, "{i}");
    let log = std::fs::read_to_string(scratch.path("live.bin.app.log")).unwrap();
    assert_eq!(log.trim(), "ready");
}

#[test]
fn q_in_live_mode_asks_then_stops_the_app_and_top_exits_with_its_status() {
    let scratch = Scratch::new("top-quit");
    let trace = scratch.path("quit.bin");
    let cmd = format!(
        "TOP_SECONDS=600 {} top -o {} -- {} {}",
        quote(asynctrace()),
        quote(&trace),
        quote(node()),
        quote(fixture("top-shop/server.js"))
    );
    let t = Tmux::start("quit", &cmd, &scratch.0);
    t.wait("the live table", |s| {
        s.contains("● live") && s.contains("lib/poller.js")
    });
    t.keys(&["q"]);
    t.wait("the question", |s| s.contains("[s]top the app, or [d]etach"));
    t.keys(&["s"]);
    let s = t.wait("top to exit", |s| s.contains("TOP-EXIT="));
    // SIGTERM: the shell's 128 + 15, as `record` reports a signal.
    assert!(s.contains("TOP-EXIT=143"), "{s}");
    assert_eq!(t.display("#{alternate_on}"), "0");
    assert!(info(&trace)["events"]["init"].as_u64().unwrap() > 0);
}
