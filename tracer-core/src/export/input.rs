//! The reading loop every export shares: strings, streams, the filter, frames.

use std::io::Read;

use super::error::ExportError;
use super::filter::Filter;
use super::frames::{FrameId, Frames};
use crate::trace::{Batch, Event, Item, StreamId, StreamInfo, TraceReader};

/// What is known about one writer thread.
#[derive(Debug)]
pub(crate) struct StreamSlot {
    pub(crate) info: StreamInfo,
    pub(crate) selected: bool,
    /// `argv` from the stream's metadata, when it had one.
    pub(crate) argv: Vec<String>,
    /// The root frame of every path in this stream: `pid N` or `pid N thread T`.
    pub(crate) root: FrameId,
    /// Time of its last event, ns.
    pub(crate) last_ns: u64,
    /// Events the agent dropped in it (known once it ended).
    pub(crate) dropped: u64,
}

/// State the reading loop keeps for the handlers.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub(crate) strings: Vec<String>,
    /// Indexed by stream id (streams are numbered densely from 0 in the file).
    pub(crate) streams: Vec<StreamSlot>,
    pub(crate) frames: Frames,
    /// Time of the last event of any selected stream, ns.
    pub(crate) last_ns: u64,
    /// Events of selected streams.
    pub(crate) events: u64,
}

impl Input {
    pub(crate) fn slot(&self, stream: StreamId) -> Option<&StreamSlot> {
        self.streams.get(stream as usize)
    }
}

/// What an export does with the items of the trace.
pub(crate) trait Handler {
    /// Consecutive events of one selected stream, in order.
    fn events(&mut self, input: &mut Input, stream: StreamId, events: &[Event]) -> Result<(), ExportError>;
    /// A selected stream started (its slot exists now).
    fn stream_start(&mut self, _input: &mut Input, _stream: StreamId) -> Result<(), ExportError> {
        Ok(())
    }
    /// A selected stream described itself (its slot's `argv` is filled in).
    fn stream_meta(&mut self, _input: &mut Input, _stream: StreamId) -> Result<(), ExportError> {
        Ok(())
    }
}

/// Reads the whole trace, handing selected streams' events to `h`. Returns whether the trace
/// was truncated.
pub(crate) fn pump<R: Read>(
    reader: &mut TraceReader<R>,
    filter: &Filter,
    input: &mut Input,
    h: &mut impl Handler,
) -> Result<bool, ExportError> {
    while let Some(batch) = reader.next_batch()? {
        match batch {
            Batch::Events(events) => {
                let Some(first) = events.first() else {
                    continue;
                };
                let stream = first.stream;
                let Some(slot) = input.streams.get_mut(stream as usize) else {
                    continue;
                };
                if !slot.selected {
                    continue;
                }
                if let Some(last) = events.last() {
                    slot.last_ns = slot.last_ns.max(last.time_ns);
                    input.last_ns = input.last_ns.max(last.time_ns);
                }
                input.events += events.len() as u64;
                h.events(input, stream, events)?;
            }
            Batch::Item(Item::String { id, text }) => {
                let i = id as usize;
                if input.strings.len() <= i {
                    input.strings.resize(i + 1, String::new());
                }
                input.strings[i] = text;
            }
            Batch::Item(Item::StreamStart(info)) => {
                let i = info.stream as usize;
                let name = match info.thread {
                    0 => format!("pid {}", info.pid),
                    t => format!("pid {} thread {t}", info.pid),
                };
                let root = input.frames.named(&name);
                let selected = filter.selects(&info);
                // The reader guarantees dense, in-order stream ids; be lenient anyway.
                while input.streams.len() < i {
                    let filler = StreamInfo {
                        stream: input.streams.len() as StreamId,
                        pid: 0,
                        thread: 0,
                        node_version: String::new(),
                    };
                    input.streams.push(StreamSlot {
                        info: filler,
                        selected: false,
                        argv: Vec::new(),
                        root,
                        last_ns: 0,
                        dropped: 0,
                    });
                }
                let slot = StreamSlot {
                    info,
                    selected,
                    argv: Vec::new(),
                    root,
                    last_ns: 0,
                    dropped: 0,
                };
                if i < input.streams.len() {
                    input.streams[i] = slot;
                } else {
                    input.streams.push(slot);
                }
                if selected {
                    h.stream_start(input, i as StreamId)?;
                }
            }
            Batch::Item(Item::StreamMeta { stream, json }) => {
                let Some(slot) = input.streams.get_mut(stream as usize) else {
                    continue;
                };
                if let Ok(serde_json::Value::Object(m)) = serde_json::from_str(&json) {
                    if let Some(serde_json::Value::Array(a)) = m.get("argv") {
                        slot.argv = a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect();
                    }
                }
                if slot.selected {
                    h.stream_meta(input, stream)?;
                }
            }
            Batch::Item(Item::StreamEnd(end)) => {
                if let Some(slot) = input.streams.get_mut(end.stream as usize) {
                    slot.dropped = end.dropped;
                }
            }
            Batch::Item(Item::Event(_)) => {}
        }
    }
    Ok(reader.truncated())
}
