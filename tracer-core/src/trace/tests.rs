//! Round trips, damage and truncation of trace files, and the API contracts around them.

use super::*;
use proptest::prelude::*;

use super::workload::{meta, promise_workload, Rng, TICK};

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
    let via_iter: Vec<Item> = TraceReader::new(&bytes[..]).unwrap().map(Result::unwrap).collect();
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
                // An older version number reads the same blocks: a reader takes every older
                // version.
                Ok(_) if (8..12).contains(&i) => {}
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
        matches!(err, TraceError::Version { found, supported } if found == TRACE_FORMAT_VERSION + 1 && supported == TRACE_FORMAT_VERSION),
        "{err:?}"
    );
    assert!(err.to_string().contains("upgrade asynctrace"), "{err}");
    assert!(TraceError::NotATrace.to_string().contains("asynctrace record"));
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
    assert_eq!(w.event(&ev).unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
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
    let streams: Vec<StreamId> = (0..3).map(|i| w.begin_stream(1, i, "v22").unwrap()).collect();
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

    /// Events with any ids (JS safe integers, as the ring holds them; half of them in the
    /// promise id range), times and operands survive the delta encoding.
    #[test]
    fn any_events_round_trip(raw in proptest::collection::vec((any::<u64>(), any::<u64>(), 0u8..8, any::<u64>(), any::<u32>(), any::<u32>()), 0..300)) {
        let mut w = TraceWriter::new(Vec::new(), &meta()).unwrap();
        let s = w.begin_stream(1, 0, "v22").unwrap();
        let safe = |v: u64| {
            let v = v & ((1 << 53) - 1);
            if v & 1 == 0 { v % notes::PROMISE_ID_BASE } else { v }
        };
        let evs: Vec<Event> = raw.iter().map(|&(time_ns, id, k, x, a, b)| {
            let (id, x) = (safe(id), safe(x));
            let kind = match k {
                0 => EventKind::Init { type_name: a, trigger: x, exec: x ^ id, stack: (b % 2 == 0).then_some(b) },
                1 => EventKind::Before,
                2 => EventKind::After,
                3 => EventKind::Destroy,
                4 => EventKind::PromiseResolve { by: 0 },
                5 => EventKind::PromiseResolve { by: x },
                6 => EventKind::Note { code: a, a: x, b: id, text: (b % 2 == 0).then_some(b) },
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
