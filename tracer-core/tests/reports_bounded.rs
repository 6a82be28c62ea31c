//! Every report finishes, in bounded memory, on generated traces of adversarial shapes:
//! several processes and threads, long trigger chains (await loops, chains of distinct sites),
//! events of unknown ids, destroys before inits, repeated inits, zero, equal and backwards
//! timestamps, callbacks without their `after`, and streams whose first sites come in any order
//! (resized per-stream clocks).
//!
//! Memory is measured by a counting global allocator: the peak of bytes allocated at once
//! during each report, above what was allocated before it. This file is its own test binary,
//! with one test, so nothing else allocates meanwhile.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use tracer_core::analysis::{
    self, LeakOptions, Leaks, Pass, RequestOptions, Requests, Slow, SlowOptions, Tree, TreeOptions,
};
use tracer_core::export::{fold, write_chrome, write_speedscope, ChromeOptions, Filter, FoldOptions, Weight};
use tracer_core::trace::{Ending, Event, EventKind, StreamEnd, TraceMeta, TraceReader, TraceWriter};

struct Counting;

static NOW: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let now = NOW.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        PEAK.fetch_max(now, Ordering::Relaxed);
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        NOW.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > layout.size() {
            let now = NOW.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        } else {
            NOW.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated at once while `f` runs, above what was allocated before it.
fn peak_of(f: impl FnOnce()) -> usize {
    let base = NOW.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    f();
    PEAK.load(Ordering::Relaxed).saturating_sub(base)
}

/// One step of a generated trace.
#[derive(Debug, Clone)]
enum Op {
    /// A resource: type 0..4, site 0..6 (6 = none), trigger: the stream's last resource,
    /// an earlier one, or an id never seen.
    Init {
        ty: u8,
        site: u8,
        trigger: u8,
    },
    Before(u16),
    After(u16),
    Destroy(u16),
    Resolve(u16),
    /// `n` links of an await loop: each triggered by the previous, sites alternating between
    /// `sites` distinct ones, each run once; destroyed later or never.
    Loop {
        n: u16,
        sites: u8,
        destroy: bool,
    },
}

#[derive(Debug, Clone)]
struct Step {
    stream: u8,
    /// 0: same time, 1: + one tick, 2: + 1 ms, 3: + 10 s, 4: back 1 ms.
    dt: u8,
    op: Op,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..4, 0u8..7, 0u8..3).prop_map(|(ty, site, trigger)| Op::Init { ty, site, trigger }),
        3 => any::<u16>().prop_map(Op::Before),
        3 => any::<u16>().prop_map(Op::After),
        2 => any::<u16>().prop_map(Op::Destroy),
        1 => any::<u16>().prop_map(Op::Resolve),
        1 => (1u16..6000, 1u8..200, any::<bool>()).prop_map(|(n, sites, destroy)| Op::Loop { n, sites, destroy }),
    ]
}

fn steps() -> impl Strategy<Value = (u8, Vec<Step>, Vec<u64>)> {
    (
        1u8..5,
        prop::collection::vec(
            (0u8..5, 0u8..5, op()).prop_map(|(stream, dt, op)| Step { stream, dt, op }),
            1..300,
        ),
        prop::collection::vec(0u64..3, 5),
    )
}

const TYPES: [&str; 4] = ["PROMISE", "Timeout", "TCPWRAP", "HTTPINCOMINGMESSAGE"];

/// Writes the trace the steps describe; returns it and its number of events.
fn build(streams: u8, steps: &[Step], dropped: &[u64]) -> (Vec<u8>, u64) {
    let mut w = TraceWriter::new(Vec::new(), &TraceMeta::default()).unwrap();
    let ids: Vec<_> = (0..streams)
        .map(|s| {
            w.begin_stream(100 + u32::from(s % 2), u32::from(s / 2), "v20.0.0")
                .unwrap()
        })
        .collect();
    let types: Vec<_> = TYPES.iter().map(|t| w.intern(t)).collect();
    let sites: Vec<_> = (0..200)
        .map(|i| w.intern(&format!("f{i}\tapp/m{i}.js:{i}:1")))
        .collect();
    // Per stream: time, next id, ids created so far (the last 64).
    let mut time = vec![0u64; streams as usize];
    let mut next = vec![2u64; streams as usize];
    let mut made: Vec<Vec<u64>> = vec![Vec::new(); streams as usize];
    let mut events = 0u64;
    let mut put = |w: &mut TraceWriter<Vec<u8>>, s: usize, t: u64, id: u64, kind: EventKind| {
        events += 1;
        w.event(&Event {
            stream: ids[s],
            time_ns: t,
            id,
            kind,
        })
        .unwrap();
    };
    let pick = |made: &Vec<u64>, x: u16| -> u64 {
        // Mostly a resource of this stream, sometimes an id never created.
        if made.is_empty() || x.is_multiple_of(7) {
            u64::from(x) + 1_000_000
        } else {
            made[x as usize % made.len()]
        }
    };
    for step in steps {
        let s = step.stream as usize % streams as usize;
        time[s] = match step.dt {
            0 => time[s],
            1 => time[s] + 100_000,
            2 => time[s] + 1_000_000,
            3 => time[s] + 10_000_000_000,
            _ => time[s].saturating_sub(1_000_000),
        };
        let t = time[s];
        match step.op {
            Op::Init { ty, site, trigger } => {
                let id = next[s];
                next[s] += 1;
                let trig = match trigger {
                    0 => made[s].last().copied().unwrap_or(1),
                    1 => made[s].first().copied().unwrap_or(0),
                    _ => 9_999_999,
                };
                let stack = (site < 6).then(|| sites[site as usize]);
                put(
                    &mut w,
                    s,
                    t,
                    id,
                    EventKind::Init {
                        type_name: types[ty as usize],
                        trigger: trig,
                        exec: trig,
                        stack,
                    },
                );
                made[s].push(id);
                if made[s].len() > 64 {
                    made[s].remove(0);
                }
            }
            Op::Before(x) => put(&mut w, s, t, pick(&made[s], x), EventKind::Before),
            Op::After(x) => put(&mut w, s, t, pick(&made[s], x), EventKind::After),
            Op::Destroy(x) => {
                // Sometimes the destroy of an id that is created later.
                let id = if x % 5 == 0 { next[s] } else { pick(&made[s], x) };
                put(&mut w, s, t, id, EventKind::Destroy)
            }
            Op::Resolve(x) => put(
                &mut w,
                s,
                t,
                pick(&made[s], x),
                EventKind::PromiseResolve { by: u64::from(x) },
            ),
            Op::Loop { n, sites: k, destroy } => {
                let mut prev = made[s].last().copied().unwrap_or(1);
                let mut tt = t;
                for i in 0..u64::from(n) {
                    let id = next[s];
                    next[s] += 1;
                    tt += 2_000;
                    put(
                        &mut w,
                        s,
                        tt,
                        id,
                        EventKind::Init {
                            type_name: types[0],
                            trigger: prev,
                            exec: prev,
                            stack: Some(sites[(i % u64::from(k)) as usize]),
                        },
                    );
                    put(&mut w, s, tt + 500, id, EventKind::PromiseResolve { by: 0 });
                    put(&mut w, s, tt + 1_000, id, EventKind::Before);
                    put(&mut w, s, tt + 1_500, id, EventKind::After);
                    if destroy && i >= 100 {
                        put(&mut w, s, tt + 1_600, id - 100, EventKind::Destroy);
                    }
                    prev = id;
                }
                time[s] = tt + 2_000;
                made[s].push(prev);
            }
        }
    }
    for (i, &id) in ids.iter().enumerate() {
        w.end_stream(&StreamEnd {
            stream: id,
            events: 0,
            dropped: dropped[i % dropped.len()],
            malformed: 0,
            ending: Ending::Exited { code: 0 },
        })
        .unwrap();
    }
    (w.finish().unwrap(), events)
}

fn analyse<P: Pass>(bytes: &[u8], mut pass: P) -> (P, analysis::Context) {
    let mut r = TraceReader::new(bytes).unwrap();
    let cx = analysis::run(&mut r, &mut pass).unwrap();
    (pass, cx)
}

/// A sink that counts bytes: the exports' output is not what is measured.
struct Sink(u64);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Runs every report on `bytes`; returns the largest peak and which report it was.
fn every_report(bytes: &[u8]) -> Vec<(&'static str, usize)> {
    let mut peaks = Vec::new();
    let mut measure = |name: &'static str, f: &dyn Fn()| peaks.push((name, peak_of(f)));
    measure("tree", &|| {
        let (p, mut cx) = analyse(bytes, Tree::new(TreeOptions::default()));
        let r = p.finish(&mut cx);
        analysis::write_tree_text(&mut Sink(0), &r).unwrap();
    });
    measure("tree --exec", &|| {
        let mut o = TreeOptions::default();
        o.exec = true;
        let (p, mut cx) = analyse(bytes, Tree::new(o));
        p.finish(&mut cx);
    });
    measure("leaks", &|| {
        let (p, mut cx) = analyse(bytes, Leaks::new(LeakOptions::default()));
        let r = p.finish(&mut cx);
        analysis::write_leaks_text(&mut Sink(0), &r, &Default::default()).unwrap();
    });
    measure("slow", &|| {
        let mut o = SlowOptions::default();
        o.threshold_ns = 0;
        let (p, mut cx) = analyse(bytes, Slow::new(o));
        let r = p.finish(&mut cx);
        analysis::write_slow_text(&mut Sink(0), &r).unwrap();
    });
    measure("requests", &|| {
        let (p, mut cx) = analyse(bytes, Requests::new(RequestOptions::default()));
        let r = p.finish(&mut cx);
        analysis::write_requests_text(&mut Sink(0), &r).unwrap();
    });
    for (name, weight, time_order) in [
        ("flame --folded", Weight::Sync, false),
        ("flame --folded --weight async", Weight::Async, false),
        ("flame --folded --weight count", Weight::Count, false),
        ("flame --folded --flamechart", Weight::Sync, true),
    ] {
        measure(name, &|| {
            let mut o = FoldOptions::default();
            o.weight = weight;
            o.time_order = time_order;
            let f = fold(TraceReader::new(bytes).unwrap(), &o).unwrap();
            f.write_lines(Sink(0)).unwrap();
        });
    }
    measure("export speedscope", &|| {
        let f = fold(TraceReader::new(bytes).unwrap(), &FoldOptions::default()).unwrap();
        write_speedscope(&f, "t", Sink(0)).unwrap();
    });
    measure("export chrome", &|| {
        write_chrome(TraceReader::new(bytes).unwrap(), &ChromeOptions::default(), Sink(0)).unwrap();
    });
    measure("export chrome --from-ms/--to-ms", &|| {
        let mut o = ChromeOptions::default();
        let mut f = Filter::default();
        f.from_ns = Some(1_000_000);
        f.to_ns = Some(50_000_000);
        o.filter = f;
        write_chrome(TraceReader::new(bytes).unwrap(), &o, Sink(0)).unwrap();
    });
    peaks
}

/// Allowed peak: a fixed part (the direct-mapped caches of recently destroyed resources, a
/// few MB each) plus a part per event, generous for the live resources an event can create.
/// Memory in the square of a chain's length (thousands of links) is far above it.
fn bound(events: u64) -> usize {
    (32 << 20) + 2048 * events as usize
}

#[test]
fn every_report_finishes_in_bounded_memory_on_adversarial_traces() {
    // Why a thread: a report that spins must fail the test, not block the run.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases: 48,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let result = runner.run(&steps(), |(streams, steps, dropped)| {
            let (bytes, events) = build(streams, &steps, &dropped);
            for (name, peak) in every_report(&bytes) {
                prop_assert!(
                    peak <= bound(events),
                    "{name}: {peak} bytes at once on {events} events (bound {})",
                    bound(events)
                );
            }
            Ok(())
        });
        let _ = tx.send(result.map_err(|e| e.to_string()));
    });
    match rx.recv_timeout(std::time::Duration::from_secs(600)) {
        Ok(r) => r.unwrap(),
        Err(_) => panic!("a report did not finish on a generated trace"),
    }
}
