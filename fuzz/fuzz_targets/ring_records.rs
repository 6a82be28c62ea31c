//! Arbitrary bytes as the records of a ring (another process's memory): decoding them into a
//! trace must never panic, and the trace written must read back without error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_core::ingest::StreamDecoder;
use tracer_core::record::{RawRecord, RECORD_SIZE};
use tracer_core::trace::{TraceMeta, TraceReader, TraceWriter};

fuzz_target!(|data: &[u8]| {
    let records: Vec<RawRecord> = data
        .chunks_exact(RECORD_SIZE)
        .map(|c| c.try_into().expect("32-byte chunk"))
        .collect();
    let mut w = TraceWriter::new(Vec::new(), &TraceMeta::default()).expect("writer");
    let stream = w.begin_stream(1, 0, "v0").expect("stream");
    let mut d = StreamDecoder::new(stream, 0);
    // Feed in two uneven halves: strings may straddle batches.
    let mid = records.len() / 3;
    d.feed(&records[..mid], &mut w).expect("feed");
    d.feed(&records[mid..], &mut w).expect("feed");
    let bytes = w.finish().expect("finish");
    let mut r = TraceReader::new(&bytes[..]).expect("reads back");
    while let Some(_) = r.next_item().expect("no corruption") {}
    assert!(!r.truncated());
});
