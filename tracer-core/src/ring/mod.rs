//! A single-producer, single-consumer ring of fixed-size records over a plain byte region.
//!
//! The region is either a `Vec` (tests, Miri) or a shared mapping ([`crate::shm`]); the code is
//! the same. The producer is usually the agent's JavaScript, which follows the same protocol
//! by hand; [`Producer`] is the native fallback and the reference for tests.
//!
//! Protocol: the producer copies a record into slot `write % capacity`, then publishes the low
//! 32 bits of `write + 1` with a release store. The consumer loads them with acquire, extends
//! them to 64 bits against its own read position, copies the records out, then publishes the
//! read position with a release store. The producer never overwrites unread records: when
//! `write - read == capacity` it drops the record and counts it in the header.

pub mod header;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::record::{RawRecord, RECORD_FORMAT_VERSION, RECORD_SIZE};
use header::*;

/// Memory a ring lives in.
///
/// # Safety
/// `as_ptr()` must point to `len()` bytes, aligned to 64, valid for reads and writes (from any
/// thread) for as long as the value lives, and the length must not change.
pub unsafe trait RingMemory {
    /// Start of the region.
    fn as_ptr(&self) -> *mut u8;
    /// Length of the region in bytes.
    fn len(&self) -> usize;
    /// Whether the region has no bytes (never a usable ring).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

// SAFETY: a shared reference hands out the same region as the memory it borrows, which by
// the trait's contract stays valid while borrowed.
unsafe impl<M: RingMemory> RingMemory for &M {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

// SAFETY: the Arc keeps the memory alive and hands out the same region as its contents.
unsafe impl<M: RingMemory> RingMemory for std::sync::Arc<M> {
    fn as_ptr(&self) -> *mut u8 {
        (**self).as_ptr()
    }
    fn len(&self) -> usize {
        (**self).len()
    }
}

/// A heap region for rings that are not shared between processes (tests, Miri, benchmarks).
pub struct HeapMemory {
    /// From `Box::into_raw`, so writes through it are allowed (a pointer taken from a shared
    /// borrow of the box would only permit reads; Miri checks this).
    blocks: std::ptr::NonNull<[AlignedBlock]>,
    len: usize,
}

#[repr(C, align(64))]
struct AlignedBlock([u8; 64]);

impl HeapMemory {
    /// A zeroed region of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let boxed: Box<[AlignedBlock]> = (0..len.div_ceil(64)).map(|_| AlignedBlock([0; 64])).collect();
        let blocks = std::ptr::NonNull::from(Box::leak(boxed));
        Self { blocks, len }
    }
}

impl Drop for HeapMemory {
    fn drop(&mut self) {
        // SAFETY: `blocks` came from `Box::leak` in `zeroed` and is freed only here, once.
        drop(unsafe { Box::from_raw(self.blocks.as_ptr()) });
    }
}

// SAFETY: the allocation is 64-aligned, at least `len` bytes, never resized, writable through
// `blocks`, and lives until `HeapMemory` is dropped.
unsafe impl RingMemory for HeapMemory {
    fn as_ptr(&self) -> *mut u8 {
        self.blocks.as_ptr() as *mut u8
    }
    fn len(&self) -> usize {
        self.len
    }
}

// SAFETY: the region is plain bytes; all shared access goes through the ring's atomics and
// the protocol that keeps producer and consumer on different slots.
unsafe impl Send for HeapMemory {}

// SAFETY: as for `Send`.
unsafe impl Sync for HeapMemory {}

/// Why a region is not a ring we can read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Smaller than a header.
    #[error("ring file is too small ({0} bytes)")]
    TooSmall(usize),
    /// The magic number is wrong: not an asynctrace ring.
    #[error("not an asynctrace ring (bad magic)")]
    BadMagic,
    /// Written by another version of the agent.
    #[error("ring format version {found}, this asynctrace reads version {expected}")]
    Version { found: u32, expected: u32 },
    /// Header fields disagree with each other or with the region's size.
    #[error("ring header is inconsistent: {0}")]
    Inconsistent(&'static str),
}

/// Why a push failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PushError {
    /// The ring is full; the records were not written (and were counted as dropped if asked).
    #[error("ring is full")]
    Full,
}

/// Why a pop failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PopError {
    /// The published write position is further ahead than the capacity allows: the producer is
    /// broken or foreign. Nothing was consumed.
    #[error("ring write position is ahead of the read position by {0}, more than its capacity")]
    Overrun(u64),
}

/// Identity of a ring's writer, written once at creation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriterInfo {
    pub pid: u32,
    pub thread: u32,
    pub node_version: String,
    pub start_ns: u64,
}

fn at<T>(mem: &impl RingMemory, off: usize) -> *mut T {
    debug_assert!(off + std::mem::size_of::<T>() <= mem.len());
    // SAFETY: `off` is one of the header offsets, all inside HEADER_SIZE <= len (checked at
    // construction), so the result stays within the region.
    unsafe { mem.as_ptr().add(off).cast() }
}

fn atomic_u32(mem: &impl RingMemory, off: usize) -> &AtomicU32 {
    // SAFETY: the offset is 4-aligned inside a 64-aligned region that outlives `mem`'s borrow;
    // every access to this word, from either side, is atomic.
    unsafe { &*at::<AtomicU32>(mem, off) }
}

fn atomic_u64(mem: &impl RingMemory, off: usize) -> &AtomicU64 {
    // SAFETY: as for `atomic_u32`, with an 8-aligned offset.
    unsafe { &*at::<AtomicU64>(mem, off) }
}

/// Writes a fresh header into `mem`. Call before anyone else can see the region.
pub fn init_header(mem: &impl RingMemory, capacity: u32, info: &WriterInfo) -> Result<(), OpenError> {
    if !capacity.is_power_of_two() {
        return Err(OpenError::Inconsistent("capacity is not a power of two"));
    }
    if mem.len() < ring_bytes(capacity) {
        return Err(OpenError::TooSmall(mem.len()));
    }
    atomic_u64(mem, OFF_MAGIC).store(u64::from_le_bytes(MAGIC), Ordering::Relaxed);
    atomic_u32(mem, OFF_VERSION).store(RING_FORMAT_VERSION, Ordering::Relaxed);
    atomic_u32(mem, OFF_RECORD_SIZE).store(RECORD_SIZE as u32, Ordering::Relaxed);
    atomic_u32(mem, OFF_CAPACITY).store(capacity, Ordering::Relaxed);
    atomic_u32(mem, OFF_HEADER_SIZE).store(HEADER_SIZE as u32, Ordering::Relaxed);
    atomic_u32(mem, OFF_PID).store(info.pid, Ordering::Relaxed);
    atomic_u32(mem, OFF_THREAD).store(info.thread, Ordering::Relaxed);
    atomic_u32(mem, OFF_WRITE).store(0, Ordering::Relaxed);
    atomic_u32(mem, OFF_STATE).store(WriterState::Starting as u32, Ordering::Relaxed);
    atomic_u64(mem, OFF_READ).store(0, Ordering::Relaxed);
    atomic_u64(mem, OFF_DROPPED).store(0f64.to_bits(), Ordering::Relaxed);
    atomic_u32(mem, OFF_EXIT_CODE).store(0, Ordering::Relaxed);
    atomic_u64(mem, OFF_START_NS).store((info.start_ns as f64).to_bits(), Ordering::Relaxed);
    let mut v = [0u8; NODE_VERSION_LEN];
    let src = info.node_version.as_bytes();
    let n = src.len().min(NODE_VERSION_LEN);
    v[..n].copy_from_slice(&src[..n]);
    for (i, chunk) in v.chunks_exact(8).enumerate() {
        let word = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        atomic_u64(mem, OFF_NODE_VERSION + i * 8).store(word, Ordering::Release);
    }
    Ok(())
}

/// The writer state word of an initialised ring.
pub fn writer_state(mem: &impl RingMemory) -> WriterState {
    WriterState::from_u32(atomic_u32(mem, OFF_STATE).load(Ordering::Acquire))
}

/// Sets the writer state (and exit code) of an initialised ring, as its writer.
pub fn set_writer_state(mem: &impl RingMemory, state: WriterState, exit_code: i32) {
    atomic_u32(mem, OFF_EXIT_CODE).store(exit_code as u32, Ordering::Relaxed);
    atomic_u32(mem, OFF_STATE).store(state as u32, Ordering::Release);
}

/// Checks a header written by someone else and returns its capacity.
fn validate(mem: &impl RingMemory) -> Result<u32, OpenError> {
    if mem.len() < HEADER_SIZE {
        return Err(OpenError::TooSmall(mem.len()));
    }
    if atomic_u64(mem, OFF_MAGIC).load(Ordering::Acquire).to_le_bytes() != MAGIC {
        return Err(OpenError::BadMagic);
    }
    let version = atomic_u32(mem, OFF_VERSION).load(Ordering::Relaxed);
    if version != RING_FORMAT_VERSION {
        return Err(OpenError::Version {
            found: version,
            expected: RING_FORMAT_VERSION,
        });
    }
    if atomic_u32(mem, OFF_RECORD_SIZE).load(Ordering::Relaxed) != RECORD_SIZE as u32 {
        return Err(OpenError::Inconsistent("record size"));
    }
    if atomic_u32(mem, OFF_HEADER_SIZE).load(Ordering::Relaxed) != HEADER_SIZE as u32 {
        return Err(OpenError::Inconsistent("header size"));
    }
    let capacity = atomic_u32(mem, OFF_CAPACITY).load(Ordering::Relaxed);
    if !capacity.is_power_of_two() || capacity > 1 << 30 {
        return Err(OpenError::Inconsistent("capacity"));
    }
    if mem.len() < ring_bytes(capacity) {
        return Err(OpenError::Inconsistent("file shorter than its capacity"));
    }
    Ok(capacity)
}

fn slot_ptr(mem: &impl RingMemory, capacity: u32, pos: u64) -> *mut u8 {
    let slot = (pos & (capacity as u64 - 1)) as usize;
    // SAFETY: slot < capacity and the region holds HEADER_SIZE + capacity * RECORD_SIZE bytes
    // (checked by `validate`/`init_header` before any producer or consumer exists).
    unsafe { mem.as_ptr().add(HEADER_SIZE + slot * RECORD_SIZE) }
}

/// The writing side (native fallback of the agent, tests, benchmarks).
pub struct Producer<M: RingMemory> {
    mem: M,
    capacity: u32,
    write: u64,
    /// `read + capacity` as last seen; reloaded only when `write` reaches it.
    limit: u64,
    dropped: u64,
}

impl<M: RingMemory> Producer<M> {
    /// Initialises the header in `mem` and returns the producer.
    pub fn create(mem: M, capacity: u32, info: &WriterInfo) -> Result<Self, OpenError> {
        init_header(&mem, capacity, info)?;
        Ok(Self {
            mem,
            capacity,
            write: 0,
            limit: capacity as u64,
            dropped: 0,
        })
    }

    /// Attaches to a ring whose header is already initialised and nothing was written yet.
    pub fn attach(mem: M) -> Result<Self, OpenError> {
        let capacity = validate(&mem)?;
        let write = atomic_u32(&mem, OFF_WRITE).load(Ordering::Acquire) as u64;
        Ok(Self {
            mem,
            capacity,
            write,
            limit: write,
            dropped: 0,
        })
    }

    /// Capacity in records.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Room for `n` more records right now.
    fn has_room(&mut self, n: u64) -> bool {
        if self.write + n <= self.limit {
            return true;
        }
        let read_lo = atomic_u64(&self.mem, OFF_READ).load(Ordering::Acquire) as u32;
        let used = (self.write as u32).wrapping_sub(read_lo) as u64;
        self.limit = self.write - used + self.capacity as u64;
        self.write + n <= self.limit
    }

    /// Writes all `records` or none of them; on `Full`, counts `dropped_events` as dropped.
    pub fn push_all(&mut self, records: &[RawRecord], dropped_events: u64) -> Result<(), PushError> {
        if !self.has_room(records.len() as u64) {
            self.count_dropped(dropped_events);
            return Err(PushError::Full);
        }
        for rec in records {
            let dst = slot_ptr(&self.mem, self.capacity, self.write);
            // SAFETY: `dst` is a slot inside the region that the consumer will not read until
            // the release store below publishes it, and that it has finished reading (room check).
            unsafe { std::ptr::copy_nonoverlapping(rec.as_ptr(), dst, RECORD_SIZE) };
            self.write += 1;
        }
        atomic_u32(&self.mem, OFF_WRITE).store(self.write as u32, Ordering::Release);
        Ok(())
    }

    /// Writes one record; on `Full` counts one dropped event.
    pub fn push(&mut self, record: &RawRecord) -> Result<(), PushError> {
        self.push_all(std::slice::from_ref(record), 1)
    }

    /// Adds to the header's drop counter.
    pub fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
        atomic_u64(&self.mem, OFF_DROPPED).store((self.dropped as f64).to_bits(), Ordering::Release);
    }

    /// Sets the writer state (and the exit code when exiting).
    pub fn set_state(&self, state: WriterState, exit_code: i32) {
        atomic_u32(&self.mem, OFF_EXIT_CODE).store(exit_code as u32, Ordering::Relaxed);
        atomic_u32(&self.mem, OFF_STATE).store(state as u32, Ordering::Release);
    }

    /// Records written so far.
    pub fn written(&self) -> u64 {
        self.write
    }
}

/// What the consumer sees of the writer right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WriterStatus {
    pub state: WriterState,
    pub exit_code: i32,
    pub dropped: u64,
}

/// The reading side, in the `asynctrace` process.
pub struct Consumer<M: RingMemory> {
    mem: M,
    capacity: u32,
    read: u64,
}

impl<M: RingMemory> Consumer<M> {
    /// Validates the header of a ring written by another process.
    pub fn open(mem: M) -> Result<Self, OpenError> {
        let capacity = validate(&mem)?;
        let read = atomic_u64(&mem, OFF_READ).load(Ordering::Acquire);
        Ok(Self { mem, capacity, read })
    }

    /// Who writes this ring.
    pub fn writer(&self) -> WriterInfo {
        let mut v = Vec::with_capacity(NODE_VERSION_LEN);
        for i in 0..NODE_VERSION_LEN / 8 {
            v.extend_from_slice(
                &atomic_u64(&self.mem, OFF_NODE_VERSION + i * 8)
                    .load(Ordering::Acquire)
                    .to_le_bytes(),
            );
        }
        let end = v.iter().position(|&b| b == 0).unwrap_or(v.len());
        let start = f64::from_bits(atomic_u64(&self.mem, OFF_START_NS).load(Ordering::Relaxed));
        WriterInfo {
            pid: atomic_u32(&self.mem, OFF_PID).load(Ordering::Relaxed),
            thread: atomic_u32(&self.mem, OFF_THREAD).load(Ordering::Relaxed),
            node_version: String::from_utf8_lossy(&v[..end]).into_owned(),
            start_ns: if start.is_finite() && start >= 0.0 {
                start as u64
            } else {
                0
            },
        }
    }

    /// State, exit code and drop count as published now.
    pub fn status(&self) -> WriterStatus {
        let state = WriterState::from_u32(atomic_u32(&self.mem, OFF_STATE).load(Ordering::Acquire));
        let dropped = f64::from_bits(atomic_u64(&self.mem, OFF_DROPPED).load(Ordering::Acquire));
        WriterStatus {
            state,
            exit_code: atomic_u32(&self.mem, OFF_EXIT_CODE).load(Ordering::Relaxed) as i32,
            dropped: if dropped.is_finite() && dropped >= 0.0 {
                dropped as u64
            } else {
                0
            },
        }
    }

    /// Capacity in records.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// The memory the ring lives in.
    pub fn memory(&self) -> &M {
        &self.mem
    }

    /// Records consumed so far.
    pub fn read_position(&self) -> u64 {
        self.read
    }

    /// Records published and not yet consumed.
    pub fn available(&self) -> Result<u64, PopError> {
        let write_lo = atomic_u32(&self.mem, OFF_WRITE).load(Ordering::Acquire);
        let avail = write_lo.wrapping_sub(self.read as u32) as u64;
        if avail > self.capacity as u64 {
            return Err(PopError::Overrun(avail));
        }
        Ok(avail)
    }

    /// Appends up to `max` records to `out` and frees their slots. Returns how many.
    pub fn pop_into(&mut self, out: &mut Vec<RawRecord>, max: usize) -> Result<usize, PopError> {
        let n = self.available()?.min(max as u64) as usize;
        out.reserve(n);
        // At most two contiguous runs: up to the end of the slots, then from the start.
        let mut left = n;
        while left > 0 {
            let slot = (self.read & (self.capacity as u64 - 1)) as usize;
            let run = left.min(self.capacity as usize - slot);
            let src = slot_ptr(&self.mem, self.capacity, self.read);
            let len = out.len();
            // SAFETY: the slots [read, read + run) lie inside the region (run stops at its end)
            // and in [read, write), published by the producer's release store that our acquire
            // load in `available` observed; the producer does not touch them until we publish a
            // read position past them. `reserve` made room for `run` more records in `out`,
            // which are plain bytes, valid for any content once copied.
            unsafe {
                std::ptr::copy_nonoverlapping(src, out.as_mut_ptr().add(len).cast::<u8>(), run * RECORD_SIZE);
                out.set_len(len + run);
            }
            self.read += run as u64;
            left -= run;
        }
        if n > 0 {
            atomic_u64(&self.mem, OFF_READ).store(self.read, Ordering::Release);
        }
        Ok(n)
    }
}

/// Checks the record format a ring is written in; re-exported for the reader's messages.
pub const fn record_format_version() -> u32 {
    RECORD_FORMAT_VERSION
}

#[cfg(test)]
mod tests;
