//! CPU samples in the Chrome export: each thread that has samples gets a second track, "CPU
//! samples", beside its callbacks, where the sampled JS stacks are nested complete slices (a
//! flame chart): a frame's slice lasts while consecutive samples have it on their stack. A
//! sample stands for one interval: a gap of more than two intervals (the thread idle) ends
//! every slice.
//!
//! A child of `chrome` (it writes through the exporter's buffer). Samples come in time order
//! per thread; an inner slice ends before its outer one, so slices are held back until their
//! outermost one ends and then written in start order (the track stays monotonic), up to
//! [`MAX_PENDING`] held back.

use std::io::Write;

use super::Chrome;
use crate::analysis::cpu::{short_frame, Cpu, CpuStep};
use crate::export::hash::FxMap;
use crate::export::input::Input;
use crate::export::json::{push_us, quote};
use crate::trace::{Event, StreamId};

/// Slices held back at most per track; past this they are written out of order.
const MAX_PENDING: usize = 4096;

/// The CPU track's tid: apart from any real thread id (pids and thread ids stay far below).
const CPU_TID_BASE: u64 = 2_000_000_000;

#[derive(Debug, Default)]
struct Track {
    /// The open slices, root first: CPU node ids and their start.
    stack: Vec<(u32, u64)>,
    /// Ended slices not written yet: (start, depth, end, node).
    pending: Vec<(u64, usize, u64, u32)>,
    last_ns: u64,
    /// `,"pid":P,"tid":T`.
    track: Vec<u8>,
}

#[derive(Debug, Default)]
pub(super) struct ChromeCpu {
    cpu: Cpu,
    start_ns: u64,
    tick_ns: u64,
    tracks: FxMap<StreamId, Track>,
    /// Frame names as JSON string literals, by (stream, node).
    names: FxMap<(StreamId, u32), Vec<u8>>,
}

impl ChromeCpu {
    pub(super) fn new(start_ns: u64, tick_ns: u64) -> Self {
        ChromeCpu {
            start_ns,
            tick_ns,
            ..Default::default()
        }
    }
}

impl<W: Write> Chrome<W> {
    /// A note of a selected stream: CPU samples become slices on the thread's CPU track.
    pub(super) fn cpu_note(&mut self, input: &Input, stream: StreamId, ev: &Event) -> std::io::Result<()> {
        let mut c = std::mem::take(&mut self.cpu);
        let r = self.cpu_note_with(&mut c, input, stream, ev);
        self.cpu = c;
        r
    }

    fn cpu_note_with(&mut self, c: &mut ChromeCpu, input: &Input, stream: StreamId, ev: &Event) -> std::io::Result<()> {
        let CpuStep::Sample(s) = c.cpu.apply_at(c.start_ns, c.tick_ns, ev) else {
            return Ok(());
        };
        let interval_ns = c.cpu.stream_interval_us(stream).max(1) * 1000;
        let mut tr = match c.tracks.remove(&stream) {
            Some(tr) => tr,
            None => {
                let Some(slot) = input.slot(stream) else {
                    return Ok(());
                };
                let (pid, thread) = (slot.info.pid, slot.info.thread);
                let tid = CPU_TID_BASE + u64::from(thread);
                let name = if thread == 0 {
                    "main: CPU samples".to_owned()
                } else {
                    format!("worker {thread}: CPU samples")
                };
                self.buf.clear();
                let m = format!(
                    "{{\"ph\":\"M\",\"pid\":{pid},\"tid\":{tid},\"name\":\"thread_name\",\"args\":{{\"name\":{}}}}}",
                    quote(&name)
                );
                self.buf.extend_from_slice(m.as_bytes());
                self.emit()?;
                Track {
                    track: format!(",\"pid\":{pid},\"tid\":{tid}").into_bytes(),
                    ..Track::default()
                }
            }
        };
        // A track's time never runs back (a chunk may start before the last one's final sample
        // by a few µs), so every slice stays inside its parent.
        let time_ns = s.time_ns.max(tr.last_ns);
        let gap = !tr.stack.is_empty() && time_ns > tr.last_ns + 2 * interval_ns;
        let outside = !self.filter.contains(s.time_ns);
        if gap || outside {
            let end = tr.last_ns + interval_ns;
            self.cpu_pop(c, input, stream, &mut tr, 0, end)?;
        }
        if !outside {
            let mut stack = c.cpu.stack(stream, s.node);
            stack.reverse();
            let common = tr.stack.iter().zip(&stack).take_while(|(a, b)| a.0 == **b).count();
            self.cpu_pop(c, input, stream, &mut tr, common, time_ns)?;
            for &node in &stack[common..] {
                tr.stack.push((node, time_ns));
            }
            tr.last_ns = time_ns;
        }
        c.tracks.insert(stream, tr);
        Ok(())
    }

    /// Ends the slices above the first `keep` at `t`, innermost first.
    fn cpu_pop(
        &mut self,
        c: &mut ChromeCpu,
        input: &Input,
        stream: StreamId,
        tr: &mut Track,
        keep: usize,
        t: u64,
    ) -> std::io::Result<()> {
        while tr.stack.len() > keep {
            let Some((node, start)) = tr.stack.pop() else { break };
            tr.pending.push((start, tr.stack.len(), t, node));
        }
        if tr.stack.is_empty() || tr.pending.len() > MAX_PENDING {
            tr.pending.sort_unstable_by_key(|p| (p.0, p.1));
            for (start, _, end, node) in std::mem::take(&mut tr.pending) {
                let name = c.names.entry((stream, node)).or_insert_with(|| {
                    let text = c
                        .cpu
                        .frame_id(stream, node)
                        .and_then(|id| input.strings.get(id as usize))
                        .map_or_else(|| "(unknown)".to_owned(), |t| short_frame(t));
                    quote(&text).into_bytes()
                });
                self.buf.clear();
                self.buf.extend_from_slice(b"{\"ph\":\"X\",\"cat\":\"cpu\",\"ts\":");
                push_us(&mut self.buf, start);
                self.buf.extend_from_slice(b",\"dur\":");
                push_us(&mut self.buf, end.saturating_sub(start));
                self.buf.extend_from_slice(&tr.track);
                self.buf.extend_from_slice(b",\"name\":");
                self.buf.extend_from_slice(name);
                self.buf.push(b'}');
                self.emit()?;
            }
        }
        Ok(())
    }

    /// The end of the export: every open sample slice ends one interval after its last sample.
    pub(super) fn cpu_finish(&mut self, input: &Input) -> std::io::Result<()> {
        let mut c = std::mem::take(&mut self.cpu);
        let mut streams: Vec<StreamId> = c.tracks.keys().copied().collect();
        streams.sort_unstable();
        for stream in streams {
            if let Some(mut tr) = c.tracks.remove(&stream) {
                let end = tr.last_ns + c.cpu.stream_interval_us(stream).max(1) * 1000;
                self.cpu_pop(&mut c, input, stream, &mut tr, 0, end)?;
            }
        }
        self.cpu = c;
        Ok(())
    }
}
