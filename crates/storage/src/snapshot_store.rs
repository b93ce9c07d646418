//! Snapshot files in a directory: save atomically, load verified, prune,
//! stream out in chunks, and install one received in chunks.
//!
//! Saving writes `{name}.tmp`, fdatasyncs it, renames it to
//! `snap-{group}-{index}-{term}.snap` (16 hex digits each) and fsyncs the
//! directory; then all but the newest `keep` snapshots of the group are
//! removed. Receiving appends chunks to `recv-{group}-{n}.tmp`, then
//! fdatasyncs, verifies the checksum, renames and fsyncs the directory.
//! A snapshot file is never trusted without its checksum: loading a corrupt
//! one is an error naming the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use concord_raft::{GroupId, Index, Snapshot, SnapshotMeta, Term};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::snapshot_file;

/// Default number of snapshots kept per group.
pub const DEFAULT_KEEP_SNAPSHOTS: usize = 2;
/// Default largest snapshot file accepted from a peer.
pub const DEFAULT_MAX_SNAPSHOT_BYTES: u64 = 8 << 30;
/// Default largest chunk served by [`SnapshotStore::read_chunk`].
pub const DEFAULT_MAX_CHUNK_BYTES: u64 = 4 << 20;

/// Limits of a [`SnapshotStore`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotOptions {
    /// Snapshots kept per group (at least 1).
    pub keep: usize,
    /// Largest file a [`SnapshotReceiver`] accepts.
    pub max_snapshot_bytes: u64,
    /// Largest chunk [`SnapshotStore::read_chunk`] returns.
    pub max_chunk_bytes: u64,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        SnapshotOptions {
            keep: DEFAULT_KEEP_SNAPSHOTS,
            max_snapshot_bytes: DEFAULT_MAX_SNAPSHOT_BYTES,
            max_chunk_bytes: DEFAULT_MAX_CHUNK_BYTES,
        }
    }
}

/// A snapshot file, as named in the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// Raft group.
    pub group: GroupId,
    /// Last index covered.
    pub index: Index,
    /// Term at `index`.
    pub term: Term,
    /// The file.
    pub path: PathBuf,
}

/// A directory of snapshot files.
#[derive(Debug)]
pub struct SnapshotStore<D: Disk> {
    disk: D,
    dir: PathBuf,
    opts: SnapshotOptions,
    next_receive: AtomicU64,
}

fn is_tmp(name: &str) -> bool {
    name.ends_with(".tmp")
}

impl<D: Disk> SnapshotStore<D> {
    /// Open (creating if needed) the store in `dir`; leftover temp files go.
    pub fn open(disk: D, dir: impl Into<PathBuf>, opts: SnapshotOptions) -> Result<Self> {
        if opts.keep == 0 || opts.max_chunk_bytes == 0 {
            return Err(StorageError::InvalidOptions(
                "keep and max_chunk_bytes must be positive".into(),
            ));
        }
        let dir = dir.into();
        let io = |e| StorageError::io(&dir, e);
        disk.create_dir_all(&dir).map_err(io)?;
        let mut removed = false;
        for name in disk.list_dir(&dir).map_err(io)? {
            if is_tmp(&name) {
                let path = dir.join(&name);
                disk.remove(&path).map_err(|e| StorageError::io(&path, e))?;
                removed = true;
            }
        }
        if removed {
            disk.sync_dir(&dir).map_err(io)?;
        }
        Ok(SnapshotStore {
            disk,
            dir,
            opts,
            next_receive: AtomicU64::new(0),
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Save `snap` for `group` durably, then prune older ones.
    pub fn save(&self, group: GroupId, snap: &Snapshot) -> Result<SnapshotInfo> {
        let (index, term) = (snap.meta.index, snap.meta.term);
        let name = snapshot_file::file_name(group, index, term);
        let path = self.dir.join(&name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let (head, tail) = snapshot_file::encode_parts(group, snap);
        let io = |e| StorageError::io(&tmp, e);
        let mut file = self.disk.create(&tmp).map_err(io)?;
        let data_at = head.len() as u64;
        let tail_at = data_at + snap.data.len() as u64;
        file.write_at(0, &head).map_err(io)?;
        file.write_at(data_at, &snap.data).map_err(io)?;
        file.write_at(tail_at, &tail).map_err(io)?;
        file.sync().map_err(io)?;
        drop(file);
        self.disk
            .rename(&tmp, &path)
            .map_err(|e| StorageError::io(&path, e))?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        self.prune(group)?;
        Ok(SnapshotInfo {
            group,
            index,
            term,
            path,
        })
    }

    /// The snapshots of `group` in the directory, oldest first (by name; not verified).
    pub fn list(&self, group: GroupId) -> Result<Vec<SnapshotInfo>> {
        let names = self
            .disk
            .list_dir(&self.dir)
            .map_err(|e| StorageError::io(&self.dir, e))?;
        let mut out: Vec<SnapshotInfo> = names
            .iter()
            .filter_map(|n| snapshot_file::parse_file_name(n).map(|id| (n, id)))
            .filter(|(_, (g, _, _))| *g == group)
            .map(|(n, (group, index, term))| SnapshotInfo {
                group,
                index,
                term,
                path: self.dir.join(n),
            })
            .collect();
        out.sort_by_key(|s| (s.index, s.term));
        Ok(out)
    }

    /// The newest snapshot of `group`, if any.
    pub fn latest(&self, group: GroupId) -> Result<Option<SnapshotInfo>> {
        Ok(self.list(group)?.pop())
    }

    fn find(&self, group: GroupId, index: Index) -> Result<SnapshotInfo> {
        self.list(group)?
            .into_iter()
            .rev()
            .find(|s| s.index == index)
            .ok_or(StorageError::SnapshotNotFound { group, index })
    }

    /// Load and verify the snapshot of `group` at `index`.
    pub fn load(&self, group: GroupId, index: Index) -> Result<Snapshot> {
        let info = self.find(group, index)?;
        self.load_file(&info)
    }

    /// Load and verify the newest snapshot of `group`. A corrupt file is an
    /// error (never silently replaced by an older one).
    pub fn load_latest(&self, group: GroupId) -> Result<Option<Snapshot>> {
        match self.latest(group)? {
            Some(info) => self.load_file(&info).map(Some),
            None => Ok(None),
        }
    }

    fn load_file(&self, info: &SnapshotInfo) -> Result<Snapshot> {
        let path = &info.path;
        let io = |e| StorageError::io(path, e);
        let buf = self.disk.open(path).map_err(io)?.read_all().map_err(io)?;
        let (h, snap) = snapshot_file::decode(path, Bytes::from(buf))?;
        if (h.group, h.index, h.term) != (info.group, info.index, info.term) {
            let reason = format!(
                "header says group {} index {} term {}, unlike its name",
                h.group, h.index, h.term
            );
            return Err(StorageError::corrupt(path, 16, reason));
        }
        Ok(snap)
    }

    /// Length of the snapshot file of `group` at `index` (what a peer receives).
    pub fn file_len(&self, group: GroupId, index: Index) -> Result<u64> {
        let info = self.find(group, index)?;
        let file = self
            .disk
            .open(&info.path)
            .map_err(|e| StorageError::io(&info.path, e))?;
        file.len().map_err(|e| StorageError::io(&info.path, e))
    }

    /// Up to `len` bytes (capped at `max_chunk_bytes`) of the snapshot file of
    /// `group` at `index`, from `offset`: the raw file, checksum included, for
    /// a peer's [`SnapshotReceiver`]. Empty at the end of the file.
    pub fn read_chunk(&self, group: GroupId, index: Index, offset: u64, len: u64) -> Result<Bytes> {
        let info = self.find(group, index)?;
        let io = |e| StorageError::io(&info.path, e);
        let file = self.disk.open(&info.path).map_err(io)?;
        let file_len = file.len().map_err(io)?;
        if offset > file_len {
            return Err(StorageError::ChunkOutOfOrder {
                offset,
                expected: file_len,
            });
        }
        let n = len.min(self.opts.max_chunk_bytes).min(file_len - offset) as usize;
        let mut buf = vec![0u8; n];
        file.read_exact_at(offset, &mut buf).map_err(io)?;
        Ok(Bytes::from(buf))
    }

    /// A snapshot's metadata and where its data section lies in its file
    /// (`(offset, len)`), read without the data: the image a peer
    /// receives is that section ([`SnapshotStore::read_chunk`] at
    /// `offset + i`). The checksum is verified when the file is loaded or
    /// received whole, not here.
    pub fn data_section(&self, group: GroupId, index: Index) -> Result<(SnapshotMeta, u64, u64)> {
        let info = self.find(group, index)?;
        let file = self
            .disk
            .open(&info.path)
            .map_err(|e| StorageError::io(&info.path, e))?;
        let (h, meta) = snapshot_file::read_meta(&info.path, &file)?;
        Ok((
            meta,
            snapshot_file::SNAPSHOT_HEADER_LEN + h.meta_len,
            h.data_len,
        ))
    }

    /// Start writing a snapshot of `group` at `meta` whose data is streamed
    /// in ([`SnapshotWriter::write`]), so that it is never whole in memory.
    pub fn create(&self, group: GroupId, meta: &SnapshotMeta) -> Result<SnapshotWriter<'_, D>> {
        let name = snapshot_file::file_name(group, meta.index, meta.term);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let file = self
            .disk
            .create(&tmp)
            .map_err(|e| StorageError::io(&tmp, e))?;
        let head_len = snapshot_file::encode_head(group, meta, 0).len() as u64;
        Ok(SnapshotWriter {
            store: self,
            group,
            meta: meta.clone(),
            tmp,
            file: Some(file),
            head_len,
            data_len: 0,
            crc: 0,
            buf: Vec::with_capacity(WRITE_BUFFER),
        })
    }

    /// Start receiving a snapshot file of `group` in chunks.
    pub fn receive(&self, group: GroupId) -> Result<SnapshotReceiver<'_, D>> {
        let n = self.next_receive.fetch_add(1, Ordering::Relaxed);
        let tmp = self.dir.join(format!("recv-{group:016x}-{n}.tmp"));
        let file = self
            .disk
            .create(&tmp)
            .map_err(|e| StorageError::io(&tmp, e))?;
        Ok(SnapshotReceiver {
            store: self,
            group,
            tmp,
            file: Some(file),
            received: 0,
        })
    }

    /// Remove all but the newest `keep` snapshots of `group`; returns how many went.
    pub fn prune(&self, group: GroupId) -> Result<usize> {
        let list = self.list(group)?;
        let excess = list.len().saturating_sub(self.opts.keep);
        for info in &list[..excess] {
            self.disk
                .remove(&info.path)
                .map_err(|e| StorageError::io(&info.path, e))?;
        }
        if excess > 0 {
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| StorageError::io(&self.dir, e))?;
        }
        Ok(excess)
    }
}

/// Bytes a [`SnapshotWriter`] gathers before each write.
const WRITE_BUFFER: usize = 1 << 20;

/// A snapshot file being written from a stream of data; see
/// [`SnapshotStore::create`]. The header, which holds the data's length,
/// is written last; the checksum is computed on the way (the header's and
/// the data's combined). Dropping it unfinished removes the temp file.
pub struct SnapshotWriter<'a, D: Disk> {
    store: &'a SnapshotStore<D>,
    group: GroupId,
    meta: SnapshotMeta,
    tmp: PathBuf,
    file: Option<D::File>,
    head_len: u64,
    data_len: u64,
    crc: u32,
    buf: Vec<u8>,
}

impl<D: Disk> fmt::Debug for SnapshotWriter<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("tmp", &self.tmp)
            .field("data_len", &self.data_len)
            .finish()
    }
}

impl<D: Disk> SnapshotWriter<'_, D> {
    /// Appends data.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, data);
        self.buf.extend_from_slice(data);
        if self.buf.len() >= WRITE_BUFFER {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let file = self.file.as_mut().ok_or(StorageError::Closed)?;
        file.write_at(self.head_len + self.data_len, &self.buf)
            .map_err(|e| StorageError::io(&self.tmp, e))?;
        self.data_len += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Bytes of data written so far.
    pub fn data_len(&self) -> u64 {
        self.data_len + self.buf.len() as u64
    }

    /// Writes the header and footer, makes the file durable, renames it
    /// into place, fsyncs the directory and prunes older snapshots.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        self.flush()?;
        let head = snapshot_file::encode_head(self.group, &self.meta, self.data_len);
        assert_eq!(
            head.len() as u64,
            self.head_len,
            "header length is fixed by the membership"
        );
        let crc = crc32c::crc32c_combine(crc32c::crc32c(&head), self.crc, self.data_len as usize);
        let tail = snapshot_file::encode_tail(crc);
        let mut file = self.file.take().ok_or(StorageError::Closed)?;
        let tmp = self.tmp.clone();
        let io = |e| StorageError::io(&tmp, e);
        file.write_at(0, &head).map_err(io)?;
        file.write_at(self.head_len + self.data_len, &tail)
            .map_err(io)?;
        file.sync().map_err(io)?;
        drop(file);
        let store = self.store;
        let name = snapshot_file::file_name(self.group, self.meta.index, self.meta.term);
        let path = store.dir.join(name);
        store
            .disk
            .rename(&tmp, &path)
            .map_err(|e| StorageError::io(&path, e))?;
        store
            .disk
            .sync_dir(&store.dir)
            .map_err(|e| StorageError::io(&store.dir, e))?;
        store.prune(self.group)?;
        Ok(SnapshotInfo {
            group: self.group,
            index: self.meta.index,
            term: self.meta.term,
            path,
        })
    }
}

impl<D: Disk> Drop for SnapshotWriter<'_, D> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.store.disk.remove(&self.tmp);
        }
    }
}

/// A snapshot file arriving in chunks; see [`SnapshotStore::receive`].
/// Dropping it unfinished removes the temp file.
pub struct SnapshotReceiver<'a, D: Disk> {
    store: &'a SnapshotStore<D>,
    group: GroupId,
    tmp: PathBuf,
    file: Option<D::File>,
    received: u64,
}

impl<D: Disk> fmt::Debug for SnapshotReceiver<'_, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReceiver")
            .field("group", &self.group)
            .field("tmp", &self.tmp)
            .field("received", &self.received)
            .finish()
    }
}

impl<D: Disk> SnapshotReceiver<'_, D> {
    /// Bytes received so far (the offset the next chunk must have).
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Append a chunk; `offset` must be [`SnapshotReceiver::received`].
    pub fn write_chunk(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset != self.received {
            return Err(StorageError::ChunkOutOfOrder {
                offset,
                expected: self.received,
            });
        }
        let size = self.received + data.len() as u64;
        let limit = self.store.opts.max_snapshot_bytes;
        if size > limit {
            return Err(StorageError::TooLarge {
                what: "snapshot",
                size,
                limit,
            });
        }
        let file = self.file.as_mut().ok_or(StorageError::Closed)?;
        file.write_at(offset, data)
            .map_err(|e| StorageError::io(&self.tmp, e))?;
        self.received = size;
        Ok(())
    }

    /// Make the file durable, verify it (checksum, header, group), rename it
    /// into place atomically, fsync the directory and prune. A file that
    /// fails verification is removed and reported.
    pub fn finish(mut self) -> Result<SnapshotInfo> {
        let mut file = self.file.take().ok_or(StorageError::Closed)?;
        let tmp = self.tmp.clone();
        let result = (|| {
            file.sync().map_err(|e| StorageError::io(&tmp, e))?;
            let h = snapshot_file::verify(&tmp, &file)?;
            if h.group != self.group {
                let reason = format!(
                    "snapshot of group {} received for group {}",
                    h.group, self.group
                );
                return Err(StorageError::corrupt(&tmp, 16, reason));
            }
            Ok(h)
        })();
        drop(file);
        let h = match result {
            Ok(h) => h,
            Err(e) => {
                let _ = self.store.disk.remove(&tmp);
                return Err(e);
            }
        };
        let store = self.store;
        let path = store
            .dir
            .join(snapshot_file::file_name(h.group, h.index, h.term));
        store
            .disk
            .rename(&tmp, &path)
            .map_err(|e| StorageError::io(&path, e))?;
        store
            .disk
            .sync_dir(&store.dir)
            .map_err(|e| StorageError::io(&store.dir, e))?;
        store.prune(h.group)?;
        Ok(SnapshotInfo {
            group: h.group,
            index: h.index,
            term: h.term,
            path,
        })
    }
}

impl<D: Disk> Drop for SnapshotReceiver<'_, D> {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = self.store.disk.remove(&self.tmp);
        }
    }
}
