//! WAL segment files: their names, their header, record framing, and the
//! scan that finds where the valid records of a segment end.
//!
//! Segment file `{seq:016x}.wal` (created as `{seq:016x}.wal.tmp`, synced,
//! renamed, directory synced):
//!
//! | bytes   | field |
//! |---------|-------|
//! | 0..8    | magic `CNCDWAL\0` |
//! | 8..12   | format version, u32 LE (1) |
//! | 12..16  | flags, u32 LE (0) |
//! | 16..24  | sequence number, u64 LE (matches the name) |
//! | 24..32  | `prev_len`: byte length of the previous segment's records when this one was created |
//! | 32..40  | `window`: most bytes the writer ever left unsynced in this segment |
//! | 40..60  | zero |
//! | 60..64  | CRC32C of bytes 0..60, u32 LE |
//! | 64..    | frames, then zeros (preallocated space) |
//!
//! Frame: `len: u32 LE` (length of the body, >= 1), `crc: u32 LE` (CRC32C of
//! the 4 length bytes followed by the body), body (record type byte + payload,
//! see [`crate::record`]).

use std::ops::Range;

/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: u64 = 64;
/// Bytes in front of every record body (length + CRC).
pub const FRAME_HEADER_LEN: usize = 8;

const MAGIC: &[u8; 8] = b"CNCDWAL\0";
const VERSION: u32 = 1;
const SUFFIX: &str = ".wal";
const TMP_SUFFIX: &str = ".wal.tmp";

/// File name of segment `seq`.
pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:016x}{SUFFIX}")
}

/// Temporary name a segment is prepared under.
pub(crate) fn segment_tmp_name(seq: u64) -> String {
    format!("{seq:016x}{TMP_SUFFIX}")
}

/// Sequence number of a segment file name (exactly 16 lower-case hex digits + `.wal`).
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(SUFFIX)?;
    if hex.len() != 16
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// True for a leftover temporary segment.
pub(crate) fn is_segment_tmp(name: &str) -> bool {
    name.ends_with(TMP_SUFFIX)
}

/// The fixed header at the start of each segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    pub seq: u64,
    pub prev_len: u64,
    pub window: u64,
}

impl SegmentHeader {
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_LEN as usize] {
        let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[16..24].copy_from_slice(&self.seq.to_le_bytes());
        h[24..32].copy_from_slice(&self.prev_len.to_le_bytes());
        h[32..40].copy_from_slice(&self.window.to_le_bytes());
        let crc = crc32c::crc32c(&h[0..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Parse and verify; the error is a reason (the header is at offset 0).
    pub fn decode(buf: &[u8]) -> Result<Self, String> {
        let Some(h) = buf.get(..SEGMENT_HEADER_LEN as usize) else {
            return Err(format!(
                "file of {} bytes is shorter than the segment header",
                buf.len()
            ));
        };
        if &h[0..8] != MAGIC {
            return Err("not a WAL segment (bad magic)".into());
        }
        if crc32c::crc32c(&h[0..60]) != le32(&h[60..64]) {
            return Err("segment header checksum mismatch".into());
        }
        let version = le32(&h[8..12]);
        if version != VERSION {
            return Err(format!("unsupported segment format version {version}"));
        }
        if le32(&h[12..16]) != 0 || h[40..60].iter().any(|&b| b != 0) {
            return Err("unknown segment header flags".into());
        }
        Ok(SegmentHeader {
            seq: le64(&h[16..24]),
            prev_len: le64(&h[24..32]),
            window: le64(&h[32..40]),
        })
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// Append one frame to `out`; `body` writes the record body. Returns the
/// frame's length.
pub(crate) fn encode_frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0u8; FRAME_HEADER_LEN]);
    body(out);
    let body_len = out.len() - start - FRAME_HEADER_LEN;
    assert!(
        body_len >= 1 && body_len <= u32::MAX as usize,
        "record body of {body_len} bytes"
    );
    let len = (body_len as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &out[start + FRAME_HEADER_LEN..]);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.len() - start
}

/// Invariant checked before every write (kept on in release): `buf` is a
/// whole number of well-formed frames.
pub(crate) fn assert_whole_frames(buf: &[u8]) {
    let mut at = 0;
    while at < buf.len() {
        assert!(
            buf.len() - at >= FRAME_HEADER_LEN,
            "truncated frame header in the write buffer"
        );
        let len = le32(&buf[at..at + 4]) as usize;
        assert!(len >= 1, "empty frame in the write buffer");
        at += FRAME_HEADER_LEN + len;
    }
    assert_eq!(
        at,
        buf.len(),
        "the write buffer does not end on a frame boundary"
    );
}

/// A frame that passed its checksum.
#[derive(Clone, Debug)]
pub(crate) struct Frame {
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Where its body is in the file buffer.
    pub body: Range<usize>,
}

/// Why a scan stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// At the end of the file, on a frame boundary.
    Eof,
    /// At a frame boundary followed only by zeros (preallocated space).
    Zeros,
    /// At a frame that is not valid.
    Invalid { offset: u64, reason: &'static str },
}

/// The result of scanning a segment's frames.
#[derive(Debug)]
pub(crate) struct Scan {
    pub frames: Vec<Frame>,
    /// End of the last valid frame.
    pub end: u64,
    pub stop: Stop,
}

/// Walk the frames of `buf` from `start`, verifying each checksum, until the
/// end of the file, a run of zeros, or the first invalid frame.
pub(crate) fn scan_frames(buf: &[u8], start: usize) -> Scan {
    let mut frames = Vec::new();
    let mut off = start;
    let stop = loop {
        let rest = &buf[off..];
        if rest.is_empty() {
            break Stop::Eof;
        }
        if first_nonzero(rest, 0).is_none() {
            break Stop::Zeros;
        }
        let invalid = |reason| Stop::Invalid {
            offset: off as u64,
            reason,
        };
        if rest.len() < FRAME_HEADER_LEN {
            break invalid("truncated record header");
        }
        let len = le32(&rest[0..4]) as usize;
        if len == 0 {
            break invalid("zero-length record");
        }
        if len > rest.len() - FRAME_HEADER_LEN {
            break invalid("record extends past the end of the file");
        }
        let body = &rest[FRAME_HEADER_LEN..FRAME_HEADER_LEN + len];
        if crc32c::crc32c_append(crc32c::crc32c(&rest[0..4]), body) != le32(&rest[4..8]) {
            break invalid("record checksum mismatch");
        }
        let body_start = off + FRAME_HEADER_LEN;
        frames.push(Frame {
            offset: off as u64,
            body: body_start..body_start + len,
        });
        off = body_start + len;
    };
    Scan {
        frames,
        end: off as u64,
        stop,
    }
}

/// Position of the first non-zero byte of `buf` at or after `from`.
pub(crate) fn first_nonzero(buf: &[u8], from: usize) -> Option<usize> {
    let rest = buf.get(from..)?;
    let chunks = rest.chunks_exact(64);
    let tail_start = rest.len() - chunks.remainder().len();
    let chunk = chunks
        .clone()
        .position(|c| c.iter().fold(0u8, |acc, &b| acc | b) != 0);
    let base = match chunk {
        Some(i) => i * 64,
        None => tail_start,
    };
    rest[base..]
        .iter()
        .position(|&b| b != 0)
        .map(|p| from + base + p)
}

/// Position of the last non-zero byte of `buf`.
pub(crate) fn last_nonzero(buf: &[u8]) -> Option<usize> {
    buf.iter().rposition(|&b| b != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(segment_name(26), "000000000000001a.wal");
        assert_eq!(parse_segment_name("000000000000001a.wal"), Some(26));
        assert_eq!(parse_segment_name("000000000000001A.wal"), None);
        assert_eq!(parse_segment_name("1a.wal"), None);
        assert_eq!(parse_segment_name("000000000000001a.wal.tmp"), None);
        assert!(is_segment_tmp(&segment_tmp_name(3)));
    }

    #[test]
    fn header_round_trip_and_checksum() {
        let h = SegmentHeader {
            seq: 5,
            prev_len: 1234,
            window: 99,
        };
        let mut buf = h.encode().to_vec();
        assert_eq!(SegmentHeader::decode(&buf), Ok(h));
        buf[20] ^= 1;
        assert!(SegmentHeader::decode(&buf).is_err());
        assert!(SegmentHeader::decode(&buf[..10]).is_err());
    }

    #[test]
    fn scan_stops_at_zeros_and_bad_frames() {
        let mut buf = vec![0u8; 4];
        encode_frame(&mut buf, |o| o.extend_from_slice(b"\x01abc"));
        encode_frame(&mut buf, |o| o.extend_from_slice(b"\x02"));
        let end = buf.len();
        buf.extend_from_slice(&[0u8; 100]);
        let scan = scan_frames(&buf, 4);
        assert_eq!(
            (scan.frames.len(), scan.end, scan.stop.clone()),
            (2, end as u64, Stop::Zeros)
        );
        buf[end + 50] = 7;
        let scan = scan_frames(&buf, 4);
        assert_eq!(
            scan.stop,
            Stop::Invalid {
                offset: end as u64,
                reason: "zero-length record"
            }
        );
        buf[10] ^= 0xff;
        let scan = scan_frames(&buf, 4);
        assert!(scan.frames.is_empty());
        assert!(matches!(scan.stop, Stop::Invalid { offset: 4, .. }));
        assert_eq!(scan_frames(&buf[..4], 4).stop, Stop::Eof);
    }

    #[test]
    fn nonzero_search() {
        let mut buf = vec![0u8; 300];
        assert_eq!(first_nonzero(&buf, 0), None);
        buf[200] = 1;
        assert_eq!(first_nonzero(&buf, 0), Some(200));
        assert_eq!(first_nonzero(&buf, 200), Some(200));
        assert_eq!(first_nonzero(&buf, 201), None);
        assert_eq!(first_nonzero(&buf, 400), None);
        assert_eq!(last_nonzero(&buf), Some(200));
    }
}
