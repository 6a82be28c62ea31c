//! `--weight cpu` of the folded stacks: each CPU sample weighs the sampling interval, on the
//! async path of the callback it fell in, continued by the sampled JS stack (root first). A
//! sample outside every callback (the main script's first run, module loading, GC between
//! callbacks) hangs under its thread's own frame; worker threads are roots of their own.
//!
//! `--weight sync` gains the same leaves: a callback's own time is shared out over the stacks
//! sampled in it, in proportion to their samples; the part no sample covers (or all of it,
//! without samples) stays on the resource's frame, so widths still add up to the time spent
//! in callbacks. That waits for the callback's samples: callbacks are held until a chunk of
//! samples covers them, or for [`HOLD_NS`] in a thread that has none.
//!
//! A child of `folded` (it extends the folder's private state). Samples arrive after their
//! callbacks (the agent writes them in chunks): [`Windows`] keeps the recent callbacks.

use super::{Folder, PathId, StreamState, Weight};
use crate::analysis::cpu::{Cpu, CpuStep, Windows};
use crate::export::frames::FrameId;
use crate::export::hash::FxMap;
use crate::export::input::Input;
use crate::trace::{Event, EventKind, StreamId};

/// How long a callback's sync time waits for samples in a thread that never had any.
const HOLD_NS: u64 = 5_000_000_000;

/// A callback's sync time waiting for its samples (`--weight sync`).
#[derive(Debug, Default)]
struct Held {
    stream: StreamId,
    path: PathId,
    start: u64,
    end: u64,
    self_ns: u64,
    /// Samples by top-of-stack node.
    leaves: Vec<(u32, u64)>,
}

#[derive(Debug, Default)]
pub(super) struct CpuFold {
    cpu: Cpu,
    windows: Windows,
    start_ns: u64,
    tick_ns: u64,
    /// A CPU node's frame, by (stream, node).
    frames: FxMap<(StreamId, u32), FrameId>,
    /// `--weight sync`: callbacks waiting for their samples, by token.
    held: FxMap<u64, Held>,
    /// Per stream: the tokens of its held callbacks, in the order they ended.
    order: Vec<std::collections::VecDeque<u64>>,
    next_token: u64,
    /// Streams that had a chunk of samples.
    sampled: Vec<bool>,
}

impl CpuFold {
    pub(super) fn new(start_ns: u64, tick_ns: u64) -> Self {
        CpuFold {
            start_ns,
            tick_ns,
            ..Default::default()
        }
    }

    fn frame(&mut self, input: &mut Input, stream: StreamId, node: u32) -> Option<FrameId> {
        if let Some(&f) = self.frames.get(&(stream, node)) {
            return Some(f);
        }
        let text = input.strings.get(self.cpu.frame_id(stream, node)? as usize)?;
        let name = crate::analysis::cpu::short_frame(text);
        let f = input.frames.named(&name);
        self.frames.insert((stream, node), f);
        Some(f)
    }
}

impl Folder {
    /// `--weight sync`: a callback's own time, held until its samples are in.
    pub(super) fn add_sync(&mut self, stream: StreamId, id: u64, path: PathId, self_ns: u64, start: u64, end: u64) {
        let Some(c) = self.cpu.as_mut() else {
            self.add(stream, path, self_ns, start);
            return;
        };
        c.next_token += 1;
        let token = c.next_token;
        c.windows.close(stream, id, end, token);
        if c.order.len() <= stream as usize {
            c.order.resize_with(stream as usize + 1, Default::default);
        }
        c.order[stream as usize].push_back(token);
        c.held.insert(
            token,
            Held {
                stream,
                path,
                start,
                end,
                self_ns,
                leaves: Vec::new(),
            },
        );
        // A thread without samples: hold nothing longer than HOLD_NS.
        if !c.sampled.get(stream as usize).copied().unwrap_or(false) {
            self.release_held(stream, Some(end.saturating_sub(HOLD_NS)), None);
        }
    }

    /// Every held callback: no sample comes any more.
    pub(super) fn release_all(&mut self, input: &mut Input) {
        let streams = self.cpu.as_ref().map_or(0, |c| c.order.len());
        for stream in 0..streams {
            self.release_held(stream as StreamId, None, Some(input));
        }
    }

    /// Writes the held callbacks of `stream` that ended before `before` (all: `None`), their
    /// time over their sampled stacks (without `input`, frames cannot be made: no samples).
    fn release_held(&mut self, stream: StreamId, before: Option<u64>, input: Option<&mut Input>) {
        let Some(mut c) = self.cpu.take() else {
            return;
        };
        let mut input = input;
        while let Some(&t) = c.order.get(stream as usize).and_then(|q| q.front()) {
            if before.is_some_and(|b| c.held.get(&t).is_some_and(|h| h.end >= b)) {
                break;
            }
            c.order[stream as usize].pop_front();
            let Some(h) = c.held.remove(&t) else { continue };
            let interval = c.cpu.stream_interval_us(h.stream).max(1) * 1000;
            let samples: u64 = h.leaves.iter().map(|l| l.1).sum();
            // Samples cover at most the callback's own time.
            let covered = if input.is_some() {
                (samples * interval).min(h.self_ns)
            } else {
                0
            };
            self.add(h.stream, h.path, h.self_ns - covered, h.start);
            let Some(input) = input.as_deref_mut() else {
                continue;
            };
            let mut given = 0;
            for (k, &(node, n)) in h.leaves.iter().enumerate() {
                let w = if k + 1 == h.leaves.len() {
                    covered - given
                } else {
                    covered * n / samples
                };
                given += w;
                let mut path = h.path;
                for &node in c.cpu.stack(h.stream, node).iter().rev() {
                    if let Some(f) = c.frame(input, h.stream, node) {
                        path = self.path(&mut input.frames, path, f);
                    }
                }
                self.add(h.stream, path, w, h.start);
            }
        }
        self.cpu = Some(c);
    }

    /// Every event of a stream, before the folder's own handling, when weighing CPU.
    pub(super) fn cpu_event(&mut self, input: &mut Input, st: &StreamState, stream: StreamId, ev: &Event) {
        let Some(mut c) = self.cpu.take() else {
            return;
        };
        let path_of = |id: u64| st.live.get(&id).map_or(st.no_init, |r| r.path);
        let sync = self.opts.weight == Weight::Sync;
        match ev.kind {
            // With sync weight the token is the held callback's, given at its end (add_sync).
            EventKind::Before => c.windows.open(
                stream,
                ev.id,
                ev.time_ns,
                if sync { 0 } else { u64::from(path_of(ev.id)) },
            ),
            EventKind::After if !sync => {
                c.windows.close(stream, ev.id, ev.time_ns, u64::from(path_of(ev.id)));
            }
            EventKind::Note { .. } => match c.cpu.apply_at(c.start_ns, c.tick_ns, ev) {
                CpuStep::Sample(s) if sync => {
                    if let Some(h) = c
                        .windows
                        .find(stream, s.event_clock_ns)
                        .and_then(|t| c.held.get_mut(&t))
                    {
                        match h.leaves.iter_mut().find(|l| l.0 == s.node) {
                            Some(l) => l.1 += 1,
                            None => h.leaves.push((s.node, 1)),
                        }
                    }
                }
                CpuStep::Sample(s) if self.opts.filter.contains(s.time_ns) => {
                    let mut path = c
                        .windows
                        .find(stream, s.event_clock_ns)
                        .map_or(st.root, |p| p as PathId);
                    let stack = c.cpu.stack(stream, s.node);
                    for &node in stack.iter().rev() {
                        if let Some(f) = c.frame(input, stream, node) {
                            path = self.path(&mut input.frames, path, f);
                        }
                    }
                    let weight = c.cpu.stream_interval_us(stream).max(1) * 1000;
                    self.add(stream, path, weight, s.time_ns);
                }
                CpuStep::ChunkEnd { stream, time_ns } => {
                    c.windows.prune(stream, time_ns);
                    if c.sampled.len() <= stream as usize {
                        c.sampled.resize(stream as usize + 1, false);
                    }
                    c.sampled[stream as usize] = true;
                    if sync {
                        self.cpu = Some(c);
                        self.release_held(stream, Some(time_ns), Some(input));
                        return;
                    }
                }
                _ => {}
            },
            _ => {}
        }
        self.cpu = Some(c);
    }
}
