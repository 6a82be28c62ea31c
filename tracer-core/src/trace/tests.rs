//! Round trips, damage and truncation of trace files, and the size and speed of events.

use super::*;
use proptest::prelude::*;

/// xorshift64*: deterministic workloads without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TICK: u64 = 50_000;

fn meta() -> TraceMeta {
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
pub(crate) fn promise_workload(
    stream: StreamId,
    n: usize,
    seed: u64,
    type_name: StringId,
) -> Vec<Event> {
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
                push(&mut out, time, id, EventKind::PromiseResolve);
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

/// A small trace with every item kind and two interleaved streams.
fn sample() -> (Vec<u8>, Vec<Item>) {
    let mut items = Vec::new();
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    let s0 = w.begin_stream(100, 0, "v22.1.0").unwrap();
    items.push(Item::StreamStart(StreamInfo {
        stream: s0,
        pid: 100,
        thread: 0,
        node_version: "v22.1.0".into(),
    }));
    w.stream_meta(s0, r#"{"argv":["node"]}"#).unwrap();
    items.push(Item::StreamMeta {
        stream: s0,
        json: r#"{"argv":["node"]}"#.into(),
    });
    let promise = w.intern("PROMISE");
    let label = w.intern("GET /users/7 ✓");
    assert_eq!(w.intern("PROMISE"), promise, "interning dedups");
    let s1 = w.begin_stream(100, 1, "v22.1.0").unwrap();
    items.push(Item::String {
        id: promise,
        text: "PROMISE".into(),
    });
    items.push(Item::String {
        id: label,
        text: "GET /users/7 ✓".into(),
    });
    items.push(Item::StreamStart(StreamInfo {
        stream: s1,
        pid: 100,
        thread: 1,
        node_version: "v22.1.0".into(),
    }));
    let mut evs = promise_workload(s0, 40, 7, promise);
    evs.push(Event {
        stream: s0,
        time_ns: 9_000_000,
        id: 12,
        kind: EventKind::Label { text: label },
    });
    evs.push(Event {
        stream: s0,
        time_ns: 1,
        id: u64::MAX,
        kind: EventKind::Destroy,
    });
    for ev in &evs {
        w.event(ev).unwrap();
    }
    w.flush().unwrap();
    items.extend(evs.iter().copied().map(Item::Event));
    let end0 = StreamEnd {
        stream: s0,
        events: 42,
        dropped: 1,
        malformed: 0,
        ending: Ending::Exited { code: 0 },
    };
    w.end_stream(&end0).unwrap();
    items.push(Item::StreamEnd(end0));
    let end1 = StreamEnd {
        stream: s1,
        events: 0,
        dropped: 0,
        malformed: 3,
        ending: Ending::Signaled { signal: 9 },
    };
    w.end_stream(&end1).unwrap();
    items.push(Item::StreamEnd(end1));
    (w.finish().unwrap(), items)
}

/// Reads everything; `Ok((items, truncated))` or the first error.
fn read_all(bytes: &[u8]) -> Result<(Vec<Item>, bool), TraceError> {
    let mut r = TraceReader::new(bytes)?;
    let mut items = Vec::new();
    while let Some(item) = r.next_item()? {
        items.push(item);
    }
    Ok((items, r.truncated()))
}

#[test]
fn every_item_kind_round_trips_in_file_order() {
    let (bytes, expected) = sample();
    let r = TraceReader::new(&bytes[..]).unwrap();
    assert_eq!(r.meta(), &meta());
    let (items, truncated) = read_all(&bytes).unwrap();
    assert_eq!(items, expected);
    assert!(!truncated);
    let via_iter: Vec<Item> = TraceReader::new(&bytes[..])
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(via_iter, expected);
}

#[test]
fn truncation_at_every_offset_yields_a_prefix_and_says_so() {
    let (bytes, expected) = sample();
    for cut in 0..bytes.len() {
        match read_all(&bytes[..cut]) {
            Ok((items, truncated)) => {
                assert!(truncated, "cut at {cut} not reported as truncated");
                assert_eq!(items[..], expected[..items.len()], "cut at {cut}");
            }
            Err(TraceError::Empty) => assert_eq!(cut, 0),
            Err(TraceError::TruncatedHeader) => assert!(cut > 0, "cut at {cut}"),
            Err(e) => panic!("cut at {cut}: unexpected error {e}"),
        }
    }
}

#[test]
fn a_flipped_byte_is_corrupt_never_a_panic() {
    let (bytes, expected) = sample();
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[i] ^= flip;
            match read_all(&damaged) {
                Err(TraceError::Corrupt { .. }) => {}
                Err(TraceError::NotATrace) => assert!(i < MAGIC.len()),
                Err(TraceError::Version { .. }) => assert!(i < 12),
                Err(e) => panic!("byte {i} ^ {flip:#x}: unexpected error {e}"),
                // Why tolerated: every block is checksummed, so only a flip that leaves the
                // data intact (none here) could read cleanly.
                Ok((items, _)) => {
                    assert_ne!(items, expected, "byte {i} ^ {flip:#x} went unnoticed")
                }
            }
        }
    }
}

#[test]
fn header_errors_are_typed_and_explain_themselves() {
    assert!(matches!(TraceReader::new(&b""[..]), Err(TraceError::Empty)));
    assert!(matches!(
        TraceReader::new(&b"{\"json\": 1}"[..]),
        Err(TraceError::NotATrace)
    ));
    let (mut bytes, _) = sample();
    bytes[8..12].copy_from_slice(&(TRACE_FORMAT_VERSION + 1).to_le_bytes());
    let err = TraceReader::new(&bytes[..]).unwrap_err();
    assert!(
        matches!(
            err,
            TraceError::Version {
                found: 2,
                supported: 1
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade asynctrace"), "{err}");
    assert!(TraceError::NotATrace
        .to_string()
        .contains("asynctrace record"));
}

#[test]
fn open_names_the_path_and_rejects_directories() {
    let dir = std::env::temp_dir().join(format!("asynctrace-trace-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = open(&dir).unwrap_err();
    assert!(matches!(err, TraceError::IsDirectory { .. }), "{err:?}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    let missing = dir.join("missing.atrace");
    let err = open(&missing).unwrap_err();
    assert!(
        matches!(err, TraceError::Io { .. }) && err.to_string().contains("missing.atrace"),
        "{err}"
    );
    let file = dir.join("ok.atrace");
    std::fs::write(&file, sample().0).unwrap();
    assert_eq!(open(&file).unwrap().count(), sample().1.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn writer_rejects_events_of_unknown_or_ended_streams() {
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    let ev = Event {
        stream: 0,
        time_ns: 0,
        id: 1,
        kind: EventKind::Before,
    };
    assert_eq!(
        w.event(&ev).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput
    );
    let s = w.begin_stream(1, 0, "v20").unwrap();
    w.event(&ev).unwrap();
    w.end_stream(&StreamEnd {
        stream: s,
        events: 1,
        dropped: 0,
        malformed: 0,
        ending: Ending::Running,
    })
    .unwrap();
    assert!(w.event(&ev).is_err());
    assert_eq!(w.events_written(), 1);
}

#[test]
fn interleaved_streams_keep_per_stream_order() {
    let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
    let t = w.intern("PROMISE");
    let streams: Vec<StreamId> = (0..3)
        .map(|i| w.begin_stream(1, i, "v22").unwrap())
        .collect();
    let per: Vec<Vec<Event>> = streams
        .iter()
        .map(|&s| promise_workload(s, 50_000, u64::from(s) + 3, t))
        .collect();
    let mut rng = Rng(99);
    let mut next = [0usize; 3];
    while next.iter().zip(&per).any(|(&i, evs)| i < evs.len()) {
        let s = rng.below(3) as usize;
        if let Some(ev) = per[s].get(next[s]) {
            w.event(ev).unwrap();
            next[s] += 1;
            if rng.below(10_000) == 0 {
                w.flush().unwrap();
            }
        }
    }
    let (items, truncated) = read_all(&w.finish().unwrap()).unwrap();
    assert!(!truncated);
    for (s, expected) in per.iter().enumerate() {
        let got: Vec<Event> = items
            .iter()
            .filter_map(|i| match i {
                Item::Event(e) if e.stream == s as StreamId => Some(*e),
                _ => None,
            })
            .collect();
        assert_eq!(&got, expected, "stream {s}");
    }
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

proptest! {
    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = read_all(&bytes);
    }

    /// Random bytes after a valid header reach the block decoders, not just the magic check.
    #[test]
    fn random_blocks_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..4000) {
        let (bytes, _) = sample();
        let mut input = bytes[..cut.min(bytes.len())].to_vec();
        input.extend_from_slice(&tail);
        let _ = read_all(&input);
    }

    /// Events with arbitrary ids, times and operands survive the delta encoding.
    #[test]
    fn any_events_round_trip(raw in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u8..6, any::<u64>(), any::<u32>(), any::<u32>()), 0..300)) {
        let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
        let s = w.begin_stream(1, 0, "v22").unwrap();
        let evs: Vec<Event> = raw.iter().map(|&(time_ns, id, k, x, a, b)| {
            let kind = match k {
                0 => EventKind::Init { type_name: a, trigger: x, exec: x ^ id, stack: (b % 2 == 0).then_some(b) },
                1 => EventKind::Before,
                2 => EventKind::After,
                3 => EventKind::Destroy,
                4 => EventKind::PromiseResolve,
                _ => EventKind::Label { text: a },
            };
            Event { stream: s, time_ns: time_ns % 4 * TICK + time_ns % 3 * (time_ns >> 40), id, kind }
        }).collect();
        for ev in &evs {
            w.event(ev).unwrap();
        }
        let (items, _) = read_all(&w.finish().unwrap()).unwrap();
        let got: Vec<Event> = items.iter().filter_map(|i| if let Item::Event(e) = i { Some(*e) } else { None }).collect();
        prop_assert_eq!(got, evs);
    }
}

#[test]
fn batches_and_items_can_be_mixed_and_agree() {
    let (bytes, expected) = sample();
    let mut r = TraceReader::new(&bytes[..]).unwrap();
    let mut got = Vec::new();
    // Why alternate: next_item may stop mid-block, and next_batch must continue from there.
    while let Some(item) = r.next_item().unwrap() {
        got.push(item);
        match r.next_batch().unwrap() {
            Some(Batch::Events(evs)) => got.extend(evs.iter().copied().map(Item::Event)),
            Some(Batch::Item(item)) => got.push(item),
            None => break,
        }
    }
    assert_eq!(got, expected);
    assert!(!r.truncated());
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
                sum = evs
                    .iter()
                    .fold(sum, |a, e| a.wrapping_add(e.id ^ e.time_ns));
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
    match stat
        .split_whitespace()
        .next()
        .and_then(|ns| ns.parse::<f64>().ok())
    {
        Some(ns) => ns / 1e9,
        None => std::time::UNIX_EPOCH
            .elapsed()
            .map_or(0.0, |d| d.as_secs_f64()),
    }
}
