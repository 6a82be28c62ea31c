//! `leaks` with Node's semantics of alive, on production-like services under load: the
//! agent's snapshot at exit or at a stopping signal says what was really open, ref'd or not.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn leaks_json(trace: &std::path::Path) -> Value {
    let out = Command::new(asynctrace())
        .args(["leaks", "--format", "json"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "leaks failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn leaks_fail_status(trace: &std::path::Path) -> (i32, String) {
    let out = Command::new(asynctrace())
        .args(["leaks", "--fail"])
        .arg(trace)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The groups of one class, in report order.
fn class<'a>(report: &'a Value, name: &str) -> Vec<&'a Value> {
    report["leaks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["class"] == name)
        .collect()
}

fn site_ends(g: &Value, tail: &str) -> bool {
    g["site"].as_str().is_some_and(|s| s.ends_with(tail))
}

#[test]
fn a_server_closed_cleanly_before_process_exit_has_no_leaks() {
    let scratch = Scratch::new("clean-close");
    let trace = scratch.path("t.bin");
    let out = record_node(&trace)
        .arg(fixture("clean-stop/server.js"))
        .args(["close", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text) = leaks_fail_status(&trace);
    assert_eq!(code, 0, "leaks --fail on a cleanly closed server:\n{text}");
    let r = leaks_json(&trace);
    // The sockets' destroy was still queued at process.exit: the snapshot says they closed.
    assert!(r["closed_at_exit"].as_u64().unwrap() > 0, "{r}");
    assert!(r["ends"][0]["how"] == "exit", "{r}");
}

#[test]
fn a_server_stopped_by_its_sigterm_handler_has_no_leaks() {
    let scratch = Scratch::new("sigterm");
    let trace = scratch.path("t.bin");
    let out = record_node(&trace)
        .arg(fixture("clean-stop/server.js"))
        .args(["sigterm", "2000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (code, text) = leaks_fail_status(&trace);
    assert_eq!(
        code, 0,
        "leaks --fail on a server stopped by its SIGTERM handler:\n{text}"
    );
}

#[test]
fn a_hung_batch_job_stopped_by_sigterm_is_held_open_by_its_refd_interval() {
    let scratch = Scratch::new("batch-job");
    let trace = scratch.path("t.bin");
    let mut child = record_node(&trace)
        .arg(fixture("batch-job/job.js"))
        .arg("3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the job to finish its items (it then hangs), then stop `record` as a person
    // or a supervisor would: it forwards the signal to the app.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 64];
        let mut seen = Vec::new();
        while let Ok(n) = std::io::Read::read(&mut stdout, &mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&seen).contains("done") {
                return true;
            }
        }
        false
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reader.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(reader.join().unwrap(), "the job never finished its items");
    std::thread::sleep(Duration::from_millis(300));
    rustix_kill(child.id(), "TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "record exits with the app's status");

    let r = leaks_json(&trace);
    let timers = class(&r, "pending-timer");
    assert_eq!(timers.len(), 2, "{r:#}");
    assert!(
        site_ends(timers[0], "batch-job/lib/queue.js:10:3"),
        "the ref'd poller first: {r:#}"
    );
    assert_eq!(timers[0]["refd"], 1);
    assert_eq!(timers[0]["period_ms"], 200);
    assert_eq!(timers[0]["count"], 1);
    assert!(site_ends(timers[1], "batch-job/lib/metrics.js:6:3"), "{r:#}");
    assert_eq!(timers[1]["refd"], 0);
    let alive = r["alive_at_end"].as_array().unwrap();
    assert!(
        site_ends(&alive[0], "batch-job/lib/queue.js:10:3") && alive[0]["refd"] == true,
        "{r:#}"
    );
    assert_eq!(alive[0]["at"], "SIGTERM");
    assert!(
        alive
            .iter()
            .filter(|a| a["refd"] == true && a["node_internal"] == false)
            .count()
            == 1,
        "{r:#}"
    );
    // The run's end is when the signal ended it: ages reach it.
    let end = &r["ends"][0];
    assert_eq!(end["how"], "signal", "{r:#}");
    assert_eq!(end["code"], 15);
    let info = info(&trace);
    let held = &info["processes"][0]["threads"][0]["held_open"];
    assert_eq!(held["at"], "SIGTERM", "{info:#}");
    assert_eq!(held["refd"], 1);
    assert_eq!(held["example"], "a timer every 200 ms");
}

fn rustix_kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

/// What the service says it leaked.
fn service_counts(out: &std::process::Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().expect("the service's counts")).unwrap()
}

#[test]
fn a_leaky_service_under_load_names_each_leak_once_at_its_line() {
    let scratch = Scratch::new("leaky-service");
    let trace = scratch.path("t.bin");
    let out = record_node(&trace)
        .arg(fixture("leaky-service/server.js"))
        .arg("4000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let want = service_counts(&out);
    assert_eq!(want["served"], 4000);
    let r = leaks_json(&trace);

    // Default options: the per-type stack budget is spent long before the run ends, yet the
    // per-connection interval is one group at its line with its true count.
    let timers = class(&r, "pending-timer");
    assert!(site_ends(timers[0], "leaky-service/lib/heartbeat.js:8:17"), "{r:#}");
    assert_eq!(timers[0]["count"], want["connections"], "{:#}", timers[0]);
    assert_eq!(timers[0]["refd"], 0, "the heartbeat is unref'd");
    assert_eq!(timers[0]["period_ms"], 1000);
    assert!(
        !timers.iter().skip(1).any(|g| g["count"].as_u64().unwrap() > 1),
        "no second group of the same leak: {r:#}"
    );

    // The client socket per POST: first open handle, every one of them, with endpoints.
    let handles = class(&r, "open-handle");
    assert!(site_ends(handles[0], "leaky-service/lib/audit.js:7:22"), "{r:#}");
    // Exact in most runs; under heavy load on Node 24 one run in four reported one socket
    // fewer than the app counts as open (its peer still open): not yet explained, so one is
    // allowed and the whole report printed when more are missing.
    let (got, open) = (
        handles[0]["count"].as_u64().unwrap(),
        want["audits_open"].as_u64().unwrap(),
    );
    assert!(got <= open && got + 1 >= open, "{got} of {open} audit sockets: {r:#}");
    assert!(
        handles[0]["endpoint"].as_str().unwrap().contains(" -> 127.0.0.1:"),
        "{:#}",
        handles[0]
    );

    // The few requests stuck on a connection that never gets ready: most of their promises
    // got no stack (the budget went on the thousands before them), yet the wait is the first
    // never-settled group, at the pool's line, with all of them: per stuck request the
    // awaited promise and the one V8 makes for the `await` itself (same line and column).
    let promises = class(&r, "never-settled-promise");
    assert!(site_ends(promises[0], "leaky-service/lib/pool.js:23:9"), "{r:#}");
    let stuck = want["stuck"].as_u64().unwrap();
    assert!(stuck > 0);
    assert_eq!(promises[0]["count"].as_u64(), Some(2 * stuck), "{:#}", promises[0]);
    assert!(
        promises.iter().all(|g| !g["site"].is_null()),
        "every never-settled promise names its site: {r:#}"
    );

    // And `requests` says where each of them was waiting when its client gave up.
    let out = Command::new(asynctrace())
        .args(["requests", "--format", "json", "--limit", "0"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let q: Value = serde_json::from_slice(&out.stdout).unwrap();
    let aborted: Vec<&Value> = q["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "aborted")
        .collect();
    assert_eq!(aborted.len() as u64, want["hung"].as_u64().unwrap(), "{q:#}");
    for r in aborted {
        assert!(site_ends(&r["waiting"], "leaky-service/lib/pool.js:23:9"), "{r:#}");
    }

    // Node's own timers (Date header cache, connection check) are not the app's leaks.
    assert!(
        !timers.iter().any(|g| g["period_ms"] == 30000),
        "the connection-check interval is not a leak: {r:#}"
    );

    // The listener leak: Node's warning, with the app's line.
    let w = r["warnings"].as_array().unwrap();
    assert!(
        w.iter().any(|w| w["warning"]
            .as_str()
            .unwrap()
            .starts_with("MaxListenersExceededWarning")
            && site_ends(w, "leaky-service/lib/bus.js:7:7")),
        "{r:#}"
    );
    let info = info(&trace);
    assert!(info["warnings"][0]["warning"]
        .as_str()
        .unwrap()
        .starts_with("MaxListenersExceededWarning"));
}

#[test]
fn with_every_stack_the_never_settled_wait_is_one_group_at_its_line() {
    let scratch = Scratch::new("leaky-service-on");
    let trace = scratch.path("t.bin");
    let out = Command::new(asynctrace())
        .args(["record", "--stacks", "on", "-o"])
        .arg(&trace)
        .arg("--")
        .arg(node())
        .arg(fixture("leaky-service/server.js"))
        .arg("2000")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let want = service_counts(&out);
    let r = leaks_json(&trace);
    let promises = class(&r, "never-settled-promise");
    let wait = promises
        .iter()
        .find(|g| site_ends(g, "leaky-service/lib/pool.js:23:9"))
        .unwrap_or_else(|| panic!("the pool's wait: {r:#}"));
    // Per stuck request: the awaited promise, and the one V8 makes for the `await` itself
    // while promise hooks are on (same line and column).
    let (n, stuck) = (wait["count"].as_u64().unwrap(), want["stuck"].as_u64().unwrap());
    assert!(
        stuck > 0 && n % stuck == 0 && n / stuck <= 2,
        "{n} promises for {stuck} stuck requests: {wait:#}"
    );
}
