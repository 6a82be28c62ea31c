//! Shared helpers of the end-to-end tests: where the binaries are, which `node` to use, and
//! how to run a fixture under asynctrace or under the reference counting hook.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `asynctrace`, built by `cargo build` in the same profile as this test.
pub fn asynctrace() -> PathBuf {
    if let Some(p) = std::env::var_os("ASYNCTRACE_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test> -> target/<profile>/asynctrace
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("asynctrace");
    assert!(
        bin.is_file(),
        "{} is missing: build the workspace first (`cargo build --release --workspace`, as scripts/test.sh does)",
        bin.display()
    );
    bin
}

/// The node binary under test: `$ASYNCTRACE_TEST_NODE` (the version matrix) or `node`.
pub fn node() -> PathBuf {
    std::env::var_os("ASYNCTRACE_TEST_NODE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("node"))
}

pub fn fixture(name: &str) -> PathBuf {
    root().join("fixtures").join(name)
}

/// A fresh scratch directory, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let p = std::env::temp_dir().join(format!("asynctrace-e2e-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `asynctrace record [extra] -o <trace> -- node <fixture> [args]`.
pub fn record(trace: &Path, extra: &[&str], fixture_name: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(asynctrace());
    cmd.arg("record")
        .args(extra)
        .arg("-o")
        .arg(trace)
        .arg("--")
        .arg(node())
        .arg(fixture(fixture_name))
        .args(args);
    cmd.current_dir(root());
    cmd.output().expect("run asynctrace record")
}

/// The events `info` counts in a trace: the five hook kinds added up.
pub fn total_events(info: &Value) -> u64 {
    ["init", "before", "after", "destroy", "promiseResolve"]
        .iter()
        .map(|k| info["events"][k].as_u64().unwrap())
        .sum()
}

/// `asynctrace info --format json`, parsed; panics with stderr when it fails.
pub fn info(trace: &Path) -> Value {
    let out = Command::new(asynctrace())
        .arg("info")
        .arg("--format")
        .arg("json")
        .arg(trace)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "info failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("info prints JSON")
}

/// Counts from the reference hook (tests/support/count-hook.js), summed over every process and
/// thread the fixture ran: (inits per type, totals per hook, number of threads).
pub struct Counts {
    pub types: BTreeMap<String, u64>,
    pub events: BTreeMap<String, u64>,
    pub threads: usize,
}

pub fn count_hook(fixture_name: &str, args: &[&str]) -> Counts {
    let scratch = Scratch::new("count");
    let hook = root().join("tests/support/count-hook.js");
    let out = Command::new(node())
        .arg(fixture(fixture_name))
        .args(args)
        .env("NODE_OPTIONS", format!("--require \"{}\"", hook.display()))
        .env("COUNT_HOOK_DIR", &scratch.0)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fixture {fixture_name} failed under the count hook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = Counts {
        types: BTreeMap::new(),
        events: BTreeMap::new(),
        threads: 0,
    };
    for entry in std::fs::read_dir(&scratch.0).unwrap() {
        let v: Value = serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
        c.threads += 1;
        add(&mut c.types, &v["types"]);
        add(&mut c.events, &v["events"]);
    }
    c
}

fn add(into: &mut BTreeMap<String, u64>, obj: &Value) {
    for (k, v) in obj.as_object().expect("object") {
        *into.entry(k.clone()).or_default() += v.as_u64().expect("count");
    }
}

/// A JSON object of counts as a map.
pub fn counts(obj: &Value) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    add(&mut m, obj);
    m
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command that failed the way every bad input must: exit 2, one line starting
/// `asynctrace: error:` that contains `needle`, no panic.
pub fn assert_clean_failure(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "exit code for: {err}");
    assert!(err.starts_with("asynctrace: error: "), "one error line: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "no panic: {err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "a single line: {err}");
}

/// Starts `asynctrace record -- node fixtures/spin.js` and waits until the app printed `ready`.
pub fn record_spin(trace: &Path) -> std::process::Child {
    let mut child = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(trace)
        .arg("--")
        .arg(node())
        .arg(fixture("spin.js"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_ready(&mut child);
    child
}

/// Records a trace with enough events for many blocks, and a copy cut at two thirds (as a
/// recorder killed mid-write leaves it). Returns `(full, cut)`.
pub fn full_and_truncated(scratch: &Scratch) -> (PathBuf, PathBuf) {
    let full = scratch.path("full.bin");
    let out = record(&full, &[], "many-events.js", &["20000"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let bytes = std::fs::read(&full).unwrap();
    let cut = scratch.path("cut.bin");
    std::fs::write(&cut, &bytes[..bytes.len() * 2 / 3]).unwrap();
    (full, cut)
}

/// `asynctrace record -o <trace> -- node`, ready for node's own arguments.
pub fn record_node(trace: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new(asynctrace());
    cmd.args(["record", "-o"]).arg(trace).args(["--"]).arg(node());
    cmd
}

/// Waits for a spawned app's first line on its (piped) stdout and checks it is `ready`: the
/// fixtures print it once their hooks, servers or loops are in place.
pub fn wait_ready(child: &mut std::process::Child) {
    use std::io::BufRead;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout is piped"))
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
}

/// Sends SIGTERM to `child` (a `record` run), waits, and checks that `record` reported the app
/// killed by it (128 + 15, as shells do).
pub fn terminate(child: std::process::Child) -> Output {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(128 + 15),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// express from the npm registry, cached under `.cache/` (never committed).
pub fn express_dir() -> PathBuf {
    let dir = root().join(".cache").join("express-app");
    if !dir.join("node_modules").join("express").is_dir() {
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--silent", "express@4"])
            .current_dir(&dir)
            .output()
            .expect("npm");
        assert!(
            out.status.success(),
            "npm install express: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}
