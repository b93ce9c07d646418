//! Benchmark: `cargo run -p concord-check --release --example bench_check`.
//!
//! Generates a linearizable 10,000-op history over 100 keys with 50
//! concurrent clients, round-trips it through JSON lines, and times the check.

use std::time::{Duration, Instant};

use concord_check::{check, generate, GenConfig, History, Verdict};

fn main() {
    let config = GenConfig {
        ops: 10_000,
        keys: 100,
        clients: 50,
        max_latency: 1_000,
        max_think: 200,
        indeterminate: 0.02,
        multi_key_txns: false,
        seed: 42,
    };
    let history = generate(&config);
    let text = history.to_jsonl();

    let t = Instant::now();
    let parsed = History::parse_jsonl(&text).expect("generated history parses");
    let parse = t.elapsed();
    assert_eq!(parsed, history);

    let mut times = Vec::new();
    let mut partitions = 0;
    for _ in 0..5 {
        let report = check(&parsed, Duration::from_secs(30));
        assert_eq!(
            report.verdict,
            Verdict::Linearizable,
            "generated history must pass"
        );
        partitions = report.partitions;
        times.push(report.elapsed);
    }
    times.sort();
    println!(
        "{} ops, {} keys, {} clients, {} partitions ({} KiB of JSON lines)",
        config.ops,
        config.keys,
        config.clients,
        partitions,
        text.len() / 1024
    );
    println!("parse: {:.1} ms", parse.as_secs_f64() * 1e3);
    println!(
        "check: median {:.1} ms (min {:.1} ms, max {:.1} ms over {} runs)",
        times[times.len() / 2].as_secs_f64() * 1e3,
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}
