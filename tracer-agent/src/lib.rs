//! The native half of the asynctrace agent.
//!
//! The JavaScript preload (`js/agent.js`) does the per-event work: it writes records straight
//! into the ring through a `Float64Array`, because one N-API call per event costs more than the
//! hook itself. This addon only does what JavaScript cannot:
//!
//! - map the ring file and hand it to JavaScript as an external `ArrayBuffer` ([`open_ring`]);
//! - keep a coarse clock word fresh from a native thread ([`clock_buffer`]), because
//!   `performance.now()` per event is most of what a recorder adds;
//! - where the runtime refuses external buffers (V8 sandbox, Electron), accept batches of
//!   records copied from a JS staging array ([`open_staged_ring`], [`flush_staged`]).
//!
//! Nothing here prints, panics into the host, or throws except from the set-up calls, which the
//! preload catches. Mappings are never unmapped: the clock thread and the external buffers may
//! touch them until the process is gone.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi_derive::napi;
use tracer_core::record::{self, RawRecord, RECORD_SIZE};
use tracer_core::ring::header::{self, WriterState};
use tracer_core::ring::{self, Producer, RingMemory, WriterInfo};
use tracer_core::shm::{self, SharedRing};

/// Monotonic nanoseconds as f64 bits, refreshed by the clock thread.
static CLOCK: AtomicU64 = AtomicU64::new(0);
static CLOCK_THREAD: OnceLock<()> = OnceLock::new();

fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Monotonic time in whole microseconds (as nanoseconds): the trace encodes microsecond ticks.
fn monotonic_us_in_ns() -> u64 {
    monotonic_ns() / 1000 * 1000
}

fn start_clock(tick_us: u32) {
    CLOCK_THREAD.get_or_init(|| {
        CLOCK.store((monotonic_us_in_ns() as f64).to_bits(), Ordering::Relaxed);
        let tick = Duration::from_micros(tick_us.clamp(5, 100_000) as u64);
        let _ = std::thread::Builder::new()
            .name("asynctrace-clock".into())
            .spawn(move || loop {
                std::thread::sleep(tick);
                CLOCK.store((monotonic_ns() as f64).to_bits(), Ordering::Relaxed);
            });
    });
}

fn err(msg: impl Into<String>) -> Error {
    Error::new(Status::GenericFailure, msg.into())
}

/// Header offsets, so the JavaScript side never hard-codes them.
#[napi(catch_unwind)]
pub fn layout() -> std::collections::HashMap<String, u32> {
    let mut m: std::collections::HashMap<String, u32> = header::layout()
        .iter()
        .map(|(k, v)| (k.to_string(), *v as u32))
        .collect();
    m.insert("recordFormat".into(), record::RECORD_FORMAT_VERSION);
    m.insert("ringFormat".into(), header::RING_FORMAT_VERSION);
    m
}

/// Monotonic clock in nanoseconds (as a double), for the staged fallback's time base.
#[napi(catch_unwind)]
pub fn monotonic_now() -> f64 {
    monotonic_ns() as f64
}

/// The smallest ring the agent falls back to when shared memory is short.
const MIN_CAPACITY: u32 = 1024;

/// How often the smallest ring is tried again when space ran out (2 ms apart, at thread start).
const FLOOR_RETRIES: u32 = 5;

/// The largest power of two up to `capacity` (and at least [`MIN_CAPACITY`]) whose ring takes
/// at most half of the space free in `dir`, leaving room for threads that start later.
fn fitting_capacity(dir: &str, capacity: u32) -> u32 {
    let Ok(st) = rustix::fs::statvfs(dir) else {
        return capacity;
    };
    let free = st.f_bavail.saturating_mul(st.f_frsize);
    let mut want = capacity;
    while want > MIN_CAPACITY && header::ring_bytes(want) as u64 > free / 2 {
        want /= 2;
    }
    want
}

/// Creates this thread's ring with `capacity` records, or, when the file system has no room
/// for it, the largest smaller power of two that fits (down to [`MIN_CAPACITY`]). The
/// JavaScript side reads the capacity it got from the buffer's length.
///
/// When this thread's environment is torn down (a worker that ends), the ring says how it
/// ended if its exit handler did not run, and is given back: its pages become private zero
/// pages (see [`SharedRing::release`]), and the file's memory is freed once the reader has
/// drained and unlinked it.
fn create_ring(
    env: &Env,
    dir: &str,
    capacity: u32,
    pid: u32,
    thread: u32,
    node_version: String,
    internal: bool,
) -> Result<&'static SharedRing> {
    let info = WriterInfo {
        pid,
        thread,
        node_version,
        start_ns: monotonic_ns(),
    };
    // Start from what the file system has free: threads starting together each try in turn,
    // and a failing reservation holds its pages until it is undone, so oversized attempts by
    // one thread can starve another's smallest ring.
    let mut want = fitting_capacity(dir, capacity);
    let mut retries = 0;
    let ring = loop {
        match shm::create(Path::new(dir), want, &info) {
            Ok(r) => break r,
            Err(e) if shm::is_out_of_space(&e) && want / 2 >= MIN_CAPACITY => want /= 2,
            // The last room may be held for a moment by another thread's failing attempt.
            Err(e) if shm::is_out_of_space(&e) && retries < FLOOR_RETRIES => {
                retries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) if shm::is_out_of_space(&e) => {
                return Err(err(format!("no room in {dir} for a ring of {want} records")))
            }
            Err(e) => return Err(err(format!("cannot create ring in {dir}: {e}"))),
        }
    };
    // Never unmapped: JavaScript and the reader may touch it until the process ends.
    let ring: &'static SharedRing = Box::leak(Box::new(ring));
    env.add_env_cleanup_hook(ring, move |ring| {
        // No exit handler ran: a worker stopped from outside (`worker.terminate()`, or its
        // process exiting). Node's own threads (module loader hooks) end that way every time,
        // which for them is the normal end.
        if thread != 0 && ring::writer_state(ring) != WriterState::Exited {
            if internal {
                ring::set_writer_state(ring, WriterState::Exited, 0);
            } else {
                ring::set_writer_state(ring, WriterState::Terminated, 0);
            }
        }
        // The environment that wrote through this mapping is gone; the reader has its own.
        let _ = ring.release();
    })?;
    Ok(ring)
}

/// Wraps `'static` memory in an external ArrayBuffer, or fails where the runtime would copy.
fn external(env: &Env, ptr: *mut u8, len: usize) -> Result<ArrayBuffer<'_>> {
    // SAFETY: `ptr` points to `len` bytes that are never freed or unmapped (a leaked mapping or
    // a static), so the buffer may outlive any JS object; the finalizer has nothing to free.
    let buf = unsafe { ArrayBuffer::from_external(env, ptr, len, (), |_, _| {}) }?;
    if !std::ptr::eq(buf.as_ptr(), ptr) {
        // napi-rs silently copies where external buffers are forbidden; a copy is useless to us.
        return Err(err("external ArrayBuffers are not allowed in this runtime"));
    }
    Ok(buf)
}

/// Creates this thread's ring and returns it as an external `ArrayBuffer` (header + records).
#[napi(catch_unwind)]
pub fn open_ring<'env>(
    env: &'env Env,
    dir: String,
    capacity: u32,
    pid: u32,
    thread: u32,
    node_version: String,
    internal: Option<bool>,
) -> Result<ArrayBuffer<'env>> {
    let ring = create_ring(
        env,
        &dir,
        capacity,
        pid,
        thread,
        node_version,
        internal.unwrap_or(false),
    )?;
    external(env, ring.as_ptr(), ring.len())
}

/// An 8-byte external buffer holding the clock word (monotonic ns as f64), refreshed every
/// `tick_us` microseconds by a native thread shared by all threads of the process.
#[napi(catch_unwind)]
pub fn clock_buffer(env: &Env, tick_us: u32) -> Result<ArrayBuffer<'_>> {
    start_clock(tick_us);
    external(env, CLOCK.as_ptr().cast(), 8)
}

/// Rings opened in staged mode, by handle.
static STAGED: Mutex<Vec<Producer<&'static SharedRing>>> = Mutex::new(Vec::new());

/// Staged fallback: creates the ring and returns a handle for [`flush_staged`].
#[napi(catch_unwind)]
pub fn open_staged_ring(
    env: &Env,
    dir: String,
    capacity: u32,
    pid: u32,
    thread: u32,
    node_version: String,
    internal: Option<bool>,
) -> Result<u32> {
    let ring = create_ring(
        env,
        &dir,
        capacity,
        pid,
        thread,
        node_version,
        internal.unwrap_or(false),
    )?;
    let producer = Producer::attach(ring).map_err(|e| err(e.to_string()))?;
    let mut staged = STAGED.lock().map_err(|_| err("staged rings poisoned"))?;
    staged.push(producer);
    Ok(staged.len() as u32 - 1)
}

/// Capacity in records of a staged ring (smaller than asked when shared memory was short).
#[napi(catch_unwind)]
pub fn staged_capacity(handle: u32) -> Result<u32> {
    let rings = STAGED.lock().map_err(|_| err("staged rings poisoned"))?;
    let producer = rings.get(handle as usize).ok_or_else(|| err("unknown ring handle"))?;
    Ok(producer.capacity())
}

/// Copies `count` staged records into the ring, all or nothing. Returns the number of hook
/// events dropped because the ring was full (0 when the batch went in); after a drop the caller
/// must forget which strings it sent, since their definitions may have been in the batch.
#[napi(catch_unwind)]
pub fn flush_staged(handle: u32, staged: Float64Array, count: u32) -> Result<u32> {
    let mut rings = STAGED.lock().map_err(|_| err("staged rings poisoned"))?;
    let producer = rings
        .get_mut(handle as usize)
        .ok_or_else(|| err("unknown ring handle"))?;
    let words: &[f64] = &staged;
    let n = (count as usize).min(words.len() / 4);
    let mut batch: Vec<RawRecord> = Vec::with_capacity(n);
    let mut hook_events = 0u64;
    let mut payload_left = 0usize;
    for w in words[..n * 4].chunks_exact(4) {
        let mut raw = [0u8; RECORD_SIZE];
        for (i, x) in w.iter().enumerate() {
            raw[i * 8..i * 8 + 8].copy_from_slice(&x.to_le_bytes());
        }
        if payload_left > 0 {
            payload_left -= 1;
        } else {
            match record::decode(&raw) {
                Ok(record::Record::String { len, .. }) => payload_left = record::string_payload_records(len),
                Ok(
                    record::Record::Init { .. }
                    | record::Record::Before { .. }
                    | record::Record::After { .. }
                    | record::Record::Destroy { .. }
                    | record::Record::PromiseResolve { .. },
                ) => hook_events += 1,
                _ => {}
            }
        }
        batch.push(raw);
    }
    Ok(if producer.push_all(&batch, hook_events).is_err() {
        hook_events as u32
    } else {
        0
    })
}

/// Counts `n` hook events a staged writer lost outside a flush (a hook that failed).
#[napi(catch_unwind)]
pub fn count_staged_drops(handle: u32, n: u32) -> Result<()> {
    let mut rings = STAGED.lock().map_err(|_| err("staged rings poisoned"))?;
    let producer = rings
        .get_mut(handle as usize)
        .ok_or_else(|| err("unknown ring handle"))?;
    producer.count_dropped(n as u64);
    Ok(())
}

/// Marks a staged ring's writer state (the direct path does this from JavaScript).
#[napi(catch_unwind)]
pub fn set_staged_state(handle: u32, exited: bool, exit_code: i32) -> Result<()> {
    let rings = STAGED.lock().map_err(|_| err("staged rings poisoned"))?;
    let producer = rings.get(handle as usize).ok_or_else(|| err("unknown ring handle"))?;
    producer.set_state(
        if exited {
            WriterState::Exited
        } else {
            WriterState::Running
        },
        exit_code,
    );
    Ok(())
}
