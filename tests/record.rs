//! `asynctrace record` on real node processes: counts, exit codes, kills, drops.

mod support;

use std::process::Command;

use support::*;

/// Records `fixture` and checks that per-type inits and the before/after totals equal what the
/// reference hook counts in a separate run. Destroy differs only where GC decides (PROMISE).
fn assert_counts_match(fixture_name: &str) {
    let scratch = Scratch::new(fixture_name.trim_end_matches(".js"));
    let trace = scratch.path("trace.bin");
    let out = record(&trace, &[], fixture_name, &[]);
    assert!(out.status.success(), "record {fixture_name} failed: {}", stderr(&out));
    let info = info(&trace);
    let expected = count_hook(fixture_name, &[]);
    let got_types = counts(&info["types"]);
    assert_eq!(
        got_types, expected.types,
        "{fixture_name}: init count per type (left: asynctrace, right: reference hook)"
    );
    for hook in ["init", "before", "after"] {
        assert_eq!(
            info["events"][hook].as_u64(),
            expected.events.get(hook).copied(),
            "{fixture_name}: {hook} events"
        );
    }
    let threads: usize = info["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["threads"].as_array().unwrap().len())
        .sum();
    assert_eq!(threads, expected.threads, "{fixture_name}: number of traced threads");
    assert_eq!(info["dropped"], 0, "{fixture_name}: no drops at the default ring size");
    assert_eq!(info["truncated"], false);
}

#[test]
fn timers_counts_equal_the_reference_hook() {
    assert_counts_match("timers.js");
}

#[test]
fn promises_counts_equal_the_reference_hook() {
    assert_counts_match("promises.js");
}

#[test]
fn sockets_counts_equal_the_reference_hook() {
    assert_counts_match("sockets.js");
}

#[test]
fn http_counts_equal_the_reference_hook() {
    assert_counts_match("http.js");
}

#[test]
fn fs_counts_equal_the_reference_hook() {
    assert_counts_match("fs.js");
}

#[test]
fn worker_thread_is_traced_with_its_own_stream() {
    assert_counts_match("worker.js");
    let scratch = Scratch::new("worker-threads");
    let trace = scratch.path("t.bin");
    assert!(record(&trace, &[], "worker.js", &[]).status.success());
    let info = info(&trace);
    let threads = info["processes"][0]["threads"].as_array().unwrap();
    assert_eq!(threads.len(), 2, "main thread and one worker: {threads:?}");
    assert!(threads.iter().all(|t| t["events"].as_u64().unwrap() > 0));
}

#[test]
fn child_process_is_traced_as_a_second_process() {
    assert_counts_match("child.js");
    let scratch = Scratch::new("child-procs");
    let trace = scratch.path("t.bin");
    assert!(record(&trace, &[], "child.js", &[]).status.success());
    let info = info(&trace);
    let procs = info["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 2, "parent and forked child: {procs:?}");
    for p in procs {
        assert_eq!(p["exit"], serde_json::json!({"code": 0}));
        assert!(p["node"].as_str().unwrap().starts_with('v'));
        assert!(!p["argv"].as_array().unwrap().is_empty());
    }
}

#[test]
fn app_exit_code_passes_through() {
    let scratch = Scratch::new("exit-code");
    for code in [0, 3] {
        let trace = scratch.path(&format!("t{code}.bin"));
        let out = record(&trace, &[], "exit-code.js", &[&code.to_string()]);
        assert_eq!(out.status.code(), Some(code), "{}", stderr(&out));
        let info = info(&trace);
        assert_eq!(info["processes"][0]["exit"], serde_json::json!({ "code": code }));
    }
}

#[test]
fn process_exit_inside_a_callback_leaves_a_complete_trace() {
    let scratch = Scratch::new("exit-in-cb");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &[], "exit-in-callback.js", &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let info = info(&trace);
    assert_eq!(info["truncated"], false);
    assert_eq!(info["processes"][0]["exit"], serde_json::json!({"code": 0}));
    assert!(info["types"]["Timeout"].as_u64().unwrap() >= 1);
}

#[test]
fn sigkilled_app_gives_137_and_a_readable_trace() {
    let scratch = Scratch::new("sigkill");
    let trace = scratch.path("t.bin");
    // Wait until the app has done real work, then kill the app (not asynctrace).
    let child = record_spin(&trace);
    let app = find_child_pid(child.id()).expect("the app's pid");
    Command::new("kill").arg("-KILL").arg(app.to_string()).status().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(137), "{}", String::from_utf8_lossy(&out.stderr));
    let info = info(&trace);
    assert_eq!(info["truncated"], false);
    assert_eq!(info["processes"][0]["exit"], serde_json::json!({"signal": "SIGKILL"}));
    // spin.js printed "ready" after 250 iterations (249 Immediates, 4 promises each).
    assert!(info["types"]["Immediate"].as_u64().unwrap() >= 249, "{info}");
    assert!(info["types"]["PROMISE"].as_u64().unwrap() >= 750, "{info}");
    assert!(info["events"]["before"].as_u64().unwrap() >= 500, "{info}");
}

/// The first child of `parent` (the app that `record` spawned).
fn find_child_pid(parent: u32) -> Option<u32> {
    let children = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

#[test]
fn sigterm_to_record_reaches_the_app_and_the_trace_is_finished() {
    let scratch = Scratch::new("sigterm");
    let trace = scratch.path("t.bin");
    let child = record_spin(&trace);
    support::terminate(child);
    let info = info(&trace);
    assert_eq!(info["truncated"], false);
    assert_eq!(info["processes"][0]["exit"], serde_json::json!({"signal": "SIGTERM"}));
}

#[test]
fn drops_are_exact_with_a_tiny_ring() {
    let scratch = Scratch::new("drops");
    let trace = scratch.path("t.bin");
    // Immediates only: every hook count is exact (no GC-dependent promise destroys).
    let args = ["30000", "immediates"];
    let out = record(&trace, &["--ring-records", "64"], "many-events.js", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    let dropped = info["dropped"].as_u64().unwrap();
    assert!(dropped > 0, "a 64-record ring must overflow on 120k events: {info}");
    let thread = &info["processes"][0]["threads"][0];
    assert_eq!(
        thread["dropped"].as_u64().unwrap(),
        dropped,
        "drops are shown per thread"
    );
    let hooks = ["init", "before", "after", "destroy", "promiseResolve"];
    let recorded: u64 = hooks.iter().map(|k| info["events"][k].as_u64().unwrap()).sum();
    let reference = count_hook("many-events.js", &args);
    let seen: u64 = hooks.iter().map(|k| reference.events[*k]).sum();
    assert_eq!(
        recorded + dropped,
        seen,
        "recorded {recorded} + dropped {dropped} = events the hooks saw"
    );
    assert!(
        stderr(&out).contains(&format!("dropped {dropped}")),
        "record's summary shows the drops: {}",
        stderr(&out)
    );
}

#[test]
fn staged_fallback_records_the_same_counts() {
    let scratch = Scratch::new("staged");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &["--staged"], "timers.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    let expected = count_hook("timers.js", &[]);
    assert_eq!(counts(&info["types"]), expected.types);
    assert_eq!(
        info["events"]["before"].as_u64(),
        expected.events.get("before").copied()
    );
}

#[test]
fn the_app_runs_untraced_when_the_agent_cannot_start() {
    let scratch = Scratch::new("no-addon");
    let trace = scratch.path("t.bin");
    let out = record_node(&trace)
        .arg(fixture("exit-code.js"))
        .arg("5")
        .env("ASYNCTRACE_ADDON", fixture("timers.js")) // a file, but not an addon
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "the app still ran and kept its exit code");
    let err = stderr(&out);
    assert_eq!(
        err.matches("the app runs untraced").count(),
        1,
        "exactly one warning: {err}"
    );
    assert!(out.stdout.is_empty(), "nothing on the app's stdout");
}

#[test]
fn npm_start_traces_the_app_but_not_npm() {
    let scratch = Scratch::new("npm");
    let trace = scratch.path("t.bin");
    let out = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "npm", "start", "--silent"])
        .current_dir(fixture("npm-app"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    let procs = info["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 1, "only the app, not npm: {procs:?}");
    assert!(procs[0]["argv"][1].as_str().unwrap().ends_with("npm-app/app.js"));
    assert_eq!(info["types"]["Timeout"], 4, "three timeouts and one interval");
}

#[test]
fn a_shell_script_that_starts_node_is_traced_and_keeps_its_exit_code() {
    let scratch = Scratch::new("sh");
    let trace = scratch.path("t.bin");
    let script = format!("{} {} 4", node().display(), fixture("exit-code.js").display());
    let out = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    let info = info(&trace);
    assert_eq!(info["processes"].as_array().unwrap().len(), 1);
    assert_eq!(info["types"]["Timeout"], 3);
}

#[test]
fn sessions_left_by_a_killed_recorder_are_swept() {
    // A pid that has just exited stands for a recorder that was SIGKILLed.
    let dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    let mut dead = dead;
    dead.wait().unwrap();
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let stale = base.join(format!("asynctrace-{pid}-deadbeef"));
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("1-0.ring"), b"left behind").unwrap();
    let scratch = Scratch::new("sweep");
    let out = record(&scratch.path("t.bin"), &[], "exit-code.js", &["0"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stale.exists(), "{} should have been removed", stale.display());
}

#[test]
fn an_argv_larger_than_the_staging_batch_loses_only_its_metadata() {
    // 64 KiB of argv makes a metadata string longer than the staged fallback's 32 KiB batch.
    let scratch = Scratch::new("big-argv");
    let trace = scratch.path("t.bin");
    let big = "x".repeat(64 * 1024);
    let out = record(&trace, &["--staged"], "exit-code.js", &["0", &big]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    // (The whole report would print the 64 KiB argv; the thread summary says enough.)
    let thread = &info["processes"][0]["threads"][0];
    assert_eq!(info["malformed"], 0, "{thread}");
    assert_eq!(info["types"]["Timeout"], 3, "{thread}");
}
