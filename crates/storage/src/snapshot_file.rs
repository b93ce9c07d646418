//! The snapshot file format: header, membership, data, checksum footer.
//!
//! | bytes | field |
//! |-------|-------|
//! | 0..8   | magic `CNCDSNP\0` |
//! | 8..12  | format version, u32 LE (1) |
//! | 12..16 | flags, u32 LE (0) |
//! | 16..24 | group, u64 LE |
//! | 24..32 | index, u64 LE |
//! | 32..40 | term, u64 LE |
//! | 40..44 | `meta_len`: length of the encoded membership, u32 LE |
//! | 44..48 | zero |
//! | 48..56 | `data_len`: length of the state-machine image, u64 LE |
//! | 56..64 | zero |
//! | 64..   | membership (`ConfState`, see [`crate::record::encode_conf_state`]), then data |
//! | last 8 | CRC32C of every byte before it, u32 LE; then `SNPE` |
//!
//! The file length must equal `64 + meta_len + data_len + 8`.

use std::path::Path;

use bytes::Bytes;
use concord_raft::{GroupId, Index, Snapshot, SnapshotMeta, Term};

use crate::disk::DiskFile;
use crate::error::{Result, StorageError};
use crate::record::{decode_conf_state, encode_conf_state};

/// Length of the snapshot file header.
pub const SNAPSHOT_HEADER_LEN: u64 = 64;
/// Length of the footer (checksum + end magic).
pub const SNAPSHOT_FOOTER_LEN: u64 = 8;

const MAGIC: &[u8; 8] = b"CNCDSNP\0";
const END_MAGIC: &[u8; 4] = b"SNPE";
const VERSION: u32 = 1;
const VERIFY_CHUNK: usize = 1 << 20;

/// The parsed header of a snapshot file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SnapHeader {
    pub group: GroupId,
    pub index: Index,
    pub term: Term,
    pub meta_len: u64,
    pub data_len: u64,
}

/// The header and membership of a snapshot of `group` with `meta` and a
/// data section of `data_len` bytes.
pub(crate) fn encode_head(group: GroupId, meta: &SnapshotMeta, data_len: u64) -> Vec<u8> {
    let mut conf = Vec::new();
    encode_conf_state(&mut conf, &meta.conf_state);
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN as usize + conf.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&meta.index.to_le_bytes());
    out.extend_from_slice(&meta.term.to_le_bytes());
    out.extend_from_slice(&(conf.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&data_len.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&conf);
    out
}

/// The footer: the checksum of every byte before it, then the end magic.
pub(crate) fn encode_tail(crc: u32) -> Vec<u8> {
    let mut tail = crc.to_le_bytes().to_vec();
    tail.extend_from_slice(END_MAGIC);
    tail
}

/// Header, membership and data section of a snapshot file, read and
/// checked without its data (the checksum is not: see [`verify`]).
pub(crate) fn read_meta<F: DiskFile>(path: &Path, file: &F) -> Result<(SnapHeader, SnapshotMeta)> {
    let io = |e| StorageError::io(path, e);
    let len = file.len().map_err(io)?;
    let mut head = [0u8; SNAPSHOT_HEADER_LEN as usize];
    if len >= SNAPSHOT_HEADER_LEN {
        file.read_exact_at(0, &mut head).map_err(io)?;
    }
    let h = parse_header(path, &head, len)?;
    let mut conf = vec![0u8; h.meta_len as usize];
    file.read_exact_at(SNAPSHOT_HEADER_LEN, &mut conf)
        .map_err(io)?;
    let conf_state = decode_conf_state(&Bytes::from(conf))
        .map_err(|e| StorageError::corrupt(path, SNAPSHOT_HEADER_LEN, e.to_string()))?;
    let meta = SnapshotMeta {
        index: h.index,
        term: h.term,
        conf_state,
    };
    Ok((h, meta))
}

/// The whole file for `snap` of `group`.
/// The file as three pieces: header and metadata, then `snap.data`
/// (not copied), then the trailer (checksum of everything before it and
/// the end magic); a large snapshot is written without a second copy.
pub(crate) fn encode_parts(group: GroupId, snap: &Snapshot) -> (Vec<u8>, Vec<u8>) {
    let mut meta = Vec::new();
    encode_conf_state(&mut meta, &snap.meta.conf_state);
    let mut out = Vec::with_capacity(SNAPSHOT_HEADER_LEN as usize + meta.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&snap.meta.index.to_le_bytes());
    out.extend_from_slice(&snap.meta.term.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&(snap.data.len() as u64).to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes());
    out.extend_from_slice(&meta);
    assert_eq!(
        out.len(),
        SNAPSHOT_HEADER_LEN as usize + meta.len(),
        "snapshot header length"
    );
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out), &snap.data);
    let mut tail = crc.to_le_bytes().to_vec();
    tail.extend_from_slice(END_MAGIC);
    (out, tail)
}

fn le64(b: &[u8]) -> u64 {
    u64::from_le_bytes(b[..8].try_into().expect("8 bytes"))
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().expect("4 bytes"))
}

/// Parse the header and check the lengths against the file's length.
pub(crate) fn parse_header(path: &Path, head: &[u8], file_len: u64) -> Result<SnapHeader> {
    let corrupt = |offset, reason: String| Err(StorageError::corrupt(path, offset, reason));
    if file_len < SNAPSHOT_HEADER_LEN + SNAPSHOT_FOOTER_LEN || head.len() < 64 {
        return corrupt(
            0,
            format!("file of {file_len} bytes is too short for a snapshot"),
        );
    }
    if &head[0..8] != MAGIC {
        return corrupt(0, "not a snapshot file (bad magic)".into());
    }
    if le32(&head[8..12]) != VERSION {
        return corrupt(
            8,
            format!("unsupported snapshot format version {}", le32(&head[8..12])),
        );
    }
    if le32(&head[12..16]) != 0 || le32(&head[44..48]) != 0 || le64(&head[56..64]) != 0 {
        return corrupt(12, "unknown snapshot header flags".into());
    }
    let h = SnapHeader {
        group: le64(&head[16..24]),
        index: le64(&head[24..32]),
        term: le64(&head[32..40]),
        meta_len: u64::from(le32(&head[40..44])),
        data_len: le64(&head[48..56]),
    };
    let expected = (SNAPSHOT_HEADER_LEN + SNAPSHOT_FOOTER_LEN + h.meta_len).checked_add(h.data_len);
    if expected != Some(file_len) {
        return corrupt(
            40,
            format!(
                "header lengths (membership {}, data {}) do not match the file length {file_len}",
                h.meta_len, h.data_len
            ),
        );
    }
    Ok(h)
}

fn check_footer(path: &Path, footer: &[u8], crc: u32, file_len: u64) -> Result<()> {
    let at = file_len - SNAPSHOT_FOOTER_LEN;
    if &footer[4..8] != END_MAGIC {
        return Err(StorageError::corrupt(path, at + 4, "bad end magic"));
    }
    if le32(&footer[0..4]) != crc {
        return Err(StorageError::corrupt(
            path,
            at,
            "snapshot checksum mismatch",
        ));
    }
    Ok(())
}

/// Verify and decode a whole snapshot file held in memory.
pub(crate) fn decode(path: &Path, buf: Bytes) -> Result<(SnapHeader, Snapshot)> {
    let len = buf.len() as u64;
    let h = parse_header(path, &buf, len)?;
    let body_end = (len - SNAPSHOT_FOOTER_LEN) as usize;
    check_footer(
        path,
        &buf[body_end..],
        crc32c::crc32c(&buf[..body_end]),
        len,
    )?;
    let meta_end = SNAPSHOT_HEADER_LEN as usize + h.meta_len as usize;
    let conf_state = decode_conf_state(&buf.slice(SNAPSHOT_HEADER_LEN as usize..meta_end))
        .map_err(|e| StorageError::corrupt(path, SNAPSHOT_HEADER_LEN, e.to_string()))?;
    let data = buf.slice(meta_end..body_end);
    let meta = SnapshotMeta {
        index: h.index,
        term: h.term,
        conf_state,
    };
    Ok((h, Snapshot { meta, data }))
}

/// Verify a snapshot file on disk without holding it in memory (chunked CRC).
pub(crate) fn verify<F: DiskFile>(path: &Path, file: &F) -> Result<SnapHeader> {
    let io = |e| StorageError::io(path, e);
    let len = file.len().map_err(io)?;
    let mut head = [0u8; SNAPSHOT_HEADER_LEN as usize];
    if len >= SNAPSHOT_HEADER_LEN {
        file.read_exact_at(0, &mut head).map_err(io)?;
    }
    let h = parse_header(path, &head, len)?;
    let body_end = len - SNAPSHOT_FOOTER_LEN;
    let mut crc = 0u32;
    let mut buf = vec![0u8; VERIFY_CHUNK];
    let mut at = 0u64;
    while at < body_end {
        let n = (body_end - at).min(VERIFY_CHUNK as u64) as usize;
        file.read_exact_at(at, &mut buf[..n]).map_err(io)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        at += n as u64;
    }
    let mut footer = [0u8; SNAPSHOT_FOOTER_LEN as usize];
    file.read_exact_at(body_end, &mut footer).map_err(io)?;
    check_footer(path, &footer, crc, len)?;
    // The membership must decode too.
    let mut meta = vec![0u8; h.meta_len as usize];
    file.read_exact_at(SNAPSHOT_HEADER_LEN, &mut meta)
        .map_err(io)?;
    decode_conf_state(&Bytes::from(meta))
        .map_err(|e| StorageError::corrupt(path, SNAPSHOT_HEADER_LEN, e.to_string()))?;
    Ok(h)
}

/// File name of a snapshot.
pub(crate) fn file_name(group: GroupId, index: Index, term: Term) -> String {
    format!("snap-{group:016x}-{index:016x}-{term:016x}.snap")
}

/// `(group, index, term)` of a snapshot file name.
pub(crate) fn parse_file_name(name: &str) -> Option<(GroupId, Index, Term)> {
    let rest = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    let mut parts = rest.split('-');
    let mut next = || {
        let p = parts.next()?;
        (p.len() == 16
            && p.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
        .then(|| u64::from_str_radix(p, 16).ok())
        .flatten()
    };
    let parsed = (next()?, next()?, next()?);
    parts.next().is_none().then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_raft::ConfState;

    #[test]
    fn round_trip_and_names() {
        let snap = Snapshot {
            meta: SnapshotMeta {
                index: 10,
                term: 2,
                conf_state: ConfState {
                    voters: vec![1, 2, 3],
                    ..Default::default()
                },
            },
            data: Bytes::from_static(b"state"),
        };
        let (mut file, tail) = encode_parts(7, &snap);
        file.extend_from_slice(&snap.data);
        file.extend_from_slice(&tail);
        let (h, back) = decode(Path::new("x"), Bytes::from(file.clone())).unwrap();
        assert_eq!((h.group, back), (7, snap));
        let mut bad = file;
        bad[70] ^= 1;
        assert!(decode(Path::new("x"), Bytes::from(bad)).is_err());
        let name = file_name(7, 10, 2);
        assert_eq!(parse_file_name(&name), Some((7, 10, 2)));
        assert_eq!(parse_file_name("snap-1-2-3.snap"), None);
        assert_eq!(parse_file_name(&format!("{name}.tmp")), None);
    }
}
