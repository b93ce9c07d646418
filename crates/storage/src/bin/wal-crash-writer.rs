//! Helper for the real-process crash test: appends batches to a WAL with
//! fdatasync and prints `GROUP INDEX` on stdout for every entry once its
//! batch is durable. Kill it at any moment; every printed index must survive.
//!
//! Usage: `wal-crash-writer DIR [--threads N] [--segment-size BYTES] [--max-batches N]`
//! With one thread it uses the direct API (`append` + `sync`); with more, each
//! thread writes its own group through the group committer.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use concord_raft::{Entry, HardState};
use concord_storage::{FsDisk, GroupCommit, GroupCommitOptions, Wal, WalBatch, WalOptions};

/// The payload every writer stores at (group, index); the test recomputes it.
fn payload(group: u64, index: u64) -> Bytes {
    let mut p = format!("group={group} index={index} ").into_bytes();
    let fill = (group * 31 + index * 7) % 200;
    p.extend((0..fill).map(|i| (index as u8).wrapping_add(i as u8)));
    Bytes::from(p)
}

fn batch(group: u64, first: u64) -> WalBatch {
    let n = 1 + first % 4;
    let entries = (first..first + n)
        .map(|i| Entry::normal(1, i, payload(group, i)))
        .collect();
    let hard_state = Some(HardState {
        term: 1,
        vote: 0,
        commit: first + n - 1,
    });
    WalBatch {
        group,
        snapshot: None,
        entries,
        hard_state,
    }
}

fn report(b: &WalBatch) {
    let mut out = std::io::stdout().lock();
    for e in &b.entries {
        writeln!(out, "{} {}", b.group, e.index).expect("stdout");
    }
    out.flush().expect("stdout");
}

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().expect("usage: wal-crash-writer DIR [options]"));
    let (mut threads, mut segment_size, mut max_batches) = (1u64, 256 * 1024u64, 100_000u64);
    while let Some(flag) = args.next() {
        let value: u64 = args
            .next()
            .and_then(|v| v.parse().ok())
            .expect("numeric flag value");
        match flag.as_str() {
            "--threads" => threads = value.max(1),
            "--segment-size" => segment_size = value,
            "--max-batches" => max_batches = value,
            other => panic!("unknown flag {other}"),
        }
    }
    let opts = WalOptions {
        segment_size,
        max_record_bytes: 64 * 1024,
        max_unsynced_bytes: 256 * 1024,
    };
    let (mut wal, recovered) = Wal::open(FsDisk, dir, opts).expect("open WAL");
    let next = |g: u64| recovered.groups.get(&g).map_or(1, |l| l.last_index() + 1);
    if threads == 1 {
        let mut index = next(0);
        for _ in 0..max_batches {
            let b = batch(0, index);
            wal.append(&b).expect("append");
            wal.sync().expect("sync");
            report(&b);
            index += b.entries.len() as u64;
        }
        return;
    }
    let starts: Vec<u64> = (0..threads).map(next).collect();
    let gc = Arc::new(GroupCommit::start(wal, GroupCommitOptions::default()).expect("start"));
    let handles: Vec<_> = starts
        .into_iter()
        .enumerate()
        .map(|(g, mut index)| {
            let gc = gc.clone();
            std::thread::spawn(move || {
                for _ in 0..max_batches / threads {
                    let b = batch(g as u64, index);
                    gc.append(b.clone()).expect("append");
                    report(&b);
                    index += b.entries.len() as u64;
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
}
