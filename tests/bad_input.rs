//! Bad input gets one clear line and a non-zero exit, never a panic.

mod support;

use std::process::{Command, Output};

use support::*;

fn info_of(path: &std::path::Path) -> Output {
    Command::new(asynctrace()).arg("info").arg(path).output().unwrap()
}

#[test]
fn info_on_an_empty_file_says_it_is_empty() {
    let s = Scratch::new("empty");
    let p = s.path("empty.bin");
    std::fs::write(&p, b"").unwrap();
    assert_clean_failure(&info_of(&p), "empty");
}

#[test]
fn info_on_random_bytes_says_it_is_not_a_trace() {
    let s = Scratch::new("random");
    let p = s.path("random.bin");
    let bytes: Vec<u8> = (0..4096u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&p, bytes).unwrap();
    assert_clean_failure(&info_of(&p), "not an asynctrace trace");
}

#[test]
fn info_on_a_directory_says_so() {
    let s = Scratch::new("dir");
    assert_clean_failure(&info_of(&s.0), "directory");
}

#[test]
fn info_on_a_missing_file_says_so() {
    let s = Scratch::new("missing");
    assert_clean_failure(&info_of(&s.path("nope.bin")), "nope.bin");
}

#[test]
fn info_on_a_truncated_trace_analyses_the_prefix_and_warns() {
    let s = Scratch::new("truncated");
    let (full, cut) = full_and_truncated(&s);
    let out = Command::new(asynctrace())
        .args(["info", "--format", "json"])
        .arg(&cut)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "a truncated trace is still analysed: {}",
        stderr(&out)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["truncated"], true);
    let full_info = info(&full);
    let (cut_n, full_n) = (
        v["events"]["init"].as_u64().unwrap(),
        full_info["events"]["init"].as_u64().unwrap(),
    );
    assert!(
        cut_n > 0 && cut_n < full_n,
        "prefix has some but not all events: {cut_n} of {full_n}"
    );
    assert!(stderr(&out).contains("truncated"), "warns: {}", stderr(&out));
}

#[test]
fn record_without_a_command_is_a_usage_error() {
    let out = Command::new(asynctrace()).arg("record").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("COMMAND"), "{err}");
    assert!(!err.contains("panicked"));
}

#[test]
fn record_of_a_missing_command_says_command_not_found() {
    let s = Scratch::new("nocmd");
    let trace = s.path("t.bin");
    let out = Command::new(asynctrace())
        .arg("record")
        .arg("-o")
        .arg(&trace)
        .arg("--")
        .arg("definitely-not-a-command-asynctrace")
        .output()
        .unwrap();
    assert_clean_failure(&out, "command not found: `definitely-not-a-command-asynctrace`");
    assert!(!trace.exists(), "no half-written trace is left behind");
}

#[test]
fn record_rejects_a_ring_size_that_is_not_a_power_of_two() {
    let out = Command::new(asynctrace())
        .args(["record", "--ring-records", "1000", "--", "node", "-e", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("power of two"), "{}", stderr(&out));
}
