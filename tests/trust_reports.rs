//! Reports that always finish and never invent: every report on traces of shapes that once
//! hung a report or made it lie, recorded from real `node` runs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::*;

/// Every report command, as its arguments before the trace.
const REPORTS: &[&[&str]] = &[
    &["info"],
    &["tree"],
    &["tree", "--exec"],
    &["leaks"],
    &["leaks", "--all", "--format", "json"],
    &["slow", "--threshold-ms", "0"],
    &["requests"],
    &["flame", "--folded"],
    &["flame", "--folded", "--weight", "async"],
    &["flame", "--folded", "--flamechart"],
    &["export", "--format", "folded"],
    &["export", "--format", "speedscope"],
    &["export", "--format", "chrome"],
];

/// Runs `asynctrace <args> <trace>`, killing it if it has not ended after two minutes: a hang
/// guard so that a report that spins fails the test instead of blocking the run (it is not a
/// speed check: the reports here take milliseconds).
fn run_guarded(args: &[&str], trace: &Path) -> Output {
    let mut child = Command::new(asynctrace())
        .args(args)
        .arg(trace)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    // Why a reader thread: a report that writes more than a pipe holds would block otherwise.
    let mut stdout = child.stdout.take().unwrap();
    let out_thread = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).ok();
        v
    });
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("`asynctrace {}` did not finish on {}", args.join(" "), trace.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut out = child.wait_with_output().unwrap();
    out.stdout = out_thread.join().unwrap();
    out
}

/// Every report finishes with success on `trace`.
fn every_report_finishes(trace: &Path) {
    for args in REPORTS {
        let out = run_guarded(args, trace);
        assert!(
            out.status.success(),
            "`asynctrace {}` failed: {}",
            args.join(" "),
            stderr(&out)
        );
    }
}

fn record_cmd(scratch: &Scratch, node_args: &[&str]) -> PathBuf {
    let trace = scratch.path("t.bin");
    let out = record_node(&trace)
        .args(node_args)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "record {node_args:?}: {}", stderr(&out));
    trace
}

// See: "leaks never finishes" on the trace of any `node --test` run: the test runner's own
// stream had no site when the child's first site resized the per-stream clocks.
#[test]
fn r10_leaks_finishes_on_a_node_test_run() {
    let s = Scratch::new("r10-node-test");
    let trace = record_cmd(&s, &["--test", "fixtures/node-test/sample.test.js"]);
    assert!(
        info(&trace)["processes"].as_array().unwrap().len() >= 2,
        "the runner and its child"
    );
    let out = run_guarded(&["leaks", "--fail"], &trace);
    assert!(out.status.code().is_some(), "{}", stderr(&out));
    every_report_finishes(&trace);
}

// See: "leaks never finishes" on a parent with two forked children (the second child's sites
// seen before the first child's).
#[test]
fn r10_leaks_finishes_on_a_parent_with_two_forked_children() {
    let s = Scratch::new("r10-fork-two");
    let trace = record_cmd(&s, &["fixtures/fork-two.js"]);
    assert_eq!(info(&trace)["processes"].as_array().unwrap().len(), 3);
    let out = run_guarded(&["leaks", "--format", "json"], &trace);
    assert!(out.status.success(), "{}", stderr(&out));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["leaks"].as_array().unwrap().is_empty(), "no leaks: {r}");
    every_report_finishes(&trace);
}

// See: flame, flame --folded and export --format folded|speedscope needed memory in the square of
// the trigger-chain length on a queue consumer (2.7 GB for 1 s). An await loop is now a handful
// of stacks, each a few frames long, whatever the run's length.
#[test]
fn r11_a_queue_consumer_folds_into_a_few_short_stacks() {
    let s = Scratch::new("r11-queue");
    // CPU samples off: their leaves lengthen sync stacks by the sampled JS stack; this test is
    // about the async chains.
    let trace = s.path("t.bin");
    let out = Command::new(asynctrace())
        .args(["record", "--cpu", "off", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(node())
        .args(["fixtures/queue-consumer.js", "5000"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let inits: u64 = info(&trace)["events"]["init"].as_u64().unwrap();
    assert!(inits > 5_000, "a long chain: {inits} inits");
    for weight in ["sync", "async", "count"] {
        let out = run_guarded(&["flame", "--folded", "--weight", weight], &trace);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            !lines.is_empty() && lines.len() <= 50,
            "{weight}: {} stacks",
            lines.len()
        );
        for l in &lines {
            assert!(l.split(';').count() <= 12, "{weight}: a long stack: {l}");
        }
        if weight == "count" {
            let total: u64 = lines
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum();
            assert_eq!(total, inits, "every resource counted once");
        }
    }
    every_report_finishes(&trace);
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

// See: `slow` on a trace with heavy drops printed "653675.7 ms blocked" in a 1 s run. Callbacks
// whose `after` was dropped are counted as having no recorded end, never timed to the end of the
// run; no report adds up more callback time than the run lasted.
#[test]
fn r7_heavy_drops_invent_no_blocking_time() {
    let s = Scratch::new("r7-drops");
    let trace = s.path("t.bin");
    let out = record(&trace, &["--ring-records", "256"], "many-events.js", &["50000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    assert!(info["dropped"].as_u64().unwrap() > 0, "the tiny ring dropped events");
    let duration_ms = info["duration_ms"].as_f64().unwrap();
    let slow = json_of(&run_guarded(
        &["slow", "--threshold-ms", "0", "--format", "json"],
        &trace,
    ));
    let blocked = slow["blocked_ms"].as_f64().unwrap();
    assert!(blocked <= duration_ms, "{blocked} ms blocked in a {duration_ms} ms run");
    assert!(slow["unended"].as_u64().unwrap() > 0, "{slow}");
    let text = run_guarded(&["slow"], &trace);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("with no recorded end (events dropped)"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // The flame graph's sync weight, in µs, is callback time too.
    let folded = run_guarded(&["flame", "--folded"], &trace);
    let total_us: u64 = String::from_utf8(folded.stdout)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(
        (total_us as f64) / 1e3 <= duration_ms,
        "{total_us} µs of callbacks in {duration_ms} ms"
    );
}

// See: `export --format chrome` wrote 929 MB for 5 s of a server without a word. A large export
// says its size and how to export less; the time window now applies to the chrome format.
#[test]
fn r17c_a_large_chrome_export_says_its_size_and_how_to_narrow_it() {
    let s = Scratch::new("r17c");
    let trace = s.path("t.bin");
    let out = record(&trace, &[], "timers.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let export = |env_mb: Option<&str>, extra: &[&str]| {
        let json = s.path("out.json");
        let mut cmd = Command::new(asynctrace());
        cmd.args(["export", "--format", "chrome", "-o"])
            .arg(&json)
            .args(extra)
            .arg(&trace);
        match env_mb {
            Some(mb) => cmd.env("ASYNCTRACE_EXPORT_LARGE_MB", mb),
            None => cmd.env_remove("ASYNCTRACE_EXPORT_LARGE_MB"),
        };
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        (stderr(&out), v)
    };
    let (quiet, all) = export(None, &[]);
    assert!(!quiet.contains("MB of Chrome trace events"), "small: no line: {quiet}");
    let (loud, _) = export(Some("0.001"), &[]);
    let line = loud
        .lines()
        .find(|l| l.contains("MB of Chrome trace events"))
        .unwrap_or_else(|| panic!("{loud}"));
    assert!(
        line.contains("--from-ms/--to-ms") && line.contains("--pid") && line.contains("--thread"),
        "{line}"
    );
    // A window (the middle third of the callbacks' span) keeps the callbacks that overlap it,
    // and fewer events.
    let events = |v: &serde_json::Value| v["traceEvents"].as_array().unwrap().clone();
    let ts: Vec<f64> = events(&all)
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["ts"].as_f64().unwrap())
        .collect();
    let (lo, hi) = ts.iter().fold((f64::MAX, 0.0f64), |(a, b), &t| (a.min(t), b.max(t)));
    let (from_us, to_us) = ((lo + (hi - lo) / 3.0).floor(), (lo + 2.0 * (hi - lo) / 3.0).ceil());
    let (from, to) = (format!("{}", from_us / 1e3), format!("{}", to_us / 1e3));
    let (_, part) = export(None, &["--from-ms", &from, "--to-ms", &to]);
    let xs: Vec<serde_json::Value> = events(&part).into_iter().filter(|e| e["ph"] == "X").collect();
    assert!(!xs.is_empty());
    for x in &xs {
        let (ts, dur) = (x["ts"].as_f64().unwrap(), x["dur"].as_f64().unwrap());
        assert!(ts < to_us && ts + dur >= from_us, "outside [{from_us}, {to_us}): {x}");
    }
    assert!(events(&part).len() < events(&all).len());
    let (b, e) = (
        events(&part).iter().filter(|x| x["ph"] == "b").count(),
        events(&part).iter().filter(|x| x["ph"] == "e").count(),
    );
    assert_eq!(b, e, "every async slice begun is ended");
}

// See: "malformed records" was the wording for an app's own invalid async ids. Inits the app gave
// a trigger of -1 are counted as invalid ids from the app, apart from records the agent mangled.
#[test]
fn r17b_invalid_ids_from_the_app_are_not_called_malformed() {
    let s = Scratch::new("r17b");
    let trace = s.path("t.bin");
    let out = record(&trace, &[], "invalid-ids.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    assert_eq!(info["malformed"], 0, "{info}");
    assert_eq!(info["invalid_ids"], 5, "{info}");
    assert_eq!(info["processes"][0]["threads"][0]["invalid_ids"], 5, "{info}");
    for report in ["tree", "leaks", "slow", "requests"] {
        let out = run_guarded(&[report], &trace);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("warning: 5 events with invalid async ids from the app"),
            "{report}: {text}"
        );
        assert!(!text.contains("malformed"), "{report}: {text}");
    }
}
