//! LEB128 varints for the compact encodings of clocks.

use thiserror::Error;

/// A compact clock encoding could not be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("clock encoding truncated")]
    Truncated,
    /// A varint ran past 64 bits.
    #[error("clock encoding has a varint longer than 64 bits")]
    Overflow,
    /// Node ids were not strictly increasing, or a counter was zero.
    #[error("clock encoding is not canonical: {0}")]
    NotCanonical(&'static str),
    /// Bytes were left after the value.
    #[error("clock encoding has {0} trailing bytes")]
    Trailing(usize),
}

/// Appends `v` as an unsigned LEB128 varint (1 byte below 128).
pub(crate) fn put(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads one varint from the front of `input`, advancing it.
pub(crate) fn get(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first().ok_or(DecodeError::Truncated)?;
        *input = rest;
        let bits = u64::from(b & 0x7f);
        if shift == 63 && bits > 1 {
            return Err(DecodeError::Overflow);
        }
        v |= bits << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(DecodeError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_edges() {
        for v in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put(&mut buf, v);
            let mut s = buf.as_slice();
            assert_eq!(get(&mut s), Ok(v));
            assert!(s.is_empty());
        }
        assert_eq!(get(&mut &[0x80u8][..]), Err(DecodeError::Truncated));
        assert_eq!(get(&mut &[0xff; 11][..]), Err(DecodeError::Overflow));
    }
}
