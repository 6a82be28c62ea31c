use super::*;
use crate::record::{decode, encode, Record};

fn info() -> WriterInfo {
    WriterInfo {
        pid: 42,
        thread: 3,
        node_version: "v20.20.2".into(),
        start_ns: 123,
    }
}

type Shared = std::sync::Arc<HeapMemory>;

fn ring(capacity: u32) -> (Producer<Shared>, Consumer<Shared>) {
    let mem = Shared::new(HeapMemory::zeroed(header::ring_bytes(capacity)));
    let p = Producer::create(mem.clone(), capacity, &info()).unwrap();
    let c = Consumer::open(mem).unwrap();
    (p, c)
}

#[test]
fn header_round_trips_writer_info() {
    let (_p, c) = ring(8);
    assert_eq!(c.writer(), info());
    assert_eq!(c.status().state, WriterState::Starting);
}

#[test]
fn full_ring_drops_and_counts_without_overwriting() {
    let (mut p, mut c) = ring(4);
    for id in 0..6 {
        let _ = p.push(&encode(&Record::Before { id }));
    }
    assert_eq!(c.status().dropped, 2);
    let mut out = Vec::new();
    assert_eq!(c.pop_into(&mut out, 100).unwrap(), 4);
    let ids: Vec<_> = out.iter().map(|r| decode(r).unwrap()).collect();
    assert_eq!(ids, (0..4).map(|id| Record::Before { id }).collect::<Vec<_>>());
    // Space is back once the consumer publishes its position.
    p.push(&encode(&Record::Before { id: 9 })).unwrap();
    out.clear();
    c.pop_into(&mut out, 100).unwrap();
    assert_eq!(decode(&out[0]).unwrap(), Record::Before { id: 9 });
}

#[test]
fn push_all_is_all_or_nothing() {
    let (mut p, mut c) = ring(4);
    p.push(&encode(&Record::Before { id: 1 })).unwrap();
    let three = [encode(&Record::After { id: 1 }); 4];
    assert_eq!(p.push_all(&three, 1), Err(PushError::Full));
    let mut out = Vec::new();
    assert_eq!(c.pop_into(&mut out, 100).unwrap(), 1);
}

#[test]
fn positions_survive_32_bit_wraparound() {
    let (mut p, mut c) = ring(4);
    // Jump both sides near 2^32 as if billions of records had passed.
    let start = u32::MAX as u64 - 2;
    p.write = start;
    p.limit = start;
    c.read = start;
    atomic_u64(&c.mem, OFF_READ).store(start, Ordering::Release);
    atomic_u32(&c.mem, OFF_WRITE).store(start as u32, Ordering::Release);
    let mut out = Vec::new();
    for round in 0..5u64 {
        for i in 0..3 {
            p.push(&encode(&Record::Destroy { id: round * 10 + i })).unwrap();
        }
        out.clear();
        assert_eq!(c.pop_into(&mut out, 10).unwrap(), 3);
        assert_eq!(decode(&out[2]).unwrap(), Record::Destroy { id: round * 10 + 2 });
    }
    assert!(c.read_position() > u32::MAX as u64);
}

#[test]
fn foreign_bytes_are_refused() {
    let mem = HeapMemory::zeroed(4096);
    assert!(matches!(Consumer::open(&mem), Err(OpenError::BadMagic)));
    let small = HeapMemory::zeroed(16);
    assert!(matches!(Consumer::open(&small), Err(OpenError::TooSmall(16))));
}

#[test]
fn lying_capacity_is_refused() {
    let mem = HeapMemory::zeroed(header::ring_bytes(4));
    init_header(&mem, 4, &info()).unwrap();
    atomic_u32(&mem, OFF_CAPACITY).store(1024, Ordering::Relaxed);
    assert!(matches!(Consumer::open(&mem), Err(OpenError::Inconsistent(_))));
}

#[test]
fn overrun_write_position_is_an_error_not_a_read() {
    let (_p, mut c) = ring(4);
    atomic_u32(&c.mem, OFF_WRITE).store(100, Ordering::Release);
    let mut out = Vec::new();
    assert_eq!(c.pop_into(&mut out, 10), Err(PopError::Overrun(100)));
    assert!(out.is_empty());
}

#[test]
fn concurrent_producer_and_consumer_see_every_record_in_order() {
    let n: u64 = if cfg!(miri) { 500 } else { 200_000 };
    let (mut p, mut c) = ring(64);
    let writer = std::thread::spawn(move || {
        let mut id = 0;
        while id < n {
            if p.push(&encode(&Record::Before { id })).is_ok() {
                id += 1;
            } else {
                std::thread::yield_now();
            }
        }
        p.dropped
    });
    let mut next = 0;
    let mut out = Vec::new();
    while next < n {
        out.clear();
        c.pop_into(&mut out, 16).unwrap();
        for r in &out {
            assert_eq!(decode(r).unwrap(), Record::Before { id: next });
            next += 1;
        }
        if out.is_empty() {
            std::thread::yield_now();
        }
    }
    let dropped = writer.join().unwrap();
    assert_eq!(c.status().dropped, dropped);
}
