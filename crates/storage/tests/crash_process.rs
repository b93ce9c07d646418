//! A real process writes the WAL with fdatasync and prints each index once it
//! is durable; we SIGKILL it at a random moment (`Child::kill` sends SIGKILL
//! on Unix), reopen the WAL, and check that every printed index is there,
//! intact, with no duplicates. Several rounds reuse the same directory.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Rng;
use concord_storage::{FsDisk, Wal, WalOptions};

/// Must match `payload` in `src/bin/wal-crash-writer.rs`.
fn payload(group: u64, index: u64) -> Bytes {
    let mut p = format!("group={group} index={index} ").into_bytes();
    let fill = (group * 31 + index * 7) % 200;
    p.extend((0..fill).map(|i| (index as u8).wrapping_add(i as u8)));
    Bytes::from(p)
}

#[test]
fn sigkill_never_loses_an_acknowledged_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let mut rng = Rng::new(2024);
    let started = Instant::now();
    let mut acked_total = 0;
    let mut rounds_with_acks = 0;
    let mut acked: std::collections::BTreeMap<u64, u64> = Default::default();
    for round in 0..8 {
        let threads = if round % 2 == 0 { 1 } else { 4 };
        let mut child = Command::new(env!("CARGO_BIN_EXE_wal-crash-writer"))
            .arg(&dir)
            .args(["--threads", &threads.to_string(), "--segment-size", "65536"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wal-crash-writer");
        let mut stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut out = String::new();
            let _ = stdout.read_to_string(&mut out);
            out
        });
        std::thread::sleep(Duration::from_millis(rng.range(100, 400)));
        child.kill().expect("SIGKILL");
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the writer was killed, not finished"
        );
        let out = reader.join().unwrap();
        // Only complete lines are acknowledgements.
        let complete = &out[..out.rfind('\n').map_or(0, |p| p + 1)];
        rounds_with_acks += !complete.is_empty() as u32;
        for line in complete.lines() {
            let mut it = line.split(' ').map(|x| x.parse::<u64>().unwrap());
            let (g, i) = (it.next().unwrap(), it.next().unwrap());
            let max = acked.entry(g).or_insert(0);
            *max = (*max).max(i);
            acked_total += 1;
        }

        // The writer's options: small segments (a default 64 MiB one would be
        // preallocated and then read back by the next writer).
        let opts = WalOptions {
            segment_size: 65536,
            ..WalOptions::default()
        };
        let (wal, rec) = Wal::open(FsDisk, &dir, opts)
            .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e}"));
        drop(wal);
        for (&g, &max) in &acked {
            let log = rec
                .groups
                .get(&g)
                .unwrap_or_else(|| panic!("group {g} lost"));
            assert!(
                log.last_index() >= max,
                "round {round}: group {g} acked {max}, has {}",
                log.last_index()
            );
            let mut prev = 0;
            for e in &log.entries {
                assert_eq!(
                    e.index,
                    prev + 1,
                    "round {round}: group {g}: gap or duplicate"
                );
                assert_eq!(e.term, 1);
                assert_eq!(
                    e.data,
                    payload(g, e.index),
                    "round {round}: group {g} entry {} damaged",
                    e.index
                );
                prev = e.index;
            }
        }
    }
    assert!(acked_total > 0, "the writer acknowledged something");
    assert!(
        rounds_with_acks >= 4,
        "most rounds got to write: {rounds_with_acks} of 8"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "bounded: {:?}",
        started.elapsed()
    );
}
