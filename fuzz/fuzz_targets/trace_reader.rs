//! Arbitrary bytes given to the trace reader: it must return items or typed errors, never
//! panic, and never yield anything after an error or after reporting the end.
//!
//! `cargo +nightly fuzz run trace_reader` (from this directory). The same property runs in
//! plain `cargo test` as `random_bytes_never_panic` in tracer-core.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracer_core::trace::{Batch, Item, TraceReader};

fuzz_target!(|data: &[u8]| {
    let Ok(mut reader) = TraceReader::new(data) else {
        return;
    };
    let _ = reader.meta();
    // Why alternate the two read paths: they share the block state and must agree.
    let mut events = 0usize;
    loop {
        match reader.next_item() {
            Ok(Some(Item::Event(_))) => events += 1,
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(_) => {
                assert!(
                    matches!(reader.next_item(), Ok(None)),
                    "items after an error"
                );
                return;
            }
        }
        match reader.next_batch() {
            Ok(Some(Batch::Events(evs))) => events += evs.len(),
            Ok(Some(Batch::Item(_))) => {}
            Ok(None) => break,
            Err(_) => return,
        }
    }
    // Every event takes at least one byte of input.
    assert!(events <= data.len());
    let _ = reader.truncated();
    assert!(
        matches!(reader.next_item(), Ok(None)),
        "items after the end"
    );
});
