//! Command-line runner: many seeds with a progress bar and a summary, or one
//! seed with a readable trace.
//!
//! `cargo run -p concord-sim --release -- --seeds 0..10000`
//! `cargo run -p concord-sim --release -- --seed 42 --trace`

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use clap::Parser;
use concord_sim::{run, Linearizability, SimConfig, SimReport};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Parser, Debug)]
#[command(about = "Deterministic simulation of Concord's Raft core under faults")]
struct Args {
    /// Range of seeds to run, e.g. `0..10000`.
    #[arg(long, default_value = "0..100")]
    seeds: String,
    /// Run a single seed (prints its trace with --trace).
    #[arg(long)]
    seed: Option<u64>,
    /// Print the readable trace of a single seed.
    #[arg(long)]
    trace: bool,
    /// Worker threads.
    #[arg(long, default_value_t = 2)]
    jobs: u64,
    /// Write the client history of a single seed to this file (JSON lines).
    #[arg(long)]
    history: Option<std::path::PathBuf>,
    /// Switch on a planted bug (and the scenario that exposes it): one of
    /// figure8, vote-before-persist, vote-without-log-check, lease-without-check-quorum,
    /// ack-before-own-fsync.
    #[arg(long)]
    bug: Option<String>,
    /// Override every clock's largest rate error (e.g. 0.6 = 60%: far beyond
    /// the drift the core assumes, to see what that does to lease reads).
    #[arg(long)]
    clock_bound: Option<f64>,
}

fn config(seed: u64, bug: Option<&str>, clock_bound: Option<f64>) -> Result<SimConfig> {
    let mut cfg = SimConfig::for_seed(seed);
    if let Some(b) = clock_bound {
        cfg.clock_bound = b;
    }
    if let Some(name) = bug {
        if !cfg!(feature = "planted-bugs") {
            bail!("--bug needs a build with the planted bugs: cargo run -p concord-sim --release --features planted-bugs -- ...");
        }
        let Some(b) = concord_sim::bugs::parse(name) else {
            bail!("unknown bug {name}; one of {:?}", concord_sim::bugs::NAMES);
        };
        concord_sim::bugs::configure(b, &mut cfg);
    }
    Ok(cfg)
}

fn parse_range(s: &str) -> Result<Range<u64>> {
    let (a, b) = s.split_once("..").context("expected A..B")?;
    let (a, b): (u64, u64) = (a.parse()?, b.parse()?);
    if a >= b {
        bail!("empty seed range {s}");
    }
    Ok(a..b)
}

fn replay_line(seed: u64, bug: Option<&str>) -> String {
    let bug = bug.map(|b| format!(" --bug {b}")).unwrap_or_default();
    let features = if bug.is_empty() {
        ""
    } else {
        " --features planted-bugs"
    };
    format!("cargo run -p concord-sim --release{features} -- --seed {seed} --trace{bug}")
}

fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(seed) = args.seed {
        let mut cfg = config(seed, args.bug.as_deref(), args.clock_bound)?;
        cfg.trace = args.trace;
        let report = run(cfg.clone());
        if args.trace {
            for line in &report.trace {
                println!("{line}");
            }
        }
        if let Some(path) = &args.history {
            let h = concord_check::History::new(report.history.clone())?;
            std::fs::write(path, h.to_jsonl())?;
        }
        println!("config: {cfg:?}");
        print_one(&report, args.bug.as_deref());
        if let Linearizability::Violation(v) = &report.linearizability {
            println!("{v}");
        }
        if report.failed() {
            std::process::exit(1);
        }
        return Ok(());
    }
    let range = parse_range(&args.seeds)?;
    let total = range.end - range.start;
    let bar = ProgressBar::new(total);
    bar.set_style(ProgressStyle::with_template(
        "{bar:40} {pos}/{len} seeds, {elapsed} elapsed, eta {eta} {msg}",
    )?);
    let next = Arc::new(AtomicU64::new(range.start));
    let reports: Arc<Mutex<Vec<SimReport>>> = Arc::new(Mutex::new(Vec::new()));
    let mut workers = Vec::new();
    for _ in 0..args.jobs.max(1) {
        let (next, reports, bar, end) = (next.clone(), reports.clone(), bar.clone(), range.end);
        let (bug, clock_bound) = (args.bug.clone(), args.clock_bound);
        config(0, bug.as_deref(), clock_bound)?;
        workers.push(std::thread::spawn(move || loop {
            let seed = next.fetch_add(1, Ordering::SeqCst);
            if seed >= end {
                break;
            }
            let mut r = run(config(seed, bug.as_deref(), clock_bound).expect("checked above"));
            r.history.clear();
            r.trace.clear();
            if r.failed() {
                let line = format!("seed {seed} FAILED: {}", r.failure().unwrap_or_default());
                // A hidden bar (not a terminal) drops println: say it anyway.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
            reports.lock().expect("no poisoning").push(r);
            bar.inc(1);
        }));
    }
    for w in workers {
        w.join().expect("worker panicked");
    }
    bar.finish();
    let mut reports = Arc::try_unwrap(reports)
        .expect("workers done")
        .into_inner()
        .expect("lock");
    reports.sort_by_key(|r| r.seed);
    summarize(&reports, args.bug.as_deref());
    if reports.iter().any(SimReport::failed) {
        std::process::exit(1);
    }
    Ok(())
}

fn print_one(r: &SimReport, bug: Option<&str>) {
    println!(
        "seed {}: {} | liveness {:?} | linearizability {:?} | {} ops checked | {} events | faults {:?}",
        r.seed,
        if r.failed() { "FAILED" } else { "ok" },
        r.liveness.as_ref().map(|t| format!("{} ms", t / 1000)),
        match &r.linearizability {
            Linearizability::Violation(_) => "violation",
            Linearizability::Ok => "ok",
            Linearizability::Unknown => "unknown",
        },
        r.history_len,
        r.stats.events,
        r.stats.faults
    );
    if let Some(f) = r.failure() {
        println!("  failure: {f}");
        println!("  replay: {}", replay_line(r.seed, bug));
    }
}

fn summarize(reports: &[SimReport], bug: Option<&str>) {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut ops, mut indeterminate, mut events, mut msgs, mut lost, mut dup, mut unknown) =
        (0, 0, 0, 0, 0, 0, 0);
    for r in reports {
        for (k, v) in &r.stats.faults {
            *faults.entry(k).or_insert(0) += v;
        }
        ops += r.history_len as u64;
        indeterminate += r.stats.ops_indeterminate;
        events += r.stats.events;
        msgs += r.stats.messages.0;
        lost += r.stats.messages.1;
        dup += r.stats.messages.2;
        unknown += u64::from(r.linearizability == Linearizability::Unknown);
    }
    let failed: Vec<&SimReport> = reports.iter().filter(|r| r.failed()).collect();
    println!("seeds run: {}", reports.len());
    println!("events: {events}; raft+client messages: {msgs} sent, {lost} lost, {dup} duplicated");
    println!("faults injected: {faults:?}");
    println!("operations checked for linearizability: {ops} ({indeterminate} indeterminate); checker unknown on {unknown} seeds");
    println!("failures: {}", failed.len());
    for r in failed {
        println!("  seed {}: {}", r.seed, r.failure().unwrap_or_default());
        println!("    replay: {}", replay_line(r.seed, bug));
    }
}
