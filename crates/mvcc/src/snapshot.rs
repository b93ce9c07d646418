//! Snapshot images, and restore.
//!
//! Format 2 (written): `b"CMVS"`, version byte 2, then frames, then the
//! crc32c of everything before it (4 bytes, big endian). A frame is a tag
//! byte, a 4-byte little-endian length and a postcard payload: one header
//! (applied index, current and compaction revisions), every retained
//! revision in revision order ([`Revision`], [`Record`]), every lease
//! ([`LeaseRecord`]), the auth state ([`AuthState`]; absent from images
//! written before auth existed), every client session ([`SessionRecord`];
//! images written before sessions have none), then an end frame. It is
//! written as a stream
//! ([`ImageWriter`]), from a read view in steps, so an image is never
//! whole in memory where it is made. Format 1 (one postcard dump) is still
//! read.

use std::io::Write;

use crate::auth::AuthState;
use crate::backend;
use crate::error::{MvccError, Result};
use crate::state::{Changes, HistRec, Lease, State};
use crate::store::Store;
use crate::types::{LeaseRecord, Record, Revision};
use crate::SessionRecord;
use redb::Durability;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"CMVS";
const VERSION_DUMP: u8 = 1;
const VERSION: u8 = 2;
const TAG_HEADER: u8 = 1;
const TAG_RECORD: u8 = 2;
const TAG_LEASE: u8 = 3;
const TAG_END: u8 = 4;
const TAG_AUTH: u8 = 5;
const TAG_SESSION: u8 = 6;
/// Values restored per backend transaction (the last one is durable).
const RESTORE_BATCH_BYTES: usize = 32 << 20;

#[derive(Serialize, Deserialize)]
struct Dump {
    applied: u64,
    current_rev: i64,
    compact_rev: i64,
    history: Vec<(Revision, Record)>,
    leases: Vec<LeaseRecord>,
}

/// Bytes serialized as a byte string (as `Bytes` is).
struct Raw<'a>(&'a [u8]);

impl Serialize for Raw<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

/// A [`Record`] by reference, serialized as one (same fields, same order).
#[derive(Serialize)]
struct RecordRef<'a> {
    key: Raw<'a>,
    value: Raw<'a>,
    create_revision: i64,
    version: i64,
    lease: i64,
    tombstone: bool,
}

#[derive(Serialize, Deserialize)]
struct Header {
    applied: u64,
    current_rev: i64,
    compact_rev: i64,
}

/// Writes a snapshot image (format 2) to `out` piece by piece: the header
/// at [`ImageWriter::new`], then each retained revision in order, then
/// each lease, then [`ImageWriter::finish`].
#[derive(Debug)]
pub struct ImageWriter<W: Write> {
    out: W,
    crc: u32,
    buf: Vec<u8>,
    last: Option<Revision>,
}

impl<W: Write> ImageWriter<W> {
    /// Starts an image of a store at `applied`, `current_rev`, `compact_rev`.
    pub fn new(out: W, applied: u64, current_rev: i64, compact_rev: i64) -> std::io::Result<Self> {
        let mut w = ImageWriter {
            out,
            crc: 0,
            buf: Vec::new(),
            last: None,
        };
        let mut start = MAGIC.to_vec();
        start.push(VERSION);
        w.put(&start)?;
        w.frame(
            TAG_HEADER,
            &Header {
                applied,
                current_rev,
                compact_rev,
            },
        )?;
        Ok(w)
    }

    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, b);
        self.out.write_all(b)
    }

    fn frame<T: Serialize>(&mut self, tag: u8, v: &T) -> std::io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        buf.push(tag);
        buf.extend_from_slice(&[0; 4]);
        let mut buf = postcard::to_extend(v, buf).expect("frame encodes");
        let len = (buf.len() - 5) as u32;
        buf[1..5].copy_from_slice(&len.to_le_bytes());
        let r = self.put(&buf);
        self.buf = buf;
        r
    }

    /// The next retained revision (revisions must increase).
    pub fn record(&mut self, rev: Revision, rec: &Record) -> std::io::Result<()> {
        self.record_with_value(rev, rec, &rec.value)
    }

    /// The next retained revision, its value given apart (`rec.value` is
    /// not read): encoded exactly as [`ImageWriter::record`] encodes it.
    pub fn record_with_value(
        &mut self,
        rev: Revision,
        rec: &Record,
        value: &[u8],
    ) -> std::io::Result<()> {
        assert!(
            self.last.is_none_or(|l| l < rev),
            "image revisions must increase"
        );
        self.last = Some(rev);
        let r = RecordRef {
            key: Raw(&rec.key),
            value: Raw(value),
            create_revision: rec.create_revision,
            version: rec.version,
            lease: rec.lease,
            tombstone: rec.tombstone,
        };
        self.frame(TAG_RECORD, &(rev, r))
    }

    /// A lease.
    pub fn lease(&mut self, l: &LeaseRecord) -> std::io::Result<()> {
        self.frame(TAG_LEASE, l)
    }

    /// The auth state (once, after the leases).
    pub fn auth(&mut self, a: &AuthState) -> std::io::Result<()> {
        self.frame(TAG_AUTH, a)
    }

    /// A client session (after the leases).
    pub fn session(&mut self, s: &SessionRecord) -> std::io::Result<()> {
        self.frame(TAG_SESSION, s)
    }

    /// Ends the image (end frame, checksum) and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        self.frame(TAG_END, &())?;
        let crc = self.crc.to_be_bytes();
        self.out.write_all(&crc)?;
        Ok(self.out)
    }
}

/// One frame of a format-2 image.
enum Frame<'a> {
    Header(Header),
    Record(Revision, Record),
    Lease(LeaseRecord),
    Auth(Box<AuthState>),
    Session(SessionRecord),
    End(&'a [u8]),
}

/// Reads the frames of a format-2 body (after magic and version, before
/// the checksum), in order; refuses anything malformed.
fn frames(mut b: &[u8]) -> impl Iterator<Item = Result<Frame<'_>>> {
    let bad = |m: String| MvccError::Codec(format!("snapshot: {m}"));
    std::iter::from_fn(move || {
        if b.is_empty() {
            return None;
        }
        if b.len() < 5 {
            b = &[];
            return Some(Err(bad("truncated frame".into())));
        }
        let tag = b[0];
        let len = u32::from_le_bytes(b[1..5].try_into().expect("4 bytes")) as usize;
        let Some(payload) = b.get(5..5 + len) else {
            b = &[];
            return Some(Err(bad("frame past the end".into())));
        };
        b = &b[5 + len..];
        let dec = |e: postcard::Error| bad(e.to_string());
        Some(match tag {
            TAG_HEADER => postcard::from_bytes(payload)
                .map(Frame::Header)
                .map_err(dec),
            TAG_RECORD => postcard::from_bytes::<(Revision, Record)>(payload)
                .map(|(r, rec)| Frame::Record(r, rec))
                .map_err(dec),
            TAG_LEASE => postcard::from_bytes(payload).map(Frame::Lease).map_err(dec),
            TAG_AUTH => postcard::from_bytes(payload)
                .map(|a| Frame::Auth(Box::new(a)))
                .map_err(dec),
            TAG_SESSION => postcard::from_bytes(payload)
                .map(Frame::Session)
                .map_err(dec),
            TAG_END => Ok(Frame::End(b)),
            t => Err(bad(format!("unknown frame {t}"))),
        })
    })
}

impl Store {
    /// A consistent image of the state at [`Store::applied_index`], whole
    /// in memory (large stores write theirs with [`ImageWriter`] from a
    /// [`crate::HistoryRead`]).
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        let s = &self.state;
        let mut w = ImageWriter::new(Vec::new(), self.applied, s.current_rev, s.compact_rev)
            .map_err(MvccError::storage)?;
        for (rev, h) in s.history.iter() {
            let rec = h.record(bytes::Bytes::new());
            w.record_with_value(*rev, &rec, &s.value(*rev, h)?)
                .map_err(MvccError::storage)?;
        }
        for l in s.leases.values() {
            w.lease(&l.rec).map_err(MvccError::storage)?;
        }
        w.auth(&s.auth).map_err(MvccError::storage)?;
        for r in s.sessions.records() {
            w.session(r).map_err(MvccError::storage)?;
        }
        w.finish().map_err(MvccError::storage)
    }

    /// The applied index, current revision and compaction revision an
    /// image begins with ([`ImageWriter::new`]).
    pub fn image_header(&self) -> (u64, i64, i64) {
        (self.applied, self.state.current_rev, self.state.compact_rev)
    }

    /// Replaces the whole state with a snapshot image, durably. A
    /// malformed image is refused and changes nothing.
    pub fn restore(&mut self, image: &[u8]) -> Result<()> {
        let bad = |m: &str| MvccError::Codec(format!("snapshot: {m}"));
        if image.len() < 9 || &image[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        let (body, crc) = image.split_at(image.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(bad("checksum mismatch"));
        }
        match image[4] {
            VERSION => self.restore_frames(&body[5..]),
            VERSION_DUMP => {
                let dump: Dump =
                    postcard::from_bytes(&body[5..]).map_err(|e| bad(&e.to_string()))?;
                self.restore_dump(dump)
            }
            _ => Err(bad("unknown version")),
        }
    }

    /// Restores a format-2 image: checked whole first (nothing changes if
    /// it is malformed), then written in batches, the last one durable
    /// with the applied index (a crash before it leaves a backend without
    /// one: the restart restores again from the snapshot file).
    fn restore_frames(&mut self, body: &[u8]) -> Result<()> {
        let bad = |m: &str| MvccError::Codec(format!("snapshot: {m}"));
        let mut header = None;
        let mut last: Option<Revision> = None;
        let mut ended = false;
        let mut authed = false;
        let mut sessions = false;
        for f in frames(body) {
            match f? {
                Frame::Header(h) if header.is_none() && last.is_none() => header = Some(h),
                Frame::Record(r, _) if header.is_some() && last.is_none_or(|l| l < r) => {
                    last = Some(r)
                }
                Frame::Lease(_) if header.is_some() && !authed && !sessions => {}
                Frame::Auth(_) if header.is_some() && !authed && !sessions => authed = true,
                Frame::Session(_) if header.is_some() => sessions = true,
                Frame::End(rest) if header.is_some() && rest.is_empty() => ended = true,
                _ => return Err(bad("frames out of order")),
            }
        }
        let (Some(h), true) = (header, ended) else {
            return Err(bad("incomplete image"));
        };
        let mut state = State {
            limits: self.state.limits,
            values: self.state.values.clone(),
            current_rev: h.current_rev,
            compact_rev: h.compact_rev,
            ..Default::default()
        };
        // A background checkpoint of the old state must not land after this.
        self.wait_checkpoint()?;
        let db = self.values.db();
        let begin = || -> Result<redb::WriteTransaction> {
            let mut tx = db.begin_write().map_err(MvccError::storage)?;
            tx.set_durability(Durability::None);
            Ok(tx)
        };
        let mut tx = begin()?;
        backend::clear(&tx)?;
        let mut batch: Vec<(Revision, Record)> = Vec::new();
        let mut bytes = 0;
        let mut changes = Changes::default();
        for f in frames(body) {
            match f? {
                Frame::Record(rev, rec) => {
                    let mut hist = HistRec::fresh(&rec);
                    hist.value = None; // written below: read back from the backend
                    state.history.insert(rev, hist);
                    bytes += rec.key.len() + rec.value.len() + 64;
                    batch.push((rev, rec));
                    if bytes >= RESTORE_BATCH_BYTES {
                        backend::put_history(&tx, &std::mem::take(&mut batch))?;
                        tx.commit().map_err(MvccError::storage)?;
                        tx = begin()?;
                        bytes = 0;
                    }
                }
                Frame::Lease(rec) => {
                    changes.leases.push((rec.id, Some(rec.clone())));
                    state.leases.insert(rec.id, Lease::restored(rec));
                }
                Frame::Auth(a) => state.auth = *a,
                Frame::Session(rec) => {
                    changes.sessions.push((rec.id, Some(rec.clone())));
                    state.sessions.insert(rec);
                }
                Frame::Header(_) | Frame::End(_) => {}
            }
        }
        changes.hist_put = batch;
        changes.auth = Some(state.auth.clone());
        tx.set_durability(Durability::Immediate);
        backend::write(&tx, &changes, backend::Meta::of(&state, h.applied))?;
        tx.commit().map_err(MvccError::storage)?;
        drop(db);
        state.rebuild();
        self.values.clear();
        self.state = state;
        self.applied = h.applied;
        self.durable_applied = h.applied;
        self.poisoned = false;
        Ok(())
    }

    fn restore_dump(&mut self, dump: Dump) -> Result<()> {
        let mut state = State {
            limits: self.state.limits,
            values: self.state.values.clone(),
            current_rev: dump.current_rev,
            compact_rev: dump.compact_rev,
            ..Default::default()
        };
        let mut changes = Changes::default();
        for (rev, rec) in dump.history {
            let mut h = HistRec::fresh(&rec);
            // Written durably below: read back from the backend.
            h.value = None;
            state.history.insert(rev, h);
            changes.hist_put.push((rev, rec));
        }
        for rec in dump.leases {
            changes.leases.push((rec.id, Some(rec.clone())));
            state.leases.insert(rec.id, Lease::restored(rec));
        }
        state.rebuild();
        // A background checkpoint of the old state must not land after this.
        self.wait_checkpoint()?;
        let db = self.values.db();
        let mut tx = db.begin_write().map_err(MvccError::storage)?;
        tx.set_durability(Durability::Immediate);
        backend::clear(&tx)?;
        backend::write(&tx, &changes, backend::Meta::of(&state, dump.applied))?;
        tx.commit().map_err(MvccError::storage)?;
        drop(db);
        self.values.clear();
        self.state = state;
        self.applied = dump.applied;
        self.durable_applied = dump.applied;
        self.poisoned = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::command::Command;
    use crate::request::PutRequest;

    fn put(i: u64, v: usize) -> (u64, Command) {
        let cmd = Command::Put(PutRequest {
            key: Bytes::from(format!("k{}", i % 17)),
            value: Bytes::from(vec![i as u8; v]),
            ..Default::default()
        });
        (i, cmd)
    }

    #[test]
    fn a_large_image_restores_in_batches_and_a_format_1_image_still_restores() {
        let dir = tempfile::tempdir().unwrap();
        let mut src = Store::open(dir.path().join("a")).unwrap();
        // More than one restore batch of values.
        let batch: Vec<_> = (1..=40).map(|i| put(i, 1 << 20)).collect();
        src.apply_batch(&batch).unwrap();
        src.checkpoint().unwrap();
        let image = src.snapshot().unwrap();
        let mut dst = Store::open(dir.path().join("b")).unwrap();
        dst.restore(&image).unwrap();
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
        drop(dst);
        let dst = Store::open(dir.path().join("b")).unwrap();
        assert_eq!(dst.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());

        // Format 1: one postcard dump.
        let s = &src.state;
        let dump = Dump {
            applied: src.applied,
            current_rev: s.current_rev,
            compact_rev: s.compact_rev,
            history: s
                .history
                .iter()
                .map(|(r, h)| (*r, h.record(s.value(*r, h).unwrap())))
                .collect(),
            leases: vec![],
        };
        let mut old = MAGIC.to_vec();
        old.push(VERSION_DUMP);
        let mut old = postcard::to_extend(&dump, old).unwrap();
        let crc = crc32c::crc32c(&old);
        old.extend_from_slice(&crc.to_be_bytes());
        let mut third = Store::open(dir.path().join("c")).unwrap();
        third.restore(&old).unwrap();
        assert_eq!(third.hash_kv(0).unwrap(), src.hash_kv(0).unwrap());
    }
}
