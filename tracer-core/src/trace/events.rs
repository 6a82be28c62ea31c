//! The compact encoding of an events block: the hot path of both the writer and the reader.
//!
//! Payload: varint stream id, varint event count, varint time unit `tick` (ns, > 0), then the
//! events. Delta state starts at id 0 and time 0 in every block, so each block decodes alone.
//!
//! Each event starts with a tag byte:
//!
//! | bits | meaning |
//! |---|---|
//! | 0-2 | kind: 0 init, 1 before, 2 after, 3 destroy, 4 promiseResolve (by unknown), 5 label, 6 note, 7 promiseResolve by |
//! | 3-4 | time: 0 same as previous, 1 previous + tick, 2 varint n follows (+ n * tick), 3 zigzag varint ns delta follows |
//! | 5-7 | id: 0..=6 zigzag delta from the previous id inline, 7 zigzag varint delta follows |
//!
//! then the kind's operands: init has the type name id (varint), trigger as zigzag delta from
//! the id, exec as zigzag delta from the trigger, and the stack (varint, 0 = none, else id + 1);
//! label has the text id (varint); note has the code, `a`, `b` (varints) and the text (varint,
//! 0 = none, else id + 1); promiseResolve-by has `by` as a zigzag delta from the id.
//!
//! Why this shape: ids of consecutive events are usually within ±3 and the agent's clock ticks
//! every ~50 µs, so most events repeat or advance the time by one tick. A before, after,
//! destroy or promiseResolve is then one byte, and an init about five.
//!
//! Two id ranges ([`BlockKind::Events2`](super::block::BlockKind), trace format 4): a thread
//! recorded with V8's promise hooks numbers its promises from
//! [`notes::PROMISE_ID_BASE`](super::notes::PROMISE_ID_BASE) up, far from its other ids, and
//! alternates between the two. So every varint id delta and the trigger, exec and `by`
//! operands carry one more bit (the lowest): 0, the delta is from the usual reference (the
//! previous id; the id; the trigger); 1, from the last id of the other range than that
//! reference's. A switch between ranges then costs a byte or two, not six. Blocks of kind
//! `Events` (format 3 and older) have no such bit.

use super::model::{notes, Event, EventKind, StreamId};
use super::varint::{put_u64, unzigzag, zigzag, Cursor};

const KIND_INIT: u8 = 0;
const KIND_BEFORE: u8 = 1;
const KIND_AFTER: u8 = 2;
const KIND_DESTROY: u8 = 3;
const KIND_RESOLVE: u8 = 4;
const KIND_LABEL: u8 = 5;
const KIND_NOTE: u8 = 6;
const KIND_RESOLVE_BY: u8 = 7;

const TIME_SAME: u8 = 0;
const TIME_TICK: u8 = 1;
const TIME_TICKS: u8 = 2;
const TIME_NS: u8 = 3;

/// How many events the writer puts in a block at most. Why here: the reader uses it to
/// bound what it reserves up front for a block whose count may be damaged.
pub const MAX_EVENTS_PER_BLOCK: usize = 16 * 1024;

/// The operand-less kinds by kind number.
const SIMPLE: [Option<EventKind>; 8] = [
    None,
    Some(EventKind::Before),
    Some(EventKind::After),
    Some(EventKind::Destroy),
    Some(EventKind::PromiseResolve { by: 0 }),
    None,
    None,
    None,
];

/// Largest zigzag id delta stored inside the tag.
const ID_INLINE_MAX: u64 = 6;
const ID_VARINT: u8 = 7;

/// The last id seen in each of the two id ranges (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
struct Ranges {
    last: [u64; 2],
}

fn range(id: u64) -> usize {
    usize::from(id >= notes::PROMISE_ID_BASE)
}

impl Ranges {
    /// The encoded operand for `x`, relative to `reference`.
    fn encode(&self, x: u64, reference: u64) -> u64 {
        if range(x) == range(reference) {
            zigzag(x.wrapping_sub(reference) as i64) << 1
        } else {
            (zigzag(x.wrapping_sub(self.last[range(x)]) as i64) << 1) | 1
        }
    }

    fn decode(&self, v: u64, reference: u64) -> u64 {
        let from = if v & 1 == 0 {
            reference
        } else {
            self.last[1 - range(reference)]
        };
        from.wrapping_add(unzigzag(v >> 1) as u64)
    }

    fn saw(&mut self, id: u64) {
        self.last[range(id)] = id;
    }
}

/// Accumulates one stream's events for its next block.
#[derive(Debug)]
pub struct EventEncoder {
    buf: Vec<u8>,
    count: u32,
    prev_id: u64,
    prev_time: u64,
    tick: u64,
    ranges: Ranges,
}

impl EventEncoder {
    pub fn new(tick: u64) -> Self {
        EventEncoder {
            buf: Vec::new(),
            count: 0,
            prev_id: 0,
            prev_time: 0,
            tick: tick.max(1),
            ranges: Ranges::default(),
        }
    }

    pub fn count(&self) -> u32 {
        self.count
    }

    /// Encoded bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn push(&mut self, ev: &Event) {
        let (kind, operands) = match ev.kind {
            EventKind::Init { .. } => (KIND_INIT, true),
            EventKind::Before => (KIND_BEFORE, false),
            EventKind::After => (KIND_AFTER, false),
            EventKind::Destroy => (KIND_DESTROY, false),
            EventKind::PromiseResolve { by: 0 } => (KIND_RESOLVE, false),
            EventKind::PromiseResolve { .. } => (KIND_RESOLVE_BY, true),
            EventKind::Label { .. } => (KIND_LABEL, true),
            EventKind::Note { .. } => (KIND_NOTE, true),
        };
        let dt = ev.time_ns.wrapping_sub(self.prev_time);
        let time_code = if dt == 0 {
            TIME_SAME
        } else if ev.time_ns < self.prev_time {
            // Why allowed: a clock that steps back must not lose the event; the delta is signed.
            TIME_NS
        } else if dt == self.tick {
            TIME_TICK
        } else if dt.is_multiple_of(self.tick) {
            TIME_TICKS
        } else {
            TIME_NS
        };
        let id_delta = zigzag(ev.id.wrapping_sub(self.prev_id) as i64);
        let id_code = if id_delta <= ID_INLINE_MAX {
            id_delta as u8
        } else {
            ID_VARINT
        };
        let r = self.ranges;
        self.buf.push(kind | (time_code << 3) | (id_code << 5));
        match time_code {
            TIME_TICKS => put_u64(&mut self.buf, dt / self.tick),
            TIME_NS => put_u64(&mut self.buf, zigzag(dt as i64)),
            _ => {}
        }
        if id_code == ID_VARINT {
            put_u64(&mut self.buf, r.encode(ev.id, self.prev_id));
        }
        self.ranges.saw(ev.id);
        let r = self.ranges;
        if operands {
            match ev.kind {
                EventKind::Init {
                    type_name,
                    trigger,
                    exec,
                    stack,
                } => {
                    put_u64(&mut self.buf, u64::from(type_name));
                    put_u64(&mut self.buf, r.encode(trigger, ev.id));
                    put_u64(&mut self.buf, r.encode(exec, trigger));
                    put_u64(&mut self.buf, stack.map_or(0, |s| u64::from(s) + 1));
                }
                EventKind::Label { text } => put_u64(&mut self.buf, u64::from(text)),
                EventKind::PromiseResolve { by } => put_u64(&mut self.buf, r.encode(by, ev.id)),
                EventKind::Note { code, a, b, text } => {
                    put_u64(&mut self.buf, u64::from(code));
                    put_u64(&mut self.buf, a);
                    put_u64(&mut self.buf, b);
                    put_u64(&mut self.buf, text.map_or(0, |s| u64::from(s) + 1));
                }
                _ => {}
            }
        }
        self.prev_id = ev.id;
        self.prev_time = ev.time_ns;
        self.count += 1;
    }

    /// The block header for the events pushed so far; the body is [`Self::body`].
    pub fn header(&self, stream: StreamId) -> Vec<u8> {
        let mut h = Vec::with_capacity(16);
        put_u64(&mut h, u64::from(stream));
        put_u64(&mut h, u64::from(self.count));
        put_u64(&mut h, self.tick);
        h
    }

    pub fn body(&self) -> &[u8] {
        &self.buf
    }

    /// Starts the next block (delta state resets so blocks decode independently).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.count = 0;
        self.prev_id = 0;
        self.prev_time = 0;
        self.ranges = Ranges::default();
    }

    /// Drops the buffer of a stream that has ended.
    pub fn release(&mut self) {
        self.reset();
        self.buf = Vec::new();
    }
}

/// Decodes an events payload into `out` (cleared first) and returns its stream id; `ranges`:
/// the payload is of an `Events2` block (see the module docs). Allocates only when `out`
/// must grow.
pub fn decode(payload: &[u8], ranges: bool, out: &mut Vec<Event>) -> Result<StreamId, &'static str> {
    out.clear();
    let mut cur = Cursor::new(payload);
    let stream = cur.u32().ok_or("bad events header (stream)")?;
    let count = cur.u64().ok_or("bad events header (count)")?;
    let tick = cur.u64().filter(|&t| t > 0).ok_or("bad events header (time unit)")?;
    // Why: every event takes at least one byte, so a larger count is damage; checking first
    // keeps a corrupt count from reserving a huge vector.
    if count > cur.remaining() as u64 {
        return Err("event count larger than the block");
    }
    out.reserve((count as usize).min(MAX_EVENTS_PER_BLOCK));
    let (mut id, mut time) = (0u64, 0u64);
    let mut r = Ranges::default();
    // Operands as format 3 wrote them: a plain zigzag delta.
    let operand = |r: &Ranges, v: u64, reference: u64| {
        if ranges {
            r.decode(v, reference)
        } else {
            reference.wrapping_add(unzigzag(v) as u64)
        }
    };
    for _ in 0..count {
        let tag = cur.u8().ok_or("events block ends inside an event")?;
        let time_code = (tag >> 3) & 3;
        // Why the shapes below: same-time and one-tick steps, small id deltas and the four
        // operand-less kinds are the common case, so they take no unpredictable branch.
        if time_code < TIME_TICKS {
            time = time.wrapping_add(tick * u64::from(time_code));
        } else if time_code == TIME_TICKS {
            let n = cur.u64().ok_or("bad time delta")?;
            time = time.wrapping_add(n.wrapping_mul(tick));
        } else {
            time = time.wrapping_add(cur.i64().ok_or("bad time delta")? as u64);
        }
        let id_code = tag >> 5;
        id = if id_code != ID_VARINT {
            id.wrapping_add(unzigzag(u64::from(id_code)) as u64)
        } else {
            operand(&r, cur.u64().ok_or("bad id delta")?, id)
        };
        r.saw(id);
        let kind = match tag & 7 {
            KIND_INIT => {
                let type_name = cur.u32().ok_or("bad init type name")?;
                let trigger = operand(&r, cur.u64().ok_or("bad init trigger")?, id);
                let exec = operand(&r, cur.u64().ok_or("bad init exec")?, trigger);
                let stack = match cur.u64().ok_or("bad init stack")? {
                    0 => None,
                    s => Some(u32::try_from(s - 1).map_err(|_| "bad init stack")?),
                };
                EventKind::Init {
                    type_name,
                    trigger,
                    exec,
                    stack,
                }
            }
            KIND_LABEL => EventKind::Label {
                text: cur.u32().ok_or("bad label text")?,
            },
            KIND_RESOLVE_BY => EventKind::PromiseResolve {
                by: operand(&r, cur.u64().ok_or("bad resolve context")?, id),
            },
            KIND_NOTE => {
                let code = cur.u32().ok_or("bad note code")?;
                let a = cur.u64().ok_or("bad note operand")?;
                let b = cur.u64().ok_or("bad note operand")?;
                let text = match cur.u64().ok_or("bad note text")? {
                    0 => None,
                    s => Some(u32::try_from(s - 1).map_err(|_| "bad note text")?),
                };
                EventKind::Note { code, a, b, text }
            }
            k => SIMPLE[usize::from(k)].ok_or("unknown event kind")?,
        };
        out.push(Event {
            stream,
            time_ns: time,
            id,
            kind,
        });
    }
    if cur.remaining() != 0 {
        return Err("unexpected bytes after the last event");
    }
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(payload: &[u8], ranges: bool) -> Event {
        let mut out = Vec::new();
        decode(payload, ranges, &mut out).unwrap();
        assert_eq!(out.len(), 1);
        out[0]
    }

    #[test]
    fn format_3_blocks_still_decode() {
        // Stream 0, 1 event, tick 1; an init of id 5 (varint zigzag 10), type 0, trigger 1
        // (zigzag of -4: 7), exec 1 (0), no stack.
        let payload = [0, 1, 1, KIND_INIT | (ID_VARINT << 5), 10, 0, 7, 0, 0];
        let ev = one(&payload, false);
        assert_eq!(ev.id, 5);
        assert!(matches!(
            ev.kind,
            EventKind::Init {
                trigger: 1,
                exec: 1,
                ..
            }
        ));
    }

    #[test]
    fn switching_between_id_ranges_costs_a_byte_or_two() {
        let p = notes::PROMISE_ID_BASE;
        let mut enc = EventEncoder::new(1);
        let ev = |id, kind| Event {
            stream: 0,
            time_ns: 0,
            id,
            kind,
        };
        let init = |trigger, exec| EventKind::Init {
            type_name: 1,
            trigger,
            exec,
            stack: None,
        };
        let evs = [
            ev(p + 1, init(1, 1)),
            ev(20, init(19, 19)),
            ev(p + 2, init(p + 1, 20)),
            ev(21, init(20, p + 2)),
        ];
        enc.push(&evs[0]);
        enc.push(&evs[1]);
        let before = enc.len();
        enc.push(&evs[2]);
        enc.push(&evs[3]);
        assert!(
            enc.len() - before <= 12,
            "two inits across ranges took {} bytes",
            enc.len() - before
        );
        let mut payload = enc.header(0);
        payload.extend_from_slice(enc.body());
        let mut out = Vec::new();
        decode(&payload, true, &mut out).unwrap();
        assert_eq!(out, evs);
    }
}
