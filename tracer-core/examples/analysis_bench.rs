//! Throughput and peak memory of the streaming analyses on a generated trace.
//!
//! ```sh
//! cargo run --release -p tracer-core --example analysis_bench -- gen /tmp/big.bin 20000000
//! for a in tree leaks requests slow; do
//!   cargo run --release -p tracer-core --example analysis_bench -- run /tmp/big.bin $a
//! done
//! ```
//!
//! Each `run` is its own process, so its peak RSS (VmHWM) is the analysis's alone.

use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

use tracer_core::analysis::{self, synth, Context, Pass};
use tracer_core::analysis::{LeakOptions, Leaks, RequestOptions, Requests, Slow, SlowOptions, Tree, TreeOptions};
use tracer_core::trace::{self, Event, StreamId};

/// Counts what it forwards.
struct Counted<P> {
    inner: P,
    events: u64,
}

impl<P: Pass> Pass for Counted<P> {
    #[inline]
    fn event(&mut self, cx: &mut Context, ev: &Event) {
        self.events += 1;
        self.inner.event(cx, ev);
    }
    fn stream_end(&mut self, cx: &mut Context, stream: StreamId, end_ns: u64) {
        self.inner.stream_end(cx, stream, end_ns);
    }
}

fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.trim_start_matches("VmHWM:").trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

fn measure<P: Pass>(path: &Path, name: &str, pass: P, finish: impl FnOnce(P, &mut Context) -> String) {
    let mut reader = trace::open(path).expect("open the trace");
    let mut counted = Counted { inner: pass, events: 0 };
    let t0 = Instant::now();
    let mut cx = analysis::run(&mut reader, &mut counted).expect("read the trace");
    let summary = finish(counted.inner, &mut cx);
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "{name}: {} events in {secs:.2} s = {:.1} M events/s, peak RSS {} ({summary})",
        counted.events,
        counted.events as f64 / secs / 1e6,
        vm_hwm()
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["gen", path, n] => {
            let n: u64 = n.parse().expect("event count");
            let file = std::fs::File::create(path).expect("create the trace");
            let t0 = Instant::now();
            let (_, written) = synth::http_server_workload(BufWriter::new(file), n, 7).expect("write");
            let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
            println!(
                "{written} events, {bytes} bytes ({:.2} B/event) in {:.1} s",
                bytes as f64 / written as f64,
                t0.elapsed().as_secs_f64()
            );
        }
        ["run", path, which] => {
            let p = Path::new(path);
            match *which {
                "tree" => measure(p, "tree", Tree::new(TreeOptions::default()), |t, cx| {
                    let r = t.finish(cx);
                    format!("{} groups", r.streams.iter().map(|s| s.groups).sum::<u64>())
                }),
                "leaks" => measure(p, "leaks", Leaks::new(LeakOptions::default()), |t, cx| {
                    format!("{} leak groups", t.finish(cx).leaks.len())
                }),
                "requests" => measure(p, "requests", Requests::new(RequestOptions::default()), |t, cx| {
                    let r = t.finish(cx);
                    format!("{} requests, p99 {:.1} ms", r.count, r.p99_ms)
                }),
                "slow" => measure(p, "slow", Slow::new(SlowOptions::default()), |t, cx| {
                    format!("{} slow callbacks", t.finish(cx).count)
                }),
                other => panic!("unknown analysis {other}"),
            }
        }
        _ => eprintln!("usage: analysis_bench gen PATH EVENTS | run PATH tree|leaks|requests|slow"),
    }
}
