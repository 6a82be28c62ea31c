//! Reads a trace file as a stream of [`Item`]s, one block in memory at a time.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::block::{read_block, read_full, BlockError, BlockKind, Frame};
use super::error::TraceError;
use super::events;
use super::model::{Event, Item, StreamEnd, StreamId, StreamInfo, StringId, TraceMeta};
use super::varint::Cursor;
use super::{MAGIC, TRACE_FORMAT_VERSION};
use crate::codec;

/// Bytes before the first block: magic and format version.
const PREFIX_LEN: usize = MAGIC.len() + 4;

/// Streams the items of a trace.
///
/// Events are decoded a block at a time into a reused buffer and handed out one by one, so
/// reading allocates only for strings and the non-event items, never per event.
#[derive(Debug)]
pub struct TraceReader<R: Read> {
    input: R,
    path: Option<PathBuf>,
    meta: TraceMeta,
    /// File offset of the next block.
    offset: u64,
    payload: Vec<u8>,
    events: Vec<Event>,
    next_event: usize,
    items: VecDeque<Item>,
    /// Id the next string definition must have (ids are dense, in definition order).
    next_string: StringId,
    /// Per stream: has it ended?
    streams: Vec<bool>,
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Reading,
    /// The end marker was read.
    Finished,
    /// The input ended without the end marker.
    Truncated,
    /// An error was returned; the reader yields nothing more.
    Failed,
}

/// What [`TraceReader::next_batch`] yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Batch<'a> {
    /// Consecutive events of one stream.
    Events(&'a [Event]),
    /// Anything but an event.
    Item(Item),
}

/// Opens a trace file for reading.
pub fn open(path: &Path) -> Result<TraceReader<BufReader<File>>, TraceError> {
    let io_err = |source| TraceError::Io {
        path: Some(path.to_owned()),
        source,
    };
    // Why check first: on Unix opening a directory succeeds and only the read fails, with a
    // message ("Is a directory") that does not say what to do.
    if std::fs::metadata(path).map_err(io_err)?.is_dir() {
        return Err(TraceError::IsDirectory { path: path.to_owned() });
    }
    let file = File::open(path).map_err(io_err)?;
    TraceReader::with_path(BufReader::with_capacity(256 * 1024, file), Some(path.to_owned()))
}

impl<R: Read> TraceReader<R> {
    /// Reads the header and the metadata block.
    pub fn new(input: R) -> Result<Self, TraceError> {
        Self::with_path(input, None)
    }

    fn with_path(mut input: R, path: Option<PathBuf>) -> Result<Self, TraceError> {
        let io_err = |source| TraceError::Io {
            path: path.clone(),
            source,
        };
        let mut prefix = [0u8; PREFIX_LEN];
        let n = read_full(&mut input, &mut prefix).map_err(io_err)?;
        if n == 0 {
            return Err(TraceError::Empty);
        }
        let m = n.min(MAGIC.len());
        if prefix[..m] != MAGIC[..m] {
            return Err(TraceError::NotATrace);
        }
        if n < PREFIX_LEN {
            return Err(TraceError::TruncatedHeader);
        }
        let version = u32::from_le_bytes([prefix[8], prefix[9], prefix[10], prefix[11]]);
        if version == 0 {
            return Err(corrupt(8, "format version 0"));
        }
        if version > TRACE_FORMAT_VERSION {
            return Err(TraceError::Version {
                found: version,
                supported: TRACE_FORMAT_VERSION,
            });
        }
        let mut payload = Vec::new();
        let offset = PREFIX_LEN as u64;
        let len = match read_block(&mut input, &mut payload) {
            Ok(Frame::Block {
                kind: BlockKind::Meta,
                len,
            }) => len,
            Ok(Frame::Block { .. }) => return Err(corrupt(offset, "the first block is not the metadata")),
            Ok(Frame::Eof) => return Err(TraceError::TruncatedHeader),
            Err(BlockError::Io(e)) => return Err(io_err(e)),
            Err(BlockError::Corrupt(what)) => return Err(corrupt(offset, what)),
        };
        let meta = codec::decode(&payload).map_err(|e| corrupt(offset, format!("metadata: {e}")))?;
        Ok(TraceReader {
            input,
            path,
            meta,
            offset: offset + len,
            payload,
            events: Vec::new(),
            next_event: 0,
            items: VecDeque::new(),
            next_string: 0,
            streams: Vec::new(),
            state: State::Reading,
        })
    }

    /// The trace's metadata.
    pub fn meta(&self) -> &TraceMeta {
        &self.meta
    }

    /// Whether the input ended without the end marker (the recorder was killed or is still
    /// running). Meaningful once [`next_item`](Self::next_item) has returned `Ok(None)`.
    pub fn truncated(&self) -> bool {
        self.state == State::Truncated
    }

    /// The next item in file order, or `Ok(None)` at the end (check
    /// [`truncated`](Self::truncated) then). After an error it returns `Ok(None)`.
    #[inline]
    pub fn next_item(&mut self) -> Result<Option<Item>, TraceError> {
        loop {
            // Why events first and by index: this is the per-event path and must stay a copy.
            if let Some(ev) = self.events.get(self.next_event) {
                self.next_event += 1;
                return Ok(Some(Item::Event(*ev)));
            }
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            if self.state != State::Reading {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// The fast path: the rest of the current events block as one slice (events of one
    /// stream, in order), or else the next non-event item, in the same file order as
    /// [`next_item`](Self::next_item). Calls to the two may be mixed.
    pub fn next_batch(&mut self) -> Result<Option<Batch<'_>>, TraceError> {
        loop {
            if self.next_event < self.events.len() {
                let start = std::mem::replace(&mut self.next_event, self.events.len());
                return Ok(Some(Batch::Events(&self.events[start..])));
            }
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(Batch::Item(item)));
            }
            if self.state != State::Reading {
                return Ok(None);
            }
            self.fill()?;
        }
    }

    /// Reads the next block; on error, poisons the reader.
    fn fill(&mut self) -> Result<(), TraceError> {
        self.read_next_block().inspect_err(|_| {
            // Why clear: a damaged block may have been partly decoded; none of it is sound.
            self.events.clear();
            self.items.clear();
            self.state = State::Failed;
        })
    }

    /// Reads one block and queues what it holds.
    fn read_next_block(&mut self) -> Result<(), TraceError> {
        let offset = self.offset;
        let (kind, len) = match read_block(&mut self.input, &mut self.payload) {
            Ok(Frame::Block { kind, len }) => (kind, len),
            Ok(Frame::Eof) => {
                self.state = State::Truncated;
                return Ok(());
            }
            Err(BlockError::Io(source)) => {
                return Err(TraceError::Io {
                    path: self.path.clone(),
                    source,
                })
            }
            Err(BlockError::Corrupt(what)) => return Err(corrupt(offset, what)),
        };
        self.offset += len;
        let bad = |what: String| corrupt(offset, what);
        match kind {
            BlockKind::Events | BlockKind::Events2 => {
                self.events.clear();
                self.next_event = 0;
                let ranges = kind == BlockKind::Events2;
                let stream = events::decode(&self.payload, ranges, &mut self.events).map_err(|w| bad(w.into()))?;
                self.check_live(stream).map_err(bad)?;
            }
            BlockKind::Strings => self.read_strings().map_err(|w| bad(w.into()))?,
            BlockKind::StreamStart => {
                let info: StreamInfo = codec::decode(&self.payload).map_err(|e| bad(e.to_string()))?;
                if info.stream as usize != self.streams.len() {
                    return Err(bad(format!("stream {} started out of order", info.stream)));
                }
                self.streams.push(false);
                self.items.push_back(Item::StreamStart(info));
            }
            BlockKind::StreamMeta => {
                let (stream, json): (StreamId, String) =
                    codec::decode(&self.payload).map_err(|e| bad(e.to_string()))?;
                self.check_live(stream).map_err(bad)?;
                self.items.push_back(Item::StreamMeta { stream, json });
            }
            BlockKind::StreamEnd => {
                let end: StreamEnd = codec::decode(&self.payload).map_err(|e| bad(e.to_string()))?;
                self.check_live(end.stream).map_err(bad)?;
                if let Some(ended) = self.streams.get_mut(end.stream as usize) {
                    *ended = true;
                }
                self.items.push_back(Item::StreamEnd(end));
            }
            BlockKind::End => {
                if !self.payload.is_empty() {
                    return Err(bad("end marker has a payload".into()));
                }
                let mut probe = [0u8; 1];
                let n = read_full(&mut self.input, &mut probe).map_err(|source| TraceError::Io {
                    path: self.path.clone(),
                    source,
                })?;
                if n != 0 {
                    return Err(corrupt(self.offset, "data after the end marker"));
                }
                self.state = State::Finished;
            }
            BlockKind::Meta => return Err(bad("a second metadata block".into())),
        }
        Ok(())
    }

    fn read_strings(&mut self) -> Result<(), &'static str> {
        let mut cur = Cursor::new(&self.payload);
        let first = cur.u32().ok_or("bad strings header")?;
        let count = cur.u64().ok_or("bad strings header")?;
        if first != self.next_string {
            return Err("string ids out of order");
        }
        for i in 0..count {
            let len = usize::try_from(cur.u64().ok_or("bad string length")?).map_err(|_| "bad string length")?;
            let bytes = cur.bytes(len).ok_or("string longer than its block")?;
            let text = std::str::from_utf8(bytes).map_err(|_| "string is not UTF-8")?;
            let id = u32::try_from(u64::from(first) + i).map_err(|_| "too many strings")?;
            self.items.push_back(Item::String {
                id,
                text: text.to_owned(),
            });
        }
        if cur.remaining() != 0 {
            return Err("unexpected bytes after the last string");
        }
        self.next_string = u32::try_from(u64::from(first) + count).map_err(|_| "too many strings")?;
        Ok(())
    }

    fn check_live(&self, stream: StreamId) -> Result<(), String> {
        match self.streams.get(stream as usize) {
            Some(false) => Ok(()),
            Some(true) => Err(format!("stream {stream} continues after its end")),
            None => Err(format!("stream {stream} used before it started")),
        }
    }
}

impl<R: Read> Iterator for TraceReader<R> {
    type Item = Result<Item, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_item().transpose()
    }
}

fn corrupt(offset: u64, what: impl Into<String>) -> TraceError {
    TraceError::Corrupt {
        offset,
        what: what.into(),
    }
}
