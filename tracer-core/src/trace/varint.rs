//! LEB128 varints, zigzag signed integers, and a cursor that never reads past its slice.

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128, at most 10 bytes).
#[inline]
pub fn put_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// Maps signed to unsigned so that small magnitudes of either sign stay small:
/// 0, -1, 1, -2, 2 .. become 0, 1, 2, 3, 4 ..
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Inverse of [`zigzag`].
#[inline]
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Reads from a byte slice. Every method returns `None` instead of reading past the end or
/// overflowing, so decoding untrusted bytes cannot panic.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Cursor { rest: bytes }
    }

    /// Bytes not yet read.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    #[inline]
    pub fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    /// An unsigned LEB128 varint; `None` at the end of input or if it overflows 64 bits.
    #[inline]
    pub fn u64(&mut self) -> Option<u64> {
        // Why the fast path: most varints in an events block are a single byte.
        let b = self.u8()?;
        if b < 0x80 {
            return Some(u64::from(b));
        }
        let mut v = u64::from(b & 0x7f);
        let mut shift = 7;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return None;
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Some(v);
            }
            shift += 7;
        }
    }

    /// A varint that must fit in a `u32`.
    #[inline]
    pub fn u32(&mut self) -> Option<u32> {
        u32::try_from(self.u64()?).ok()
    }

    /// A zigzag-encoded signed varint.
    #[inline]
    pub fn i64(&mut self) -> Option<i64> {
        self.u64().map(unzigzag)
    }

    /// The next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        let mut values = vec![0, 1, 127, 128, 300, u64::MAX, u64::MAX - 1];
        values.extend((0..64).map(|s| 1u64 << s));
        let mut buf = Vec::new();
        for &v in &values {
            put_u64(&mut buf, v);
        }
        let mut cur = Cursor::new(&buf);
        for &v in &values {
            assert_eq!(cur.u64(), Some(v));
        }
        assert_eq!(cur.u64(), None);
    }

    #[test]
    fn zigzag_keeps_small_magnitudes_small() {
        for v in [0i64, -1, 1, -2, 2, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
    }

    #[test]
    fn overlong_and_cut_varints_are_rejected() {
        assert_eq!(Cursor::new(&[0xff; 10]).u64(), None);
        assert_eq!(
            Cursor::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).u64(),
            None
        );
        assert_eq!(Cursor::new(&[0x80]).u64(), None);
        assert_eq!(Cursor::new(&[0x80, 0x80, 0x80, 0x80, 0x10]).u32(), None);
    }
}
