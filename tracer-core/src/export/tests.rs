//! Unit tests of the exports, and the throughput benchmark (`--ignored`).

use std::io::BufWriter;

use super::*;
use crate::trace::{Event, EventKind, TraceMeta, TraceReader, TraceWriter};

fn frames_site(stack: &str) -> Option<(String, Option<u32>, Option<u32>)> {
    frames::site(stack).map(|s| (s.file.to_string(), s.line, s.col))
}

#[test]
fn site_is_the_first_frames_location() {
    assert_eq!(
        frames_site("f\tapp.js:3:7\ng\tmain.js:1:1"),
        Some(("app.js".into(), Some(3), Some(7)))
    );
    assert_eq!(
        frames_site("\tC:\\app\\x.js:3:7"),
        Some(("C:\\app\\x.js".into(), Some(3), Some(7)))
    );
    assert_eq!(frames_site("weird"), Some(("weird".into(), None, None)));
    assert_eq!(frames_site(""), None);
}

#[test]
fn microseconds_keep_three_decimals_at_most() {
    let mut b = Vec::new();
    for ns in [0, 1_000, 1_500, 1_234_567, 50_010] {
        json::push_us(&mut b, ns);
        b.push(b' ');
    }
    assert_eq!(String::from_utf8(b).unwrap(), "0 1 1.5 1234.567 50.01 ");
}

/// xorshift64*: a deterministic workload without a dependency.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// Writes about `n` events of a server-like app: sockets whose read callbacks create promise
/// chains (created, resolved, their reactions run, destroyed) along 8 routes of 50 sites.
fn generate(path: &std::path::Path, n: u64) {
    let meta = TraceMeta {
        clock_tick_ns: 50_000,
        ..TraceMeta::default()
    };
    let file = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = TraceWriter::new(file, &meta).unwrap();
    let stream = w.begin_stream(1, 0, "v20").unwrap();
    let tcp = w.intern("TCPWRAP");
    let promise = w.intern("PROMISE");
    let stacks: Vec<_> = (0..50)
        .map(|i| w.intern(&format!("f{i}\tapp/mod{}.js:{}:{}", i % 7, i * 3 + 1, i % 9 + 1)))
        .collect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut t, mut next, written) = (0u64, 10u64, std::cell::Cell::new(0u64));
    let ev = |w: &mut TraceWriter<_>, time_ns, id, kind| {
        w.event(&Event {
            stream,
            time_ns,
            id,
            kind,
        })
        .unwrap();
        written.set(written.get() + 1);
    };
    let sockets: Vec<u64> = (0..64).map(|i| 2 + i).collect();
    for &s in &sockets {
        ev(
            &mut w,
            0,
            s,
            EventKind::Init {
                type_name: tcp,
                trigger: 1,
                exec: 1,
                stack: Some(stacks[0]),
            },
        );
    }
    while written.get() < n {
        let sock = sockets[rng.below(64) as usize];
        t += 50_000 * (1 + rng.below(3));
        ev(&mut w, t, sock, EventKind::Before);
        let mut parent = sock;
        let mut chain = Vec::new();
        // Why routes: in an app, sites follow the code (a handler's await chain), so stacks
        // repeat; random sites per link would make every stack distinct.
        let route = rng.below(8) as usize;
        for k in 0..(2 + route % 6) {
            let id = next;
            next += 1;
            let stack = Some(stacks[(route * 7 + k) % 50]);
            ev(
                &mut w,
                t,
                id,
                EventKind::Init {
                    type_name: promise,
                    trigger: parent,
                    exec: sock,
                    stack,
                },
            );
            chain.push(id);
            parent = id;
        }
        for &id in &chain {
            ev(&mut w, t, id, EventKind::PromiseResolve { by: 0 });
            ev(&mut w, t, id, EventKind::Before);
            t += 50_000 * rng.below(2);
            ev(&mut w, t, id, EventKind::After);
        }
        ev(&mut w, t, sock, EventKind::After);
        for &id in &chain {
            ev(&mut w, t, id, EventKind::Destroy);
        }
    }
    w.finish().unwrap();
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok());
    kb.unwrap_or(0.0) / 1024.0
}

/// `cargo test --release -p tracer-core export::tests::bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: generates a 20 M-event trace"]
#[allow(clippy::field_reassign_with_default)] // the options are #[non_exhaustive]
fn bench_fold_and_export_20m_events() {
    let n: u64 = std::env::var("ASYNCTRACE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000_000);
    let dir = std::env::temp_dir().join(format!("asynctrace-export-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.bin");
    generate(&path, n);
    let size = std::fs::metadata(&path).unwrap().len();
    let rss_before = peak_rss_mib();
    for weight in [Weight::Sync, Weight::Async, Weight::Count] {
        let mut opts = FoldOptions::default();
        opts.weight = weight;
        let start = std::time::Instant::now();
        let folded = fold(crate::trace::open(&path).unwrap(), &opts).unwrap();
        let secs = start.elapsed().as_secs_f64();
        println!(
            "fold {:5}: {} events in {secs:.2} s = {:.1} M events/s, {} stacks, {} frames",
            weight.name(),
            folded.events,
            folded.events as f64 / secs / 1e6,
            folded.stacks.len(),
            folded.frames.len()
        );
    }
    let start = std::time::Instant::now();
    let mut sink = CountingSink(0);
    let stats = write_chrome(crate::trace::open(&path).unwrap(), &ChromeOptions::default(), &mut sink).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "chrome: {} events -> {} trace events, {:.0} MB of JSON in {secs:.2} s = {:.1} M events/s ({:.0} MB/s)",
        stats.events_in,
        stats.events_out,
        sink.0 as f64 / 1e6,
        stats.events_in as f64 / secs / 1e6,
        sink.0 as f64 / secs / 1e6
    );
    let start = std::time::Instant::now();
    let reader = TraceReader::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap())).unwrap();
    let folded = fold(reader, &FoldOptions::default()).unwrap();
    let mut sink = CountingSink(0);
    write_speedscope(&folded, "bench", &mut sink).unwrap();
    println!(
        "fold + speedscope: {:.2} s, {} bytes",
        start.elapsed().as_secs_f64(),
        sink.0
    );
    println!(
        "trace: {size} bytes ({:.2} bytes/event); peak RSS {:.1} MiB (after generating: {rss_before:.1} MiB)",
        size as f64 / n as f64,
        peak_rss_mib()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

struct CountingSink(u64);
impl std::io::Write for CountingSink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn fold_bytes(bytes: &[u8], weight: Weight) -> Folded {
    let opts = FoldOptions {
        weight,
        ..Default::default()
    };
    fold(TraceReader::new(bytes).unwrap(), &opts).unwrap()
}

/// A chain of `n` promises, each triggered by the previous, their sites cycling through
/// `sites`, each with one 1 µs callback.
fn chain(n: u64, sites: &[String]) -> Vec<u8> {
    let mut t = crate::analysis::synth::Synth::in_memory();
    let s = t.stream(1, 0).unwrap();
    for i in 0..n {
        let ms = i as f64 * 0.01;
        let id = i + 2;
        let site = &sites[(i as usize) % sites.len()];
        t.init(s, ms, id, "PROMISE", if i == 0 { 1 } else { id - 1 }, Some(site))
            .unwrap();
        t.callback(s, ms + 0.002, id, 0.001).unwrap();
    }
    t.end_stream(s, 0).unwrap();
    t.finish().unwrap()
}

// See: flame and the folded/speedscope exports needed memory in the square of the chain length
// (an `await` loop: every resource stored its whole path).
#[test]
fn r11_an_await_loop_folds_into_a_few_stacks() {
    let sites = ["app.js:10:5".to_owned(), "app.js:11:9".to_owned()];
    // Small enough that the old quadratic code fails the asserts rather than the machine.
    let n = 5_000;
    let f = fold_bytes(&chain(n, &sites), Weight::Count);
    assert_eq!(f.total(), n, "every resource counted once");
    let lines = f.lines();
    assert!(lines.len() <= 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.matches(';').count() <= 1), "{lines:?}");
}

#[test]
fn r11_a_chain_deeper_than_the_cap_is_cut_with_an_ellipsis() {
    let sites: Vec<String> = (0..1000).map(|i| format!("app.js:{i}:1")).collect();
    let f = fold_bytes(&chain(3000, &sites), Weight::Count);
    assert_eq!(f.total(), 3000);
    let lines = f.lines();
    let deepest = lines.iter().map(|l| l.split(';').count()).max().unwrap();
    // The stream's frame is not printed for a single stream: MAX_DEPTH - 1 frames, `...`, leaf.
    assert_eq!(deepest, folded::MAX_DEPTH);
    assert!(lines.iter().any(|l| l.contains(";...;")), "the cut is shown");
    // Past the cap the chain cycles through its 1000 sites: each is one stack under the cut.
    assert!(lines.len() <= 1000 + folded::MAX_DEPTH, "{}", lines.len());
}

// See: flame's sync weight counted a callback whose `after` was dropped up to the end of the run.
#[test]
fn r7_a_callback_with_no_recorded_end_weighs_nothing() {
    let mut t = crate::analysis::synth::Synth::in_memory();
    let s = t.stream(1, 0).unwrap();
    t.init(s, 0.0, 2, "Timeout", 1, Some("app.js:1:1")).unwrap();
    t.init(s, 0.0, 3, "Timeout", 1, Some("app.js:2:1")).unwrap();
    t.before(s, 1.0, 2).unwrap(); // its after was dropped
    t.callback(s, 5.0, 3, 2.0).unwrap();
    t.callback(s, 900.0, 3, 1.0).unwrap();
    t.end_stream_dropped(s, 0, 1).unwrap();
    let f = fold_bytes(&t.finish().unwrap(), Weight::Sync);
    assert_eq!(f.unended, 1);
    assert_eq!(f.lines(), vec!["Timeout app.js:2:1 3000".to_owned()]);
}
