//! Snapshots: a consistent serialized dump of the backend, and restore.
//!
//! Format: `b"CMVS"`, version byte 1, postcard body ([`Dump`]), then the
//! crc32c of everything before it (4 bytes, big endian).

use crate::backend;
use crate::error::{MvccError, Result};
use crate::state::{Changes, HistRec, Lease, State};
use crate::store::Store;
use crate::types::{LeaseRecord, Record, Revision};
use redb::Durability;
use serde::{Deserialize, Serialize};

const MAGIC: &[u8; 4] = b"CMVS";
const VERSION: u8 = 1;

#[derive(Serialize, Deserialize)]
struct Dump {
    applied: u64,
    current_rev: i64,
    compact_rev: i64,
    history: Vec<(Revision, Record)>,
    leases: Vec<LeaseRecord>,
}

/// A copy of the state at one applied index, taken quickly (records share
/// their key and value buffers with the store) and encoded later, possibly
/// in another thread, by [`SnapshotSource::encode`].
pub struct SnapshotSource(Dump);

impl std::fmt::Debug for SnapshotSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSource")
            .field("applied", &self.0.applied)
            .field("records", &self.0.history.len())
            .finish()
    }
}

impl SnapshotSource {
    /// The applied index the copy was taken at.
    pub fn applied_index(&self) -> u64 {
        self.0.applied
    }

    /// The snapshot image.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Appends the snapshot image to `out` (serialized in place: a large
    /// image is not copied).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        let buf = std::mem::take(out);
        *out = postcard::to_extend(&self.0, buf).expect("snapshot encoding cannot fail");
        let crc = crc32c::crc32c(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
}

impl Store {
    /// A consistent image of the state at [`Store::applied_index`].
    pub fn snapshot(&self) -> Result<Vec<u8>> {
        Ok(self.snapshot_source()?.encode())
    }

    /// A copy of the state at [`Store::applied_index`], to encode later.
    pub fn snapshot_source(&self) -> Result<SnapshotSource> {
        let s = &self.state;
        let history = s
            .history
            .iter()
            .map(|(r, h)| Ok((*r, h.record(s.value(*r, h)?))))
            .collect::<Result<_>>()?;
        Ok(SnapshotSource(Dump {
            applied: self.applied,
            current_rev: s.current_rev,
            compact_rev: s.compact_rev,
            history,
            leases: s.leases.values().map(|l| l.rec.clone()).collect(),
        }))
    }

    /// Replaces the whole state with a snapshot, durably. A malformed image
    /// is refused and changes nothing.
    pub fn restore(&mut self, image: &[u8]) -> Result<()> {
        let bad = |m: &str| MvccError::Codec(format!("snapshot: {m}"));
        if image.len() < 9 || &image[..4] != MAGIC {
            return Err(bad("bad magic"));
        }
        if image[4] != VERSION {
            return Err(bad("unknown version"));
        }
        let (body, crc) = image.split_at(image.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(bad("checksum mismatch"));
        }
        let dump: Dump = postcard::from_bytes(&body[5..]).map_err(|e| bad(&e.to_string()))?;
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
