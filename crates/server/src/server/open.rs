//! Opening a member's storage and starting its Raft node: restart from its
//! own data, bootstrap a new cluster, or join an existing one
//! ([`super::plan`] decides which).

use std::sync::Arc;

use concord_mvcc::{Limits, Store};
use concord_raft::{Config as RaftConfig, RawNode, ReadMode, SnapshotMeta};
use concord_storage::{
    FsDisk, GroupLog, SnapshotMark, SnapshotOptions, SnapshotStore, Wal, WalOptions,
};

use super::plan::{self, Found, Plan};
use crate::config::Config;
use crate::datadir::DataDir;
use crate::error::ServerError;
use crate::members::MemberTable;
use crate::snapshot::snapshotter::SharedSnapshots;
use crate::tls::Tls;
use crate::GROUP;

/// redb cache size of a member.
pub const BACKEND_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Cache of values read back from the backend: values stay in memory only
/// until a checkpoint writes them (about a second).
pub const VALUE_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// The store's own bound on a command's keys and values, the same on
/// every member (the flag's bound is checked on arrival).
pub const APPLY_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// The store's own bound on a txn's lists, the same on every member.
pub const APPLY_MAX_TXN_OPS: usize = 1 << 16;

/// What the data directory holds, opened.
pub(super) struct Storage {
    store: Store,
    snaps: SharedSnapshots,
    wal: Wal<FsDisk>,
    /// This member's Raft log in the WAL, if it has one.
    log: Option<GroupLog>,
    /// The member table file.
    saved: Option<MemberTable>,
    /// The newest snapshot (a restart only): metadata, where its image
    /// starts in the file, the image's length.
    snapshot: Option<(SnapshotMeta, u64, u64)>,
    /// The newest snapshot's member table, standing in for a missing file.
    snapshot_table: Option<MemberTable>,
}

/// A member ready to run.
pub(super) struct Started {
    /// This member's id.
    pub id: u64,
    /// The member table.
    pub members: MemberTable,
    /// The Raft node.
    pub node: RawNode,
    /// The state machine.
    pub store: Store,
    /// The WAL.
    pub wal: Wal<FsDisk>,
    /// The snapshot files.
    pub snaps: SharedSnapshots,
    /// Index of the newest snapshot (0: none).
    pub snapshot_index: u64,
    /// Applied index of the store.
    pub applied: u64,
}

/// Opens the backend, the snapshot files and the WAL, and reads what a
/// start is decided from.
pub(super) fn open_storage(dir: &DataDir) -> Result<Storage, ServerError> {
    // The store applies what every member applies alike: its limits must
    // not depend on this member's flags (members with different
    // --max-request-bytes or --max-txn-ops would diverge). The flags are
    // enforced where requests arrive (grpc/kv.rs, Shared::propose).
    let limits = Limits {
        max_request_bytes: APPLY_MAX_REQUEST_BYTES,
        max_txn_ops: APPLY_MAX_TXN_OPS,
        // Values read back go through the value cache; redb's page cache
        // holds the B-tree pages that lookups and commits walk.
        backend_cache_bytes: BACKEND_CACHE_BYTES,
        value_cache_bytes: VALUE_CACHE_BYTES,
    };
    let store = Store::open_with(dir.backend(), limits)?;
    let snaps = Arc::new(SnapshotStore::open(
        FsDisk,
        dir.snap(),
        SnapshotOptions::default(),
    )?);
    let (wal, recovered) = Wal::open(FsDisk, dir.wal(), WalOptions::default())?;
    if let Some(t) = &recovered.torn_tail {
        tracing::warn!(?t, "cut a torn tail off the WAL");
    }
    let log = recovered.groups.get(&GROUP).cloned();
    let saved = dir.load_members()?;
    // A restart starts from the newest snapshot's metadata (its image is
    // read only if the backend is behind it); its member table stands in
    // for a missing file.
    let snapshot = match (&log, snaps.latest(GROUP)?) {
        (Some(_), Some(info)) => Some(snaps.data_section(GROUP, info.index)?),
        _ => None,
    };
    let snapshot_table = match (&saved, &snapshot) {
        (None, Some((meta, at, _))) => Some(
            crate::snapshot::read_table(|o, n| {
                snaps
                    .read_chunk(GROUP, meta.index, at + o, n)
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            })
            .map_err(ServerError::Internal)?,
        ),
        _ => None,
    };
    Ok(Storage {
        store,
        snaps,
        wal,
        log,
        saved,
        snapshot,
        snapshot_table,
    })
}

/// Decides how the member starts and starts its Raft node that way.
pub(super) async fn start(
    cfg: &Config,
    tls: &Tls,
    dir: &DataDir,
    storage: Storage,
) -> Result<Started, ServerError> {
    let peer_urls = cfg.advertised_peer_urls();
    let found = Found {
        wal_log: storage.log.is_some(),
        backend_applied: storage.store.applied_index(),
        id_file: dir.read_member_id()?,
        table: storage.saved.as_ref().or(storage.snapshot_table.as_ref()),
        peer_urls: &peer_urls,
        new_cluster: cfg.initial_cluster_state == "new",
    };
    let started = match plan::plan(&found, dir).map_err(ServerError::Config)? {
        Plan::Restart { id, rebuilt } => {
            if rebuilt {
                tracing::warn!(
                    member = format!("{id:x}"),
                    "the member_id file was missing or damaged; found this member in the \
                     member table by its peer URLs and wrote the file again"
                );
            }
            restart(cfg, dir, storage, id)?
        }
        Plan::Bootstrap => bootstrap(cfg, dir, storage)?,
        Plan::Join => join(cfg, tls, dir, storage, &peer_urls).await?,
    };
    dir.save_member_id(started.id)?;
    Ok(started)
}

/// The core's configuration of member `id`.
fn raft_config(cfg: &Config, id: u64) -> RaftConfig {
    let mut c = RaftConfig::new(id, GROUP);
    c.election_tick = cfg.election_ticks();
    c.heartbeat_tick = 1;
    c.pre_vote = true;
    c.check_quorum = true;
    c.read_mode = if cfg.experimental_lease_reads {
        ReadMode::LeaseBased
    } else {
        ReadMode::Safe
    };
    c.max_clock_drift_ticks = cfg.max_clock_drift_ticks();
    c.seed = id ^ std::process::id() as u64;
    c.snapshot_chunk_size = crate::driver::SNAPSHOT_CHUNK_BYTES as usize;
    c
}

/// Restarts member `id` from its own data.
fn restart(cfg: &Config, dir: &DataDir, mut s: Storage, id: u64) -> Result<Started, ServerError> {
    let log = s.log.take().expect("a restart has a WAL log");
    let mut members = s
        .saved
        .take()
        .or(s.snapshot_table.take())
        .expect("a restart has a member table");
    let mut applied = s.store.applied_index();
    let snapshot = s.snapshot.take();
    if let Some((meta, _, _)) = &snapshot {
        if meta.index > applied {
            members = restore_snapshot(dir, &mut s, meta.index)?;
            applied = meta.index;
        }
        let mark = SnapshotMark {
            index: meta.index,
            term: meta.term,
        };
        s.wal.record_snapshot(GROUP, mark)?;
    }
    let snapshot_index = snapshot.as_ref().map_or(0, |(m, _, _)| m.index);
    let image_len = snapshot.as_ref().map(|(_, _, len)| *len);
    // The core gets the metadata; the image stays in the file.
    let snapshot = snapshot.map(|(meta, _, _)| concord_raft::Snapshot {
        meta,
        data: Default::default(),
    });
    let mut state = log.into_initial_state(GROUP, snapshot, applied)?;
    // A commit-only hard state is written without waiting for its fsync, so
    // the WAL may remember a lower commit than the backend applied; what was
    // applied was committed.
    state.hard_state.commit = state.hard_state.commit.max(applied);
    let mut node = RawNode::restart(raft_config(cfg, id), state)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    if let Some(len) = image_len {
        node.set_external_snapshot(len);
    }
    tracing::info!(
        member = format!("{id:x}"),
        applied,
        "restarted from the data directory"
    );
    Ok(Started {
        snapshot_index,
        applied,
        ..fresh(id, members, node, s)
    })
}

/// Restores the snapshot at `index` into a backend that is behind it (the
/// leader sent it just before a crash): loaded whole and verified. Returns
/// its member table, saved.
fn restore_snapshot(
    dir: &DataDir,
    s: &mut Storage,
    index: u64,
) -> Result<MemberTable, ServerError> {
    let snap = s.snaps.load(GROUP, index)?;
    let (table, image) = crate::snapshot::decode(&snap.data).map_err(ServerError::Internal)?;
    s.store.restore(image)?;
    dir.save_members(&table)?;
    Ok(table)
}

/// Founds a new cluster with `--initial-cluster`.
fn bootstrap(cfg: &Config, dir: &DataDir, s: Storage) -> Result<Started, ServerError> {
    let initial: Vec<(String, Vec<String>)> = cfg
        .initial_members()?
        .into_iter()
        .map(|m| (m.name, m.peer_urls))
        .collect();
    let members = MemberTable::bootstrap(&initial, &cfg.initial_cluster_token);
    let id = members
        .members
        .values()
        .find(|m| m.name == cfg.name)
        .map(|m| m.id)
        .ok_or_else(|| ServerError::Config("--name not in --initial-cluster".into()))?;
    let voters: Vec<u64> = members.members.keys().copied().collect();
    dir.save_members(&members)?;
    let node = RawNode::bootstrap(raft_config(cfg, id), &voters)
        .map_err(|e| ServerError::Config(e.to_string()))?;
    tracing::info!(member = format!("{id:x}"), "bootstrapped a new cluster");
    Ok(fresh(id, members, node, s))
}

/// Joins an existing cluster (this member was added with MemberAdd).
async fn join(
    cfg: &Config,
    tls: &Tls,
    dir: &DataDir,
    s: Storage,
    peer_urls: &[String],
) -> Result<Started, ServerError> {
    let members = crate::join::fetch_members(cfg, tls.peer_connector.as_ref()).await?;
    let id = members
        .find_by_peer_urls(peer_urls)
        .map(|m| m.id)
        .ok_or_else(|| {
            ServerError::Config(format!(
                "the cluster has no member with peer URLs {peer_urls:?}: add it with MemberAdd first"
            ))
        })?;
    dir.save_members(&members)?;
    let node = RawNode::restart(raft_config(cfg, id), Default::default())
        .map_err(|e| ServerError::Config(e.to_string()))?;
    tracing::info!(member = format!("{id:x}"), "joining an existing cluster");
    Ok(fresh(id, members, node, s))
}

/// A started member over `s`, with nothing applied yet (a restart sets
/// its snapshot and applied indexes).
fn fresh(id: u64, members: MemberTable, node: RawNode, s: Storage) -> Started {
    Started {
        id,
        members,
        node,
        store: s.store,
        wal: s.wal,
        snaps: s.snaps,
        snapshot_index: 0,
        applied: 0,
    }
}
