//! `tree`, `leaks`, `slow` and `requests` on real node runs of the fixtures with known
//! behaviour (fixtures/README.md), plus their handling of bad input.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

fn run(args: &[&str], trace: &Path) -> Output {
    Command::new(asynctrace()).args(args).arg(trace).output().unwrap()
}

/// Runs a report command with `--format json` and parses its output.
fn json(args: &[&str], trace: &Path) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let out = run(&all, trace);
    assert!(out.status.success(), "{args:?} failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("the report is JSON")
}

fn recorded(scratch: &Scratch, fixture_name: &str) -> std::path::PathBuf {
    let trace = scratch.path("t.bin");
    let out = record(&trace, &[], fixture_name, &[]);
    assert!(out.status.success(), "record {fixture_name}: {}", stderr(&out));
    trace
}

#[test]
fn leaks_reports_exactly_the_intentional_leaks_of_leaks_js() {
    let s = Scratch::new("leaks");
    let trace = recorded(&s, "leaks.js");
    let r = json(&["leaks"], &trace);
    let got: BTreeSet<(String, String, Option<String>, u64)> = r["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["class"].as_str().unwrap().to_owned(),
                g["type"].as_str().unwrap().to_owned(),
                g["site"].as_str().map(str::to_owned),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let site = |s: &str| Some(format!("fixtures/leaks.js:{s}"));
    let want: BTreeSet<_> = [
        ("open-handle", "TCPWRAP", site("60:17"), 1),
        ("open-handle", "TCPWRAP", site("61:17"), 1),
        ("open-handle", "TCPWRAP", None, 2),
        ("pending-timer", "Timeout", site("44:1"), 1),
        ("pending-timer", "Timeout", site("45:1"), 1),
        ("pending-timer", "Timeout", site("46:1"), 1),
        ("never-settled-promise", "PROMISE", site("50:16"), 5),
    ]
    .into_iter()
    .map(|(c, t, s, n)| (c.to_owned(), t.to_owned(), s, n))
    .collect();
    assert_eq!(got, want, "leak groups (left: reported)");
    let settled = r["settled_not_collected"].as_u64().unwrap();
    // Settled promises are destroyed only when GC runs; Node 22 sometimes collects them all.
    assert!(
        settled <= 2000,
        "the 2000 settled promises, minus any GC collected: {settled}"
    );
    assert_eq!(r["dropped"], 0);
    assert_eq!(r["truncated"], false);
    for g in r["leaks"].as_array().unwrap() {
        assert!(g["oldest_age_ms"].as_f64().unwrap() > 0.0);
        assert!(g["example"]["id"].as_u64().unwrap() > 1);
        assert!(g["example"]["chain"].is_array());
        if g["site"].is_string() {
            assert!(
                g["stack"][0].as_str().unwrap().contains(g["site"].as_str().unwrap()),
                "{g}"
            );
        }
    }
    let text = run(&["leaks"], &trace);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("pending timer: 1 Timeout at fixtures/leaks.js:44:1"),
        "{text}"
    );
    assert!(
        !text.contains("settled, not yet collected"),
        "shown only with --all: {text}"
    );
    let all = run(&["leaks", "--all"], &trace);
    assert!(String::from_utf8_lossy(&all.stdout).contains("settled, not yet collected"));
    assert_eq!(
        run(&["leaks", "--fail"], &trace).status.code(),
        Some(1),
        "--fail with leaks"
    );
}

#[test]
fn leaks_reports_a_cache_that_grew_and_was_freed_at_exit_as_growth() {
    let s = Scratch::new("growth");
    let trace = recorded(&s, "growth.js");
    let r = json(&["leaks"], &trace);
    let leaks = r["leaks"].as_array().unwrap();
    assert_eq!(leaks.len(), 1, "only the growing site: {leaks:?}");
    assert_eq!(leaks[0]["class"], "growth");
    assert_eq!(leaks[0]["type"], "Timeout");
    assert_eq!(leaks[0]["site"], "fixtures/growth.js:15:17");
    assert_eq!(leaks[0]["count"], 100, "peak pending count");
}

#[test]
fn leaks_fail_passes_on_a_clean_app() {
    let s = Scratch::new("clean");
    let trace = recorded(&s, "timers.js");
    let out = run(&["leaks", "--fail"], &trace);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn slow_lists_the_blocking_handler_of_blocking_js_first() {
    let s = Scratch::new("slow");
    let trace = recorded(&s, "blocking.js");
    let r = json(&["slow"], &trace);
    let cbs = r["callbacks"].as_array().unwrap();
    // The 5 blocking callbacks lead the list (sorted by sync time). Nothing is assumed about
    // amounts: on a busy machine a fast callback may cross the threshold too, and times read
    // from the clock word lag by however late its refresh thread runs.
    assert!(cbs.len() >= 5, "the 5 blocking callbacks: {cbs:?}");
    for c in &cbs[..5] {
        assert_eq!(c["site"], "fixtures/blocking.js:21:3", "{cbs:?}");
        assert_eq!(c["type"], "Timeout");
    }
    let text = String::from_utf8_lossy(&run(&["slow"], &trace).stdout).into_owned();
    assert!(
        text.lines().nth(2).unwrap().contains("fixtures/blocking.js:21:3"),
        "{text}"
    );
}

#[test]
fn requests_ranks_the_slow_route_first_and_names_its_timer() {
    let s = Scratch::new("requests");
    let trace = recorded(&s, "http-slow.js");
    let r = json(&["requests", "--limit", "0"], &trace);
    assert_eq!(r["count"], 25);
    let rows = r["requests"].as_array().unwrap();
    assert_eq!(rows.len(), 25);
    // Ranks and where each request waited; no amounts (see the blocking test above).
    for q in &rows[..5] {
        assert_eq!(q["label"], "GET /slow", "{q}");
        // The deepest wait comes first, once: the timer, not the promises awaiting it.
        let segs = q["segments"].as_array().unwrap();
        let seg = &segs[0];
        assert_eq!(seg["type"], "Timeout", "{q}");
        assert_eq!(seg["site"], "fixtures/http-slow.js:21:35", "{q}");
        assert!(
            segs.iter().all(|g| g["type"] != "PROMISE"),
            "the promises of the await chain wait inside the timer's wait: {q}"
        );
        assert_eq!(q["state"], "finished", "{q}");
        assert_eq!(q["status"], 200, "{q}");
        let (wait, latency) = (seg["wait_ms"].as_f64().unwrap(), q["latency_ms"].as_f64().unwrap());
        assert!(wait > 0.0 && wait <= latency, "the wait is part of the request: {q}");
    }
    for q in &rows[5..] {
        assert_eq!(q["label"], "GET /fast", "{q}");
    }
    assert!(
        r["p99_ms"].as_f64().unwrap() >= rows[4]["latency_ms"].as_f64().unwrap(),
        "p99 is at least the 5th slowest of 25"
    );
}

#[test]
fn tree_shows_the_request_path_folded_and_bounded() {
    let s = Scratch::new("tree");
    let trace = recorded(&s, "http-slow.js");
    let r = json(&["tree"], &trace);
    assert_eq!(r["view"], "trigger");
    let text = String::from_utf8_lossy(&run(&["tree", "--lines", "30"], &trace).stdout).into_owned();
    assert!(text.contains("x25 HTTPINCOMINGMESSAGE"), "{text}");
    assert!(text.lines().count() < 60, "bounded by --lines: {text}");
    let exec = json(&["tree", "--exec"], &trace);
    assert_eq!(exec["view"], "exec");
    // --root picks one resource's subtree: the first request's parser.
    let first = json(&["requests", "--limit", "0"], &trace)["requests"][0]["id"]
        .as_u64()
        .unwrap();
    let sub = json(&["tree", "--root", &first.to_string()], &trace);
    let top = &sub["streams"][0]["roots"][0];
    assert_eq!(top["type"], "HTTPINCOMINGMESSAGE");
    assert_eq!(top["first_id"].as_u64(), Some(first));
}

#[test]
fn reports_refuse_bad_input_with_one_line_and_exit_2() {
    let s = Scratch::new("bad");
    let empty = s.path("empty.bin");
    std::fs::write(&empty, b"").unwrap();
    let foreign = s.path("foreign.json");
    std::fs::write(&foreign, b"{\"traceEvents\": []}").unwrap();
    for cmd in ["tree", "leaks", "slow", "requests"] {
        for (path, needle) in [
            (&empty, "empty"),
            (&foreign, "not an asynctrace trace"),
            (&s.path("nope.bin"), "nope.bin"),
        ] {
            assert_clean_failure(&run(&[cmd], path), needle);
        }
    }
}

#[test]
fn reports_analyse_the_prefix_of_a_truncated_trace_and_warn() {
    let s = Scratch::new("cut");
    let (_full, cut) = full_and_truncated(&s);
    for cmd in ["tree", "leaks", "slow", "requests"] {
        let out = run(&[cmd], &cut);
        let err = stderr(&out);
        // A cut inside a block is a truncated trace, never a panic.
        assert_eq!(out.status.code(), Some(0), "{cmd}: {err}");
        assert!(err.contains("truncated"), "{cmd} warns: {err}");
    }
}

/// The pending-timer groups of a `leaks` report, as `(type, site)`.
fn pending_timers(r: &Value) -> Vec<(String, String)> {
    r["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["class"] == "pending-timer")
        .map(|l| {
            (
                l["type"].as_str().unwrap().to_string(),
                l["site"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn esm_app_gets_creation_sites_relative_to_its_cwd() {
    let s = Scratch::new("esm-site");
    let trace = recorded(&s, "esm/leak.mjs");
    let r = json(&["leaks"], &trace);
    assert_eq!(
        pending_timers(&r),
        vec![("Timeout".to_string(), "fixtures/esm/leak.mjs:6:11".to_string())],
        "{r}"
    );
}

#[test]
fn an_app_with_its_own_prepare_stack_trace_keeps_it_and_sites_stay_right() {
    let s = Scratch::new("prepare-stack");
    let trace = recorded(&s, "prepare-stack.js"); // fails if the app's own formatting broke
    let r = json(&["leaks"], &trace);
    assert_eq!(
        pending_timers(&r),
        vec![("Timeout".to_string(), "fixtures/prepare-stack.js:14:11".to_string())],
        "{r}"
    );
}
