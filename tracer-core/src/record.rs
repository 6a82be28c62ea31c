//! The fixed-size record the agent writes into a ring, and its decoder.
//!
//! A record is four little-endian `f64` words (32 bytes). JavaScript writes them through a
//! `Float64Array` with no conversion, because async ids are JS numbers: storing them as doubles
//! is free in the hook, while a `u64` would need a BigInt per event.
//!
//! Word 0 packs the kind and two small operands: `kind + 16 * a + 2^20 * b`, with `kind < 16`,
//! `a < 2^16` and `b < 2^33`, so the sum stays an exact integer below 2^53.
//!
//! | kind | a | b | w1 | w2 | w3 |
//! |---|---|---|---|---|---|
//! | `Init` | type string id | stack string id (0: none) | async id | trigger id | execution id |
//! | `Before`, `After`, `Destroy` | | | async id | | |
//! | `PromiseResolve` | | | async id | `executionAsyncId()` (0: unknown) | |
//! | `Clock` | | | monotonic ns | | |
//! | `String` | 1: used once, by the next record | string id | byte length | | |
//! | `Meta` | | string id of a JSON object | | | |
//! | `Exit` | | | exit code | hook events seen | hook events dropped |
//! | `Label` | | string id | async id | | |
//! | `Note` | note code | string id (0: none) | async id (0: none) | a | b |
//!
//! A `String` record is followed by `ceil(len / 32)` raw records holding the UTF-8 bytes. A
//! string marked "used once" (a note's text the agent does not keep an id for) is never
//! referred to again, so the reader need not remember its id.
//! Everything here comes from another process, so [`decode`] checks every field.

/// Version of the record layout. Bump when a kind, a field or the packing of word 0 changes;
/// the ring header carries it and the reader refuses rings of another version.
///
/// - 1: the first layout.
/// - 2: `PromiseResolve` carries the resolving context, and `Note` records.
pub const RECORD_FORMAT_VERSION: u32 = 2;

/// Size of one record in bytes.
pub const RECORD_SIZE: usize = 32;

/// One raw record as it sits in the ring.
pub type RawRecord = [u8; RECORD_SIZE];

/// Largest integer a double holds exactly; ids at or above it are malformed.
const MAX_SAFE: f64 = 9_007_199_254_740_992.0;

/// What a record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RecordKind {
    /// `init` hook: a resource was created.
    Init = 1,
    /// `before` hook: a callback of the resource starts.
    Before = 2,
    /// `after` hook: the callback returned.
    After = 3,
    /// `destroy` hook.
    Destroy = 4,
    /// `promiseResolve` hook.
    PromiseResolve = 5,
    /// The agent's clock advanced; later records happened at or after this time.
    Clock = 6,
    /// Defines a string id; its bytes follow as raw records.
    String = 7,
    /// Process or thread metadata (a JSON string).
    Meta = 8,
    /// The writer is exiting.
    Exit = 9,
    /// Attaches a label (for example `GET /users`) to a resource.
    Label = 10,
    /// A fact beyond the hooks (see `trace::notes` for the codes).
    Note = 11,
}

impl RecordKind {
    fn from_u8(k: u8) -> Option<Self> {
        Some(match k {
            1 => Self::Init,
            2 => Self::Before,
            3 => Self::After,
            4 => Self::Destroy,
            5 => Self::PromiseResolve,
            6 => Self::Clock,
            7 => Self::String,
            8 => Self::Meta,
            9 => Self::Exit,
            10 => Self::Label,
            11 => Self::Note,
            _ => return None,
        })
    }
}

/// A decoded record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record {
    Init {
        id: u64,
        trigger: u64,
        exec: u64,
        type_id: u32,
        stack_id: u64,
    },
    Before {
        id: u64,
    },
    After {
        id: u64,
    },
    Destroy {
        id: u64,
    },
    PromiseResolve {
        id: u64,
        by: u64,
    },
    Clock {
        ns: u64,
    },
    /// The next `ceil(len / 32)` records are the string's bytes.
    String {
        id: u64,
        len: u32,
        /// Only the next record uses it.
        once: bool,
    },
    Meta {
        string_id: u64,
    },
    Exit {
        code: i64,
        seen: u64,
        dropped: u64,
    },
    Label {
        id: u64,
        string_id: u64,
    },
    Note {
        id: u64,
        code: u32,
        string_id: u64,
        a: u64,
        b: u64,
    },
}

/// Why a record could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Word 0 names no known kind.
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    /// A word that must be a non-negative integer below 2^53 is not.
    #[error("record field is not a safe integer")]
    NotAnInteger,
    /// A string longer than the agent ever writes.
    #[error("string length {0} out of range")]
    StringTooLong(u64),
}

/// Longest string the agent writes (a stack of a few frames, or metadata).
pub const MAX_STRING_LEN: u64 = 1 << 20;

fn word(raw: &RawRecord, i: usize) -> f64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&raw[i * 8..i * 8 + 8]);
    f64::from_le_bytes(b)
}

fn uint(x: f64) -> Result<u64, DecodeError> {
    // The cast saturates and maps NaN to 0, so the round trip is exact only for integers in
    // range (and cheaper than `fract`, a libm call on this hot path).
    let v = x as u64;
    if v as f64 == x && x < MAX_SAFE {
        Ok(v)
    } else {
        Err(DecodeError::NotAnInteger)
    }
}

fn int(x: f64) -> Result<i64, DecodeError> {
    if x.abs() < MAX_SAFE && x.fract() == 0.0 {
        Ok(x as i64)
    } else {
        Err(DecodeError::NotAnInteger)
    }
}

/// Splits word 0 into `(kind, a, b)`.
fn unpack(w0: f64) -> Result<(u8, u32, u64), DecodeError> {
    let v = uint(w0)?;
    Ok(((v & 15) as u8, ((v >> 4) & 0xffff) as u32, v >> 20))
}

/// Packs word 0; the inverse of the decoder's unpacking.
pub fn pack(kind: RecordKind, a: u32, b: u64) -> f64 {
    debug_assert!(a < 1 << 16 && b < 1 << 33);
    (kind as u64 + ((a as u64) << 4) + (b << 20)) as f64
}

/// Decodes one record (not a string payload record: the caller tracks those).
pub fn decode(raw: &RawRecord) -> Result<Record, DecodeError> {
    let (k, a, b) = unpack(word(raw, 0))?;
    let kind = RecordKind::from_u8(k).ok_or(DecodeError::UnknownKind(k))?;
    let w = |i| uint(word(raw, i));
    Ok(match kind {
        RecordKind::Init => Record::Init {
            id: w(1)?,
            trigger: w(2)?,
            exec: w(3)?,
            type_id: a,
            stack_id: b,
        },
        RecordKind::Before => Record::Before { id: w(1)? },
        RecordKind::After => Record::After { id: w(1)? },
        RecordKind::Destroy => Record::Destroy { id: w(1)? },
        RecordKind::PromiseResolve => Record::PromiseResolve { id: w(1)?, by: w(2)? },
        RecordKind::Clock => Record::Clock { ns: w(1)? },
        RecordKind::String => {
            let len = w(1)?;
            if len > MAX_STRING_LEN {
                return Err(DecodeError::StringTooLong(len));
            }
            Record::String {
                id: b,
                len: len as u32,
                once: a == 1,
            }
        }
        RecordKind::Meta => Record::Meta { string_id: b },
        RecordKind::Exit => Record::Exit {
            code: int(word(raw, 1))?,
            seen: w(2)?,
            dropped: w(3)?,
        },
        RecordKind::Label => Record::Label {
            id: w(1)?,
            string_id: b,
        },
        RecordKind::Note => Record::Note {
            id: w(1)?,
            code: a,
            string_id: b,
            a: w(2)?,
            b: w(3)?,
        },
    })
}

/// Encodes a record; what the JS agent does by hand, used by the native fallback and tests.
pub fn encode(rec: &Record) -> RawRecord {
    let (w0, w1, w2, w3) = match *rec {
        Record::Init {
            id,
            trigger,
            exec,
            type_id,
            stack_id,
        } => (
            pack(RecordKind::Init, type_id, stack_id),
            id as f64,
            trigger as f64,
            exec as f64,
        ),
        Record::Before { id } => (pack(RecordKind::Before, 0, 0), id as f64, 0.0, 0.0),
        Record::After { id } => (pack(RecordKind::After, 0, 0), id as f64, 0.0, 0.0),
        Record::Destroy { id } => (pack(RecordKind::Destroy, 0, 0), id as f64, 0.0, 0.0),
        Record::PromiseResolve { id, by } => (pack(RecordKind::PromiseResolve, 0, 0), id as f64, by as f64, 0.0),
        Record::Clock { ns } => (pack(RecordKind::Clock, 0, 0), ns as f64, 0.0, 0.0),
        Record::String { id, len, once } => (pack(RecordKind::String, u32::from(once), id), len as f64, 0.0, 0.0),
        Record::Meta { string_id } => (pack(RecordKind::Meta, 0, string_id), 0.0, 0.0, 0.0),
        Record::Exit { code, seen, dropped } => {
            (pack(RecordKind::Exit, 0, 0), code as f64, seen as f64, dropped as f64)
        }
        Record::Label { id, string_id } => (pack(RecordKind::Label, 0, string_id), id as f64, 0.0, 0.0),
        Record::Note {
            id,
            code,
            string_id,
            a,
            b,
        } => (pack(RecordKind::Note, code, string_id), id as f64, a as f64, b as f64),
    };
    let mut out = [0u8; RECORD_SIZE];
    for (i, w) in [w0, w1, w2, w3].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// Number of payload records that follow a `String` record of `len` bytes.
pub fn string_payload_records(len: u32) -> usize {
    (len as usize).div_ceil(RECORD_SIZE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id() -> impl Strategy<Value = u64> {
        0u64..(1u64 << 53)
    }

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (id(), id(), id(), 0u32..(1 << 16), 0u64..(1 << 33)).prop_map(|(id, trigger, exec, type_id, stack_id)| {
                Record::Init {
                    id,
                    trigger,
                    exec,
                    type_id,
                    stack_id,
                }
            }),
            id().prop_map(|id| Record::Before { id }),
            id().prop_map(|id| Record::After { id }),
            id().prop_map(|id| Record::Destroy { id }),
            (id(), id()).prop_map(|(id, by)| Record::PromiseResolve { id, by }),
            id().prop_map(|ns| Record::Clock { ns }),
            (0u64..(1 << 33), 0u32..(MAX_STRING_LEN as u32), any::<bool>())
                .prop_map(|(id, len, once)| Record::String { id, len, once }),
            (0u64..(1 << 33)).prop_map(|string_id| Record::Meta { string_id }),
            (-1000i64..1000, id(), id()).prop_map(|(code, seen, dropped)| Record::Exit { code, seen, dropped }),
            (id(), 0u64..(1 << 33)).prop_map(|(id, string_id)| Record::Label { id, string_id }),
            (id(), 0u32..(1 << 16), 0u64..(1 << 33), id(), id()).prop_map(|(id, code, string_id, a, b)| Record::Note {
                id,
                code,
                string_id,
                a,
                b
            }),
        ]
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(r in record()) {
            prop_assert_eq!(decode(&encode(&r)).unwrap(), r);
        }

        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::array::uniform32(any::<u8>())) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn rejects_fractional_and_negative_ids() {
        let mut raw = encode(&Record::Before { id: 5 });
        raw[8..16].copy_from_slice(&5.5f64.to_le_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::NotAnInteger));
        raw[8..16].copy_from_slice(&(-1.0f64).to_le_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::NotAnInteger));
        raw[8..16].copy_from_slice(&f64::NAN.to_le_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::NotAnInteger));
    }

    #[test]
    fn rejects_unknown_kind() {
        let mut raw = [0u8; 32];
        raw[0..8].copy_from_slice(&15.0f64.to_le_bytes());
        assert_eq!(decode(&raw), Err(DecodeError::UnknownKind(15)));
    }
}
