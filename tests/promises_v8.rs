//! `record --promises v8` (promises through V8's promise hooks, async_hooks without promise
//! tracking) on real node runs: the same records as the reference hook counts, and the same
//! reports as `--promises async-hooks`, except what the mode gives up (a promise's
//! collection). The tests that need the mode skip, saying so, on a Node without async_hooks'
//! `trackPromises` (before 24.21, 25.9).

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use support::*;

/// Whether the node under test can leave promises out of async_hooks: the agent's own probe.
fn node_supports_v8_mode() -> bool {
    let probe = "const ah = require('async_hooks'); let saw = false; \
        const h = ah.createHook({ init(i, t) { if (t === 'PROMISE') saw = true; }, trackPromises: false }); \
        h.enable(); Promise.resolve(); h.disable(); process.stdout.write(saw ? 'no' : 'yes');";
    let out = Command::new(node()).args(["-e", probe]).output().expect("run node");
    String::from_utf8_lossy(&out.stdout) == "yes"
}

fn skip_without_v8_mode(test: &str) -> bool {
    if node_supports_v8_mode() {
        return false;
    }
    let v = Command::new(node()).arg("--version").output().unwrap();
    eprintln!(
        "{test}: skipped: node {} has no async_hooks trackPromises (Node 24.21, 25.9, 26 have it)",
        String::from_utf8_lossy(&v.stdout).trim()
    );
    true
}

fn modes_of(info: &Value) -> BTreeSet<String> {
    info["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["threads"].as_array().unwrap().iter())
        .map(|t| t["promises"].as_str().unwrap().to_owned())
        .collect()
}

/// Records `fixture_name` with `--promises v8` and checks every count against the reference
/// hook (which tracks promises): inits per type, befores, afters and promiseResolves.
fn assert_v8_counts_match(fixture_name: &str) {
    let scratch = Scratch::new(fixture_name.trim_end_matches(".js"));
    let trace = scratch.path("trace.bin");
    let out = record(&trace, &["--promises", "v8"], fixture_name, &[]);
    assert!(out.status.success(), "record {fixture_name} failed: {}", stderr(&out));
    let info = info(&trace);
    assert_eq!(
        modes_of(&info),
        BTreeSet::from(["v8".to_owned()]),
        "{fixture_name}: every thread"
    );
    let expected = count_hook(fixture_name, &[]);
    assert_eq!(
        counts(&info["types"]),
        expected.types,
        "{fixture_name}: init count per type (left: asynctrace --promises v8, right: reference hook)"
    );
    for hook in ["init", "before", "after", "promiseResolve"] {
        assert_eq!(
            info["events"][hook].as_u64(),
            expected.events.get(hook).copied(),
            "{fixture_name}: {hook} events"
        );
    }
    assert_eq!(info["dropped"], 0, "{fixture_name}: no drops");
}

#[test]
fn v8_mode_counts_equal_the_reference_hook() {
    if skip_without_v8_mode("v8_mode_counts_equal_the_reference_hook") {
        return;
    }
    for f in [
        "promises.js",
        "timers.js",
        "sockets.js",
        "http.js",
        "fs.js",
        "worker.js",
    ] {
        assert_v8_counts_match(f);
    }
}

#[test]
fn auto_is_the_default_it_uses_v8_where_node_supports_it_and_either_mode_can_be_asked_for() {
    let scratch = Scratch::new("promise-modes");
    let run = |extra: &[&str]| {
        let trace = scratch.path("t.bin");
        let out = record(&trace, extra, "promises.js", &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        (modes_of(&info(&trace)), stderr(&out))
    };
    let one = |m: &str| BTreeSet::from([m.to_owned()]);
    assert_eq!(run(&["--promises", "async-hooks"]).0, one("async-hooks"));
    if node_supports_v8_mode() {
        assert_eq!(run(&[]).0, one("v8"), "the default (auto)");
        assert_eq!(run(&["--promises", "auto"]).0, one("v8"), "auto");
        assert_eq!(run(&["--promises", "v8"]).0, one("v8"));
    } else {
        let (modes, err) = run(&[]);
        assert_eq!(
            modes,
            one("async-hooks"),
            "the default (auto) on a Node without trackPromises"
        );
        assert!(!err.contains("trackPromises"), "auto falls back quietly: {err}");
        let (modes, err) = run(&["--promises", "v8"]);
        assert_eq!(modes, one("async-hooks"), "falls back");
        assert!(
            err.contains("--promises v8 needs async_hooks' trackPromises"),
            "says why: {err}"
        );
    }
}

/// The ring's size in bytes, as the recorded app saw it in its session.
fn ring_bytes(extra: &[&str]) -> u64 {
    let scratch = Scratch::new("ring-size");
    let trace = scratch.path("t.bin");
    let out = record(&trace, extra, "ring-size.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line: Value = serde_json::from_slice(&out.stdout).expect("the fixture's line");
    let sizes = line["ringBytes"].as_array().expect("ringBytes");
    assert_eq!(sizes.len(), 1, "one ring for the main thread: {line}");
    sizes[0].as_u64().unwrap()
}

#[test]
fn a_thread_following_promises_through_v8_takes_the_bigger_ring_unless_one_is_asked_for() {
    let records = |bytes: u64| bytes / 32;
    // The header is a few records' worth at most.
    let near = |bytes: u64, want: u64| (want..want + 1024).contains(&records(bytes));
    let hooks = ring_bytes(&["--promises", "async-hooks"]);
    assert!(near(hooks, 1 << 18), "async-hooks mode: {hooks} bytes");
    let default = ring_bytes(&[]);
    let want = if node_supports_v8_mode() { 1 << 20 } else { 1 << 18 };
    assert!(near(default, want), "default: {default} bytes, want {want} records");
    let asked = ring_bytes(&["--ring-records", "4096"]);
    assert!(near(asked, 4096), "asked for 4096: {asked} bytes");
}

fn report(cmd: &str, trace: &Path) -> Value {
    let mut c = Command::new(asynctrace());
    c.arg(cmd).args(["--format", "json"]);
    if cmd == "requests" {
        c.args(["--limit", "0"]);
    }
    let out = c.arg(trace).output().unwrap();
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A tree group without its ids and times, nor what the mode changes (alive: a settled
/// promise's end is not its collection).
fn shape(group: &Value) -> Value {
    let children: Vec<Value> = group["children"].as_array().unwrap().iter().map(shape).collect();
    serde_json::json!({
        "type": group["type"], "site": group["site"], "count": group["count"],
        "callbacks": group["callbacks"], "recursive": group["recursive"], "children": children,
    })
}

fn tree_shape(trace: &Path) -> Vec<Value> {
    let t = report("tree", trace);
    t["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let roots: Vec<Value> = s["roots"].as_array().unwrap().iter().map(shape).collect();
            serde_json::json!({"thread": s["thread"], "resources": s["resources"], "roots": roots})
        })
        .collect()
}

/// Leak classes, types, sites and counts.
fn leak_rows(trace: &Path) -> BTreeSet<String> {
    let l = report("leaks", trace);
    l["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| format!("{} {} {} x{}", r["class"], r["type"], r["site"], r["count"]))
        .collect()
}

fn record_both(scratch: &Scratch, fixture_name: &str, env: &[(&str, &Path)]) -> [std::path::PathBuf; 2] {
    ["async-hooks", "v8"].map(|mode| {
        let trace = scratch.path(&format!("{mode}.bin"));
        let mut cmd = Command::new(asynctrace());
        cmd.args(["record", "--promises", mode, "-o"])
            .arg(&trace)
            .arg("--")
            .arg(node())
            .arg(fixture(fixture_name))
            .current_dir(root());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = output_retrying_a_hung_exit(&mut cmd);
        assert!(
            out.status.success(),
            "{fixture_name} --promises {mode}: {}",
            stderr(&out)
        );
        trace
    })
}

/// Runs `cmd`; a run still going after a minute is killed, with its app, and run once more.
/// Why: Node 24 and 26 can deadlock in their own shutdown after `process.exit` (a concurrent
/// compile job waits for a GC the exiting main thread never runs, nodejs/node#54918). It
/// hung this test in both promise modes, and without a deadline it would hang the suite.
fn output_retrying_a_hung_exit(cmd: &mut Command) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    // Stderr is a few lines; stdout is not read, so it cannot fill a pipe while we poll.
    cmd.process_group(0).stdout(Stdio::null()).stderr(Stdio::piped());
    for attempt in 0..2 {
        let mut child = cmd.spawn().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        let _ = Command::new("kill")
            .args(["-KILL", &format!("-{}", child.id())])
            .status();
        let out = child.wait_with_output().unwrap();
        if attempt == 1 {
            return out;
        }
        eprintln!("the app did not exit within a minute (Node's shutdown deadlock?): running it again");
    }
    unreachable!("the loop returns")
}

#[test]
fn trees_and_leaks_agree_between_the_promise_modes() {
    if skip_without_v8_mode("trees_and_leaks_agree_between_the_promise_modes") {
        return;
    }
    for f in ["promises.js", "fs.js", "http.js", "timers.js", "leaks.js"] {
        let scratch = Scratch::new("modes-agree");
        let [hooks, v8] = record_both(&scratch, f, &[]);
        assert_eq!(
            tree_shape(&hooks),
            tree_shape(&v8),
            "{f}: tree (left: async-hooks, right: v8)"
        );
        assert_eq!(
            leak_rows(&hooks),
            leak_rows(&v8),
            "{f}: leaks (left: async-hooks, right: v8)"
        );
        let v8_leaks = report("leaks", &v8);
        assert_eq!(
            v8_leaks["settled_not_collected"], 0,
            "{f}: settled promises ended at exit"
        );
    }
}

#[test]
fn never_settled_promises_are_found_in_v8_mode() {
    if skip_without_v8_mode("never_settled_promises_are_found_in_v8_mode") {
        return;
    }
    let scratch = Scratch::new("modes-never");
    let [_, v8] = record_both(&scratch, "leaks.js", &[]);
    let rows = leak_rows(&v8);
    assert!(
        rows.iter()
            .any(|r| r.contains("never-settled") && r.contains("\"PROMISE\"")),
        "{rows:?}"
    );
}

/// What a request report says that does not depend on timing: its rows and the unfinished
/// one's wait. (Which resources a request made may: a Date-header timer falls in one request
/// or another.)
fn request_rows(trace: &Path) -> (BTreeSet<String>, Value) {
    let r = report("requests", trace);
    let rows = r["requests"].as_array().unwrap();
    let mut labels: Vec<String> = rows
        .iter()
        .map(|q| format!("{} {} {}", q["label"], q["state"], q["status"]))
        .collect();
    labels.sort();
    let unfinished = rows
        .iter()
        .find(|q| q["state"] == "unfinished")
        .expect("the hung request");
    let waiting = serde_json::json!([unfinished["waiting"]["type"], unfinished["waiting"]["site"]]);
    (labels.into_iter().collect(), waiting)
}

#[test]
fn shop_requests_leaks_and_slow_agree_between_the_promise_modes() {
    if skip_without_v8_mode("shop_requests_leaks_and_slow_agree_between_the_promise_modes") {
        return;
    }
    let scratch = Scratch::new("modes-shop");
    let out = scratch.path("measured.json");
    let [hooks, v8] = record_both(&scratch, "shop/server.js", &[("SHOP_OUT", &out)]);
    let (a, b) = (request_rows(&hooks), request_rows(&v8));
    assert_eq!(a.0, b.0, "request rows");
    assert_eq!(a.1, b.1, "what the hung request waits for");
    assert_eq!(
        a.1[1].as_str().map(|s| s.starts_with("fixtures/shop/lib/cache.js:5:")),
        Some(true),
        "{}",
        a.1
    );
    assert_eq!(
        leak_rows(&hooks),
        leak_rows(&v8),
        "leaks (left: async-hooks, right: v8)"
    );
    // The 40 ms report build blocks the loop whichever the mode (what else does depends on
    // the machine).
    let report_build = |t: &Path| {
        let s = report("slow", t);
        s["callbacks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c["type"], c["site"]))
            .find(|c| c.contains("fixtures/shop/lib/report-builder.js:"))
    };
    assert!(
        report_build(&hooks).is_some(),
        "async-hooks: slow lists the report build"
    );
    assert_eq!(report_build(&hooks), report_build(&v8));
}

#[test]
fn record_counts_the_promise_ends_it_dated_in_its_summary() {
    if skip_without_v8_mode("record_counts_the_promise_ends_it_dated_in_its_summary") {
        return;
    }
    let scratch = Scratch::new("summary-ends");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &["--promises", "v8"], "promises.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    let said: u64 = err
        .split("recorded ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in the summary: {err}"));
    let info = info(&trace);
    let in_trace = total_events(&info);
    assert!(
        info["events"]["destroy"].as_u64().unwrap() > 0,
        "promise ends were dated: {info}"
    );
    assert_eq!(said, in_trace, "the summary counts what the trace holds: {err}");
}
