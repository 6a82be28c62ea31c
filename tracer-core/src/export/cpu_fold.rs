//! `--weight cpu` of the folded stacks: each CPU sample weighs the sampling interval, on the
//! async path of the callback it fell in, continued by the sampled JS stack (root first). A
//! sample outside every callback (the main script's first run, module loading, GC between
//! callbacks) hangs under its thread's own frame; worker threads are roots of their own.
//!
//! A child of `folded` (it extends the folder's private state). Samples arrive after their
//! callbacks (the agent writes them in chunks): [`Windows`] keeps the recent callbacks.

use super::{Folder, PathId, StreamState};
use crate::analysis::cpu::{Cpu, CpuStep, Windows};
use crate::export::frames::FrameId;
use crate::export::hash::FxMap;
use crate::export::input::Input;
use crate::trace::{Event, EventKind, StreamId};

#[derive(Debug, Default)]
pub(super) struct CpuFold {
    cpu: Cpu,
    windows: Windows,
    start_ns: u64,
    tick_ns: u64,
    /// A CPU node's frame, by (stream, node).
    frames: FxMap<(StreamId, u32), FrameId>,
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
    /// Every event of a stream, before the folder's own handling, when weighing CPU.
    pub(super) fn cpu_event(&mut self, input: &mut Input, st: &StreamState, stream: StreamId, ev: &Event) {
        let Some(mut c) = self.cpu.take() else {
            return;
        };
        let path_of = |id: u64| st.live.get(&id).map_or(st.no_init, |r| r.path);
        match ev.kind {
            EventKind::Before => c.windows.open(stream, ev.id, ev.time_ns, u64::from(path_of(ev.id))),
            EventKind::After => {
                c.windows.close(stream, ev.id, ev.time_ns, u64::from(path_of(ev.id)));
            }
            EventKind::Note { .. } => match c.cpu.apply_at(c.start_ns, c.tick_ns, ev) {
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
                CpuStep::ChunkEnd { stream, time_ns } => c.windows.prune(stream, time_ns),
                _ => {}
            },
            _ => {}
        }
        self.cpu = Some(c);
    }
}
