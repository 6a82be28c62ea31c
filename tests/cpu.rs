//! CPU samples: `record` samples every thread with V8's profiler, and `slow` says which code
//! ran inside each slow callback, on a keep-alive HTTP service with its CPU work in helper
//! modules (fixtures/cpu-app).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use support::*;

fn slow_json(trace: &Path) -> Value {
    let out = Command::new(asynctrace())
        .args(["slow", "--format", "json", "--limit", "100000", "--threshold-ms", "1"])
        .arg(trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "slow failed: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).expect("slow prints JSON")
}

fn callbacks(slow: &Value) -> Vec<Value> {
    slow["callbacks"].as_array().cloned().unwrap_or_default()
}

fn hottest(c: &Value) -> &str {
    c["cpu"]["hottest"].as_str().unwrap_or("")
}

fn functions(c: &Value) -> Vec<String> {
    c["cpu"]["functions"]
        .as_array()
        .map(|fs| {
            fs.iter()
                .map(|f| {
                    format!(
                        "{} <- {}",
                        f["function"].as_str().unwrap_or(""),
                        f["via"].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One recording of the service, shared by the tests that only read it.
fn app_trace() -> &'static Path {
    static TRACE: OnceLock<(Scratch, PathBuf)> = OnceLock::new();
    let (_, trace) = TRACE.get_or_init(|| {
        let scratch = Scratch::new("cpu-app");
        let trace = scratch.path("t.bin");
        let out = record(&trace, &[], "cpu-app/server.js", &[]);
        assert!(out.status.success(), "record failed: {}", stderr(&out));
        (scratch, trace)
    });
    trace
}

const AUTH: &str = "verifyPassword fixtures/cpu-app/lib/middleware/auth.js:";
const EXPORT: &str = "buildExport fixtures/cpu-app/lib/export.js:10";

#[test]
fn slow_names_the_blocking_line_in_each_helper_module() {
    let slow = slow_json(app_trace());
    let cbs = callbacks(&slow);
    let summary = |c: &Value| format!("{} {} {:?}", c["type"], hottest(c), functions(c));

    // The password check behind `await users.findByName()`: the key derivation's line, in the
    // callback that ran after the await (the promise created in auth.js).
    let auth: Vec<&Value> = cbs.iter().filter(|c| hottest(c).starts_with(AUTH)).collect();
    assert!(
        !auth.is_empty(),
        "no slow callback names {AUTH}: {:#?}",
        cbs.iter().map(summary).collect::<Vec<_>>()
    );
    assert!(
        auth.iter().any(|c| functions(c)
            .iter()
            .any(|f| f.contains("<- verifyPassword fixtures/cpu-app/lib/middleware/auth.js"))),
        "pbkdf2 is not called from verifyPassword: {:#?}",
        auth.iter().map(|c| summary(c)).collect::<Vec<_>>()
    );
    // The JSON export built in the parser's callback (no await in the handler).
    assert!(
        cbs.iter().any(|c| hottest(c).starts_with(EXPORT)),
        "no slow callback names {EXPORT}: {:#?}",
        cbs.iter().map(summary).collect::<Vec<_>>()
    );
    // The worker's handler: a MessagePort the worker made before the agent's hook, listed
    // with its type, under the worker thread, with the blur in it.
    let worker: Vec<&Value> = cbs
        .iter()
        .filter(|c| c["thread"].as_u64() != Some(0) && c["no_init"] == Value::Bool(true))
        .collect();
    assert!(
        !worker.is_empty(),
        "no worker callback: {:#?}",
        cbs.iter().map(summary).collect::<Vec<_>>()
    );
    assert!(
        worker.iter().any(|c| c["type"] == "MessagePort"
            && functions(c)
                .iter()
                .any(|f| f.starts_with("blur fixtures/cpu-app/lib/workers/blur.js:5"))),
        "the worker's blur is not in its callbacks: {:#?}",
        worker.iter().map(|c| summary(c)).collect::<Vec<_>>()
    );
    // Samples and callbacks share one clock: the two kinds of main-thread work hardly show in
    // each other's callbacks. An offset of a few ms between the clocks would mix most of them.
    // One callback in a few may still mix honestly: a sample within a clock tick of a
    // callback's edge lands next door, and on an overloaded machine the thread that refreshes
    // the clock word can be descheduled for milliseconds, so a callback's recorded start runs
    // early into its predecessor's samples.
    let share = |c: &Value, needles: &[&str]| -> f64 {
        c["cpu"]["functions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| needles.iter().any(|n| f.to_string().contains(n)))
            .map(|f| f["percent"].as_f64().unwrap_or(0.0))
            .sum()
    };
    let mut checked = 0;
    let mut mixed = Vec::new();
    for c in &cbs {
        if hottest(c).starts_with(AUTH) {
            checked += 1;
            if share(c, &["buildExport"]) >= 25.0 {
                mixed.push(format!("export in an auth callback: {}", summary(c)));
            }
        }
        if hottest(c).starts_with(EXPORT) {
            checked += 1;
            if share(c, &["pbkdf2", "verifyPassword"]) >= 25.0 {
                mixed.push(format!("auth in an export callback: {}", summary(c)));
            }
        }
    }
    assert!(checked >= 10, "too few callbacks to check the clocks: {checked}");
    assert!(
        mixed.len() * 5 <= checked,
        "{} of {checked} callbacks mix the other kind's samples: {mixed:#?}",
        mixed.len()
    );
}

#[test]
fn cpu_off_records_no_samples_and_sampling_adds_no_resources() {
    let scratch = Scratch::new("cpu-off");
    let on = scratch.path("on.bin");
    let off = scratch.path("off.bin");
    for (trace, extra) in [(&on, &["--cpu-interval", "200"][..]), (&off, &["--cpu", "off"][..])] {
        let out = record(trace, extra, "timers.js", &[]);
        assert!(out.status.success(), "record failed: {}", stderr(&out));
    }
    // The agent's inspector session and signal listeners are not the app's resources.
    let types = |t: &Path| info(t)["types"].clone();
    assert_eq!(types(&on), types(&off), "sampling changed the resources recorded");
    let slow = slow_json(&off);
    assert!(
        callbacks(&slow).iter().all(|c| c.get("cpu").is_none()),
        "samples with --cpu off"
    );
}

/// `record` forwards the signal; the app's last chunk of samples (the only one, as the
/// periodic chunks are put off for the test) must reach the trace.
fn stopped_by(signal: &str) {
    let scratch = Scratch::new("cpu-signal");
    let trace = scratch.path("t.bin");
    let mut child = record_node(&trace)
        .arg(fixture("cpu-app/server.js"))
        .current_dir(root())
        .env("CPU_APP_FOREVER", "1")
        .env("ASYNCTRACE_CPU_FLUSH_MS", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 && !line.contains("ready") {
        line.clear();
    }
    assert!(line.contains("ready"), "the app never got ready");
    // Time for some requests; how many does not matter.
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-s", signal])
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the app was stopped by {signal}, record must say so: {rest}"
    );
    let slow = slow_json(&trace);
    let cbs = callbacks(&slow);
    assert!(
        cbs.iter().any(|c| hottest(c).starts_with(AUTH)),
        "no samples after {signal}: {rest}\n{:#?}",
        cbs.iter().map(|c| hottest(c).to_owned()).collect::<Vec<_>>()
    );
}

#[test]
fn ctrl_c_keeps_the_samples_up_to_the_stop() {
    stopped_by("INT");
}

#[test]
fn sigterm_keeps_the_samples_up_to_the_stop() {
    stopped_by("TERM");
}

#[test]
fn flame_cpu_continues_each_async_path_with_its_sampled_stack() {
    let out = Command::new(asynctrace())
        .args(["flame", "--weight", "cpu", "--folded"])
        .arg(app_trace())
        .output()
        .unwrap();
    assert!(out.status.success(), "flame failed: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let has = |pred: &dyn Fn(&str) -> bool| lines.iter().any(|l| pred(l));
    // The password check: under the promise of the `await` in the middleware, then the JS
    // stack down to verifyPassword.
    assert!(
        has(
            &|l| l.contains(";PROMISE fixtures/cpu-app/lib/middleware/auth.js:13:28;")
                && l.contains(";verifyPassword fixtures/cpu-app/lib/middleware/auth.js:6")
        ),
        "no auth path with verifyPassword:\n{text}"
    );
    // The export: under the incoming request, down to buildExport.
    assert!(
        has(&|l| l.contains(";HTTPINCOMINGMESSAGE;") && l.contains(";buildExport fixtures/cpu-app/lib/export.js:9")),
        "no request path with buildExport:\n{text}"
    );
    // The worker: a root of its own.
    assert!(
        has(&|l| l.starts_with("pid ")
            && l.split(';').next().is_some_and(|root| root.contains(" thread "))
            && l.contains(";blur fixtures/cpu-app/lib/workers/blur.js:5")),
        "no worker root with blur:\n{text}"
    );
    // `--weight sync` gains the same leaves: the export's sync time under buildExport.
    let out = Command::new(asynctrace())
        .args(["flame", "--folded"])
        .arg(app_trace())
        .output()
        .unwrap();
    assert!(out.status.success(), "flame failed: {}", stderr(&out));
    let sync = String::from_utf8(out.stdout).unwrap();
    assert!(
        sync.lines().any(|l| l.contains(";HTTPINCOMINGMESSAGE;") && l.contains(";buildExport fixtures/cpu-app/lib/export.js:9")),
        "no sync leaves:\n{sync}"
    );
    // Weights are whole samples: multiples of the 1 ms default interval, in µs.
    for l in &lines {
        let w: u64 = l.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(w % 1000, 0, "{l}");
    }
}

#[test]
fn requests_split_their_sync_time_by_function() {
    let out = Command::new(asynctrace())
        .args(["requests", "--format", "json", "--limit", "0"])
        .arg(app_trace())
        .output()
        .unwrap();
    assert!(out.status.success(), "requests failed: {}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reqs = report["requests"].as_array().cloned().unwrap_or_default();
    let with_cpu: Vec<&Value> = reqs.iter().filter(|r| r.get("cpu").is_some()).collect();
    assert!(!with_cpu.is_empty(), "no request has CPU samples");
    assert!(
        with_cpu.iter().any(|r| functions(r)
            .iter()
            .any(|f| f.contains("verifyPassword fixtures/cpu-app/lib/middleware/auth.js"))),
        "no request ran verifyPassword: {:#?}",
        with_cpu.iter().map(|r| functions(r)).collect::<Vec<_>>()
    );
}

#[test]
fn exports_carry_the_samples() {
    let scratch = Scratch::new("cpu-export");
    let chrome = scratch.path("t.json");
    let out = Command::new(asynctrace())
        .args(["export", "--format", "chrome", "-o"])
        .arg(&chrome)
        .arg(app_trace())
        .output()
        .unwrap();
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&std::fs::read(&chrome).unwrap()).unwrap();
    let events = doc["traceEvents"].as_array().unwrap();
    // A CPU track per thread with samples, named, beside the thread's callbacks.
    let tracks: Vec<&str> = events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .filter_map(|e| e["args"]["name"].as_str())
        .filter(|n| n.ends_with("CPU samples"))
        .collect();
    assert!(
        tracks.contains(&"main: CPU samples") && tracks.contains(&"worker 1: CPU samples"),
        "{tracks:?}"
    );
    // Its slices nest and run forward in time on their track.
    // In whole nanoseconds: the export prints microseconds with three decimals, and sums of
    // such floats are off by a few ulps, enough to make a slice that starts where its
    // sibling ends look as if it crossed it.
    let ns = |v: &Value| (v.as_f64().unwrap() * 1000.0).round() as i64;
    let mut last: std::collections::HashMap<(u64, u64), i64> = Default::default();
    let mut ends: std::collections::HashMap<(u64, u64), Vec<i64>> = Default::default();
    let mut names = std::collections::BTreeSet::new();
    for e in events.iter().filter(|e| e["cat"] == "cpu") {
        assert_eq!(e["ph"], "X", "{e}");
        let key = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
        let (ts, dur) = (ns(&e["ts"]), ns(&e["dur"]));
        assert!(ts >= *last.get(&key).unwrap_or(&0), "time runs back on {key:?}: {e}");
        last.insert(key, ts);
        // The enclosing slices still open at `ts` must contain this one.
        let open = ends.entry(key).or_default();
        open.retain(|&end| end > ts);
        assert!(
            open.iter().all(|&end| end >= ts + dur),
            "a slice crosses its parent's end: {e}"
        );
        open.push(ts + dur);
        names.insert(e["name"].as_str().unwrap().to_owned());
    }
    for f in [
        "buildExport fixtures/cpu-app/lib/export.js:9",
        "verifyPassword fixtures/cpu-app/lib/middleware/auth.js:6",
        "blur fixtures/cpu-app/lib/workers/blur.js:5",
    ] {
        assert!(names.contains(f), "no {f} slice: {names:?}");
    }

    // speedscope: a sampled profile per thread, the worker's with its blur.
    let ss = scratch.path("t.speedscope.json");
    let out = Command::new(asynctrace())
        .args(["export", "--format", "speedscope", "--weight", "cpu", "-o"])
        .arg(&ss)
        .arg(app_trace())
        .output()
        .unwrap();
    assert!(out.status.success(), "export failed: {}", stderr(&out));
    let doc: Value = serde_json::from_slice(&std::fs::read(&ss).unwrap()).unwrap();
    let frames = doc["shared"]["frames"].as_array().unwrap();
    let blur = frames
        .iter()
        .position(|f| f["name"] == "blur fixtures/cpu-app/lib/workers/blur.js:5")
        .expect("a blur frame");
    let worker = doc["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str().is_some_and(|n| n.contains("thread 1")))
        .expect("a worker profile");
    assert!(
        worker["samples"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s.as_array().unwrap().contains(&Value::from(blur))),
        "the worker's profile has no blur"
    );
}
