//! Chrome Trace Event JSON: what Perfetto (ui.perfetto.dev) and `chrome://tracing` open.
//!
//! - A resource is a nestable async slice (`ph` `b` at init, `e` at destroy or at the end of
//!   the trace), `cat` = its type, `id` = `"pid:thread:asyncId"` (async ids repeat across
//!   threads and processes).
//! - A callback is a complete slice (`X`) on its thread's track (`pid`, `tid`).
//! - A resource created inside a callback gets a flow arrow (`s` -> `f`, `cat` "trigger",
//!   same id as its slice) from that callback to its own first callback; both ends are
//!   written when that first callback starts, so every `s` has its `f`.
//! - `M` events name processes (their argv) and threads.
//! - CPU samples: a track per thread beside its callbacks (see `cpu_chrome`).
//!
//! Timestamps are microseconds. Output streams: the only state is per live resource and per
//! open callback.

use std::io::{Read, Write};

#[path = "cpu_chrome.rs"]
mod cpu_chrome;

use super::error::ExportError;
use super::filter::Filter;
use super::frames::FrameId;
use super::hash::FxMap;
use super::input::{pump, Handler, Input};
use super::json::{push_u64, push_us, quote};
use crate::trace::{Event, EventKind, StreamId, TraceReader};

/// Callbacks open at once per thread before the oldest is given up as having no recorded end
/// (its `after` was dropped); real nesting is a few levels deep.
const MAX_OPEN: usize = 256;
/// Nested slices held back at most; past this they are written out of order (a callback whose
/// `after` was lost would otherwise hold back every later slice of its thread).
const MAX_PENDING: usize = 4096;

/// Options of [`write_chrome`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct ChromeOptions {
    /// Which processes, threads and time window to export. Slices that overlap the window
    /// are exported whole: callbacks that ran in it, resources alive during it (with their
    /// trigger arrows when both ends are in it).
    pub filter: Filter,
}

/// What [`write_chrome`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ChromeStats {
    /// Hook events read from the selected streams.
    pub events_in: u64,
    /// Trace events written.
    pub events_out: u64,
    /// The trace ended without its end marker; this is its complete prefix.
    pub truncated: bool,
}

/// Writes the trace as Chrome Trace Event JSON to `out` (wrap files in a `BufWriter`).
pub fn write_chrome<R: Read, W: Write>(
    mut reader: TraceReader<R>,
    opts: &ChromeOptions,
    out: W,
) -> Result<ChromeStats, ExportError> {
    let mut w = Chrome {
        out,
        filter: opts.filter.clone(),
        buf: Vec::with_capacity(256),
        streams: Vec::new(),
        types: FxMap::default(),
        written: 0,
        cpu: cpu_chrome::ChromeCpu::new(reader.meta().start_ns, reader.meta().clock_tick_ns),
    };
    w.out.write_all(b"{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n")?;
    let mut input = Input::default();
    let truncated = pump(&mut reader, &opts.filter, &mut input, &mut w)?;
    w.finish(&input)?;
    w.cpu_finish(&input)?;
    w.out.write_all(b"\n]}\n")?;
    w.out.flush()?;
    Ok(ChromeStats {
        events_in: input.events,
        events_out: w.written,
        truncated,
    })
}

struct Res {
    init_ns: u64,
    frame: FrameId,
    /// Type name (the `cat` of its slice).
    type_name: u32,
    /// Whether a `b` was written (not for resources seen without their init).
    sliced: bool,
    /// Created before the time window: its `b` is written if it lives into the window.
    deferred: bool,
    /// Init time, when it happened inside a callback and no flow was written yet.
    flow_from: Option<u64>,
}

struct Open {
    id: u64,
    frame: FrameId,
    start: u64,
}

/// A callback slice held back until its enclosing callback's slice is written.
struct Pending {
    start: u64,
    depth: usize,
    dur: u64,
    id: u64,
    frame: FrameId,
}

#[derive(Default)]
struct StreamState {
    live: FxMap<u64, Res>,
    open: Vec<Open>,
    /// Why: an `X` is written when its callback ends, but a nested callback ends first.
    /// Holding nested slices back until the outermost one is written keeps timestamps
    /// monotonic on the thread's track. Memory: the callbacks nested in one callback.
    pending: Vec<Pending>,
    /// `"pid:thread:` (the open quote and prefix of ids).
    id_prefix: Vec<u8>,
    /// `,"pid":P,"tid":T`.
    track: Vec<u8>,
    /// An event at or after the window's start was seen (deferred slices were opened).
    entered: bool,
}

struct Chrome<W: Write> {
    out: W,
    filter: Filter,
    buf: Vec<u8>,
    streams: Vec<Option<StreamState>>,
    /// Type names as JSON string literals, by string id.
    types: FxMap<u32, Vec<u8>>,
    written: u64,
    /// CPU samples, on a track of their own per thread.
    cpu: cpu_chrome::ChromeCpu,
}

impl<W: Write> Chrome<W> {
    /// Writes the event in `buf`, with the separator.
    fn emit(&mut self) -> std::io::Result<()> {
        if self.written > 0 {
            self.out.write_all(b",\n")?;
        }
        self.written += 1;
        self.out.write_all(&self.buf)
    }

    fn meta(&mut self, pid: u32, tid: u32, what: &str, name: &str) -> std::io::Result<()> {
        self.buf.clear();
        let s = format!(
            "{{\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"name\":\"{what}\",\"args\":{{\"name\":{}}}}}",
            quote(name)
        );
        self.buf.extend_from_slice(s.as_bytes());
        self.emit()
    }

    fn finish(&mut self, input: &Input) -> Result<(), ExportError> {
        for stream in 0..self.streams.len() {
            let Some(mut st) = self.streams[stream].take() else {
                continue;
            };
            let slot = input.slot(stream as StreamId);
            let end = slot.map_or(input.last_ns, |s| s.last_ns);
            if slot.is_some_and(|s| s.dropped > 0) {
                // Where events were dropped, a callback open at the end may just have lost
                // its `after`: its duration is unknown, so it gets no slice.
                st.open.clear();
                self.flush_pending(input, &mut st)?;
            }
            while let Some(o) = st.open.pop() {
                self.close(input, &mut st, o, end)?;
            }
            let mut ids: Vec<(u64, FrameId, u32)> = st
                .live
                .iter()
                .filter(|(_, r)| r.sliced)
                .map(|(&id, r)| (id, r.frame, r.type_name))
                .collect();
            ids.sort_unstable();
            for (id, frame, ty) in ids {
                self.async_end(input, &st, id, frame, ty, input.last_ns)?;
            }
        }
        Ok(())
    }

    /// Ends the callback `o` at `t`: writes its slice now or holds it back.
    fn close(&mut self, input: &Input, st: &mut StreamState, o: Open, t: u64) -> std::io::Result<()> {
        let p = Pending {
            start: o.start,
            depth: st.open.len(),
            dur: t.saturating_sub(o.start),
            id: o.id,
            frame: o.frame,
        };
        if !st.open.is_empty() {
            st.pending.push(p);
            if st.pending.len() >= MAX_PENDING {
                self.flush_pending(input, st)?;
            }
            return Ok(());
        }
        self.slice(input, st, &p)?;
        self.flush_pending(input, st)
    }

    fn flush_pending(&mut self, input: &Input, st: &mut StreamState) -> std::io::Result<()> {
        if !st.pending.is_empty() {
            let mut pending = std::mem::take(&mut st.pending);
            pending.sort_by_key(|p| (p.start, p.depth));
            for p in &pending {
                self.slice(input, st, p)?;
            }
            pending.clear();
            st.pending = pending;
        }
        Ok(())
    }

    fn slice(&mut self, input: &Input, st: &StreamState, p: &Pending) -> std::io::Result<()> {
        let end = p.start.saturating_add(p.dur);
        let outside = self.filter.to_ns.is_some_and(|to| p.start >= to) || self.filter.from_ns.is_some_and(|f| end < f);
        if outside {
            return Ok(());
        }
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"{\"ph\":\"X\",\"cat\":\"callback\",\"name\":");
        b.extend_from_slice(frame_json(input, p.frame));
        b.extend_from_slice(&st.track);
        b.extend_from_slice(b",\"ts\":");
        push_us(b, p.start);
        b.extend_from_slice(b",\"dur\":");
        push_us(b, p.dur);
        b.extend_from_slice(b",\"args\":{\"asyncId\":");
        push_u64(b, p.id);
        b.extend_from_slice(b"}}");
        self.emit()
    }

    fn async_end(
        &mut self,
        input: &Input,
        st: &StreamState,
        id: u64,
        frame: FrameId,
        ty: u32,
        t: u64,
    ) -> std::io::Result<()> {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"{\"ph\":\"e\",\"cat\":");
        b.extend_from_slice(type_json(&mut self.types, input, ty));
        b.extend_from_slice(b",\"name\":");
        b.extend_from_slice(frame_json(input, frame));
        push_id(b, st, id);
        b.extend_from_slice(&st.track);
        b.extend_from_slice(b",\"ts\":");
        push_us(b, t);
        b.push(b'}');
        self.emit()
    }

    fn flow(&mut self, st: &StreamState, id: u64, from: u64, to: u64) -> std::io::Result<()> {
        for (ph, t) in [("s", from), ("f", to)] {
            let b = &mut self.buf;
            b.clear();
            b.extend_from_slice(b"{\"ph\":\"");
            b.extend_from_slice(ph.as_bytes());
            b.extend_from_slice(b"\",\"cat\":\"trigger\",\"name\":\"trigger\"");
            push_id(b, st, id);
            b.extend_from_slice(&st.track);
            b.extend_from_slice(b",\"ts\":");
            push_us(b, t);
            if ph == "f" {
                b.extend_from_slice(b",\"bp\":\"e\"");
            }
            b.push(b'}');
            self.emit()?;
        }
        Ok(())
    }

    /// Writes the `b` of a resource's async slice.
    #[allow(clippy::too_many_arguments)]
    fn begin(
        &mut self,
        input: &Input,
        st: &StreamState,
        id: u64,
        frame: FrameId,
        type_name: u32,
        t: u64,
        trigger: u64,
        exec: u64,
    ) -> std::io::Result<()> {
        let b = &mut self.buf;
        b.clear();
        b.extend_from_slice(b"{\"ph\":\"b\",\"cat\":");
        b.extend_from_slice(type_json(&mut self.types, input, type_name));
        b.extend_from_slice(b",\"name\":");
        b.extend_from_slice(frame_json(input, frame));
        push_id(b, st, id);
        b.extend_from_slice(&st.track);
        b.extend_from_slice(b",\"ts\":");
        push_us(b, t);
        b.extend_from_slice(b",\"args\":{\"asyncId\":");
        push_u64(b, id);
        b.extend_from_slice(b",\"trigger\":");
        push_u64(b, trigger);
        b.extend_from_slice(b",\"exec\":");
        push_u64(b, exec);
        b.extend_from_slice(b"}}");
        self.emit()
    }

    /// The first event of a stream inside the window: opens the slices of the resources
    /// created before it and still alive.
    fn enter_window(&mut self, input: &Input, st: &mut StreamState) -> std::io::Result<()> {
        st.entered = true;
        let mut ids: Vec<u64> = st.live.iter().filter(|(_, r)| r.deferred).map(|(&id, _)| id).collect();
        ids.sort_unstable();
        for id in ids {
            let Some(r) = st.live.get_mut(&id) else { continue };
            r.deferred = false;
            r.sliced = true;
            let (frame, ty, init) = (r.frame, r.type_name, r.init_ns);
            // Trigger and exec are not kept per resource; 0 says "not known here".
            self.begin(input, st, id, frame, ty, init, 0, 0)?;
        }
        Ok(())
    }

    fn event(&mut self, input: &mut Input, st: &mut StreamState, ev: &Event) -> std::io::Result<()> {
        let t = ev.time_ns;
        if !st.entered && self.filter.from_ns.is_none_or(|f| t >= f) {
            self.enter_window(input, st)?;
        }
        match ev.kind {
            EventKind::Init {
                type_name,
                trigger,
                exec,
                stack,
            } => {
                let frame = input.frames.resource(&input.strings, type_name, stack);
                if let Some(old) = st.live.remove(&ev.id) {
                    if old.sliced {
                        self.async_end(input, st, ev.id, old.frame, old.type_name, t)?;
                    }
                }
                let before_window = self.filter.from_ns.is_some_and(|f| t < f);
                if before_window || !self.filter.contains(t) {
                    st.live.insert(
                        ev.id,
                        Res {
                            init_ns: t,
                            frame,
                            type_name,
                            sliced: false,
                            deferred: before_window,
                            flow_from: None,
                        },
                    );
                    return Ok(());
                }
                self.begin(input, st, ev.id, frame, type_name, t, trigger, exec)?;
                let flow_from = (!st.open.is_empty()).then_some(t);
                st.live.insert(
                    ev.id,
                    Res {
                        init_ns: t,
                        frame,
                        type_name,
                        sliced: true,
                        deferred: false,
                        flow_from,
                    },
                );
            }
            EventKind::Before => {
                let res = st.live.entry(ev.id).or_insert_with(|| Res {
                    init_ns: t,
                    frame: input.frames.named("(no init)"),
                    type_name: u32::MAX,
                    sliced: false,
                    deferred: false,
                    flow_from: None,
                });
                let frame = res.frame;
                if let Some(from) = res.flow_from.take() {
                    if self.filter.contains(t) {
                        self.flow(st, ev.id, from, t)?;
                    }
                }
                if st.open.len() >= MAX_OPEN {
                    // The oldest never ended: no slice for it (its duration is unknown).
                    st.open.remove(0);
                }
                st.open.push(Open {
                    id: ev.id,
                    frame,
                    start: t,
                });
            }
            EventKind::After => {
                // Why search: an `after` whose `before` was dropped must not close another.
                if let Some(pos) = st.open.iter().rposition(|o| o.id == ev.id) {
                    while st.open.len() > pos {
                        let Some(o) = st.open.pop() else { break };
                        self.close(input, st, o, t)?;
                    }
                }
            }
            EventKind::Destroy => {
                if let Some(r) = st.live.remove(&ev.id) {
                    if r.sliced {
                        self.async_end(input, st, ev.id, r.frame, r.type_name, t)?;
                    }
                }
            }
            EventKind::PromiseResolve { .. } | EventKind::Label { .. } | EventKind::Note { .. } => {}
        }
        Ok(())
    }
}

fn frame_json(input: &Input, f: FrameId) -> &[u8] {
    input.frames.json.get(f as usize).map_or(b"\"\"", |s| s.as_bytes())
}

fn type_json<'a>(cache: &'a mut FxMap<u32, Vec<u8>>, input: &Input, ty: u32) -> &'a [u8] {
    cache.entry(ty).or_insert_with(|| {
        let name = if ty == u32::MAX {
            "(no init)".into()
        } else {
            super::frames::lookup(&input.strings, ty)
        };
        quote(&name).into_bytes()
    })
}

fn push_id(b: &mut Vec<u8>, st: &StreamState, id: u64) {
    b.extend_from_slice(b",\"id\":");
    b.extend_from_slice(&st.id_prefix);
    push_u64(b, id);
    b.push(b'"');
}

impl<W: Write> Handler for Chrome<W> {
    fn events(&mut self, input: &mut Input, stream: StreamId, events: &[Event]) -> Result<(), ExportError> {
        let Some(mut st) = self.streams.get_mut(stream as usize).and_then(Option::take) else {
            return Ok(());
        };
        let r = events.iter().try_for_each(|ev| {
            if matches!(ev.kind, EventKind::Note { .. }) {
                self.cpu_note(input, stream, ev)?;
            }
            self.event(input, &mut st, ev)
        });
        self.streams[stream as usize] = Some(st);
        Ok(r?)
    }

    fn stream_start(&mut self, input: &mut Input, stream: StreamId) -> Result<(), ExportError> {
        let Some(slot) = input.slot(stream) else {
            return Ok(());
        };
        let (pid, thread) = (slot.info.pid, slot.info.thread);
        // Why: on Linux the main thread's tid is the pid; worker threads get their threadId.
        let tid = if thread == 0 { pid } else { thread };
        let i = stream as usize;
        if self.streams.len() <= i {
            self.streams.resize_with(i + 1, || None);
        }
        self.streams[i] = Some(StreamState {
            id_prefix: format!("\"{pid}:{thread}:").into_bytes(),
            track: format!(",\"pid\":{pid},\"tid\":{tid}").into_bytes(),
            ..StreamState::default()
        });
        if thread == 0 {
            self.meta(pid, tid, "process_name", &format!("node (pid {pid})"))?;
        }
        let name = if thread == 0 {
            "main".to_string()
        } else {
            format!("worker {thread}")
        };
        self.meta(pid, tid, "thread_name", &name)?;
        Ok(())
    }

    fn stream_meta(&mut self, input: &mut Input, stream: StreamId) -> Result<(), ExportError> {
        let Some(slot) = input.slot(stream) else {
            return Ok(());
        };
        if slot.info.thread == 0 && !slot.argv.is_empty() {
            let (pid, name) = (
                slot.info.pid,
                format!("{} (pid {})", slot.argv.join(" "), slot.info.pid),
            );
            self.meta(pid, pid, "process_name", &name)?;
        }
        Ok(())
    }
}
