//! Writes a trace file as it is recorded.

use std::collections::HashMap;
use std::io::{self, Write};

use super::block::{write_block, BlockKind};
use super::events::{EventEncoder, MAX_EVENTS_PER_BLOCK};
use super::model::{Event, Item, StreamEnd, StreamId, StreamInfo, StringId, TraceMeta};
use super::varint::put_u64;
use super::{MAGIC, TRACE_FORMAT_VERSION};
use crate::codec;

/// A stream's events block is written once its encoding reaches this size. Why 64 KiB: big
/// enough that framing (13 bytes) is noise, small enough that a killed recorder loses little
/// and a reader's memory stays small.
const BLOCK_BYTES: usize = 64 * 1024;

/// Strings are cut at this many bytes (on a char boundary). Why: a block must stay under the
/// reader's limit, and no stack or type name is legitimately this long.
const MAX_STRING: usize = 1 << 20;

/// Strings used once that one generation of [`TraceWriter::intern_once`] deduplicates.
const ONCE_GENERATION: usize = 1 << 14;

/// A string interned with [`TraceWriter::intern_once`] gets its id again only while fewer
/// than this many other such strings were defined after it; after that, the same text gets
/// a new id. A reader may forget such a string once this many newer ones came.
pub const ONCE_HORIZON: u64 = 2 * ONCE_GENERATION as u64;

/// Writes a trace: the header and metadata on creation, then blocks as data arrives.
///
/// Events are buffered per stream and written as one block per stream when the buffer is
/// full, on [`flush`](Self::flush), on [`end_stream`](Self::end_stream) and on
/// [`finish`](Self::finish). Wrap a file in a `BufWriter` or not: each block is written with
/// a single `write_all`.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    /// Reused buffer for one framed block.
    frame: Vec<u8>,
    strings: HashMap<String, StringId>,
    /// Strings used once each (labels, note texts), deduplicated over the last few thousand
    /// only: the newer generation and the one before. Why not in `strings`: a service with a
    /// distinct URL per request would grow that map by each URL for as long as it runs.
    once: [HashMap<String, StringId>; 2],
    /// Interned strings not yet written, the first of which has id `pending_first`.
    pending: Vec<String>,
    pending_first: StringId,
    streams: Vec<StreamState>,
    tick: u64,
    bytes_written: u64,
    events_written: u64,
    /// A copy of everything written, for a live view.
    tap: Option<crate::live::Tap>,
}

#[derive(Debug)]
struct StreamState {
    enc: EventEncoder,
    ended: bool,
}

impl<W: Write> TraceWriter<W> {
    /// Writes the magic, the format version and the metadata block.
    pub fn new(mut out: W, meta: &TraceMeta) -> io::Result<Self> {
        let mut head = Vec::with_capacity(12);
        head.extend_from_slice(&MAGIC);
        head.extend_from_slice(&TRACE_FORMAT_VERSION.to_le_bytes());
        out.write_all(&head)?;
        let mut frame = Vec::new();
        let payload = codec::encode(meta).map_err(io::Error::other)?;
        let n = write_block(&mut out, &mut frame, BlockKind::Meta, &[&payload])?;
        Ok(TraceWriter {
            out,
            frame,
            strings: HashMap::new(),
            once: Default::default(),
            pending: Vec::new(),
            pending_first: 0,
            streams: Vec::new(),
            tick: meta.clock_tick_ns.max(1),
            bytes_written: head.len() as u64 + n,
            events_written: 0,
            tap: None,
        })
    }

    /// Copies every string, stream and event from now on to `tap` (`asynctrace top`).
    pub fn set_tap(&mut self, tap: crate::live::Tap) {
        self.tap = Some(tap);
    }

    /// Announces a writer thread and returns its id (0, 1, 2 .. in call order).
    pub fn begin_stream(&mut self, pid: u32, thread: u32, node_version: &str) -> io::Result<StreamId> {
        let stream = StreamId::try_from(self.streams.len()).map_err(|_| invalid("too many streams in one trace"))?;
        let info = StreamInfo {
            stream,
            pid,
            thread,
            node_version: node_version.to_owned(),
        };
        if let Some(t) = &mut self.tap {
            t.item(Item::StreamStart(info.clone()));
        }
        self.emit_codec(BlockKind::StreamStart, &info)?;
        self.streams.push(StreamState {
            enc: EventEncoder::new(self.tick),
            ended: false,
        });
        Ok(stream)
    }

    /// Returns the id of `text`, defining it if it is new. The definition is written before
    /// the next block, so before any block that can use the id.
    pub fn intern(&mut self, text: &str) -> StringId {
        let text = cut(text, MAX_STRING);
        if let Some(&id) = self.strings.get(text) {
            return id;
        }
        let id = self.define(text);
        self.strings.insert(text.to_owned(), id);
        id
    }

    /// Like [`intern`](Self::intern), for a string its writer uses once: the same text gets
    /// the same id while it is recent, and a new one (the same text again) after that (see
    /// [`ONCE_HORIZON`]), so the writer's memory stays bounded however many distinct texts a
    /// run makes. Why not look in the other strings: an id from there may be older than the
    /// horizon.
    pub fn intern_once(&mut self, text: &str) -> StringId {
        let text = cut(text, MAX_STRING);
        if let Some(&id) = self.once[0].get(text).or_else(|| self.once[1].get(text)) {
            return id;
        }
        let id = self.define(text);
        if self.once[0].len() >= ONCE_GENERATION {
            self.once[1] = std::mem::take(&mut self.once[0]);
        }
        self.once[0].insert(text.to_owned(), id);
        id
    }

    /// A new id for `text`, written before the next block.
    fn define(&mut self, text: &str) -> StringId {
        let id = self.pending_first + self.pending.len() as StringId;
        if let Some(t) = &mut self.tap {
            t.item(Item::String {
                id,
                text: text.to_owned(),
            });
        }
        self.pending.push(text.to_owned());
        id
    }

    /// Writes a stream's metadata (a JSON object from the agent).
    pub fn stream_meta(&mut self, stream: StreamId, json: &str) -> io::Result<()> {
        self.live(stream)?;
        self.emit_codec(BlockKind::StreamMeta, &(stream, json))
    }

    /// Buffers one event of a started, not yet ended stream.
    pub fn event(&mut self, ev: &Event) -> io::Result<()> {
        if let Some(t) = &mut self.tap {
            t.event(ev);
        }
        let state = self.live(ev.stream)?;
        state.enc.push(ev);
        if state.enc.len() >= BLOCK_BYTES || state.enc.count() as usize >= MAX_EVENTS_PER_BLOCK {
            self.flush_stream(ev.stream)?;
        }
        Ok(())
    }

    /// Writes the stream's pending events, then its end. Later events of it are an error.
    pub fn end_stream(&mut self, end: &StreamEnd) -> io::Result<()> {
        self.live(end.stream)?;
        self.flush_stream(end.stream)?;
        self.emit_codec(BlockKind::StreamEnd, end)?;
        if let Some(t) = &mut self.tap {
            t.item(Item::StreamEnd(end.clone()));
            t.send();
        }
        if let Some(state) = self.streams.get_mut(end.stream as usize) {
            state.ended = true;
            state.enc.release();
        }
        Ok(())
    }

    /// Writes every pending block and flushes the output, so that the file read now (or
    /// after the recorder is killed) holds everything given so far.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(t) = &mut self.tap {
            t.send();
        }
        self.emit_strings()?;
        for stream in 0..self.streams.len() {
            self.flush_stream(stream as StreamId)?;
        }
        self.out.flush()
    }

    /// Bytes handed to the output so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Events handed to the output so far (buffered events count once their block is written).
    pub fn events_written(&self) -> u64 {
        self.events_written
    }

    /// Flushes everything, writes the end marker and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.flush()?;
        self.bytes_written += write_block(&mut self.out, &mut self.frame, BlockKind::End, &[])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn live(&mut self, stream: StreamId) -> io::Result<&mut StreamState> {
        match self.streams.get_mut(stream as usize) {
            Some(state) if !state.ended => Ok(state),
            Some(_) => Err(invalid(format!("stream {stream} has already ended"))),
            None => Err(invalid(format!("stream {stream} was not begun"))),
        }
    }

    fn flush_stream(&mut self, stream: StreamId) -> io::Result<()> {
        let Some(state) = self.streams.get(stream as usize) else {
            return Ok(());
        };
        if state.enc.count() == 0 {
            return Ok(());
        }
        // Why strings first: the events may use ids interned since the last block.
        self.emit_strings()?;
        let Some(state) = self.streams.get_mut(stream as usize) else {
            return Ok(());
        };
        let header = state.enc.header(stream);
        let parts: [&[u8]; 2] = [&header, state.enc.body()];
        self.bytes_written += write_block(&mut self.out, &mut self.frame, BlockKind::Events2, &parts)?;
        self.events_written += u64::from(state.enc.count());
        state.enc.reset();
        Ok(())
    }

    /// Writes pending string definitions, in blocks of about [`BLOCK_BYTES`].
    fn emit_strings(&mut self) -> io::Result<()> {
        let mut start = 0;
        while start < self.pending.len() {
            let mut end = start;
            let mut size = 0;
            while end < self.pending.len() && (end == start || size < BLOCK_BYTES) {
                size += self.pending[end].len() + 5;
                end += 1;
            }
            let mut payload = Vec::with_capacity(size + 10);
            put_u64(&mut payload, u64::from(self.pending_first) + start as u64);
            put_u64(&mut payload, (end - start) as u64);
            for text in &self.pending[start..end] {
                put_u64(&mut payload, text.len() as u64);
                payload.extend_from_slice(text.as_bytes());
            }
            self.bytes_written += write_block(&mut self.out, &mut self.frame, BlockKind::Strings, &[&payload])?;
            start = end;
        }
        self.pending_first += self.pending.len() as StringId;
        self.pending.clear();
        Ok(())
    }

    fn emit_codec<T: serde::Serialize>(&mut self, kind: BlockKind, value: &T) -> io::Result<()> {
        self.emit_strings()?;
        let payload = codec::encode(value).map_err(io::Error::other)?;
        self.bytes_written += write_block(&mut self.out, &mut self.frame, kind, &[&payload])?;
        Ok(())
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// The longest prefix of `text` of at most `max` bytes that ends on a char boundary.
fn cut(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
