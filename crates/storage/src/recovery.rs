//! Reading the WAL back: list the segments, verify each header and record,
//! replay the records, decide whether a bad record at the end of the last
//! segment is a torn write (truncate, log) or corruption (refuse, naming file
//! and offset), and cut the last segment to its valid records.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};

use concord_raft::{GroupId, Index};

use crate::disk::{Disk, DiskFile};
use crate::error::{Result, StorageError};
use crate::record::{Record, WalBatch};
use crate::replay::{GroupLog, Replayer};
use crate::segment::{self, SegmentHeader, Stop, SEGMENT_HEADER_LEN};

/// A torn record found (and cut off) at the tail of the last segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub path: PathBuf,
    /// Where the first invalid record started (the segment now ends here).
    pub offset: u64,
    /// Non-zero bytes discarded after `offset`.
    pub discarded: u64,
    /// What was wrong with the record.
    pub reason: &'static str,
}

/// What [`crate::Wal::open`] found on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Each group's durable log.
    pub groups: BTreeMap<GroupId, GroupLog>,
    /// The torn tail that was truncated, if there was one.
    pub torn_tail: Option<TornTail>,
}

#[derive(Debug)]
pub(crate) struct Sealed {
    pub path: PathBuf,
    /// Highest entry index written to this segment, per group.
    pub max_index: BTreeMap<GroupId, Index>,
}

/// Keep each segment's highest *live* entry index per group: entries that a
/// later batch replaced (log repair) or discarded (snapshot install) no
/// longer hold a segment back from release. `prev_last` is the group's last
/// index before `b`.
pub(crate) fn track_live(
    sealed: &mut VecDeque<Sealed>,
    current: &mut BTreeMap<GroupId, Index>,
    b: &WalBatch,
    prev_last: Index,
) {
    let floor = match (b.snapshot, b.entries.first()) {
        (Some(_), _) => Some(0),
        (None, Some(first)) if first.index <= prev_last => Some(first.index - 1),
        _ => None,
    };
    if let Some(floor) = floor {
        let maps = sealed
            .iter_mut()
            .map(|s| &mut s.max_index)
            .chain(std::iter::once(&mut *current));
        for map in maps {
            if let Some(max) = map.get_mut(&b.group) {
                *max = (*max).min(floor);
            }
        }
    }
    if let Some(last) = b.entries.last() {
        let max = current.entry(b.group).or_insert(0);
        *max = last.index.max(*max);
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |e| StorageError::io(path, e)
}

/// What the segments on disk hold.
pub(crate) struct Found {
    pub groups: BTreeMap<GroupId, GroupLog>,
    /// Every segment found (all older than the one the writer will create).
    pub sealed: VecDeque<Sealed>,
    pub torn_tail: Option<TornTail>,
    /// Sequence number and `prev_len` for the next segment.
    pub next_seq: u64,
    pub prev_len: u64,
}

/// Recover the WAL in `dir` (see the module documentation).
pub(crate) fn recover<D: Disk>(disk: &D, dir: &Path) -> Result<Found> {
    disk.create_dir_all(dir).map_err(io_err(dir))?;
    let mut seqs = Vec::new();
    let mut removed_tmp = false;
    for name in disk.list_dir(dir).map_err(io_err(dir))? {
        if segment::is_segment_tmp(&name) {
            let path = dir.join(&name);
            tracing::info!(path = %path.display(), "WAL: removing unfinished segment");
            disk.remove(&path).map_err(io_err(&path))?;
            removed_tmp = true;
        } else if let Some(seq) = segment::parse_segment_name(&name) {
            seqs.push(seq);
        }
    }
    if removed_tmp {
        disk.sync_dir(dir).map_err(io_err(dir))?;
    }
    seqs.sort_unstable();
    for w in seqs.windows(2) {
        if w[1] != w[0] + 1 {
            let reason = format!("segments {:x} to {:x} are missing", w[0] + 1, w[1] - 1);
            return Err(StorageError::corrupt(dir, 0, reason));
        }
    }

    let mut replayer = Replayer::default();
    let mut sealed = VecDeque::new();
    let mut torn_tail = None;
    let mut prev: Option<(PathBuf, u64)> = None;
    let mut last_file = None;
    for (i, &seq) in seqs.iter().enumerate() {
        let is_last = i + 1 == seqs.len();
        let path = dir.join(segment::segment_name(seq));
        let file = disk.open(&path).map_err(io_err(&path))?;
        let mut buf = file.read_all().map_err(io_err(&path))?;
        let header = SegmentHeader::decode(&buf).map_err(|r| StorageError::corrupt(&path, 0, r))?;
        if header.seq != seq {
            let reason = format!("header names segment {:x}", header.seq);
            return Err(StorageError::corrupt(&path, 16, reason));
        }
        if let Some((prev_path, prev_end)) = &prev {
            if header.prev_len != *prev_end {
                let reason = format!(
                    "records end at byte {prev_end}, but the next segment recorded {}",
                    header.prev_len
                );
                return Err(StorageError::corrupt(prev_path, *prev_end, reason));
            }
        }
        let scan = segment::scan_frames(&buf, SEGMENT_HEADER_LEN as usize);
        if let Stop::Invalid { offset, reason } = scan.stop {
            if !is_last {
                return Err(StorageError::corrupt(&path, offset, reason));
            }
            let beyond = offset.saturating_add(header.window);
            if let Some(p) = segment::first_nonzero(&buf, beyond.try_into().unwrap_or(usize::MAX)) {
                let reason = format!(
                    "{reason}, and data follows at byte {p}, beyond the {}-byte unsynced \
                         window: not a torn write",
                    header.window
                );
                return Err(StorageError::corrupt(&path, offset, reason));
            }
            let discarded =
                segment::last_nonzero(&buf).map_or(0, |l| (l as u64 + 1).saturating_sub(offset));
            tracing::warn!(
                path = %path.display(), offset, discarded, reason,
                "WAL: truncating a torn record at the tail of the last segment"
            );
            torn_tail = Some(TornTail {
                path: path.clone(),
                offset,
                discarded,
                reason,
            });
        }
        buf.truncate(scan.end as usize);
        buf.shrink_to_fit();
        let bytes = bytes::Bytes::from(buf);
        let mut max_index = BTreeMap::new();
        for frame in &scan.frames {
            let record = Record::decode(&bytes.slice(frame.body.clone()))
                .map_err(|e| StorageError::corrupt(&path, frame.offset, e.to_string()))?;
            if let Record::Batch(b) = &record {
                track_live(&mut sealed, &mut max_index, b, replayer.last_index(b.group));
            }
            replayer
                .apply(record)
                .map_err(|reason| StorageError::corrupt(&path, frame.offset, reason))?;
        }
        if is_last {
            last_file = Some(file);
        }
        sealed.push_back(Sealed {
            path: path.clone(),
            max_index,
        });
        prev = Some((path, scan.end));
    }
    let groups = replayer.finish().map_err(|(group, reason)| {
        StorageError::corrupt(dir, 0, format!("group {group}: {reason}"))
    })?;

    // Cut the previous last segment to its valid records (torn tail and
    // preallocated space), durably, before a newer segment exists.
    let (next_seq, prev_len) = match (&prev, last_file) {
        (Some((path, end)), Some(mut file)) => {
            if file.len().map_err(io_err(path))? != *end {
                file.set_len(*end).map_err(io_err(path))?;
                file.sync().map_err(io_err(path))?;
            }
            (seqs[seqs.len() - 1] + 1, *end)
        }
        _ => (0, 0),
    };
    Ok(Found {
        groups,
        sealed,
        torn_tail,
        next_seq,
        prev_len,
    })
}
