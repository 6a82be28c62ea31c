//! `asynctrace flame` and `asynctrace export`: golden folded stacks on a synthetic trace, and
//! the graphs and exports of real node fixtures checked by parsing them.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use support::*;
use tracer_core::trace::{Ending, Event, EventKind, StreamEnd, TraceMeta, TraceWriter};

fn run(args: &[&str]) -> Output {
    Command::new(asynctrace()).args(args).output().expect("run asynctrace")
}

fn ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(out.status.success(), "asynctrace {args:?} failed: {}", stderr(&out));
    out
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Two streams of a made-up app: a timer whose callback creates a promise, a socket with a
/// nested callback (the promise's), a callback of an id without init, and a worker's timer.
/// With `cut`, the file is written in two flushes and cut after the first (no end marker).
fn synthetic(path: &Path, cut: bool) {
    let meta = TraceMeta {
        command: vec!["node".into(), "app.js".into()],
        cwd: "/srv".into(),
        clock_tick_ns: 50_000,
        ..TraceMeta::default()
    };
    let mut w = TraceWriter::new(Vec::new(), &meta).unwrap();
    let main = w.begin_stream(100, 0, "v20.0.0").unwrap();
    let worker = w.begin_stream(100, 1, "v20.0.0").unwrap();
    let (timeout, promise, tcp) = (w.intern("Timeout"), w.intern("PROMISE"), w.intern("TCPWRAP"));
    let (s_timer, s_sock, s_db) = (
        w.intern("onTimer\tapp.js:10:5"),
        w.intern("\tapp.js:20:3"),
        w.intern("query\tlib/db.js:7:11"),
    );
    let init = |type_name, trigger, stack| EventKind::Init {
        type_name,
        trigger,
        exec: trigger,
        stack: Some(stack),
    };
    let us = 1000;
    let first: Vec<(u32, u64, u64, EventKind)> = vec![
        (main, 0, 10, init(timeout, 1, s_timer)),
        (main, 0, 11, init(tcp, 1, s_sock)),
        (worker, 0, 5, init(timeout, 1, s_timer)),
        (main, 1000 * us, 10, EventKind::Before),
        (main, 1500 * us, 12, init(promise, 10, s_db)),
        (main, 3000 * us, 10, EventKind::After),
        (main, 3000 * us, 10, EventKind::Destroy),
        (worker, 2000 * us, 5, EventKind::Before),
        (worker, 2600 * us, 5, EventKind::After),
    ];
    let second: Vec<(u32, u64, u64, EventKind)> = vec![
        (main, 4000 * us, 11, EventKind::Before),
        (main, 4500 * us, 12, EventKind::Before),
        (main, 5000 * us, 12, EventKind::After),
        (main, 6000 * us, 11, EventKind::After),
        (main, 9000 * us, 11, EventKind::Before),
        (main, 9500 * us, 11, EventKind::After),
        (main, 10_000 * us, 99, EventKind::Before),
        (main, 10_200 * us, 99, EventKind::After),
    ];
    let put = |w: &mut TraceWriter<Vec<u8>>, evs: Vec<(u32, u64, u64, EventKind)>| {
        for (stream, time_ns, id, kind) in evs {
            w.event(&Event {
                stream,
                time_ns,
                id,
                kind,
            })
            .unwrap();
        }
    };
    put(&mut w, first);
    w.flush().unwrap();
    let cut_at = w.bytes_written() as usize;
    put(&mut w, second);
    for stream in [main, worker] {
        w.end_stream(&StreamEnd {
            stream,
            events: 0,
            dropped: 0,
            malformed: 0,
            ending: Ending::Exited { code: 0 },
        })
        .unwrap();
    }
    let mut bytes = w.finish().unwrap();
    if cut {
        bytes.truncate(cut_at);
    }
    std::fs::write(path, bytes).unwrap();
}

/// Compares `actual` with `tests/golden/flame/<name>`; `ASYNCTRACE_BLESS=1` rewrites it.
#[track_caller]
fn assert_golden(name: &str, actual: &str) {
    let golden = root().join("tests/golden/flame").join(name);
    if std::env::var_os("ASYNCTRACE_BLESS").is_some() {
        std::fs::write(&golden, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&golden).unwrap_or_default();
    if expected != actual {
        let tmp = std::env::temp_dir().join(format!("asynctrace-golden-{name}"));
        std::fs::write(&tmp, actual).unwrap();
        panic!(
            "{} differs from the output (written to {}).\nexpected:\n{expected}\nactual:\n{actual}\n\
             If the new output is right: ASYNCTRACE_BLESS=1 cargo test --release -p e2e --test flame",
            golden.display(),
            tmp.display()
        );
    }
}

#[test]
fn folded_stacks_match_the_golden_files_for_each_weight() {
    let scratch = Scratch::new("flame-golden");
    let trace = scratch.path("synthetic.bin");
    synthetic(&trace, false);
    for weight in ["sync", "async", "count"] {
        let out = ok(&["flame", "--folded", "--weight", weight, s(&trace)]);
        assert_golden(
            &format!("synthetic-{weight}.folded"),
            &String::from_utf8(out.stdout).unwrap(),
        );
        // `export --format folded` prints the same lines.
        let exp = ok(&["export", "--format", "folded", "--weight", weight, s(&trace)]);
        assert_golden(
            &format!("synthetic-{weight}.folded"),
            &String::from_utf8(exp.stdout).unwrap(),
        );
    }
}

#[test]
fn window_and_thread_filters_select_what_is_counted() {
    let scratch = Scratch::new("flame-filter");
    let trace = scratch.path("synthetic.bin");
    synthetic(&trace, false);
    let out = ok(&["flame", "--folded", "--thread", "1", s(&trace)]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "Timeout app.js:10:5 600\n");
    // 4.0-5.0 ms: the socket's callback runs 4.0-6.0 with the promise's nested at 4.5-5.0.
    let out = ok(&[
        "flame",
        "--folded",
        "--thread",
        "0",
        "--from-ms",
        "4",
        "--to-ms",
        "5",
        s(&trace),
    ]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "TCPWRAP app.js:20:3 500\nTimeout app.js:10:5;PROMISE lib/db.js:7:11 500\n"
    );
}

#[test]
fn truncated_trace_draws_its_prefix_with_a_warning() {
    let scratch = Scratch::new("flame-cut");
    let trace = scratch.path("cut.bin");
    synthetic(&trace, true);
    let out = ok(&["flame", "--folded", s(&trace)]);
    assert!(stderr(&out).contains("truncated"), "warning expected: {}", stderr(&out));
    let folded = String::from_utf8(out.stdout).unwrap();
    assert!(folded.contains("pid 100;Timeout app.js:10:5 2000"), "{folded}");
    assert!(
        !folded.contains("TCPWRAP"),
        "the socket's callbacks are after the cut: {folded}"
    );
    let svg = scratch.path("cut.svg");
    let out = ok(&["flame", "-o", s(&svg), s(&trace)]);
    assert!(stderr(&out).contains("truncated"));
    assert!(svg_frames(&svg).contains_key("Timeout app.js:10:5"));
}

#[test]
fn bad_input_is_a_one_line_error() {
    let scratch = Scratch::new("flame-bad");
    let junk = scratch.path("junk.bin");
    std::fs::write(&junk, b"hello, not a trace\n").unwrap();
    let missing = scratch.path("missing.bin");
    for args in [
        vec!["flame", "-o", "/dev/null", s(&junk)],
        vec!["export", "--format", "chrome", s(&junk)],
        vec!["flame", "--folded", s(&missing)],
        vec!["export", "--format", "speedscope", s(&scratch.0)],
    ] {
        let out = run(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
        assert!(err.starts_with("asynctrace: error: "), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// Frame name -> its weight, from the `<title>`s of an inferno SVG (parsed as XML).
fn svg_frames(svg: &Path) -> BTreeMap<String, u64> {
    use quick_xml::events::Event as X;
    let text = std::fs::read_to_string(svg).unwrap();
    let mut reader = quick_xml::Reader::from_str(&text);
    let (mut in_title, mut frames) = (false, BTreeMap::new());
    loop {
        match reader
            .read_event()
            .unwrap_or_else(|e| panic!("{} is not XML: {e}", svg.display()))
        {
            X::Start(t) if t.name().as_ref() == b"title" => in_title = true,
            X::End(t) if t.name().as_ref() == b"title" => in_title = false,
            X::Text(t) if in_title => {
                let title = t.decode().unwrap().into_owned();
                // "NAME (1,234 µs, 5.6%)"
                if let Some((name, rest)) = title.rsplit_once(" (") {
                    let n: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_digit() || *c == ',')
                        .filter(|c| *c != ',')
                        .collect();
                    if let Ok(n) = n.parse::<u64>() {
                        let e = frames.entry(name.to_string()).or_insert(0);
                        *e = (*e).max(n);
                    }
                }
            }
            X::Eof => break,
            _ => {}
        }
    }
    frames
}

fn record_fixture(scratch: &Scratch, fixture_name: &str) -> PathBuf {
    let trace = scratch.path("trace.bin");
    let out = record(&trace, &[], fixture_name, &[]);
    assert!(out.status.success(), "record {fixture_name}: {}", stderr(&out));
    trace
}

#[test]
fn blocking_timer_is_the_widest_frame_under_sync_weight() {
    let scratch = Scratch::new("flame-blocking");
    let trace = record_fixture(&scratch, "blocking.js");
    let svg = scratch.path("flame.svg");
    ok(&["flame", "-o", s(&svg), s(&trace)]);
    let frames = svg_frames(&svg);
    let (widest, w) = frames
        .iter()
        .filter(|(n, _)| n.as_str() != "all")
        .max_by_key(|(_, w)| **w)
        .unwrap();
    assert_eq!(widest, "Timeout fixtures/blocking.js:21:3", "{frames:#?}");
    assert!(*w > 0, "5 callbacks of ~50 ms: {w} µs");
    let title = std::fs::read_to_string(&svg).unwrap();
    assert!(title.contains("trace.bin: time in callbacks (sync weight)"));
}

#[test]
fn slow_route_timer_dominates_the_requests_async_wait() {
    let scratch = Scratch::new("flame-http-slow");
    let trace = record_fixture(&scratch, "http-slow.js");
    let out = ok(&["flame", "--folded", "--weight", "async", s(&trace)]);
    let folded = String::from_utf8(out.stdout).unwrap();
    let weight = |l: &str| l.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap();
    // Below the server's request (HTTPINCOMINGMESSAGE), the wait is the sleep at line 21.
    let below: Vec<&str> = folded.lines().filter(|l| l.contains("HTTPINCOMINGMESSAGE;")).collect();
    // Orders, not amounts: how long a wait reads depends on how busy the machine is (and on
    // when the clock word was last refreshed), which a test must not assume.
    // A wait counts once per chain, at its deepest resource: the promises awaiting the timer
    // add nothing.
    let heaviest = below.iter().copied().max_by_key(|l| weight(l)).expect("request stacks");
    let leaf = |l: &str| l.rsplit_once(' ').unwrap().0.rsplit(';').next().unwrap().to_owned();
    let promise_wait: u64 = below
        .iter()
        .filter(|l| leaf(l).starts_with("PROMISE"))
        .map(|l| weight(l))
        .sum();
    let timer_wait: u64 = below
        .iter()
        .filter(|l| leaf(l).starts_with("Timeout"))
        .map(|l| weight(l))
        .sum();
    assert!(
        promise_wait * 10 < timer_wait,
        "promise waits {promise_wait} µs, timer {timer_wait} µs:\n{folded}"
    );
    assert!(heaviest.contains("http-slow.js:21:"), "heaviest: {heaviest}\n{folded}");
    let timer = folded
        .lines()
        .filter(|l| l.contains("Timeout fixtures/http-slow.js:21:"))
        .map(weight)
        .max()
        .unwrap_or(0);
    assert!(timer > 0, "the slow requests' wait on the timer is counted:\n{folded}");
    let svg = scratch.path("async.svg");
    ok(&["flame", "--weight", "async", "-o", s(&svg), s(&trace)]);
    let frames = svg_frames(&svg);
    let widest_timeout = frames
        .iter()
        .filter(|(n, _)| n.starts_with("Timeout"))
        .max_by_key(|(_, w)| **w)
        .unwrap();
    assert!(
        widest_timeout.0.starts_with("Timeout fixtures/http-slow.js:21:"),
        "{frames:#?}"
    );
}

/// Checks the Trace Event rules the viewers rely on.
fn check_chrome(json: &Value) -> BTreeMap<&str, usize> {
    let events = json["traceEvents"].as_array().expect("traceEvents");
    let mut count = BTreeMap::new();
    let mut open: BTreeMap<&str, f64> = BTreeMap::new();
    let mut last_x: BTreeMap<(u64, u64), f64> = BTreeMap::new();
    let mut flows: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for e in events {
        let ph = e["ph"].as_str().expect("ph");
        *count.entry(ph).or_insert(0) += 1;
        if ph == "M" {
            continue;
        }
        let ts = e["ts"].as_f64().expect("ts in µs");
        assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
        match ph {
            "b" => assert!(open.insert(e["id"].as_str().unwrap(), ts).is_none(), "two b for {e}"),
            "e" => {
                let b = open
                    .remove(e["id"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("e without b: {e}"));
                assert!(ts >= b, "e before b: {e}");
            }
            "X" => {
                let track = (e["pid"].as_u64().unwrap(), e["tid"].as_u64().unwrap());
                let last = last_x.insert(track, ts).unwrap_or(0.0);
                assert!(ts >= last, "X not monotonic on its track: {e}");
                assert!(e["dur"].as_f64().unwrap() >= 0.0);
            }
            "s" => flows.entry(e["id"].as_str().unwrap()).or_default().0 += 1,
            "f" => {
                assert_eq!(e["bp"], "e");
                flows.entry(e["id"].as_str().unwrap()).or_default().1 += 1;
            }
            other => panic!("unexpected ph {other}"),
        }
    }
    assert!(open.is_empty(), "b without e: {open:?}");
    assert!(flows.values().all(|&(s, f)| s == 1 && f == 1), "unpaired flows");
    count
}

#[test]
fn chrome_export_pairs_every_slice_and_flow() {
    let scratch = Scratch::new("export-chrome");
    let trace = record_fixture(&scratch, "http-slow.js");
    let out = scratch.path("trace.json");
    ok(&["export", "--format", "chrome", "-o", s(&out), s(&trace)]);
    let json: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).expect("valid JSON");
    let count = check_chrome(&json);
    for ph in ["M", "b", "e", "X", "s", "f"] {
        assert!(count.get(ph).copied().unwrap_or(0) > 0, "no {ph} events: {count:?}");
    }
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("\"thread_name\"") && text.contains("http-slow.js (pid"));
    // A synthetic trace with a worker, nesting and an id without init.
    let syn = scratch.path("synthetic.bin");
    synthetic(&syn, false);
    let out = ok(&["export", "--format", "chrome", s(&syn)]);
    check_chrome(&serde_json::from_slice(&out.stdout).unwrap());
}

#[test]
fn speedscope_export_validates_against_the_vendored_schema() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("tests/data/speedscope-schema.json")).unwrap())
            .unwrap();
    let scratch = Scratch::new("export-speedscope");
    let trace = record_fixture(&scratch, "blocking.js");
    for weight in ["sync", "async", "count"] {
        let out = ok(&["export", "--format", "speedscope", "--weight", weight, s(&trace)]);
        let file: Value = serde_json::from_slice(&out.stdout).unwrap();
        if let Err(e) = validate(&schema, &schema, &file, "$") {
            panic!("speedscope file ({weight}) does not match the schema: {e}");
        }
        let frames = file["shared"]["frames"].as_array().unwrap();
        let timer = frames
            .iter()
            .find(|f| f["name"] == "Timeout fixtures/blocking.js:21:3")
            .expect("the slow timer's frame");
        assert_eq!(
            (timer["file"].as_str(), timer["line"].as_u64(), timer["col"].as_u64()),
            (Some("fixtures/blocking.js"), Some(21), Some(3))
        );
    }
    let syn = scratch.path("synthetic.bin");
    synthetic(&syn, false);
    let out = ok(&["export", "--format", "speedscope", s(&syn)]);
    let file: Value = serde_json::from_slice(&out.stdout).unwrap();
    validate(&schema, &schema, &file, "$").unwrap();
    assert_eq!(file["profiles"].as_array().unwrap().len(), 2, "one profile per thread");
}

/// The part of JSON Schema (draft 7) that speedscope's schema uses: `$ref`, `anyOf`, `type`,
/// `const`, `enum`, `properties`, `required`, `items`. Unknown keywords fail loudly.
fn validate(root: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let obj = schema.as_object().ok_or(format!("{at}: schema is not an object"))?;
    for (k, rule) in obj {
        match k.as_str() {
            "$schema" | "title" | "definitions" => {}
            "$ref" => {
                let name = rule.as_str().unwrap().trim_start_matches("#/definitions/");
                validate(root, &root["definitions"][name], v, at)?;
            }
            "anyOf" => {
                let errs: Vec<String> = rule
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(|s| validate(root, s, v, at).err())
                    .collect();
                if errs.len() == rule.as_array().unwrap().len() {
                    return Err(format!("{at}: matches none of anyOf: {errs:?}"));
                }
            }
            "type" => {
                let ok = match rule.as_str().unwrap() {
                    "object" => v.is_object(),
                    "array" => v.is_array(),
                    "string" => v.is_string(),
                    "number" => v.is_number(),
                    t => return Err(format!("unsupported type {t}")),
                };
                if !ok {
                    return Err(format!("{at}: {v} is not of type {rule}"));
                }
            }
            "const" if v != rule => return Err(format!("{at}: {v} is not {rule}")),
            "const" => {}
            "enum" if !rule.as_array().unwrap().contains(v) => return Err(format!("{at}: {v} is not one of {rule}")),
            "enum" => {}
            "required" => {
                for r in rule.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        return Err(format!("{at}: missing {r}"));
                    }
                }
            }
            "properties" => {
                for (p, s) in rule.as_object().unwrap() {
                    if let Some(x) = v.get(p) {
                        validate(root, s, x, &format!("{at}.{p}"))?;
                    }
                }
            }
            "items" => {
                for (i, x) in v.as_array().into_iter().flatten().enumerate() {
                    validate(root, rule, x, &format!("{at}[{i}]"))?;
                }
            }
            other => return Err(format!("schema keyword {other} is not supported by this checker")),
        }
    }
    Ok(())
}
