//! History chunks: how a checkpoint's new revisions are laid out in the
//! backend.
//!
//! A checkpoint appends its revisions as a few chunks (at most
//! [`CHUNK_RECORDS`] revisions and about [`CHUNK_BYTES`] encoded
//! each), one row per chunk in each of two tables, keyed by the chunk's
//! first revision:
//! - `hist_meta`: every revision's key, create revision, version, lease
//!   and tombstone flag ([`MetaRow`]s, postcard): what the key index is
//!   rebuilt from on open, without reading any value;
//! - `hist_vals`: the values, behind an offset table, so that one value is
//!   read without decoding its neighbours.
//!
//! Values chunk: `n: u32`, then `n` entries of `main: i64, sub: i64,
//! end: u32` (little endian; `end` is where the value ends in the blob),
//! then the blob. Revisions strictly increase; offsets never decrease and
//! stay within the blob. A chunk that breaks either rule is corrupt.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{MvccError, Result};
use crate::types::{Record, Revision};

/// Most revisions in one chunk.
pub(crate) const CHUNK_RECORDS: usize = 512;
/// Most bytes of a values chunk, its offset table included (a chunk holds
/// at least one revision): a point read loads one chunk's row. redb gives
/// a row larger than a page a power-of-two run of pages, so a chunk just
/// over 64 KiB would take 128 KiB: the budget leaves room for redb's page
/// header and key within 64 KiB.
pub(crate) const CHUNK_BYTES: usize = 63 * 1024;
const ENTRY: usize = 20;

/// One revision's metadata, as `hist_meta` stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct MetaRow {
    pub(crate) rev: Revision,
    pub(crate) key: Bytes,
    pub(crate) create_revision: i64,
    pub(crate) version: i64,
    pub(crate) lease: i64,
    pub(crate) tombstone: bool,
}

impl MetaRow {
    pub(crate) fn of(rev: Revision, r: &Record) -> MetaRow {
        MetaRow {
            rev,
            key: r.key.clone(),
            create_revision: r.create_revision,
            version: r.version,
            lease: r.lease,
            tombstone: r.tombstone,
        }
    }
}

/// Splits revision-ordered records into chunks (ranges of `recs`) of at
/// most [`CHUNK_RECORDS`] revisions and [`CHUNK_BYTES`] encoded (or one
/// revision, if its value alone is larger).
pub(crate) fn split(recs: &[(Revision, Record)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 4);
    for (i, (_, rec)) in recs.iter().enumerate() {
        let size = ENTRY + rec.value.len();
        let full = i - start >= CHUNK_RECORDS || bytes + size > CHUNK_BYTES;
        if i > start && full {
            out.push(start..i);
            start = i;
            bytes = 4;
        }
        bytes += size;
    }
    if start < recs.len() {
        out.push(start..recs.len());
    }
    out
}

/// Encodes a chunk's metadata rows.
pub(crate) fn encode_meta(recs: &[(Revision, Record)]) -> Vec<u8> {
    let rows: Vec<MetaRow> = recs.iter().map(|(r, rec)| MetaRow::of(*r, rec)).collect();
    postcard::to_allocvec(&rows).expect("meta rows encode")
}

/// Decodes a chunk's metadata rows, checking that they start at `key` and
/// that revisions increase.
pub(crate) fn decode_meta(key: (i64, i64), b: &[u8]) -> Result<Vec<MetaRow>> {
    let rows: Vec<MetaRow> =
        postcard::from_bytes(b).map_err(|e| MvccError::Corrupt(e.to_string()))?;
    let first = rows.first().map(|r| (r.rev.main, r.rev.sub));
    if first != Some(key) || rows.windows(2).any(|w| w[0].rev >= w[1].rev) {
        return Err(corrupt(
            key,
            "metadata does not start at its key or is out of order",
        ));
    }
    Ok(rows)
}

/// Encodes a chunk's values.
pub(crate) fn encode_values<'a>(
    recs: impl ExactSizeIterator<Item = (Revision, &'a [u8])>,
) -> Vec<u8> {
    let n = recs.len();
    let mut head = Vec::with_capacity(4 + n * ENTRY);
    let mut blob = Vec::new();
    head.extend_from_slice(&(n as u32).to_le_bytes());
    for (rev, value) in recs {
        blob.extend_from_slice(value);
        head.extend_from_slice(&rev.main.to_le_bytes());
        head.extend_from_slice(&rev.sub.to_le_bytes());
        head.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    }
    head.extend_from_slice(&blob);
    head
}

fn corrupt(key: (i64, i64), what: &str) -> MvccError {
    MvccError::Corrupt(format!("history chunk {key:?}: {what}"))
}

/// A decoded view of a values chunk.
pub(crate) struct Values<'a> {
    n: usize,
    head: &'a [u8],
    blob: &'a [u8],
}

impl<'a> Values<'a> {
    /// Checks the layout of the values chunk stored under `key`.
    pub(crate) fn parse(key: (i64, i64), b: &'a [u8]) -> Result<Values<'a>> {
        let n = b
            .get(..4)
            .map(|x| u32::from_le_bytes(x.try_into().expect("4 bytes")) as usize)
            .ok_or_else(|| corrupt(key, "truncated"))?;
        let head_len = 4 + n
            .checked_mul(ENTRY)
            .ok_or_else(|| corrupt(key, "bad count"))?;
        if n == 0 || b.len() < head_len {
            return Err(corrupt(key, "truncated"));
        }
        let v = Values {
            n,
            head: &b[4..head_len],
            blob: &b[head_len..],
        };
        let mut prev: Option<Revision> = None;
        let mut end = 0;
        for i in 0..n {
            let (rev, e) = v.entry(i);
            if prev.is_some_and(|p| p >= rev) || e < end || e as usize > v.blob.len() {
                return Err(corrupt(key, "offsets or revisions out of order"));
            }
            if i == 0 && (rev.main, rev.sub) != key {
                return Err(corrupt(key, "does not start at its key"));
            }
            prev = Some(rev);
            end = e;
        }
        Ok(v)
    }

    fn entry(&self, i: usize) -> (Revision, u32) {
        let e = &self.head[i * ENTRY..(i + 1) * ENTRY];
        let main = i64::from_le_bytes(e[0..8].try_into().expect("8 bytes"));
        let sub = i64::from_le_bytes(e[8..16].try_into().expect("8 bytes"));
        let end = u32::from_le_bytes(e[16..20].try_into().expect("4 bytes"));
        (Revision::new(main, sub), end)
    }

    fn value_at(&self, i: usize) -> &'a [u8] {
        let start = if i == 0 {
            0
        } else {
            self.entry(i - 1).1 as usize
        };
        &self.blob[start..self.entry(i).1 as usize]
    }

    /// The value of `rev`, if the chunk holds it.
    pub(crate) fn get(&self, rev: Revision) -> Option<&'a [u8]> {
        let (mut lo, mut hi) = (0, self.n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            match self.entry(mid).0.cmp(&rev) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(self.value_at(mid)),
            }
        }
        None
    }

    /// Every revision with where its value lies in the whole chunk (the
    /// bytes given to [`Values::parse`]).
    pub(crate) fn ranges(&self) -> Vec<(Revision, std::ops::Range<usize>)> {
        let base = 4 + self.head.len();
        (0..self.n)
            .map(|i| {
                let start = if i == 0 {
                    0
                } else {
                    self.entry(i - 1).1 as usize
                };
                (
                    self.entry(i).0,
                    base + start..base + self.entry(i).1 as usize,
                )
            })
            .collect()
    }

    /// Every `(revision, value)`, in order.
    pub(crate) fn all(&self) -> impl Iterator<Item = (Revision, &'a [u8])> + '_ {
        (0..self.n).map(|i| (self.entry(i).0, self.value_at(i)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(v: &[u8]) -> Record {
        Record {
            key: Bytes::from_static(b"k"),
            value: Bytes::copy_from_slice(v),
            create_revision: 1,
            version: 1,
            lease: 0,
            tombstone: false,
        }
    }

    #[test]
    fn one_value_is_found_among_its_neighbours() {
        let recs: Vec<(Revision, Record)> = (0..10)
            .map(|i| {
                (
                    Revision::new(5 + i / 3, i % 3),
                    rec(&vec![i as u8; i as usize * 7]),
                )
            })
            .collect();
        let enc = encode_values(recs.iter().map(|(r, x)| (*r, x.value.as_ref())));
        let v = Values::parse((5, 0), &enc).unwrap();
        for (r, x) in &recs {
            assert_eq!(v.get(*r), Some(x.value.as_ref()), "{r:?}");
        }
        assert_eq!(v.get(Revision::new(5, 7)), None);
        assert_eq!(v.all().count(), 10);
        // Keyed elsewhere, cut short, or with offsets past the end: corrupt.
        assert!(Values::parse((4, 0), &enc).is_err());
        assert!(Values::parse((5, 0), &enc[..30]).is_err());
        let mut bad = enc.clone();
        bad[4 + 16] = 0xff;
        assert!(Values::parse((5, 0), &bad).is_err());
        let meta = encode_meta(&recs);
        assert_eq!(decode_meta((5, 0), &meta).unwrap().len(), 10);
        assert!(decode_meta((5, 1), &meta).is_err());
    }

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let small: Vec<(Revision, Record)> = (0..1200)
            .map(|i| (Revision::new(i + 2, 0), rec(b"v")))
            .collect();
        let c = split(&small);
        assert_eq!(c.len(), 3);
        assert!(c.iter().all(|r| r.len() <= CHUNK_RECORDS));
        let big: Vec<(Revision, Record)> = (0..10)
            .map(|i| (Revision::new(i + 2, 0), rec(&vec![0; 40 * 1024])))
            .collect();
        let c = split(&big);
        assert_eq!(c.len(), 10, "one 40 KiB value per chunk: {c:?}");
        // Every encoded chunk fits the budget (a single huge value aside).
        let kib: Vec<(Revision, Record)> = (0..1000)
            .map(|i| {
                (
                    Revision::new(i + 2, 0),
                    rec(&vec![1; 1024 + i as usize % 100]),
                )
            })
            .collect();
        for r in split(&kib) {
            let enc = encode_values(kib[r].iter().map(|(r, x)| (*r, x.value.as_ref())));
            assert!(enc.len() <= CHUNK_BYTES, "{}", enc.len());
        }
        let huge = vec![(Revision::new(2, 0), rec(&vec![0; 1 << 20]))];
        assert_eq!(split(&huge), vec![0..1]);
    }
}
