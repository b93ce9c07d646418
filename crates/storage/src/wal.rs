//! The segmented write-ahead log: open (recover), append, sync, compact.
//!
//! Appends are encoded into a buffer; [`Wal::sync`] writes the buffer with one
//! positional write and makes it durable with one fdatasync. Every process
//! incarnation writes to a fresh segment: opening truncates the previous last
//! segment to its valid records and starts a new one, which begins with a
//! checkpoint (hard state and snapshot mark of every group), so older
//! segments can be released once every group's snapshot covers their entries.
//!
//! The writer never leaves more than `max_unsynced_bytes` unsynced (it syncs
//! first when an append would exceed it; the zeros it writes ahead of the
//! frames count too), and records that number in each
//! segment's header. Recovery relies on it to tell a torn tail from
//! corruption: an invalid record in the last segment is a torn tail only if
//! nothing but zeros lies beyond that window after it.

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use concord_raft::{GroupId, HardState, Index};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::log_meta::GroupMeta;
use crate::record::{self, Record, SnapshotMark, WalBatch};
use crate::recovery::{self, io_err, track_live, Recovered, Sealed};
use crate::segment::{self, SegmentHeader, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};

/// Default size of a segment file (preallocated at creation).
pub const DEFAULT_SEGMENT_SIZE: u64 = 64 << 20;
/// Default largest record (one group's batch) accepted.
pub const DEFAULT_MAX_RECORD_BYTES: u64 = 8 << 20;
/// Default most bytes left unsynced before an append forces a sync.
pub const DEFAULT_MAX_UNSYNCED_BYTES: u64 = 16 << 20;
/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// Sizes and limits of a [`Wal`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalOptions {
    /// Size segments are preallocated to; a segment holding one huge record may be larger.
    pub segment_size: u64,
    /// Largest encoded record. A larger batch is split into several records
    /// (so it is no longer all-or-nothing on a crash); a single entry that
    /// does not fit is refused.
    pub max_record_bytes: u64,
    /// Most bytes written but not yet synced; at least `max_record_bytes` + 8.
    pub max_unsynced_bytes: u64,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size: DEFAULT_SEGMENT_SIZE,
            max_record_bytes: DEFAULT_MAX_RECORD_BYTES,
            max_unsynced_bytes: DEFAULT_MAX_UNSYNCED_BYTES,
        }
    }
}

impl WalOptions {
    fn validate(&self) -> Result<()> {
        let bad = |s: String| Err(StorageError::InvalidOptions(s));
        if self.segment_size < MIN_SEGMENT_SIZE {
            return bad(format!("segment_size must be at least {MIN_SEGMENT_SIZE}"));
        }
        if self.max_record_bytes < 1024 || self.max_record_bytes > u64::from(u32::MAX) {
            return bad("max_record_bytes must be between 1 KiB and 4 GiB".into());
        }
        if self.max_unsynced_bytes < self.max_record_bytes + FRAME_HEADER_LEN as u64 {
            return bad("max_unsynced_bytes must be at least max_record_bytes + 8".into());
        }
        Ok(())
    }
}

/// Counters of a [`Wal`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// fdatasync calls on segments.
    pub fdatasyncs: u64,
    /// Record bytes written.
    pub bytes_written: u64,
    /// Segments created.
    pub segments_created: u64,
    /// Segments released by compaction.
    pub segments_released: u64,
}

#[derive(Debug)]
struct Active<F> {
    seq: u64,
    path: PathBuf,
    file: F,
    capacity: u64,
    /// End of the bytes written to the file.
    written: u64,
    /// End of the bytes known durable.
    synced: u64,
    /// End of the bytes ever written (frames, then zeros ahead of them).
    /// Invariant: `written <= zeroed <= capacity`.
    zeroed: u64,
    max_index: BTreeMap<GroupId, Index>,
}

/// How far ahead of the write position zeros are written.
const ZERO_AHEAD: u64 = 1 << 20;

/// Writes zeros ahead of the frames (a quarter of [`ZERO_AHEAD`] or less
/// left: up to `ZERO_AHEAD` past them). A segment is created sparse; a
/// write into a hole allocates blocks, so its fdatasync must also commit
/// the file system's journal, where an overwrite of written blocks only
/// flushes data: on ext4 here, 59–81 µs per fdatasync instead of 94–100.
/// The zeros go out before the same fdatasync as the frames, so the blocks
/// are allocated by the time later frames land on them. Zeros past the
/// last frame read as preallocated space, as holes do, so recovery is
/// unchanged by a crash at any point. The zeros are unsynced bytes like
/// the frames (a torn write of them may leave garbage), so they stay within
/// the unsynced window that recovery allows for (`window_end`: the last
/// synced end plus `max_unsynced_bytes`).
fn zero_ahead<F: crate::disk::DiskFile>(a: &mut Active<F>, window_end: u64) -> std::io::Result<()> {
    debug_assert!(a.written <= a.zeroed && a.zeroed <= a.capacity);
    let end = (a.written + ZERO_AHEAD).min(a.capacity).min(window_end);
    if a.zeroed >= a.written + ZERO_AHEAD / 4 || a.zeroed >= end {
        return Ok(());
    }
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while a.zeroed < end {
        let n = (end - a.zeroed).min(ZEROS.len() as u64);
        a.file.write_at(a.zeroed, &ZEROS[..n as usize])?;
        a.zeroed += n;
    }
    Ok(())
}

/// The write-ahead log. One writer; see [`crate::GroupCommit`] for many.
#[derive(Debug)]
pub struct Wal<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: WalOptions,
    active: Active<D::File>,
    /// Encoded frames not yet written (they go at `active.written`).
    pending: Vec<u8>,
    sealed: VecDeque<Sealed>,
    groups: BTreeMap<GroupId, GroupMeta>,
    poisoned: bool,
    stats: WalStats,
}

impl<D: Disk> Wal<D> {
    /// Open (creating if needed) the WAL in `dir`, replay it, truncate a torn
    /// tail, and start a fresh segment. Refuses to open, naming file and byte
    /// offset, if any record other than a torn tail fails verification.
    pub fn open(disk: D, dir: impl Into<PathBuf>, opts: WalOptions) -> Result<(Self, Recovered)> {
        opts.validate()?;
        let dir = dir.into();
        let found = recovery::recover(&disk, &dir)?;
        let metas = found
            .groups
            .iter()
            .map(|(&g, log)| (g, GroupMeta::from_log(log)))
            .collect();
        let active = Self::create_segment(&disk, &dir, &opts, found.next_seq, found.prev_len, 0)?;
        let mut wal = Wal {
            disk,
            dir,
            opts,
            active,
            pending: Vec::new(),
            sealed: found.sealed,
            groups: metas,
            poisoned: false,
            stats: WalStats {
                segments_created: 1,
                ..Default::default()
            },
        };
        wal.write_checkpoint()?;
        Ok((
            wal,
            Recovered {
                groups: found.groups,
                torn_tail: found.torn_tail,
            },
        ))
    }

    /// Create segment `seq` durably: temp file, header, preallocation,
    /// fdatasync, rename, directory fsync.
    fn create_segment(
        disk: &D,
        dir: &Path,
        opts: &WalOptions,
        seq: u64,
        prev_len: u64,
        need: u64,
    ) -> Result<Active<D::File>> {
        let tmp = dir.join(segment::segment_tmp_name(seq));
        let path = dir.join(segment::segment_name(seq));
        let capacity = opts.segment_size.max(SEGMENT_HEADER_LEN + need);
        let header = SegmentHeader {
            seq,
            prev_len,
            window: opts.max_unsynced_bytes,
        };
        let mut file = disk.create(&tmp).map_err(io_err(&tmp))?;
        file.write_at(0, &header.encode()).map_err(io_err(&tmp))?;
        file.set_len(capacity).map_err(io_err(&tmp))?;
        file.sync().map_err(io_err(&tmp))?;
        disk.rename(&tmp, &path).map_err(io_err(&path))?;
        disk.sync_dir(dir).map_err(io_err(dir))?;
        Ok(Active {
            seq,
            path,
            file,
            capacity,
            written: SEGMENT_HEADER_LEN,
            synced: SEGMENT_HEADER_LEN,
            zeroed: SEGMENT_HEADER_LEN,
            max_index: BTreeMap::new(),
        })
    }

    fn checkpoint_frames(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for (&g, meta) in &self.groups {
            if let Some(rec) = meta.checkpoint(g) {
                segment::encode_frame(&mut out, |o| rec.encode(o));
            }
        }
        out
    }

    /// Write the checkpoint at the start of the (fresh) active segment, durably.
    fn write_checkpoint(&mut self) -> Result<()> {
        assert_eq!(
            self.active.written, SEGMENT_HEADER_LEN,
            "checkpoint goes first"
        );
        let frames = self.checkpoint_frames();
        let mut at = 0;
        while at < frames.len() {
            // Frames are small; keep each write within the unsynced window.
            let len = u32::from_le_bytes(frames[at..at + 4].try_into().expect("4 bytes")) as usize;
            let frame = &frames[at..at + FRAME_HEADER_LEN + len];
            if self.unsynced() + frame.len() as u64 > self.opts.max_unsynced_bytes {
                self.sync()?;
            }
            self.pending.extend_from_slice(frame);
            at += frame.len();
        }
        self.sync()
    }

    fn unsynced(&self) -> u64 {
        self.active.written + self.pending.len() as u64 - self.active.synced
    }

    /// Seal the active segment and start the next one, with room for `need` bytes.
    fn roll(&mut self, need: u64) -> Result<()> {
        self.sync()?;
        let need = need + self.checkpoint_frames().len() as u64;
        let a = &mut self.active;
        let result = a
            .file
            .set_len(a.written)
            .and_then(|()| a.file.sync())
            .map_err(io_err(&a.path))
            .and_then(|()| {
                Self::create_segment(
                    &self.disk,
                    &self.dir,
                    &self.opts,
                    a.seq + 1,
                    a.written,
                    need,
                )
            });
        let next = result.inspect_err(|_| self.poisoned = true)?;
        let old = std::mem::replace(&mut self.active, next);
        self.sealed.push_back(Sealed {
            path: old.path,
            max_index: old.max_index,
        });
        self.stats.segments_created += 1;
        self.stats.fdatasyncs += 2;
        self.write_checkpoint()
    }

    /// Make room for a frame of `len` bytes: sync if the unsynced window
    /// would overflow, roll if the segment would.
    fn reserve(&mut self, len: u64) -> Result<()> {
        if self.unsynced() + len > self.opts.max_unsynced_bytes {
            self.sync()?;
        }
        if self.active.written + self.pending.len() as u64 + len > self.active.capacity {
            self.roll(len)?;
        }
        assert!(self.active.written + self.pending.len() as u64 + len <= self.active.capacity);
        Ok(())
    }

    /// Encodes one frame; `size` is about the body's length (the buffer is
    /// sized once rather than grown by doubling: each growth is a copy
    /// into fresh memory).
    fn frame(&self, size: usize, body: impl FnOnce(&mut Vec<u8>)) -> Result<Vec<u8>> {
        let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + size);
        let len = segment::encode_frame(&mut frame, body) - FRAME_HEADER_LEN;
        if len as u64 > self.opts.max_record_bytes {
            return Err(StorageError::TooLarge {
                what: "WAL record",
                size: len as u64,
                limit: self.opts.max_record_bytes,
            });
        }
        Ok(frame)
    }

    /// Add a batch to the log (not yet durable: call [`Wal::sync`]). A batch
    /// that would break the log's invariants is refused and changes nothing.
    pub fn append(&mut self, batch: &WalBatch) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        if batch.is_empty() {
            return Ok(());
        }
        match self.groups.get(&batch.group) {
            Some(meta) => meta.check(batch)?,
            None => GroupMeta::default().check(batch)?,
        }
        let parts = match self.frame(batch.size(), |o| batch.encode(o)) {
            Ok(frame) => vec![(Cow::Borrowed(batch), frame)],
            Err(StorageError::TooLarge { .. }) => self.split(batch)?,
            Err(e) => return Err(e),
        };
        for (part, frame) in parts {
            self.reserve(frame.len() as u64)?;
            self.pending.extend_from_slice(&frame);
            let meta = self.groups.entry(part.group).or_default();
            let prev_last = meta.last_index;
            meta.apply(&part);
            track_live(
                &mut self.sealed,
                &mut self.active.max_index,
                &part,
                prev_last,
            );
        }
        Ok(())
    }

    /// A batch too large for one record becomes several: the first carries
    /// the snapshot mark and the hard state (a hard state ahead of the
    /// entries is harmless: the core clamps the commit index on restart),
    /// the entries follow in order. Only a single entry too large for a
    /// record is refused.
    fn split<'b>(&self, batch: &'b WalBatch) -> Result<Vec<(Cow<'b, WalBatch>, Vec<u8>)>> {
        // Room for the record type, group, flags, mark, hard state and counts.
        const OVERHEAD: usize = 128;
        let limit = self.opts.max_record_bytes as usize - OVERHEAD;
        let empty = || WalBatch::new(batch.group);
        let mut parts = vec![WalBatch {
            snapshot: batch.snapshot,
            hard_state: batch.hard_state,
            ..empty()
        }];
        let mut size = 0;
        for e in &batch.entries {
            let n = record::entry_encoded_len(e);
            if n > limit {
                return Err(StorageError::TooLarge {
                    what: "WAL entry",
                    size: n as u64,
                    limit: limit as u64,
                });
            }
            if size + n > limit {
                parts.push(empty());
                size = 0;
            }
            parts.last_mut().expect("non-empty").entries.push(e.clone());
            size += n;
        }
        parts
            .into_iter()
            .map(|p| {
                let frame = self.frame(p.size(), |o| p.encode(o))?;
                Ok((Cow::Owned(p), frame))
            })
            .collect()
    }

    /// Write what was appended and fdatasync it: one write, one sync. After
    /// an error the WAL is poisoned (the file's state is unknown).
    pub fn sync(&mut self) -> Result<()> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let a = &mut self.active;
        if !self.pending.is_empty() {
            assert!(
                a.written + self.pending.len() as u64 <= a.capacity,
                "write past the segment"
            );
            segment::assert_whole_frames(&self.pending);
            if let Err(e) = a.file.write_at(a.written, &self.pending) {
                self.poisoned = true;
                return Err(StorageError::io(&a.path, e));
            }
            a.written += self.pending.len() as u64;
            self.stats.bytes_written += self.pending.len() as u64;
            self.pending.clear();
            a.zeroed = a.zeroed.max(a.written);
            let window_end = a.synced + self.opts.max_unsynced_bytes;
            if let Err(e) = zero_ahead(a, window_end) {
                self.poisoned = true;
                return Err(StorageError::io(&a.path, e));
            }
        }
        if a.synced < a.written {
            if let Err(e) = a.file.sync() {
                self.poisoned = true;
                return Err(StorageError::io(&a.path, e));
            }
            a.synced = a.written;
            self.stats.fdatasyncs += 1;
        }
        Ok(())
    }

    /// [`Wal::append`] then [`Wal::sync`].
    pub fn append_sync(&mut self, batch: &WalBatch) -> Result<()> {
        self.append(batch)?;
        self.sync()
    }

    /// The application saved a snapshot of `group` at `mark`: record it
    /// durably, then release the oldest segments whose entries every group's
    /// snapshot covers. Returns how many segments were released.
    pub fn compact(&mut self, group: GroupId, mark: SnapshotMark) -> Result<usize> {
        if self.poisoned {
            return Err(StorageError::Poisoned);
        }
        let bad = |reason: String| Err(StorageError::invalid(group, reason));
        let Some(meta) = self.groups.get(&group) else {
            return bad("compaction of an unknown group".into());
        };
        if mark.index <= meta.snapshot_index() || mark.index > meta.last_index {
            return bad(format!(
                "compaction at {} outside the log ({}, {}]",
                mark.index,
                meta.snapshot_index(),
                meta.last_index
            ));
        }
        if meta.term_at(mark.index) != Some(mark.term) {
            return bad(format!(
                "compaction at {} with term {}, log has {:?}",
                mark.index,
                mark.term,
                meta.term_at(mark.index)
            ));
        }
        let frame = self.frame(32, |o| Record::Compacted { group, mark }.encode(o))?;
        self.reserve(frame.len() as u64)?;
        self.pending.extend_from_slice(&frame);
        self.groups.get_mut(&group).expect("checked").compact(mark);
        self.sync()?;
        self.release()
    }

    /// After recovery, make `group`'s log start no earlier than a snapshot
    /// file at `mark` that is newer than the WAL's own mark (saved just before
    /// a crash that lost the batch carrying it). If the log holds the
    /// snapshot's last entry with its term this is a compaction; otherwise the
    /// log is discarded, as for a snapshot installed from the leader. Without
    /// this, the core (which restarts from the snapshot) appends after
    /// `mark.index` and the WAL refuses the gap. Durable when it returns.
    pub fn record_snapshot(&mut self, group: GroupId, mark: SnapshotMark) -> Result<()> {
        if self
            .snapshot_mark(group)
            .is_some_and(|m| m.index >= mark.index)
        {
            return Ok(());
        }
        let holds_it = self.groups.get(&group).is_some_and(|m| {
            m.last_index >= mark.index && m.term_at(mark.index) == Some(mark.term)
        });
        if holds_it {
            return self.compact(group, mark).map(|_| ());
        }
        let batch = WalBatch {
            group,
            snapshot: Some(mark),
            entries: Vec::new(),
            hard_state: None,
        };
        self.append_sync(&batch)
    }

    fn release(&mut self) -> Result<usize> {
        let mut released = 0;
        while let Some(seg) = self.sealed.front() {
            let covered = seg.max_index.iter().all(|(g, &max)| {
                self.groups
                    .get(g)
                    .is_some_and(|m| m.snapshot_index() >= max)
            });
            if !covered {
                break;
            }
            if let Err(e) = self.disk.remove(&seg.path) {
                if released > 0 {
                    let _ = self.disk.sync_dir(&self.dir);
                }
                return Err(StorageError::io(&seg.path, e));
            }
            tracing::debug!(path = %seg.path.display(), "WAL: released segment");
            self.sealed.pop_front();
            released += 1;
        }
        if released > 0 {
            self.disk.sync_dir(&self.dir).map_err(io_err(&self.dir))?;
            self.stats.segments_released += released as u64;
        }
        Ok(released)
    }

    /// Sync and close.
    pub fn close(mut self) -> Result<()> {
        self.sync()
    }

    /// Last index stored for `group` (its snapshot index if no entries).
    pub fn last_index(&self, group: GroupId) -> Option<Index> {
        self.groups.get(&group).map(|m| m.last_index)
    }

    /// Latest snapshot mark of `group`.
    pub fn snapshot_mark(&self, group: GroupId) -> Option<SnapshotMark> {
        self.groups.get(&group).and_then(|m| m.snapshot)
    }

    /// Latest hard state of `group`.
    pub fn hard_state(&self, group: GroupId) -> Option<HardState> {
        self.groups.get(&group).map(|m| m.hard_state)
    }

    /// Paths of the segment files, oldest first (the last one is being written).
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<_> = self.sealed.iter().map(|s| s.path.clone()).collect();
        paths.push(self.active.path.clone());
        paths
    }

    /// True after a failed write or sync.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Counters.
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// The options in force.
    pub fn options(&self) -> &WalOptions {
        &self.opts
    }

    /// The WAL's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
