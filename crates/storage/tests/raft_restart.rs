//! The storage driven by the real Raft core, following the `Ready` contract:
//! a single-member group proposes, compacts into a snapshot file, crashes,
//! and restarts from `GroupLog::into_initial_state` with the same log, hard
//! state and state machine.

use bytes::Bytes;
use concord_raft::{Config, EntryKind, RawNode, Snapshot};
use concord_storage::{
    SimDisk, SnapshotMark, SnapshotOptions, SnapshotStore, Wal, WalBatch, WalOptions,
};

const GROUP: u64 = 7;

struct Member {
    node: RawNode,
    wal: Wal<SimDisk>,
    snaps: SnapshotStore<SimDisk>,
    applied: u64,
    state: Vec<Bytes>,
}

fn encode_state(items: &[Bytes]) -> Bytes {
    let mut out = Vec::new();
    for it in items {
        out.extend_from_slice(&(it.len() as u32).to_le_bytes());
        out.extend_from_slice(it);
    }
    Bytes::from(out)
}

fn decode_state(mut data: &[u8]) -> Vec<Bytes> {
    let mut out = Vec::new();
    while data.len() >= 4 {
        let n = u32::from_le_bytes(data[..4].try_into().unwrap()) as usize;
        out.push(Bytes::copy_from_slice(&data[4..4 + n]));
        data = &data[4 + n..];
    }
    out
}

impl Member {
    fn handle_ready(&mut self) {
        while self.node.has_ready() {
            let mut rd = self.node.ready();
            if let Some(s) = &rd.snapshot {
                self.snaps.save(GROUP, s).unwrap();
            }
            let batch = WalBatch::from_ready(GROUP, &rd);
            self.wal.append_sync(&batch).unwrap();
            let _ = rd.persisted();
            for e in &rd.committed_entries {
                if matches!(e.kind, EntryKind::Normal) && !e.data.is_empty() {
                    self.state.push(e.data.clone());
                }
                self.applied = e.index;
            }
            self.node.advance(rd);
        }
    }
}

fn wal_options() -> WalOptions {
    WalOptions {
        segment_size: 1 << 20,
        ..WalOptions::default()
    }
}

fn open(
    disk: &SimDisk,
) -> (
    Wal<SimDisk>,
    concord_storage::Recovered,
    SnapshotStore<SimDisk>,
) {
    let (wal, rec) = Wal::open(disk.clone(), "/data/wal", wal_options()).unwrap();
    let snaps =
        SnapshotStore::open(disk.clone(), "/data/snap", SnapshotOptions::default()).unwrap();
    (wal, rec, snaps)
}

#[test]
fn restart_from_wal_and_snapshot() {
    let disk = SimDisk::new(9);
    let cfg = Config::new(1, GROUP);
    let (wal, _, snaps) = open(&disk);
    let node = RawNode::bootstrap(cfg.clone(), &[1]).unwrap();
    let mut m = Member {
        node,
        wal,
        snaps,
        applied: 0,
        state: Vec::new(),
    };
    m.handle_ready();
    m.node.campaign();
    m.handle_ready();
    assert!(m.node.is_leader());
    for i in 0..20 {
        m.node.propose(Bytes::from(format!("put {i}"))).unwrap();
        m.handle_ready();
    }
    let meta = m.node.compact(m.applied, encode_state(&m.state)).unwrap();
    let snap = Snapshot {
        meta: meta.clone(),
        data: encode_state(&m.state),
    };
    m.snaps.save(GROUP, &snap).unwrap();
    m.wal
        .compact(
            GROUP,
            SnapshotMark {
                index: meta.index,
                term: meta.term,
            },
        )
        .unwrap();
    for i in 20..25 {
        m.node.propose(Bytes::from(format!("put {i}"))).unwrap();
        m.handle_ready();
    }
    let before = m.node.status();
    let state_before = m.state.clone();
    drop(m);
    disk.crash();

    let (wal, rec, snaps) = open(&disk);
    let log = rec.groups[&GROUP].clone();
    assert_eq!(
        log.snapshot,
        Some(SnapshotMark {
            index: meta.index,
            term: meta.term
        })
    );
    let snapshot = snaps.load_latest(GROUP).unwrap().expect("snapshot file");
    // The state machine restarts from the snapshot image.
    let applied = snapshot.meta.index;
    let state = decode_state(&snapshot.data);
    let init = log
        .into_initial_state(GROUP, Some(snapshot), applied)
        .unwrap();
    let node = RawNode::restart(cfg, init).unwrap();
    let after = node.status();
    assert_eq!(after.hard_state.term, before.hard_state.term);
    assert_eq!(after.hard_state.vote, before.hard_state.vote);
    assert_eq!(after.last_index, before.last_index);
    assert_eq!(after.first_index, meta.index + 1);
    let mut m = Member {
        node,
        wal,
        snaps,
        applied,
        state,
    };
    m.node.campaign();
    m.handle_ready();
    assert!(m.node.is_leader());
    assert_eq!(
        m.state, state_before,
        "committed entries after the snapshot re-applied"
    );
    m.node
        .propose(Bytes::from_static(b"after restart"))
        .unwrap();
    m.handle_ready();
    assert_eq!(
        m.state.last().unwrap(),
        &Bytes::from_static(b"after restart")
    );
}
