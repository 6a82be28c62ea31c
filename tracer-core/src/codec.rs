//! The one place that knows which general-purpose serializer the trace file uses.
//!
//! Small, rarely written structures (the trace metadata, stream starts and ends) are stored
//! with bincode 2 in serde mode and the standard config (little endian, varint integers).
//! Everything else goes through [`encode`] and [`decode`], so swapping the serializer is a
//! change to this file plus a bump of
//! [`TRACE_FORMAT_VERSION`](crate::trace::TRACE_FORMAT_VERSION).
//!
//! Hot data (events) does not come through here: it has a hand-written encoding in
//! `trace::events`.

use serde::{de::DeserializeOwned, Serialize};

/// Largest value [`decode`] will build. Why: the bytes come from a file that may be damaged,
/// and a corrupt length prefix must not make the reader allocate gigabytes.
const DECODE_LIMIT: usize = 16 << 20;

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The value cannot be represented (should not happen for the trace's own types).
    #[error("cannot encode value: {0}")]
    Encode(String),
    /// The bytes are not a valid encoding of the expected type.
    #[error("cannot decode value: {0}")]
    Decode(String),
    /// The bytes hold a valid value followed by this many unexpected bytes.
    #[error("{0} unexpected bytes after the value")]
    Trailing(usize),
}

/// Serializes `value`.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Deserializes a `T` that must fill `bytes` exactly.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let config = bincode::config::standard().with_limit::<DECODE_LIMIT>();
    let (value, used) =
        bincode::serde::decode_from_slice::<T, _>(bytes, config).map_err(|e| CodecError::Decode(e.to_string()))?;
    // Why: trailing bytes mean the writer and reader disagree on the layout; silently
    // ignoring them would hide a format bug.
    match bytes.len() - used.min(bytes.len()) {
        0 => Ok(value),
        n => Err(CodecError::Trailing(n)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_trailing_bytes() {
        let value = (7u32, String::from("hello"), vec![1u64, 2, 3]);
        let mut bytes = encode(&value).unwrap();
        assert_eq!(decode::<(u32, String, Vec<u64>)>(&bytes).unwrap(), value);
        bytes.push(0);
        assert_eq!(decode::<(u32, String, Vec<u64>)>(&bytes), Err(CodecError::Trailing(1)));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(decode::<(String, Vec<String>)>(&[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(decode::<String>(&[]).is_err());
    }
}
