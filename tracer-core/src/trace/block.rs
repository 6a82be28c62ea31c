//! Framing: every block is a 13-byte header followed by its payload.
//!
//! ```text
//! kind: u8 | len: u32 LE | payload crc32: u32 LE | header crc32: u32 LE | payload: len bytes
//! ```
//!
//! Why a separate header checksum: a damaged length would otherwise send the reader past the
//! end of the file, and a damaged file would be mistaken for a truncated one. With it, any
//! damage to a complete block is [`TraceError::Corrupt`](super::TraceError::Corrupt), and
//! running out of bytes always means the file really was cut off.

use std::io::{self, Read, Write};

/// Bytes before the payload.
pub const HEADER_LEN: usize = 13;

/// Largest payload a reader accepts. Why: the length comes from the file; the writer keeps
/// blocks near 64 KiB, so anything near this is damage, not data.
pub const MAX_PAYLOAD: usize = 16 << 20;

/// What a block holds. Adding a kind or changing a payload needs a bump of
/// [`TRACE_FORMAT_VERSION`](super::TRACE_FORMAT_VERSION): older readers reject unknown kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockKind {
    /// `codec` of [`TraceMeta`](super::TraceMeta); always the first block.
    Meta = 1,
    /// Varint first id, varint count, then per string a varint byte length and UTF-8 bytes.
    Strings = 2,
    /// `codec` of [`StreamInfo`](super::StreamInfo).
    StreamStart = 3,
    /// `codec` of `(StreamId, String)`.
    StreamMeta = 4,
    /// Events of one stream, see `events.rs`.
    Events = 5,
    /// `codec` of [`StreamEnd`](super::StreamEnd).
    StreamEnd = 6,
    /// Empty payload; the recording finished cleanly. Nothing may follow it.
    End = 7,
    /// Events of one stream with two id ranges (format 4), see `events.rs`.
    Events2 = 8,
}

impl BlockKind {
    pub fn from_u8(b: u8) -> Option<Self> {
        Some(match b {
            1 => BlockKind::Meta,
            2 => BlockKind::Strings,
            3 => BlockKind::StreamStart,
            4 => BlockKind::StreamMeta,
            5 => BlockKind::Events,
            6 => BlockKind::StreamEnd,
            7 => BlockKind::End,
            8 => BlockKind::Events2,
            _ => return None,
        })
    }
}

/// Writes one block whose payload is the concatenation of `parts`, in a single `write_all`.
/// Returns the number of bytes written.
pub fn write_block<W: Write>(out: &mut W, frame: &mut Vec<u8>, kind: BlockKind, parts: &[&[u8]]) -> io::Result<u64> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > MAX_PAYLOAD {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("trace block of {len} bytes exceeds the {MAX_PAYLOAD} byte limit"),
        ));
    }
    let mut crc = crc32fast::Hasher::new();
    for p in parts {
        crc.update(p);
    }
    frame.clear();
    frame.push(kind as u8);
    frame.extend_from_slice(&(len as u32).to_le_bytes());
    frame.extend_from_slice(&crc.finalize().to_le_bytes());
    let header_crc = crc32fast::hash(&frame[..9]);
    frame.extend_from_slice(&header_crc.to_le_bytes());
    for p in parts {
        frame.extend_from_slice(p);
    }
    out.write_all(frame)?;
    Ok(frame.len() as u64)
}

/// What [`read_block`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A complete block whose checksums match; its payload is in the buffer.
    Block { kind: BlockKind, len: u64 },
    /// The input ended at or inside this block.
    Eof,
}

/// Why a block is unreadable; the caller adds the offset.
#[derive(Debug)]
pub enum BlockError {
    Io(io::Error),
    Corrupt(String),
}

/// Reads the block at the current position into `payload`.
pub fn read_block<R: Read>(input: &mut R, payload: &mut Vec<u8>) -> Result<Frame, BlockError> {
    let mut header = [0u8; HEADER_LEN];
    if read_full(input, &mut header).map_err(BlockError::Io)? < HEADER_LEN {
        return Ok(Frame::Eof);
    }
    let word = |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if crc32fast::hash(&header[..9]) != word(9) {
        return Err(BlockError::Corrupt("block header checksum mismatch".into()));
    }
    let Some(kind) = BlockKind::from_u8(header[0]) else {
        return Err(BlockError::Corrupt(format!("unknown block kind {}", header[0])));
    };
    let len = word(1) as usize;
    if len > MAX_PAYLOAD {
        return Err(BlockError::Corrupt(format!("block length {len} is over the limit")));
    }
    payload.clear();
    // Why `take` + `read_to_end`: it grows the buffer only as bytes actually arrive, and a
    // short read means the file was cut off inside the payload.
    input.take(len as u64).read_to_end(payload).map_err(BlockError::Io)?;
    if payload.len() < len {
        return Ok(Frame::Eof);
    }
    if crc32fast::hash(payload) != word(5) {
        return Err(BlockError::Corrupt("block payload checksum mismatch".into()));
    }
    Ok(Frame::Block {
        kind,
        len: (HEADER_LEN + len) as u64,
    })
}

/// Fills as much of `buf` as the input has; returns how many bytes were read.
pub fn read_full<R: Read>(input: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
