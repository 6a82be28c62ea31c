//! The agent, its rings and the recording session never harm the app: shared memory running
//! out, objects kept alive, processes outliving their session, hardened `Error`, reused pids,
//! file permissions. Tests that need root (private mounts, pid namespaces) say so and pass
//! without running when they cannot.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use support::*;

/// Whether this process may make private mounts and pid namespaces (root with util-linux's
/// `unshare`). Tests that need it print why they did not run.
fn can_unshare(test: &str) -> bool {
    let ok = Command::new("unshare")
        .args(["--mount", "--pid", "--fork", "true"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("{test}: skipped: needs root and `unshare` (util-linux) for a private /dev/shm or pid namespace");
    }
    ok
}

/// Runs `asynctrace record <args>` with a private tmpfs of `size` on `/dev/shm` (filled up
/// entirely when `fill` is set), in a mount namespace of its own.
fn record_with_small_shm(size: &str, fill: bool, args: &[&str]) -> Output {
    let fill_cmd = if fill {
        "dd if=/dev/zero of=/dev/shm/filler bs=64k 2>/dev/null; "
    } else {
        ""
    };
    let script = format!("mount -t tmpfs -o size={size} tmpfs /dev/shm && {fill_cmd}exec \"$@\"");
    Command::new("unshare")
        .args(["--mount", "sh", "-c", &script, "sh"])
        .arg(asynctrace())
        .arg("record")
        .args(args)
        .current_dir(root())
        .output()
        .expect("run unshare")
}

fn threads(info: &Value) -> Vec<&Value> {
    info["processes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["threads"].as_array().unwrap())
        .collect()
}

// See: issue "Trust", item 1 (two busy workers with Docker's 64 MiB /dev/shm died of SIGBUS).
#[test]
fn r1_a_small_dev_shm_shrinks_rings_instead_of_killing_the_app() {
    if !can_unshare("r1_a_small_dev_shm_shrinks_rings_instead_of_killing_the_app") {
        return;
    }
    let scratch = Scratch::new("small-shm");
    let trace = scratch.path("t.bin");
    let (node, fixture) = (node(), fixture("busy-workers.js"));
    // Rings of 32 MiB asked for, 16 MiB of /dev/shm: three threads cannot all have theirs.
    let out = record_with_small_shm(
        "16m",
        false,
        &[
            "--ring-records",
            "1048576",
            "-o",
            trace.to_str().unwrap(),
            "--",
            node.to_str().unwrap(),
            fixture.to_str().unwrap(),
            "2",
            "60000",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the app ran to its end: {err}");
    assert!(
        err.contains("shared memory is short"),
        "the smaller rings are said: {err}"
    );
    let info = info(&trace);
    assert_eq!(threads(&info).len(), 3, "main thread and both workers traced: {info}");
    assert!(total_events(&info) > 0);
}

// See: issue "Trust", item 1 (16 workers one after another filled /dev/shm: finished threads'
// rings were never released).
#[test]
fn r1_finished_workers_give_their_rings_back() {
    if !can_unshare("r1_finished_workers_give_their_rings_back") {
        return;
    }
    let scratch = Scratch::new("seq-workers");
    let trace = scratch.path("t.bin");
    let (node, fixture) = (node(), fixture("busy-workers.js"));
    // 17 rings of 8 MiB, each filled, would need 136 MiB; 64 MiB holds the ones alive at once.
    let out = record_with_small_shm(
        "64m",
        false,
        &[
            "--ring-records",
            "262144",
            "-o",
            trace.to_str().unwrap(),
            "--",
            node.to_str().unwrap(),
            fixture.to_str().unwrap(),
            "16",
            "60000",
            "sequential",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "the app ran to its end: {err}");
    let info = info(&trace);
    assert_eq!(threads(&info).len(), 17, "every worker traced: {err}");
    assert!(!err.contains("untraced"), "{err}");
    // Finished workers' rings were freed, so every new worker got its full ring.
    assert!(!err.contains("shared memory is short"), "{err}");
}

// See: issue "Trust", item 1 (a full /dev/shm made `record` refuse to start).
#[test]
fn r1_a_full_dev_shm_still_runs_the_app() {
    if !can_unshare("r1_a_full_dev_shm_still_runs_the_app") {
        return;
    }
    let scratch = Scratch::new("full-shm");
    let trace = scratch.path("t.bin");
    let (node, fixture) = (node(), fixture("exit-code.js"));
    let out = record_with_small_shm(
        "1m",
        true,
        &[
            "-o",
            trace.to_str().unwrap(),
            "--",
            node.to_str().unwrap(),
            fixture.to_str().unwrap(),
            "3",
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "the app ran and kept its exit code: {err}");
    assert!(err.lines().filter(|l| l.contains("untraced")).count() <= 1, "{err}");
}

// See: issue "Trust", item 2 (Node's test-async-local-storage-gcable failed under record).
#[test]
fn r2_objects_used_in_async_code_stay_collectable() {
    let scratch = Scratch::new("gcable");
    let trace = scratch.path("t.bin");
    for stacks in ["auto", "on"] {
        let out = Command::new(asynctrace())
            .args(["record", "--stacks", stacks, "-o"])
            .arg(&trace)
            .arg("--")
            .arg(node())
            .arg("--expose-gc")
            .arg(fixture("gcable.js"))
            .current_dir(root())
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "--stacks {stacks}: the object was collected (3: something held it): {}",
            stderr(&out)
        );
    }
}

/// Records a `node -e` script that saves the environment the agent got into `env.json`.
fn recorded_env(scratch: &Scratch) -> Value {
    let trace = scratch.path("t.bin");
    let env_file = scratch.path("env.json");
    let script = format!(
        "require('fs').writeFileSync({:?}, JSON.stringify(process.env))",
        env_file.to_str().unwrap()
    );
    let out = record_node(&trace).arg("-e").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&std::fs::read(&env_file).unwrap()).unwrap()
}

// See: issue "Trust", item 3 (a detached job that inherited NODE_OPTIONS crashed with
// MODULE_NOT_FOUND once its recording had ended).
#[test]
fn r3_a_process_started_after_its_recording_ended_runs_quietly() {
    let scratch = Scratch::new("late-start");
    let env = recorded_env(&scratch);
    let mut cmd = Command::new(node());
    cmd.arg("-e").arg("process.stdout.write('ran')");
    for k in [
        "NODE_OPTIONS",
        "ASYNCTRACE_SESSION",
        "ASYNCTRACE_ADDON",
        "ASYNCTRACE_RING_RECORDS",
    ] {
        cmd.env(k, env[k].as_str().unwrap());
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "node started: {}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran");
    assert_eq!(stderr(&out), "", "nothing to say: the session is simply over");
}

// See: issue "Trust", item 3 (a second recorder in another pid namespace swept the first one's
// live session: the pid in its name meant nothing there).
#[test]
fn r3_a_sweep_leaves_a_session_whose_recorder_holds_its_lock() {
    // A pid that is not running here, as a recorder in another namespace looks from here.
    let pid = {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    };
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    let live = base.join(format!("asynctrace-{pid}-c0ffee"));
    std::fs::create_dir_all(&live).unwrap();
    // util-linux's flock(1) holds the lock as that recorder would.
    let mut holder = match Command::new("flock").arg(&live).args(["sleep", "60"]).spawn() {
        Ok(h) => h,
        Err(_) => {
            eprintln!("r3_a_sweep_leaves_a_session_whose_recorder_holds_its_lock: skipped: needs flock(1)");
            let _ = std::fs::remove_dir_all(&live);
            return;
        }
    };
    // Wait until flock(1) holds the lock (a non-blocking try then fails), however slow it starts.
    for _ in 0..600 {
        let free = Command::new("flock").args(["-n"]).arg(&live).arg("true").status();
        if free.is_ok_and(|s| !s.success()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let scratch = Scratch::new("sweep-live");
    let out = record(&scratch.path("t.bin"), &[], "exit-code.js", &["0"]);
    let kept = live.exists();
    let _ = holder.kill();
    let _ = holder.wait();
    let _ = std::fs::remove_dir_all(&live);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(kept, "{} is locked by a live recorder and must stay", live.display());
}

// A session made by an earlier asynctrace holds its preload and no lock: while its recorder
// runs, removing it would make every node process it starts fail with MODULE_NOT_FOUND.
#[test]
fn r3_a_sweep_leaves_an_older_recorders_live_session() {
    let base = if Path::new("/dev/shm").is_dir() {
        "/dev/shm".into()
    } else {
        std::env::temp_dir()
    };
    // This test process stands for the older recorder: its pid is alive.
    let old = base.join(format!("asynctrace-{}-beef", std::process::id()));
    std::fs::create_dir_all(&old).unwrap();
    std::fs::write(old.join("agent.js"), "'use strict';\n").unwrap();
    let scratch = Scratch::new("sweep-old");
    let out = record(&scratch.path("t.bin"), &[], "exit-code.js", &["0"]);
    let kept = old.join("agent.js").exists();
    let _ = std::fs::remove_dir_all(&old);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(kept, "{} belongs to a running recorder and must stay", old.display());
}

// See: issue "Trust", item 5 (a hardened Error lost every init event, and "dropped 0").
#[test]
fn r5_a_hardened_error_loses_stacks_never_events() {
    for (mode, node_options) in [
        ("freeze", None),
        ("throwing-capture", None),
        ("readonly-limit", None),
        ("none", Some("--frozen-intrinsics")),
    ] {
        let scratch = Scratch::new("hardened");
        let trace = scratch.path("t.bin");
        let mut cmd = Command::new(asynctrace());
        cmd.arg("record")
            .arg("-o")
            .arg(&trace)
            .arg("--")
            .arg(node())
            .arg(fixture("hardened-error.js"))
            .arg(mode)
            .current_dir(root());
        if let Some(o) = node_options {
            cmd.env("NODE_OPTIONS", o);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{mode}: {}", stderr(&out));
        let info = info(&trace);
        // The reference hook sees the same events whatever Error looks like. Under
        // --frozen-intrinsics node also prints a warning (a pipe and a tick more), which the
        // reference run without the flag does not: compare the fixture's own types.
        let expected = count_hook("hardened-error.js", &[mode]);
        let got = counts(&info["types"]);
        for (ty, n) in &expected.types {
            assert_eq!(
                got.get(ty),
                Some(n),
                "{mode} {node_options:?}: {ty} inits (asynctrace: {got:?}, reference hook: {:?})",
                expected.types
            );
        }
        assert_eq!(info["dropped"], 0, "{mode}: nothing lost");
    }
}

// See: issue "Trust", item 6 (a pid reused within one recording lost a whole process).
#[test]
fn r6_two_processes_with_the_same_pid_are_both_recorded() {
    if !can_unshare("r6_two_processes_with_the_same_pid_are_both_recorded") {
        return;
    }
    let scratch = Scratch::new("pid-reuse");
    let trace = scratch.path("t.bin");
    // Each `unshare --pid --fork` child is pid 1 of its own namespace: the same pid twice.
    let node = node();
    let fixture = fixture("timers.js");
    let one = format!("unshare --pid --fork {} {}", node.display(), fixture.display());
    let out = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .args(["--", "sh", "-c", &format!("{one} && {one}")])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    let once = count_hook("timers.js", &[]);
    assert_eq!(
        info["types"]["Timeout"].as_u64(),
        Some(2 * once.types["Timeout"]),
        "both runs' timers are in the trace: {info}"
    );
    assert_eq!(threads(&info).len(), 2, "two writers: {info}");
}

// See: issue "Trust", item 9 (--staged with a ring under 1,024 records recorded nothing).
#[test]
fn r9_staged_with_a_small_ring_still_records() {
    let scratch = Scratch::new("staged-small");
    let trace = scratch.path("t.bin");
    // Immediates only: every hook count is exact (no GC-dependent promise destroys).
    let args = ["3000", "immediates"];
    let out = record(&trace, &["--staged", "--ring-records", "256"], "many-events.js", &args);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = info(&trace);
    let expected = count_hook("many-events.js", &args);
    let seen: u64 = expected.events.values().sum();
    let recorded = total_events(&info);
    let dropped = info["dropped"].as_u64().unwrap();
    // How many overflow depends on how fast the reader keeps up; none may vanish. A batch
    // larger than the ring could never go in: only a last partial batch was ever recorded, so
    // the first batch (with the process's metadata) was always lost. Into an empty ring the
    // first batch always fits, however slow the reader.
    let argv = &info["processes"][0]["argv"];
    assert!(
        argv.as_array().is_some_and(|a| !a.is_empty()),
        "the first batch, with the process's argv, was recorded: {info}"
    );
    assert!(recorded > 0, "recorded {recorded} of {seen}, {dropped} dropped");
    assert_eq!(recorded + dropped, seen, "every event recorded or counted");
}

// See: issue "Trust", item 16 (another local user read an argv password from a live ring).
#[test]
fn r16_session_rings_and_preload_are_private() {
    let scratch = Scratch::new("private");
    let trace = scratch.path("t.bin");
    let modes = scratch.path("modes.json");
    // Lists the modes of what the agent uses, from inside the recorded app, while it runs.
    let script = format!(
        r#"const fs = require('fs'), path = require('path');
const s = process.env.ASYNCTRACE_SESSION;
const pre = /--require "([^"]+)"/.exec(process.env.NODE_OPTIONS)[1];
const mode = (p) => fs.statSync(p).mode & 0o777;
fs.writeFileSync({out:?}, JSON.stringify({{
  session: mode(s),
  rings: fs.readdirSync(s).filter((n) => n.endsWith('.ring')).map((n) => mode(path.join(s, n))),
  preload: mode(pre),
  preloadDir: mode(path.dirname(pre)),
}}));"#,
        out = modes.to_str().unwrap()
    );
    let out = record_node(&trace).arg("-e").arg(&script).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let m: Value = serde_json::from_slice(&std::fs::read(&modes).unwrap()).unwrap();
    assert_eq!(m["session"], 0o700, "{m}");
    assert_eq!(m["preload"], 0o600, "{m}");
    assert_eq!(m["preloadDir"], 0o700, "{m}");
    let rings = m["rings"].as_array().unwrap();
    assert!(!rings.is_empty(), "{m}");
    assert!(rings.iter().all(|r| r == 0o600), "{m}");
}

// See: issue "Trust", item 8 (a terminated worker read "exited 0"; Node's loader hooks thread
// in a child process read "vanished", with a warning line).
#[test]
fn r8_threads_say_whether_they_were_terminated_or_ended() {
    let scratch = Scratch::new("terminate");
    let trace = scratch.path("t.bin");
    let out = record(&trace, &[], "terminate.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = info(&trace);
    let workers: Vec<_> = threads(&summary).into_iter().filter(|t| t["thread"] != 0).collect();
    assert_eq!(workers.len(), 1, "{summary}");
    assert_eq!(workers[0]["exit"], "terminated", "{summary}");

    let trace = scratch.path("loader.bin");
    let out = record(&trace, &[], "loader-hooks/parent.js", &[]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("without running its exit handler"), "{err}");
    let info = info(&trace);
    let all = threads(&info);
    assert_eq!(all.len(), 3, "parent, child, and the child's hooks thread: {info}");
    for t in all {
        assert_eq!(t["exit"], serde_json::json!({"code": 0}), "{info}");
    }
}

// See: issue "Trust", item 4 (`--permission` with a scoped `--allow-fs-read` stopped the app:
// ERR_ACCESS_DENIED on the preload).
#[test]
fn r4_the_permission_model_runs_the_app_traced_if_allowed_else_untraced() {
    let version = Command::new(node()).arg("--version").output().unwrap();
    let major: u32 = String::from_utf8_lossy(&version.stdout)
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .expect("node --version");
    let flag = if major < 22 {
        "--experimental-permission"
    } else {
        "--permission"
    };
    let allow = format!("--allow-fs-read={}", root().join("fixtures").display());
    let scratch = Scratch::new("permission");
    for extra in [None, Some("--allow-addons")] {
        let trace = scratch.path("t.bin");
        let out = record_node(&trace)
            .arg(flag)
            .arg(&allow)
            .args(extra)
            .arg(fixture("exit-code.js"))
            .arg("3")
            .current_dir(root())
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(3), "{extra:?}: the app ran: {err}");
        let untraced = err.lines().filter(|l| l.contains("the app runs untraced")).count();
        let events = total_events(&info(&trace));
        if extra.is_none() {
            assert_eq!(untraced, 1, "addons are not allowed: one line says so: {err}");
            assert!(err.contains("--allow-addons"), "{err}");
        } else {
            assert_eq!(untraced, 0, "{err}");
            assert!(events > 0, "allowed: traced: {err}");
        }
    }
}
