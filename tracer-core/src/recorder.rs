//! The reading half of `asynctrace record`: finds the rings that agents create in the session
//! directory, drains each on its own thread, and feeds one writer thread that produces the
//! trace file.
//!
//! ```text
//!  discovery (every 10 ms) ──spawns──> drain thread per ring ──crossbeam──> writer thread ──> trace
//! ```
//!
//! A drain thread ends when its writer has exited (state word), when the writer's process is
//! gone (SIGKILL, crash: what was published is still in the mapping and is drained), or, once
//! recording stops, when its writer stays silent past a grace period.

use std::collections::HashSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::ingest::{HookCounts, StreamDecoder};
use crate::record::RawRecord;
use crate::ring::{header::WriterState, Consumer, WriterInfo};
use crate::shm::{self, SharedRing, RING_SUFFIX};
use crate::trace::{Ending, StreamEnd, TraceWriter};

/// Records taken from a ring per message.
const BATCH: usize = 64 * 1024;
/// How long drains wait for silent writers after recording stops.
const GRACE: Duration = Duration::from_millis(300);

/// What became of one writer thread, for the summary.
#[derive(Debug, Clone)]
pub struct StreamSummary {
    pub pid: u32,
    pub thread: u32,
    pub node_version: String,
    pub counts: HookCounts,
    /// Destroys the recorder dated for promises followed through V8's hooks.
    pub promise_ends: u64,
    pub dropped: u64,
    pub malformed: u64,
    pub ending: Ending,
}

/// What the recording produced.
#[derive(Debug, Clone, Default)]
pub struct RecordSummary {
    pub streams: Vec<StreamSummary>,
    /// Rings that could not be read, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
}

impl RecordSummary {
    /// Events in the trace: the hooks' and the promise ends the recorder dated.
    pub fn events(&self) -> u64 {
        self.streams.iter().map(|s| s.counts.total() + s.promise_ends).sum()
    }
    pub fn dropped(&self) -> u64 {
        self.streams.iter().map(|s| s.dropped).sum()
    }
}

enum Msg {
    Start {
        ring: usize,
        info: WriterInfo,
    },
    Records {
        ring: usize,
        records: Vec<RawRecord>,
    },
    End {
        ring: usize,
        dropped: u64,
        ending: Ending,
        error: Option<String>,
        /// Monotonic ns when the end was seen (the writer found gone, or recording stopped).
        at_ns: u64,
    },
}

/// How the process that `record` started ended, once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MainExit {
    Code(i32),
    Signal(i32),
}

struct Shared {
    stop: AtomicBool,
    /// The pid `record` started (0 until known); its ending comes from `finish`.
    main_pid: std::sync::atomic::AtomicU32,
    main: Mutex<Option<(u32, MainExit)>>,
    /// Monotonic ns when recording stopped (0 while it runs).
    stop_ns: std::sync::atomic::AtomicU64,
}

/// A running recording.
pub struct Recorder {
    shared: Arc<Shared>,
    discovery: JoinHandle<Vec<(PathBuf, String)>>,
    writer: JoinHandle<io::Result<Vec<StreamSummary>>>,
}

impl Recorder {
    /// Starts watching `dir` and writing to `out`. `start_ns` is the trace's time origin.
    pub fn start<W: Write + Send + 'static>(dir: &Path, out: TraceWriter<W>, start_ns: u64) -> Self {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            main_pid: std::sync::atomic::AtomicU32::new(0),
            main: Mutex::new(None),
            stop_ns: std::sync::atomic::AtomicU64::new(0),
        });
        // Bounded: a writer that falls behind blocks the drains, the rings fill and the agents
        // drop and count, rather than this process buffering without limit (32 x 2 MiB at most).
        let (tx, rx) = crossbeam_channel::bounded::<Msg>(32);
        let writer = std::thread::Builder::new()
            .name("asynctrace-writer".into())
            .spawn(move || write_loop(rx, out, start_ns))
            .expect("spawn writer thread");
        let dir = dir.to_owned();
        let s = shared.clone();
        let discovery = std::thread::Builder::new()
            .name("asynctrace-discovery".into())
            .spawn(move || discover_loop(&dir, tx, s))
            .expect("spawn discovery thread");
        Self {
            shared,
            discovery,
            writer,
        }
    }

    /// Names the process `record` started, so that its rings end with its exit status rather
    /// than as vanished when they notice it is gone before [`Recorder::finish`] runs.
    pub fn watch(&self, pid: u32) {
        self.shared.main_pid.store(pid, Ordering::Release);
    }

    /// Stops recording after the started process ended (`pid`, how it ended), drains what is
    /// left and finishes the trace.
    pub fn finish(self, main_pid: u32, main: MainExit) -> io::Result<RecordSummary> {
        *self.shared.main.lock().expect("main status lock") = Some((main_pid, main));
        self.shared.stop_ns.store(monotonic_ns(), Ordering::Release);
        self.shared.stop.store(true, Ordering::Release);
        let unreadable = self.discovery.join().unwrap_or_default();
        let streams = self
            .writer
            .join()
            .map_err(|_| io::Error::other("trace writer thread panicked"))??;
        Ok(RecordSummary { streams, unreadable })
    }
}

fn discover_loop(dir: &Path, tx: Sender<Msg>, shared: Arc<Shared>) -> Vec<(PathBuf, String)> {
    let mut seen = HashSet::new();
    let mut drains = Vec::new();
    let mut unreadable = Vec::new();
    loop {
        // Read the flag before scanning, so a ring created before the stop is always found.
        let stopping = shared.stop.load(Ordering::Acquire);
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let is_ring = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(RING_SUFFIX) && !n.starts_with('.'));
                if !is_ring || !seen.insert(path.clone()) {
                    continue;
                }
                match open_ring(&path) {
                    Ok(consumer) => {
                        let ring = drains.len();
                        let (tx, shared) = (tx.clone(), shared.clone());
                        let handle = std::thread::Builder::new()
                            .name(format!("asynctrace-drain-{ring}"))
                            .spawn(move || drain_loop(ring, consumer, tx, shared))
                            .expect("spawn drain thread");
                        drains.push(handle);
                    }
                    Err(e) => unreadable.push((path, e)),
                }
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for d in drains {
        let _ = d.join();
    }
    unreadable
}

fn open_ring(path: &Path) -> Result<Consumer<SharedRing>, String> {
    // SAFETY: ring files live in the private session directory and their writers never
    // truncate them (see `shm::open`).
    let map = unsafe { shm::open(path) }.map_err(|e| e.to_string())?;
    Consumer::open(map).map_err(|e| e.to_string())
}

/// CLOCK_MONOTONIC in ns: the clock of the agents' times.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn pid_alive(pid: u32) -> bool {
    match rustix::process::Pid::from_raw(pid as i32) {
        Some(p) => rustix::process::test_kill_process(p).is_ok(),
        None => false,
    }
}

fn drain_loop(ring: usize, mut consumer: Consumer<SharedRing>, tx: Sender<Msg>, shared: Arc<Shared>) {
    let info = consumer.writer();
    let pid = info.pid;
    if tx.send(Msg::Start { ring, info }).is_err() {
        return;
    }
    let mut idle = Duration::from_micros(200);
    let mut quiet_since: Option<Instant> = None;
    // When the writer's process was first seen gone: the end of a stream that ran no exit
    // handler (a signal, a crash) is dated by it.
    let mut gone_ns = 0u64;
    let drain_all = |consumer: &mut Consumer<SharedRing>| -> Result<(), String> {
        loop {
            let mut records = Vec::new();
            match consumer.pop_into(&mut records, BATCH) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    if tx.send(Msg::Records { ring, records }).is_err() {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let (ending, error) = loop {
        let before = consumer.read_position();
        if let Err(e) = drain_all(&mut consumer) {
            break (Ending::Vanished, Some(e));
        }
        let got_records = consumer.read_position() != before;
        if got_records {
            quiet_since = None;
            idle = Duration::from_micros(200);
        }
        let status = consumer.status();
        if !pid_alive(pid) {
            if gone_ns == 0 {
                gone_ns = monotonic_ns();
            }
            let is_main = shared.main_pid.load(Ordering::Acquire) == pid;
            if is_main && shared.main.lock().expect("main status lock").is_none() {
                // Reaped, but `finish` has not told us how it ended yet.
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            // Whatever it published is still in the mapping: take it all.
            let r = drain_all(&mut consumer);
            let main = *shared.main.lock().expect("main status lock");
            let ending = match (status.state, main) {
                (WriterState::Exited, _) => Ending::Exited { code: status.exit_code },
                (WriterState::Terminated, _) => Ending::Terminated,
                (_, Some((p, MainExit::Signal(sig)))) if p == pid => Ending::Signaled { signal: sig },
                (_, Some((p, MainExit::Code(code)))) if p == pid => Ending::Exited { code },
                _ => Ending::Vanished,
            };
            break (ending, r.err());
        }
        // A thread that ran its exit handler may still emit a few events (later exit
        // listeners); a worker's process lives on, so wait for silence rather than death.
        // After `record` stops, writers that are still running get the same grace.
        let ended = matches!(status.state, WriterState::Exited | WriterState::Terminated);
        let waiting = ended || shared.stop.load(Ordering::Acquire);
        if waiting && !got_records {
            let since = *quiet_since.get_or_insert_with(Instant::now);
            if since.elapsed() > GRACE {
                let r = drain_all(&mut consumer);
                let ending = match status.state {
                    WriterState::Exited => Ending::Exited { code: status.exit_code },
                    WriterState::Terminated => Ending::Terminated,
                    _ => Ending::Running,
                };
                break (ending, r.err());
            }
        }
        if !got_records {
            std::thread::sleep(idle);
            idle = (idle * 2).min(Duration::from_millis(5));
        } else if consumer.read_position() - before < consumer.capacity() as u64 / 4 {
            // Keeping up: let records gather for a millisecond, so the channel carries a few
            // large batches instead of many small ones (each message costs more than a
            // thousand records to copy). A ring a quarter full is drained again at once.
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    let dropped = consumer.status().dropped;
    let at_ns = match ending {
        Ending::Running => match shared.stop_ns.load(Ordering::Acquire) {
            0 => monotonic_ns(),
            t => t,
        },
        _ if gone_ns != 0 => gone_ns,
        _ => monotonic_ns(),
    };
    let _ = tx.send(Msg::End {
        ring,
        dropped,
        ending,
        error,
        at_ns,
    });
    // Drained for good: unmap and unlink, so the ring's memory is freed as soon as its writer
    // has let go of it too (a finished worker's agent does at once). Sessions with many
    // short-lived threads would otherwise fill /dev/shm.
    let path = consumer.memory().path().to_owned();
    drop(consumer);
    let _ = std::fs::remove_file(path);
}

struct Stream {
    id: crate::trace::StreamId,
    info: WriterInfo,
    decoder: StreamDecoder,
    ended: Option<StreamSummary>,
}

fn write_loop<W: Write>(rx: Receiver<Msg>, mut out: TraceWriter<W>, start_ns: u64) -> io::Result<Vec<StreamSummary>> {
    let mut streams: Vec<Option<Stream>> = Vec::new();
    let mut last_flush = Instant::now();
    loop {
        let msg = match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(m) => Some(m),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => None,
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        };
        match msg {
            Some(Msg::Start { ring, info }) => {
                let id = out.begin_stream(info.pid, info.thread, &info.node_version)?;
                if streams.len() <= ring {
                    streams.resize_with(ring + 1, || None);
                }
                streams[ring] = Some(Stream {
                    id,
                    info,
                    decoder: StreamDecoder::new(id, start_ns),
                    ended: None,
                });
            }
            Some(Msg::Records { ring, records }) => {
                if let Some(Some(s)) = streams.get_mut(ring) {
                    s.decoder.feed(&records, &mut out)?;
                }
            }
            Some(Msg::End {
                ring,
                dropped,
                ending,
                error,
                at_ns,
            }) => {
                if let Some(Some(s)) = streams.get_mut(ring) {
                    // Date the end of a stream that ran no exit handler (its exit handler
                    // dates its own end), so ages run to the end of the run.
                    s.decoder.ended(&ending, at_ns, &mut out)?;
                    let (mut malformed, _) = s.decoder.malformed();
                    if error.is_some() {
                        malformed += 1;
                    }
                    let counts = s.decoder.counts();
                    let invalid = s.decoder.invalid_ids();
                    if invalid > 0 {
                        // Why a stream note: it needs no change of the trace format.
                        out.stream_meta(s.id, &format!("{{\"invalid_ids\":{invalid}}}"))?;
                    }
                    out.end_stream(&StreamEnd {
                        stream: s.id,
                        events: counts.total(),
                        dropped,
                        malformed,
                        ending: ending.clone(),
                    })?;
                    s.ended = Some(StreamSummary {
                        pid: s.info.pid,
                        thread: s.info.thread,
                        node_version: s.info.node_version.clone(),
                        counts,
                        promise_ends: s.decoder.promise_ends(),
                        dropped,
                        malformed,
                        ending,
                    });
                }
            }
            None => {}
        }
        if last_flush.elapsed() >= Duration::from_millis(100) {
            out.flush()?;
            last_flush = Instant::now();
        }
    }
    let summaries = streams.into_iter().flatten().filter_map(|s| s.ended).collect();
    let mut inner = out.finish()?;
    inner.flush()?;
    Ok(summaries)
}
