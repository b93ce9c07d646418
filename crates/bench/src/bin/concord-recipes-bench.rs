//! `concord-recipes-bench`: the client's recipes under load against any
//! etcd v3 endpoint set (Concord or real etcd).
//!
//! - `lock --contenders N --seconds S`: N contenders, each on its own
//!   session, acquire and release one lock in a loop; cycles per second
//!   and the acquire latency (queueing included) percentiles.
//! - `failover --pattern P --rounds R`: a leader is elected, then its
//!   process is killed (its renewals stop without a revoke, so its lease
//!   must expire); the time from the kill until the standby leads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
use concord_client::{
    BullyConfig, BullyElector, Client, ClientConfig, Elector, EtcdElector, LeaseElector, Mutex,
    SequentialElector, Session,
};
use hdrhistogram::Histogram;
use serde_json::json;

/// Benchmarks of the lock and election recipes.
#[derive(Debug, Parser)]
#[command(name = "concord-recipes-bench")]
struct Args {
    /// Endpoints, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    endpoints: Vec<String>,
    /// A label for the report line (e.g. `concord`, `etcd`).
    #[arg(long, default_value = "")]
    label: String,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Lock acquire/release cycles.
    Lock {
        /// Contenders (each with its own lease).
        #[arg(long, default_value_t = 1)]
        contenders: usize,
        /// How long to run.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Client connections the contenders share.
        #[arg(long, default_value_t = 16)]
        clients: usize,
    },
    /// Failover time after the leader's process dies.
    Failover {
        /// The election recipe.
        #[arg(long)]
        pattern: Pattern,
        /// Kills measured.
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// Lease TTL in seconds (store-backed patterns).
        #[arg(long, default_value_t = 2)]
        ttl: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Pattern {
    Etcd,
    Lease,
    Sequential,
    Bully,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        match args.bench {
            Bench::Lock {
                contenders,
                seconds,
                clients,
            } => lock(&args, contenders, Duration::from_secs(seconds), clients).await,
            Bench::Failover {
                pattern,
                rounds,
                ttl,
            } => failover(&args, pattern, rounds, ttl).await,
        }
    })
}

async fn connect(args: &Args) -> anyhow::Result<Client> {
    let config = ClientConfig::new(args.endpoints.clone()).request_timeout(Duration::from_secs(10));
    Client::connect(config).await.context("connecting")
}

async fn lock(
    args: &Args,
    contenders: usize,
    run_for: Duration,
    clients: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(contenders > 0 && clients > 0, "need contenders and clients");
    let mut pool = Vec::new();
    for _ in 0..clients.min(contenders) {
        pool.push(connect(args).await?);
    }
    let name = format!("bench-lock-{}", std::process::id());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..contenders {
        let client = pool[i % pool.len()].clone();
        let (name, stop) = (name.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram");
            let mut session = Session::new(&client, 30).await?;
            let mutex = Mutex::new(&name);
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                let guard = mutex.lock(&mut session).await?;
                hist.record(t0.elapsed().as_micros() as u64)?;
                guard.unlock().await?;
            }
            session.close().await?;
            anyhow::Ok(hist)
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Histogram::<u64>::new(3)?;
    for t in tasks {
        all.add(t.await??)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cycles = all.len();
    let report = json!({
        "bench": "lock",
        "label": args.label,
        "contenders": contenders,
        "cycles": cycles,
        "cycles_per_s": cycles as f64 / elapsed,
        "acquire_p50_ms": all.value_at_quantile(0.5) as f64 / 1e3,
        "acquire_p99_ms": all.value_at_quantile(0.99) as f64 / 1e3,
    });
    println!("{report}");
    Ok(())
}

async fn failover(args: &Args, pattern: Pattern, rounds: usize, ttl: u64) -> anyhow::Result<()> {
    let mut times = Vec::new();
    let mut failures = Vec::new();
    for round in 0..rounds {
        let name = format!("bench-elect-{}-{round}", std::process::id());
        let took = match pattern {
            Pattern::Bully => bully_round().await,
            _ => store_round(args, pattern, &name, ttl).await,
        };
        // A failed round is reported, not hidden: it is part of the result.
        match took {
            Ok(took) => {
                eprintln!("round {round}: {took:?}");
                times.push(took.as_secs_f64() * 1e3);
            }
            Err(e) => {
                eprintln!("round {round}: failed: {e:#}");
                failures.push(format!("{e:#}"));
            }
        }
    }
    anyhow::ensure!(!times.is_empty(), "every round failed: {failures:?}");
    times.sort_by(f64::total_cmp);
    let report = json!({
        "bench": "failover",
        "label": args.label,
        "pattern": format!("{pattern:?}").to_lowercase(),
        "ttl_s": ttl,
        "rounds": rounds,
        "median_ms": times[times.len() / 2],
        "min_ms": times[0],
        "max_ms": times[times.len() - 1],
        "failed_rounds": failures,
    });
    println!("{report}");
    Ok(())
}

/// Elects one of two candidates, kills it, and times the standby's win.
async fn store_round(
    args: &Args,
    pattern: Pattern,
    name: &str,
    ttl: u64,
) -> anyhow::Result<Duration> {
    async fn elector(
        args: &Args,
        pattern: Pattern,
        name: &str,
        value: &str,
        ttl: u64,
    ) -> anyhow::Result<Candidate> {
        let client = connect(args).await?;
        Ok(match pattern {
            Pattern::Lease => {
                let margin = Duration::from_millis(500);
                let ttl = Duration::from_secs(ttl);
                Candidate::Lease(LeaseElector::new(
                    &client,
                    name,
                    value.to_string(),
                    ttl,
                    margin,
                ))
            }
            Pattern::Etcd => {
                let s = Session::new(&client, ttl as i64).await?;
                Candidate::Etcd(EtcdElector::new(s, name, value.to_string()))
            }
            _ => {
                let s = Session::new(&client, ttl as i64).await?;
                Candidate::Sequential(SequentialElector::new(s, name, value.to_string()))
            }
        })
    }
    let mut leader = elector(args, pattern, name, "leader", ttl).await?;
    leader.campaign().await?;
    let mut standby = elector(args, pattern, name, "standby", ttl).await?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let won = standby.campaign().await.map(|_| Instant::now());
        let _ = tx.send(won);
        drop(standby);
    });
    // Let the standby queue up before the kill.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let killed = Instant::now();
    drop(leader);
    let won = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .context("no new leader within 60 s")??
        .context("standby campaign")?;
    Ok(won - killed)
}

/// The candidate kinds behind one campaign call.
enum Candidate {
    Etcd(EtcdElector),
    Lease(LeaseElector),
    Sequential(SequentialElector),
}

impl Candidate {
    async fn campaign(&mut self) -> anyhow::Result<()> {
        match self {
            Candidate::Etcd(e) => e.campaign().await?,
            Candidate::Lease(e) => e.campaign().await?,
            Candidate::Sequential(e) => e.campaign().await?,
        };
        Ok(())
    }
}

/// Three bully nodes on loopback; the leader (3) is stopped; the time
/// until node 2 leads.
async fn bully_round() -> anyhow::Result<Duration> {
    let mut listeners = BTreeMap::new();
    for id in 1..=3u64 {
        listeners.insert(id, tokio::net::TcpListener::bind("127.0.0.1:0").await?);
    }
    let addrs: BTreeMap<u64, _> = listeners
        .iter()
        .map(|(id, l)| Ok((*id, l.local_addr()?)))
        .collect::<std::io::Result<_>>()?;
    let mut nodes: Vec<BullyElector> = listeners
        .into_iter()
        .map(|(id, l)| {
            let peers = addrs
                .iter()
                .filter(|(p, _)| **p != id)
                .map(|(p, a)| (*p, *a));
            let config = BullyConfig {
                id,
                peers: peers.collect(),
                heartbeat: Duration::from_millis(100),
                timeout: Duration::from_millis(500),
            };
            BullyElector::start(l, config)
        })
        .collect();
    nodes[2].campaign().await?;
    let mut two = nodes[1].changes();
    let killed = Instant::now();
    nodes.pop();
    two.wait_for(|l| l.as_ref().is_some_and(|l| l.term == 2))
        .await
        .context("node 2 never led")?;
    Ok(killed.elapsed())
}
