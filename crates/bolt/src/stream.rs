//! Writing a bbolt file whose largest bucket arrives as a stream.
//!
//! [`write_db`](crate::write_db) plans every page before writing the first
//! byte, so it needs every item in memory. A snapshot of a large store must
//! not: [`StreamWriter`] takes one bucket's items one at a time (sorted),
//! writes each leaf page as soon as it is full, and keeps only each leaf's
//! first key and page id. At [`StreamWriter::finish`] it writes the branch
//! levels above those leaves, then the other (small) buckets and the root
//! bucket, then seeks back to write the meta pages, which must name the
//! root page and the high-water mark. The output is the same file format,
//! with the same invariants (`tree.rs`): only the page order differs.

use std::io::{Seek, SeekFrom, Write};

use crate::format::{
    bucket_header, ELEMENT_SIZE, MAX_KEY_SIZE, MAX_VALUE_SIZE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::tree::{encode_branch_keys, encode_leaf, pack, pages_for, Elem};
use crate::writer::{front_pages, write_buckets_from, FIRST_DATA_PGID};
use crate::{BoltError, Bucket};

/// A bbolt file being written, one bucket's items streamed in.
#[derive(Debug)]
pub struct StreamWriter<W: Write + Seek> {
    out: W,
    name: Vec<u8>,
    /// Next free page id.
    pgid: u64,
    /// The leaf being filled, and its size with the page header.
    leaf: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
    /// Every written leaf: its first key and page id.
    leaves: Vec<(Vec<u8>, u64)>,
    /// The last key pushed (keys must increase across leaves too).
    last: Option<Vec<u8>>,
    items: u64,
    buf: Vec<u8>,
}

impl<W: Write + Seek> StreamWriter<W> {
    /// Starts a file on `out` whose bucket `name` is streamed with
    /// [`StreamWriter::push`].
    pub fn new(mut out: W, name: &[u8]) -> Result<Self, BoltError> {
        if name.is_empty() {
            return Err(BoltError::EmptyName);
        }
        // The front pages are written last; hold their place.
        out.write_all(&vec![0u8; FIRST_DATA_PGID as usize * PAGE_SIZE])?;
        Ok(StreamWriter {
            out,
            name: name.to_vec(),
            pgid: FIRST_DATA_PGID,
            leaf: Vec::new(),
            size: PAGE_HEADER_SIZE,
            leaves: Vec::new(),
            last: None,
            items: 0,
            buf: Vec::new(),
        })
    }

    fn bad(&self, len: usize, key: bool) -> BoltError {
        let bucket = String::from_utf8_lossy(&self.name).into_owned();
        if key {
            BoltError::KeyTooLarge { bucket, len }
        } else {
            BoltError::ValueTooLarge { bucket, len }
        }
    }

    /// Adds the next item; keys must be non-empty and strictly increase.
    pub fn push(&mut self, key: &[u8], value: &[u8]) -> Result<(), BoltError> {
        let bucket = || String::from_utf8_lossy(&self.name).into_owned();
        let index = self.items as usize;
        if key.is_empty() {
            return Err(BoltError::EmptyKey {
                bucket: bucket(),
                index,
            });
        }
        if key.len() > MAX_KEY_SIZE {
            return Err(self.bad(key.len(), true));
        }
        if value.len() > MAX_VALUE_SIZE {
            return Err(self.bad(value.len(), false));
        }
        if self.last.as_deref().is_some_and(|l| l >= key) {
            return Err(BoltError::UnsortedKeys {
                bucket: bucket(),
                index,
            });
        }
        let s = ELEMENT_SIZE + key.len() + value.len();
        if !self.leaf.is_empty() && self.size + s > PAGE_SIZE {
            self.flush_leaf()?;
        }
        self.size += s;
        self.leaf.push((key.to_vec(), value.to_vec()));
        self.last = Some(key.to_vec());
        self.items += 1;
        Ok(())
    }

    /// Writes the leaf being filled (its pages: `ceil(size / PAGE_SIZE)`).
    fn flush_leaf(&mut self) -> Result<(), BoltError> {
        let elems: Vec<Elem<'_>> = self
            .leaf
            .iter()
            .map(|(k, v)| Elem {
                key: k,
                value: v,
                flags: 0,
            })
            .collect();
        self.buf.clear();
        encode_leaf(&elems, self.pgid, &mut self.buf);
        let pages = pages_for(self.size).max(1);
        self.buf.resize(pages as usize * PAGE_SIZE, 0);
        self.out.write_all(&self.buf)?;
        let first = std::mem::take(&mut self.leaf)
            .into_iter()
            .next()
            .map(|(k, _)| k)
            .unwrap_or_default();
        self.leaves.push((first, self.pgid));
        self.pgid += pages;
        self.size = PAGE_HEADER_SIZE;
        Ok(())
    }

    /// Writes the streamed bucket's branch levels, the `others` buckets and
    /// the root bucket, then the front pages; returns the output and the
    /// file's length.
    pub fn finish(mut self, others: &[Bucket]) -> Result<(W, u64), BoltError> {
        if !self.leaf.is_empty() || self.leaves.is_empty() {
            // The last leaf; an empty bucket is one empty leaf page.
            self.flush_leaf()?;
        }
        let mut level = std::mem::take(&mut self.leaves);
        while level.len() > 1 {
            let sizes: Vec<usize> = level.iter().map(|(k, _)| ELEMENT_SIZE + k.len()).collect();
            let mut next = Vec::new();
            for (range, pages) in pack(&sizes, 2) {
                let children: Vec<(&[u8], u64)> = level[range.clone()]
                    .iter()
                    .map(|(k, p)| (k.as_slice(), *p))
                    .collect();
                self.buf.clear();
                encode_branch_keys(&children, self.pgid, &mut self.buf);
                self.buf.resize(pages as usize * PAGE_SIZE, 0);
                self.out.write_all(&self.buf)?;
                next.push((level[range.start].0.clone(), self.pgid));
                self.pgid += pages;
            }
            level = next;
        }
        let root = level.first().map_or(0, |(_, p)| *p);
        let extra = vec![(self.name.clone(), bucket_header(root, 0).to_vec())];
        let (root_bucket, pgid) = write_buckets_from(others, &extra, self.pgid, &mut self.out)?;
        self.out.seek(SeekFrom::Start(0))?;
        self.out.write_all(&front_pages(root_bucket, pgid))?;
        self.out.seek(SeekFrom::Start(pgid * PAGE_SIZE as u64))?;
        self.out.flush()?;
        Ok((self.out, pgid * PAGE_SIZE as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{read_db, write_db};
    use std::io::Cursor;

    fn items(n: u32, vlen: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    i.to_be_bytes().to_vec(),
                    vec![(i % 251) as u8; vlen + (i as usize % 7)],
                )
            })
            .collect()
    }

    #[test]
    fn a_streamed_bucket_reads_back_as_written() {
        for (n, vlen) in [(0, 0), (1, 10), (50_000, 20), (300, 9000)] {
            let big = items(n, vlen);
            let small = vec![
                Bucket::new(
                    "meta",
                    vec![(b"consistent_index".to_vec(), 7u64.to_be_bytes().to_vec())],
                ),
                Bucket::new("lease", items(2000, 12)),
            ];
            let mut w = StreamWriter::new(Cursor::new(Vec::new()), b"key").unwrap();
            for (k, v) in &big {
                w.push(k, v).unwrap();
            }
            let (out, len) = w.finish(&small).unwrap();
            let bytes = out.into_inner();
            assert_eq!(bytes.len() as u64, len);
            let mut got = read_db(&bytes).unwrap();
            got.sort_by(|a, b| a.name.cmp(&b.name));
            let mut want = small.clone();
            want.push(Bucket::new("key", big));
            want.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(got, want, "{n} items of {vlen} bytes");
            // The in-memory writer holds the same data.
            let mut mem = Vec::new();
            write_db(&want, &mut mem).unwrap();
            let mut again = read_db(&mem).unwrap();
            again.sort_by(|a, b| a.name.cmp(&b.name));
            assert_eq!(again, got);
        }
    }

    #[test]
    fn unsorted_or_empty_keys_are_refused() {
        let mut w = StreamWriter::new(Cursor::new(Vec::new()), b"key").unwrap();
        w.push(b"b", b"1").unwrap();
        assert!(matches!(
            w.push(b"a", b"2"),
            Err(BoltError::UnsortedKeys { .. })
        ));
        assert!(matches!(
            w.push(b"b", b"2"),
            Err(BoltError::UnsortedKeys { .. })
        ));
        assert!(matches!(w.push(b"", b"2"), Err(BoltError::EmptyKey { .. })));
        // Across a leaf boundary too.
        let mut w = StreamWriter::new(Cursor::new(Vec::new()), b"key").unwrap();
        for i in 0u32..2000 {
            w.push(&i.to_be_bytes(), &[0; 50]).unwrap();
        }
        assert!(matches!(
            w.push(&5u32.to_be_bytes(), b"x"),
            Err(BoltError::UnsortedKeys { .. })
        ));
    }
}
