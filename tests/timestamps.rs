//! What the two timestamp modes promise about callback times, on a fixture whose callbacks have
//! a known minimum length (fixtures/short-callbacks.js: 100 callbacks of at least 5 µs each).
//!
//! Every bound here is one the fixture enforces itself, against the monotonic clock: a slower
//! machine makes the callbacks longer, never shorter, so nothing depends on the machine's speed.

mod support;

use std::process::Command;

use support::*;

/// Records short-callbacks.js with `extra` and returns the duration, in µs, of each of its
/// callbacks, from the Chrome export (which lists every callback, including those of zero length).
fn callback_durations_us(tag: &str, extra: &[&str]) -> Vec<f64> {
    let s = Scratch::new(tag);
    let trace = s.path("t.bin");
    let out = record(&trace, extra, "short-callbacks.js", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = Command::new(asynctrace())
        .args(["export", "--format", "chrome"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "export: {}", stderr(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the export is JSON");
    let durations: Vec<f64> = json["traceEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["ph"] == "X" && e["cat"] != "cpu" && e["name"].as_str().is_some_and(|n| n.contains("short-callbacks.js"))
        })
        .map(|e| e["dur"].as_f64().unwrap())
        .collect();
    assert_eq!(durations.len(), 100, "one slice per callback: {durations:?}");
    durations
}

#[test]
fn precise_times_measure_every_short_callback() {
    let durations = callback_durations_us("precise", &["--precise"]);
    // Each callback lasts at least 5 µs; whole-microsecond times at each end cannot make that 0.
    let zero = durations.iter().filter(|us| **us == 0.0).count();
    assert_eq!(
        zero, 0,
        "--precise measured {zero} callbacks of 5 µs or more as 0: {durations:?}"
    );
}

#[test]
fn the_clock_word_quantises_short_callbacks() {
    // A 5 µs callback reads the same clock word (refreshed every 100 µs, later when the machine
    // is busy) at its start and at its end unless a refresh falls inside it: some of the 100 show
    // no time at all.
    let durations = callback_durations_us("clock-word", &[]);
    assert!(
        durations.contains(&0.0),
        "the clock word measured every 5 µs callback: {durations:?}"
    );
}
