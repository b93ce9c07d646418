//! `concord-lab`: run chaos scenarios against Concord or etcd.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use concord_chaos::clock::ClockConfig;
use concord_chaos::workload::{Mix, WorkloadConfig};
use concord_chaos::{exercise, scenario, FaultKind, RunConfig, Target, SCENARIOS};

#[derive(Parser)]
#[command(about = "The Concord chaos lab: faults injected into real processes, histories checked")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    Concord,
    Etcd,
}

#[derive(Subcommand)]
enum Cmd {
    /// List the scenarios.
    List,
    /// Remove network namespaces, bridges and member processes that labs
    /// which died without cleaning up (SIGKILL) left behind.
    Cleanup,
    /// Draw a finished run's timeline.svg again from its history.jsonl and
    /// report.json.
    Timeline {
        /// The run's output directory.
        dir: PathBuf,
    },
    /// Run one scenario on a fresh cluster.
    Run {
        /// The scenario (see `list`).
        scenario: String,
        /// The system under test.
        #[arg(long, value_enum, default_value = "concord")]
        target: TargetArg,
        /// Members.
        #[arg(long, default_value_t = 3)]
        members: usize,
        /// Length of the run in seconds.
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// Seed of the schedule and the clients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (data, logs, history.jsonl, report.json, report.md).
        #[arg(long, default_value = "lab-out")]
        out: PathBuf,
        /// Seconds between one fault's start and the next's.
        #[arg(long, default_value_t = 6.0)]
        every: f64,
        /// Seconds a fault lasts.
        #[arg(long, default_value_t = 2.0)]
        outage: f64,
        /// Clients.
        #[arg(long, default_value_t = 8)]
        clients: usize,
        /// Keys (fewer keys: more contention, and a history that takes
        /// the checker longer).
        #[arg(long, default_value_t = 256)]
        keys: usize,
        /// Weights of the key-value ops, e.g. `get=4,put=3,cas=1,txn=2`
        /// (a txn writes two keys of one group of four and reads a third).
        #[arg(long, default_value = "get=4,put=3,cas=1,txn=2")]
        mix: Mix,
        /// Clients watching every workload key.
        #[arg(long, default_value_t = 2)]
        watchers: usize,
        /// Clients taking one shared lock (v3lock, on a kept-alive lease).
        #[arg(long, default_value_t = 3)]
        lock_holders: usize,
        /// Clients granting leases, putting keys with them, and revoking
        /// them or letting them expire.
        #[arg(long, default_value_t = 2)]
        lease_clients: usize,
        /// The server binary (default: `concord` next to this binary, or
        /// `etcd` on the PATH).
        #[arg(long)]
        binary: Option<PathBuf>,
        /// Trials of each fault (`consensus-perf`).
        #[arg(long, default_value_t = 10)]
        trials: usize,
        /// Concord serves linearizable reads on the leader's lease
        /// (`--experimental-lease-reads`); off by default, as in the server.
        #[arg(long)]
        lease_reads: bool,
        /// The rate a clock fault sets (default: clock-fast 1.5,
        /// clock-slow and clock-skew 0.7).
        #[arg(long)]
        clock_rate: Option<f64>,
        /// Seconds `clock-jump` steps the wall clock.
        #[arg(long, default_value_t = 5.0)]
        jump_secs: f64,
    },
    /// The clock-skew exercise: the `clock-skew` scenario with the
    /// leader's clock within the drift bound and beyond it, lease reads
    /// off and on (6 runs); a table in OUT/clock-skew.md.
    ClockSkew {
        /// Length of each run in seconds.
        #[arg(long, default_value_t = 26)]
        secs: u64,
        /// Seed of the schedule and the clients.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output directory (one subdirectory per run).
        #[arg(long, default_value = "lab-clock-skew")]
        out: PathBuf,
        /// The Concord binary (default: `concord` next to this binary).
        #[arg(long)]
        binary: Option<PathBuf>,
    },
}

fn default_binary(target: Target) -> anyhow::Result<PathBuf> {
    Ok(match target {
        Target::Concord => std::env::current_exe()?
            .parent()
            .context("this binary has no directory")?
            .join("concord"),
        Target::Etcd => PathBuf::from("etcd"),
    })
}

/// Waits for SIGINT or SIGTERM; names the one that came.
async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    }
}

/// Runs `cap` or `consensus-perf` (their own reports, not a fault run's).
fn exhibit(cfg: RunConfig, trials: usize) -> anyhow::Result<()> {
    let out = cfg.out.clone();
    let rt = tokio::runtime::Runtime::new()?;
    let started = std::time::Instant::now();
    let progress = |m: &str| eprintln!("[{:>6.1}s] {m}", started.elapsed().as_secs_f64());
    let (md, passed) = rt.block_on(async {
        let run = async {
            if cfg.scenario.kind == FaultKind::Cap {
                let r = concord_chaos::cap::run(cfg, &progress).await?;
                Ok::<_, anyhow::Error>((concord_chaos::cap::markdown(&r), r.passed()))
            } else {
                let r = concord_chaos::perf::run(cfg, trials, &progress).await?;
                Ok((concord_chaos::perf::markdown(&r), r.passed()))
            }
        };
        tokio::select! {
            r = run => r,
            s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
        }
    })?;
    print!("{md}");
    eprintln!("report in {}", out.display());
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// Runs the clock-skew exercise and prints its table.
fn clock_skew(secs: u64, seed: u64, out: PathBuf, binary: Option<PathBuf>) -> anyhow::Result<()> {
    let binary = binary.map_or_else(|| default_binary(Target::Concord), Ok)?;
    let scenario = scenario::find("clock-skew").context("no clock-skew scenario")?;
    let rt = tokio::runtime::Runtime::new()?;
    let started = std::time::Instant::now();
    let mut reports = Vec::new();
    for (rate, lease_reads) in exercise::matrix() {
        let dir = out.join(format!(
            "x{rate}-lease-{}",
            if lease_reads { "on" } else { "off" }
        ));
        let cfg = RunConfig {
            scenario,
            target: Target::Concord,
            binary: binary.clone(),
            members: 3,
            secs: Duration::from_secs(secs),
            seed,
            out: dir.clone(),
            // A cut longer than a slowed lease, so that the majority
            // elects and writes while the old leader may still read.
            every: Duration::from_secs(8),
            outage: Duration::from_secs(4),
            // Few keys: a read of the cut-off leader soon meets a key the
            // majority wrote meanwhile.
            workload: WorkloadConfig::new(8, 16, seed),
            plant: Vec::new(),
            clock: ClockConfig {
                lease_reads,
                rate: Some(rate),
                ..ClockConfig::default()
            },
        };
        let progress = |m: &str| {
            let t = started.elapsed().as_secs_f64();
            eprintln!("[{t:>6.1}s] x{rate} lease reads {lease_reads}: {m}");
        };
        let report = rt.block_on(async {
            tokio::select! {
                r = concord_chaos::run(cfg, &progress) => Ok(r?),
                s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
            }
        })?;
        reports.push(report);
    }
    let table = exercise::table(&reports);
    std::fs::write(out.join("clock-skew.md"), &table)?;
    print!("{table}");
    Ok(())
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().cmd {
        Cmd::ClockSkew {
            secs,
            seed,
            out,
            binary,
        } => clock_skew(secs, seed, out, binary),
        Cmd::List => {
            for s in SCENARIOS.iter().chain(&concord_chaos::crash::SCENARIOS) {
                println!("{:<20} {}", s.name, s.about);
            }
            Ok(())
        }
        Cmd::Cleanup => {
            for pid in concord_chaos::orphans::sweep() {
                println!("killed member process {pid} of a lab that is gone");
            }
            let removed = concord_chaos::net::sweep()?;
            for name in &removed {
                println!("removed {name}");
            }
            eprintln!("{} leftovers removed", removed.len());
            Ok(())
        }
        Cmd::Timeline { dir } => {
            let history = std::fs::read_to_string(dir.join("history.jsonl"))?;
            let report: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("report.json"))?)?;
            let (ops, windows, leaders) = concord_chaos::timeline::from_files(&history, &report);
            let title = format!(
                "{} on {}, {} members, seed {}",
                report["scenario"].as_str().unwrap_or("?"),
                report["target"].as_str().unwrap_or("?"),
                report["members"],
                report["seed"]
            );
            let secs = report["secs"].as_f64().unwrap_or(0.0);
            let picture = concord_chaos::timeline::Picture {
                title: &title,
                ops: &ops,
                faults: &windows,
                leaders: &leaders,
                secs,
            };
            concord_chaos::timeline::write(&dir, &picture)?;
            eprintln!("wrote timeline.svg and timeline.png in {}", dir.display());
            Ok(())
        }
        Cmd::Run {
            scenario: name,
            target,
            members,
            secs,
            seed,
            out,
            every,
            outage,
            clients,
            keys,
            mix,
            watchers,
            lock_holders,
            lease_clients,
            binary,
            trials,
            lease_reads,
            clock_rate,
            jump_secs,
        } => {
            let Some(scenario) = scenario::find(&name) else {
                bail!("no scenario {name:?} (see `concord-lab list`)");
            };
            let target = match target {
                TargetArg::Concord => Target::Concord,
                TargetArg::Etcd => Target::Etcd,
            };
            let cfg = RunConfig {
                scenario,
                target,
                binary: binary.map_or_else(|| default_binary(target), Ok)?,
                members,
                secs: Duration::from_secs(secs),
                seed,
                out,
                every: Duration::from_secs_f64(every),
                outage: Duration::from_secs_f64(outage),
                workload: WorkloadConfig {
                    mix,
                    watchers,
                    lock_holders,
                    lease_clients,
                    ..WorkloadConfig::new(clients, keys, seed)
                },
                plant: Vec::new(),
                clock: ClockConfig {
                    lease_reads,
                    rate: clock_rate,
                    jump_secs,
                },
            };
            if matches!(scenario.kind, FaultKind::Cap | FaultKind::ConsensusPerf) {
                return exhibit(cfg, trials);
            }
            let out = cfg.out.clone();
            let rt = tokio::runtime::Runtime::new()?;
            let bar = Bar::new(secs);
            let progress = |m: &str| bar.say(m);
            // On SIGINT or SIGTERM the run is dropped, and with it the
            // cluster: its members are killed, its namespaces deleted.
            let report = rt.block_on(async {
                let ticking = bar.tick_every_quarter_second();
                let r = tokio::select! {
                    r = concord_chaos::run(cfg, &progress) => Ok(r?),
                    s = interrupted() => Err(anyhow::anyhow!("interrupted by {s}")),
                };
                ticking.abort();
                r
            })?;
            bar.done();
            print!("{}", concord_chaos::report::markdown(&report));
            eprintln!("report in {}", out.display());
            if !report.passed() {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// The run's progress: a bar of the run's seconds on a terminal, with the
/// lab's messages above it; plain timestamped lines otherwise (logs, CI).
struct Bar {
    bar: indicatif::ProgressBar,
    started: std::time::Instant,
}

impl Bar {
    fn new(secs: u64) -> Bar {
        let bar = indicatif::ProgressBar::new(secs);
        bar.set_style(
            indicatif::ProgressStyle::with_template("[{bar:40}] {pos}/{len} s  {msg}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        Bar {
            bar,
            started: std::time::Instant::now(),
        }
    }

    fn say(&self, m: &str) {
        let line = format!("[{:>6.1}s] {m}", self.started.elapsed().as_secs_f64());
        if self.bar.is_hidden() {
            eprintln!("{line}");
        } else {
            self.bar.println(line);
            self.bar.set_message(m.to_string());
        }
    }

    /// Moves the bar with the clock (the run itself reports only phases).
    fn tick_every_quarter_second(&self) -> tokio::task::JoinHandle<()> {
        let (bar, started) = (self.bar.clone(), self.started);
        tokio::spawn(async move {
            loop {
                bar.set_position(started.elapsed().as_secs().min(bar.length().unwrap_or(0)));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    }

    fn done(&self) {
        self.bar.finish_and_clear();
    }
}
