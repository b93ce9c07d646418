//! Property tests of the record codec: arbitrary bytes never make the decoder
//! panic, valid records round-trip, and arbitrary segment contents never make
//! `Wal::open` panic.

use std::path::Path;

use bytes::Bytes;
use concord_raft::{ConfChange, ConfChangeStep, Entry, EntryKind, HardState};
use concord_storage::record::MAX_INDEX;
use concord_storage::{Disk, DiskFile, Record, SimDisk, SnapshotMark, Wal, WalBatch, WalOptions};
use proptest::prelude::*;

fn step() -> impl Strategy<Value = ConfChangeStep> {
    prop_oneof![
        any::<u64>().prop_map(ConfChangeStep::AddVoter),
        any::<u64>().prop_map(ConfChangeStep::AddLearner),
        any::<u64>().prop_map(ConfChangeStep::Remove),
    ]
}

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        3 => Just(EntryKind::Normal),
        1 => (prop::collection::vec(step(), 0..4), any::<bool>())
            .prop_map(|(changes, joint)| EntryKind::ConfChange(ConfChange { changes, joint })),
    ]
}

fn mark() -> impl Strategy<Value = SnapshotMark> {
    (0..=MAX_INDEX, any::<u64>()).prop_map(|(index, term)| SnapshotMark { index, term })
}

fn hard_state() -> impl Strategy<Value = HardState> {
    (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(term, vote, commit)| HardState {
        term,
        vote,
        commit,
    })
}

fn record() -> impl Strategy<Value = Record> {
    let entries = (
        1..MAX_INDEX - 8,
        prop::collection::vec((any::<u64>(), kind(), any::<Vec<u8>>()), 0..5),
    )
        .prop_map(|(first, es)| {
            es.into_iter()
                .enumerate()
                .map(|(i, (term, kind, data))| Entry {
                    term,
                    index: first + i as u64,
                    kind,
                    data: Bytes::from(data),
                })
                .collect::<Vec<_>>()
        });
    prop_oneof![
        (
            any::<u64>(),
            prop::option::of(mark()),
            entries,
            prop::option::of(hard_state())
        )
            .prop_map(|(group, snapshot, entries, hard_state)| {
                Record::Batch(WalBatch {
                    group,
                    snapshot,
                    entries,
                    hard_state,
                })
            }),
        (any::<u64>(), mark()).prop_map(|(group, mark)| Record::Compacted { group, mark }),
        (
            any::<u64>(),
            prop::option::of(hard_state()),
            prop::option::of(mark())
        )
            .prop_map(|(group, hard_state, snapshot)| Record::Checkpoint {
                group,
                hard_state,
                snapshot
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = Record::decode(&Bytes::from(bytes));
    }

    #[test]
    fn decoder_never_panics_on_typed_garbage(t in 1u8..=3, rest in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut body = vec![t];
        body.extend(rest);
        let _ = Record::decode(&Bytes::from(body));
    }

    #[test]
    fn records_round_trip(r in record()) {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        prop_assert_eq!(Record::decode(&Bytes::from(buf)).unwrap(), r);
    }

    #[test]
    fn damaged_records_are_errors_or_other_records(r in record(), at in any::<usize>(), x in 1u8..) {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        let at = at % buf.len();
        buf[at] ^= x;
        // Decoding must not panic; the frame checksum is what catches the damage.
        let _ = Record::decode(&Bytes::from(buf.clone()));
        buf.truncate(at);
        prop_assert!(Record::decode(&Bytes::from(buf)).is_err(), "a truncated record decodes");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn wal_open_never_panics_on_arbitrary_segments(
        records in prop::collection::vec(any::<u8>(), 0..2048),
        last in any::<bool>(),
    ) {
        let disk = SimDisk::new(1);
        let dir = Path::new("/w");
        let opts = WalOptions { segment_size: 4096, max_record_bytes: 1024, max_unsynced_bytes: 2048 };
        let (wal, _) = Wal::open(disk.clone(), dir, opts.clone()).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        if !last {
            // Make the damaged segment a sealed one.
            drop(Wal::open(disk.clone(), dir, opts.clone()).unwrap());
        }
        let mut f = disk.open(&seg).unwrap();
        f.write_at(concord_storage::SEGMENT_HEADER_LEN, &records).unwrap();
        f.sync().unwrap();
        let _ = Wal::open(disk, dir, opts);
    }
}

/// A record with small numbers, so that sequences of them interact
/// (repairs, gaps, compactions, installs) when replayed.
fn small_record() -> impl Strategy<Value = Record> {
    let entries = (1u64..20, prop::collection::vec(0u64..4, 0..4)).prop_map(|(first, terms)| {
        terms
            .into_iter()
            .enumerate()
            .map(|(i, term)| Entry::normal(term, first + i as u64, Bytes::new()))
            .collect::<Vec<_>>()
    });
    let mark = (0u64..20, 0u64..4).prop_map(|(index, term)| SnapshotMark { index, term });
    prop_oneof![
        (0u64..3, prop::option::of(mark.clone()), entries).prop_map(
            |(group, snapshot, entries)| {
                Record::Batch(WalBatch {
                    group,
                    snapshot,
                    entries,
                    hard_state: None,
                })
            }
        ),
        (0u64..3, mark.clone()).prop_map(|(group, mark)| Record::Compacted { group, mark }),
        (0u64..3, prop::option::of(mark)).prop_map(|(group, snapshot)| Record::Checkpoint {
            group,
            hard_state: None,
            snapshot
        }),
        record(),
    ]
}

fn frame(out: &mut Vec<u8>, r: &Record) {
    let mut body = Vec::new();
    r.encode(&mut body);
    let len = (body.len() as u32).to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len), &body);
    out.extend_from_slice(&len);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&body);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]

    /// Records with valid checksums but arbitrary (inconsistent) content:
    /// replay reports an error or recovers contiguous logs, never panics.
    #[test]
    fn replay_never_panics_on_checksummed_nonsense(records in prop::collection::vec(small_record(), 0..12)) {
        let disk = SimDisk::new(2);
        let dir = Path::new("/w");
        let opts = WalOptions { segment_size: 1 << 16, max_record_bytes: 1 << 14, max_unsynced_bytes: 1 << 15 };
        let (wal, _) = Wal::open(disk.clone(), dir, opts.clone()).unwrap();
        let seg = wal.segment_paths()[0].clone();
        drop(wal);
        let mut buf = Vec::new();
        for r in &records {
            frame(&mut buf, r);
        }
        let mut f = disk.open(&seg).unwrap();
        f.write_at(concord_storage::SEGMENT_HEADER_LEN, &buf).unwrap();
        f.sync().unwrap();
        if let Ok((_, rec)) = Wal::open(disk, dir, opts) {
            for log in rec.groups.values() {
                for (i, e) in log.entries.iter().enumerate() {
                    prop_assert_eq!(e.index, log.first_index() + i as u64);
                }
            }
        }
    }
}

#[test]
fn example_records_round_trip() {
    let cc = ConfChange {
        changes: vec![
            ConfChangeStep::AddVoter(1),
            ConfChangeStep::Remove(u64::MAX),
        ],
        joint: true,
    };
    let records = [
        Record::Batch(WalBatch {
            group: 7,
            snapshot: Some(SnapshotMark { index: 9, term: 2 }),
            entries: vec![
                Entry::normal(3, 10, Bytes::from_static(b"abc")),
                Entry {
                    term: 3,
                    index: 11,
                    kind: EntryKind::ConfChange(cc),
                    data: Bytes::new(),
                },
            ],
            hard_state: Some(HardState {
                term: 3,
                vote: 2,
                commit: 10,
            }),
        }),
        Record::Batch(WalBatch::new(0)),
        Record::Compacted {
            group: 1,
            mark: SnapshotMark { index: 5, term: 1 },
        },
        Record::Checkpoint {
            group: u64::MAX,
            hard_state: None,
            snapshot: None,
        },
    ];
    for r in records {
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(Record::decode(&Bytes::from(buf)).unwrap(), r);
    }
}

#[test]
fn varints_are_strict() {
    let compacted = |term: &[u8]| {
        let mut body = vec![2, 1, 5];
        body.extend_from_slice(term);
        Record::decode(&Bytes::from(body))
    };
    let max: Vec<u8> = [0xff; 9].into_iter().chain([1]).collect();
    assert_eq!(
        compacted(&max).unwrap(),
        Record::Compacted {
            group: 1,
            mark: SnapshotMark {
                index: 5,
                term: u64::MAX
            }
        }
    );
    let overflow: Vec<u8> = [0xff; 9].into_iter().chain([2]).collect();
    assert!(compacted(&overflow).is_err(), "overflows 64 bits");
    assert!(compacted(&[0x80, 0x00]).is_err(), "non-canonical");
    assert!(compacted(&[0x80]).is_err(), "truncated");
    assert!(compacted(&[0xff; 11]).is_err(), "too long");
}

#[test]
fn trailing_bytes_and_unknown_types_are_rejected() {
    let mut buf = Vec::new();
    Record::Compacted {
        group: 1,
        mark: SnapshotMark { index: 5, term: 1 },
    }
    .encode(&mut buf);
    buf.push(0);
    assert!(Record::decode(&Bytes::from(buf)).is_err());
    assert!(Record::decode(&Bytes::from_static(&[9, 1])).is_err());
    assert!(Record::decode(&Bytes::new()).is_err());
    // An index past MAX_INDEX is refused.
    let mut buf = vec![2, 1];
    concord_storage::record::put_varint(&mut buf, MAX_INDEX + 1);
    buf.push(1);
    assert!(Record::decode(&Bytes::from(buf)).is_err());
}
