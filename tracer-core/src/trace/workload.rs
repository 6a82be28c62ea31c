//! A synthetic promise-heavy workload, and the size and decode speed of its events.

use super::*;

/// xorshift64*: deterministic workloads without a dependency.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) const TICK: u64 = 50_000;

pub(crate) fn meta() -> TraceMeta {
    TraceMeta {
        command: vec!["node".into(), "app.js".into()],
        cwd: "/srv/app".into(),
        start_unix_ms: 1_700_000_000_000,
        start_ns: 123_456_789,
        writer_version: "0.1.0".into(),
        clock_tick_ns: TICK,
    }
}

/// A promise-heavy program as async_hooks sees it: chains of promises created inside
/// callbacks, resolved, their reactions run (before/after), and destroyed in GC batches,
/// with the clock advancing one 50 µs tick every few events.
pub(crate) fn promise_workload(stream: StreamId, n: usize, seed: u64, type_name: StringId) -> Vec<Event> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::with_capacity(n + 8);
    let (mut time, mut next_id, exec) = (0u64, 10u64, 1u64);
    let mut live: Vec<u64> = Vec::new();
    let mut dead: Vec<u64> = Vec::new();
    let push = |out: &mut Vec<Event>, time, id, kind| {
        out.push(Event {
            stream,
            time_ns: time,
            id,
            kind,
        })
    };
    while out.len() < n {
        if rng.below(4) == 0 {
            time += TICK * (1 + rng.below(8) / 7);
        }
        match rng.below(10) {
            0..=3 => {
                let id = next_id;
                next_id += 1 + rng.below(4) / 3;
                let trigger = if rng.below(2) == 0 { exec } else { id - 1 };
                let stack = (rng.below(8) == 0).then(|| rng.below(50) as StringId + 1);
                push(
                    &mut out,
                    time,
                    id,
                    EventKind::Init {
                        type_name,
                        trigger,
                        exec,
                        stack,
                    },
                );
                live.push(id);
            }
            4..=5 if !live.is_empty() => {
                let id = live[live.len() - 1 - rng.below(live.len().min(4) as u64) as usize];
                push(&mut out, time, id, EventKind::PromiseResolve { by: 0 });
            }
            6..=8 if !live.is_empty() => {
                let i = live.len() - 1 - rng.below(live.len().min(6) as u64) as usize;
                let id = live.swap_remove(i);
                push(&mut out, time, id, EventKind::Before);
                // The reaction usually creates the next promise of the chain.
                if rng.below(3) != 0 {
                    let child = next_id;
                    next_id += 1;
                    push(
                        &mut out,
                        time,
                        child,
                        EventKind::Init {
                            type_name,
                            trigger: id,
                            exec: id,
                            stack: None,
                        },
                    );
                    live.push(child);
                }
                push(&mut out, time, id, EventKind::After);
                dead.push(id);
            }
            _ if dead.len() > 16 => {
                dead.sort_unstable();
                for id in dead.drain(..) {
                    push(&mut out, time, id, EventKind::Destroy);
                }
            }
            _ => {}
        }
    }
    out.truncate(n);
    out
}

#[test]
fn promise_events_take_under_8_bytes_each() {
    let n = 200_000;
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    let t = w.intern("PROMISE");
    let s = w.begin_stream(1, 0, "v22").unwrap();
    let before = w.bytes_written();
    for ev in &promise_workload(s, n, 42, t) {
        w.event(ev).unwrap();
    }
    w.flush().unwrap();
    let per_event = (w.bytes_written() - before) as f64 / n as f64;
    eprintln!("{per_event:.2} bytes/event on disk");
    assert!(per_event < 8.0, "{per_event} bytes/event");
}

/// Prints decode throughput on 20 M promise events, through both read paths:
/// `cargo test -p tracer-core --release -- --ignored decode_throughput --nocapture`
#[test]
#[ignore = "throughput measurement; run in release"]
fn decode_throughput() {
    let n = 20_000_000;
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    let t = w.intern("PROMISE");
    let s = w.begin_stream(1, 0, "v22").unwrap();
    for ev in &promise_workload(s, n, 5, t) {
        w.event(ev).unwrap();
    }
    let bytes = w.finish().unwrap();
    let rate = |secs: f64| n as f64 / secs / 1e6;
    // Why best of 3 and CPU time: the figure is for the code, not for whatever else the
    // machine runs.
    let (mut item_secs, mut batch_secs, mut sum) = (f64::MAX, f64::MAX, 0u64);
    for _ in 0..3 {
        let start = cpu_secs();
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        let mut count = 0;
        while let Some(item) = r.next_item().unwrap() {
            if let Item::Event(e) = item {
                count += 1;
                sum = sum.wrapping_add(e.id ^ e.time_ns);
            }
        }
        item_secs = item_secs.min(cpu_secs() - start);
        assert_eq!(count, n);
        let start = cpu_secs();
        let mut r = TraceReader::new(&bytes[..]).unwrap();
        let mut count = 0;
        while let Some(batch) = r.next_batch().unwrap() {
            if let Batch::Events(evs) = batch {
                count += evs.len();
                sum = evs.iter().fold(sum, |a, e| a.wrapping_add(e.id ^ e.time_ns));
            }
        }
        batch_secs = batch_secs.min(cpu_secs() - start);
        assert_eq!(count, n);
    }
    eprintln!(
        "{n} events, {:.2} bytes/event: next_item {:.1} M events/s, next_batch {:.1} M events/s ({sum})",
        bytes.len() as f64 / n as f64,
        rate(item_secs),
        rate(batch_secs),
    );
}

/// Time this thread has spent on a CPU. Why not wall time: on a shared machine the wall clock
/// also counts time the thread waited for a core. Falls back to wall time off Linux.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    match stat.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()) {
        Some(ns) => ns / 1e9,
        None => std::time::UNIX_EPOCH.elapsed().map_or(0.0, |d| d.as_secs_f64()),
    }
}
