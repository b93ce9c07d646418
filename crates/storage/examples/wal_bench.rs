//! WAL benchmark, one run, markdown table on stdout:
//! (a) the machine's raw fdatasync rate (4 KiB write + fdatasync, in a loop),
//! (b) group-commit append throughput and fdatasyncs/s with 1, 16 and 256
//!     concurrent proposers (each submits one 256-byte entry and waits),
//! (c) recovery time of a WAL of 1,000,000 entries with 256-byte payloads.
//!
//! `cargo run --release -p concord-storage --example wal_bench -- [--dir DIR] [--secs S] [--entries N]`
//! Files go to a fresh subdirectory of DIR (default: the current directory),
//! removed at the end.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_raft::Entry;
use concord_storage::{FsDisk, GroupCommit, GroupCommitOptions, Wal, WalBatch, WalOptions};

const PAYLOAD: usize = 256;

struct Args {
    dir: PathBuf,
    secs: f64,
    entries: u64,
}

fn args() -> Args {
    let mut a = Args {
        dir: PathBuf::from("."),
        secs: 3.0,
        entries: 1_000_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--dir" => a.dir = PathBuf::from(value),
            "--secs" => a.secs = value.parse().expect("--secs"),
            "--entries" => a.entries = value.parse().expect("--entries"),
            other => panic!("unknown flag {other}"),
        }
    }
    a
}

/// (a) 4 KiB write + fdatasync in a loop; `grow` appends, else rewrites block 0.
fn raw_fdatasync(dir: &Path, secs: f64, grow: bool) -> f64 {
    let path = dir.join("raw-fsync");
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path);
    let file = file.expect("raw file");
    let block = vec![0xabu8; 4096];
    let (start, mut n) = (Instant::now(), 0u64);
    while start.elapsed().as_secs_f64() < secs {
        let offset = if grow { n * 4096 } else { 0 };
        file.write_all_at(&block, offset).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).expect("remove");
    rate
}

struct GroupResult {
    proposers: usize,
    ops_per_sec: f64,
    fsyncs_per_sec: f64,
    entries_per_fsync: f64,
    p50_us: u64,
    p99_us: u64,
}

/// (b) `proposers` threads, each on its own group, submit one 256-byte entry
/// at a time through the group committer and wait for the acknowledgement.
fn group_commit(dir: &Path, proposers: usize, secs: f64) -> GroupResult {
    let dir = dir.join(format!("gc-{proposers}"));
    let (wal, _) = Wal::open(FsDisk, &dir, WalOptions::default()).expect("open");
    let gc = Arc::new(GroupCommit::start(wal, GroupCommitOptions::default()).expect("start"));
    let before = gc.stats();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(secs);
    let handles: Vec<_> = (0..proposers)
        .map(|p| {
            let gc = gc.clone();
            std::thread::spawn(move || {
                let payload = Bytes::from(vec![p as u8; PAYLOAD]);
                let mut latencies = Vec::new();
                let mut index = 1;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let entries = vec![Entry::normal(1, index, payload.clone())];
                    gc.append(WalBatch {
                        group: p as u64,
                        entries,
                        ..Default::default()
                    })
                    .expect("append");
                    latencies.push(t.elapsed().as_micros() as u64);
                    index += 1;
                }
                latencies
            })
        })
        .collect();
    let mut lat: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("proposer"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    let after = gc.stats();
    drop(gc);
    std::fs::remove_dir_all(&dir).expect("cleanup");
    lat.sort_unstable();
    let ops = lat.len() as f64;
    let fsyncs = (after.fdatasyncs - before.fdatasyncs) as f64;
    let pct = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0)
    };
    GroupResult {
        proposers,
        ops_per_sec: ops / elapsed,
        fsyncs_per_sec: fsyncs / elapsed,
        entries_per_fsync: ops / fsyncs.max(1.0),
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

struct RecoveryResult {
    entries: u64,
    bytes: u64,
    segments: usize,
    write_secs: f64,
    open_secs: f64,
}

/// (c) Write `n` entries (256-byte payloads, 1,000 per synced batch), then
/// time `Wal::open`, which replays and verifies every record.
fn recovery(dir: &Path, n: u64) -> RecoveryResult {
    let dir = dir.join("recovery");
    let (mut wal, _) = Wal::open(FsDisk, &dir, WalOptions::default()).expect("open");
    let payload = Bytes::from(vec![7u8; PAYLOAD]);
    let start = Instant::now();
    let mut index = 1;
    while index <= n {
        let count = 1000.min(n - index + 1);
        let entries = (index..index + count)
            .map(|i| Entry::normal(1, i, payload.clone()))
            .collect();
        wal.append_sync(&WalBatch {
            group: 1,
            entries,
            ..Default::default()
        })
        .expect("append");
        index += count;
    }
    let write_secs = start.elapsed().as_secs_f64();
    let bytes = wal.stats().bytes_written;
    drop(wal);
    let start = Instant::now();
    let (wal, rec) = Wal::open(FsDisk, &dir, WalOptions::default()).expect("reopen");
    let open_secs = start.elapsed().as_secs_f64();
    let log = &rec.groups[&1];
    assert_eq!(log.entries.len() as u64, n, "every entry recovered");
    let segments = wal.segment_paths().len() - 1;
    drop((wal, rec));
    std::fs::remove_dir_all(&dir).expect("cleanup");
    RecoveryResult {
        entries: n,
        bytes,
        segments,
        write_secs,
        open_secs,
    }
}

fn main() {
    let a = args();
    let dir = a.dir.join(format!("wal-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("bench dir");
    let dir = dir.canonicalize().expect("canonical dir");
    eprintln!("benchmarking in {}", dir.display());

    let grow = raw_fdatasync(&dir, a.secs, true);
    let overwrite = raw_fdatasync(&dir, a.secs, false);
    let groups: Vec<GroupResult> = [1, 16, 256]
        .iter()
        .map(|&p| group_commit(&dir, p, a.secs))
        .collect();
    let rec = recovery(&dir, a.entries);
    std::fs::remove_dir_all(&dir).expect("cleanup");

    println!("### (a) raw fdatasync rate ({} s each)\n", a.secs);
    println!("| test | fdatasync/s | latency |");
    println!("|---|---:|---:|");
    for (name, rate) in [
        ("4 KiB append + fdatasync (file grows)", grow),
        ("4 KiB overwrite + fdatasync", overwrite),
    ] {
        println!("| {name} | {rate:.0} | {:.0} µs |", 1e6 / rate);
    }
    println!("\n### (b) group commit: one 256-byte entry per proposal, each proposer waits for its ack ({} s each)\n", a.secs);
    println!("| proposers | appends/s | fdatasync/s | entries per fdatasync | p50 latency | p99 latency |");
    println!("|---:|---:|---:|---:|---:|---:|");
    for g in &groups {
        println!(
            "| {} | {:.0} | {:.0} | {:.1} | {} µs | {} µs |",
            g.proposers, g.ops_per_sec, g.fsyncs_per_sec, g.entries_per_fsync, g.p50_us, g.p99_us
        );
    }
    println!("\n### (c) recovery\n");
    println!("| entries | payload | record bytes | segments | write time | open (replay + verify) time | entries/s | MB/s |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {PAYLOAD} B | {:.1} MiB | {} | {:.2} s | {:.3} s | {:.0} | {:.0} |",
        rec.entries,
        rec.bytes as f64 / (1 << 20) as f64,
        rec.segments,
        rec.write_secs,
        rec.open_secs,
        rec.entries as f64 / rec.open_secs,
        rec.bytes as f64 / 1e6 / rec.open_secs
    );
}
