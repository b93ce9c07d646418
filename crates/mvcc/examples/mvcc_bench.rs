//! MVCC state-machine benchmark: put / range / txn throughput through
//! `apply_batch` (100 commands per batch) and the time to reopen a store
//! with a large key space.
//!
//! ```text
//! cargo run --release -p concord-mvcc --example mvcc_bench -- [--keys N] [--value-size B]
//!     [--checkpoint-every BATCHES] [--dir PATH]
//! ```
//! `--keys 4000000` gives about 1 GiB of key-value data (8-byte keys,
//! 256-byte values); the whole history is also held in memory.

use bytes::Bytes;
use concord_mvcc::{
    Command, Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp, Store,
    TxnRequest,
};
use std::time::{Duration, Instant};

const BATCH: usize = 100;

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("numeric flag"))
        .unwrap_or(default)
}

fn key(i: u64) -> Bytes {
    Bytes::copy_from_slice(&i.to_be_bytes())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

fn main() {
    let keys = arg("--keys", 100_000);
    let value_size = arg("--value-size", 256) as usize;
    // A server checkpoints periodically; redb frees pages only on durable commits.
    let ckpt_every = arg("--checkpoint-every", 100).max(1);
    let mut batches = 0u64;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = std::env::args()
        .skip_while(|a| a != "--dir")
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let path = dir.join("mvcc-bench.redb");
    let _ = std::fs::remove_file(&path);
    let value = Bytes::from(vec![b'v'; value_size]);
    let mut store = Store::open(&path).expect("open");
    let mut index = 0u64;

    // Puts: every key once, 100 commands per apply_batch.
    let t = Instant::now();
    let mut i = 0;
    while i < keys {
        let n = (keys - i).min(BATCH as u64);
        let batch: Vec<(u64, Command)> = (0..n)
            .map(|j| {
                index += 1;
                let put = PutRequest {
                    key: key(i + j),
                    value: value.clone(),
                    ..Default::default()
                };
                (index, Command::Put(put))
            })
            .collect();
        store.apply_batch(&batch).expect("apply");
        i += n;
        batches += 1;
        if batches % ckpt_every == 0 {
            store.checkpoint().expect("checkpoint");
        }
    }
    let put_time = t.elapsed();
    let t = Instant::now();
    store.checkpoint().expect("checkpoint");
    let ckpt_time = t.elapsed();

    // Ranges: single-key linearizable-style reads served from the store.
    let reads = keys.min(200_000);
    let mut rng = concord_rng::SplitMix64::new(1);
    let t = Instant::now();
    for _ in 0..reads {
        let k = key(rng.next_u64() % keys);
        let r = store
            .range(&RangeRequest {
                key: k,
                ..Default::default()
            })
            .expect("range");
        assert_eq!(r.kvs.len(), 1);
    }
    let range_time = t.elapsed();
    // Prefix-style scans of 100 keys.
    let scans = (keys / 100).clamp(1, 10_000);
    let t = Instant::now();
    for _ in 0..scans {
        let start = rng.next_u64() % keys;
        let r = RangeRequest {
            key: key(start),
            range_end: key(start + 100),
            ..Default::default()
        };
        store.range(&r).expect("range");
    }
    let scan_time = t.elapsed();

    // Txns: compare version > 0, then put; 100 per apply_batch.
    let txns = keys.min(100_000);
    let t = Instant::now();
    let mut done = 0;
    while done < txns {
        let batch: Vec<(u64, Command)> = (0..BATCH as u64)
            .map(|_| {
                index += 1;
                let k = key(rng.next_u64() % keys);
                let txn = TxnRequest {
                    compare: vec![Compare {
                        result: CompareResult::Greater,
                        target: CompareTarget::Version(0),
                        key: k.clone(),
                        range_end: Bytes::new(),
                    }],
                    success: vec![RequestOp::Put(PutRequest {
                        key: k,
                        value: value.clone(),
                        ..Default::default()
                    })],
                    failure: vec![],
                };
                (index, Command::Txn(txn))
            })
            .collect();
        store.apply_batch(&batch).expect("apply");
        done += BATCH as u64;
        batches += 1;
        if batches % ckpt_every == 0 {
            store.checkpoint().expect("checkpoint");
        }
    }
    let txn_time = t.elapsed();
    store.checkpoint().expect("checkpoint");
    let rev = store.current_revision();
    drop(store);
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);

    let t = Instant::now();
    let store = Store::open(&path).expect("reopen");
    let open_time = t.elapsed();
    assert_eq!(store.current_revision(), rev);

    println!(
        "keys: {keys}, value size: {value_size} B, batch: {BATCH}, checkpoint every {ckpt_every} batches, db file: {:.1} MiB",
        size as f64 / 1048576.0
    );
    println!("| operation | count | time (s) | ops/s |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, n: u64, d: Duration| {
        println!(
            "| {name} | {n} | {:.3} | {:.0} |",
            d.as_secs_f64(),
            rate(n, d)
        );
    };
    row("put (apply_batch of 100, no fsync)", keys, put_time);
    row("final checkpoint (durable commit)", 1, ckpt_time);
    row("range, single key", reads, range_time);
    row("range, 100-key scan", scans, scan_time);
    row("txn (compare + put, batch of 100)", txns, txn_time);
    row(
        &format!("open (rebuild index) with {rev} revisions"),
        1,
        open_time,
    );
}
