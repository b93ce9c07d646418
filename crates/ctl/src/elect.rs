//! `concordctl elect NAME --pattern etcd|lease|sequential|bully`:
//! campaigns, prints the leadership won, leads until interrupted (then
//! resigns) or until leadership is lost (exit 5). `--observe` prints the
//! leader as it changes instead.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use concord_client::{
    BullyConfig, BullyElector, Elector, EtcdElector, Leader, LeaseElector, SequentialElector,
    Session,
};
use serde_json::json;

use crate::{exit, Format, Global};

/// Which election recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// etcd's Election API.
    Etcd,
    /// One key on a lease; the leader steps down before it can expire.
    Lease,
    /// Sequential keys, each candidate watching its predecessor.
    Sequential,
    /// The bully algorithm over its own TCP transport (no store).
    Bully,
}

/// Campaign for leadership (or observe it).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The election's name.
    name: String,
    /// The recipe.
    #[arg(long, default_value = "etcd")]
    pattern: Pattern,
    /// This candidate's value (default: `pid-<pid>`).
    #[arg(long)]
    value: Option<String>,
    /// Print the leader as it changes; do not campaign.
    #[arg(long)]
    observe: bool,
    /// Lease TTL in seconds (etcd, lease, sequential).
    #[arg(long, default_value_t = 10)]
    ttl: i64,
    /// Lease pattern: step down this long before the lease could expire.
    #[arg(long, default_value_t = 1_000)]
    drift_margin_ms: u64,
    /// Bully: this node's id.
    #[arg(long, required_if_eq("pattern", "bully"))]
    id: Option<u64>,
    /// Bully: the address to listen on.
    #[arg(long, required_if_eq("pattern", "bully"))]
    listen: Option<SocketAddr>,
    /// Bully: the other nodes, `id=host:port` comma-separated.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// Bully: heartbeat period in milliseconds.
    #[arg(long, default_value_t = 100)]
    heartbeat_ms: u64,
    /// Bully: silence before a leader is given up on, in milliseconds.
    #[arg(long, default_value_t = 500)]
    timeout_ms: u64,
}

pub async fn run(global: &Global, args: Args) -> anyhow::Result<u8> {
    let value = args
        .value
        .clone()
        .unwrap_or_else(|| format!("pid-{}", std::process::id()));
    match args.pattern {
        Pattern::Bully => {
            let listen = args.listen.context("--listen is required")?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("listening on {listen}"))?;
            let config = BullyConfig {
                id: args.id.context("--id is required")?,
                peers: parse_peers(&args.peers)?,
                heartbeat: Duration::from_millis(args.heartbeat_ms),
                timeout: Duration::from_millis(args.timeout_ms),
            };
            lead(global, &args, BullyElector::start(listener, config)).await
        }
        Pattern::Lease => {
            let client = global.client().await?;
            let ttl = Duration::from_secs(args.ttl.max(1) as u64);
            let margin = Duration::from_millis(args.drift_margin_ms);
            anyhow::ensure!(margin < ttl, "--drift-margin-ms must be below --ttl");
            let e = LeaseElector::new(&client, &args.name, value, ttl, margin);
            lead(global, &args, e).await
        }
        Pattern::Etcd | Pattern::Sequential => {
            let client = global.client().await?;
            let session = Session::new(&client, args.ttl)
                .await
                .context("granting the session's lease")?;
            if args.pattern == Pattern::Etcd {
                lead(global, &args, EtcdElector::new(session, &args.name, value)).await
            } else {
                let e = SequentialElector::new(session, &args.name, value);
                lead(global, &args, e).await
            }
        }
    }
}

fn parse_peers(peers: &[String]) -> anyhow::Result<BTreeMap<u64, SocketAddr>> {
    peers
        .iter()
        .map(|p| {
            let (id, addr) = p
                .split_once('=')
                .with_context(|| format!("peer {p:?} is not id=host:port"))?;
            let id = id.parse().with_context(|| format!("peer id {id:?}"))?;
            let addr = addr
                .parse()
                .with_context(|| format!("peer address {addr:?}"))?;
            Ok((id, addr))
        })
        .collect()
}

async fn lead<E: Elector>(global: &Global, args: &Args, mut e: E) -> anyhow::Result<u8> {
    if args.observe {
        let mut changes = e.changes();
        loop {
            let now = changes.borrow_and_update().clone();
            print(global.format, "leader", &args.name, now.as_ref());
            tokio::select! {
                r = changes.changed() => if r.is_err() { return Ok(exit::ERROR) },
                _ = crate::interrupted() => return Ok(0),
            }
        }
    }
    let won = tokio::select! {
        w = e.campaign() => w.context("campaigning")?,
        _ = crate::interrupted() => return Ok(0),
    };
    print(global.format, "elected", &args.name, Some(&won));
    let mut check = tokio::time::interval(Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = check.tick() => if !e.is_leader() {
                print(global.format, "lost", &args.name, None);
                return Ok(exit::LOST);
            },
            _ = crate::interrupted() => {
                e.resign().await.context("resigning")?;
                print(global.format, "resigned", &args.name, None);
                return Ok(0);
            }
        }
    }
}

fn print(format: Format, event: &str, name: &str, leader: Option<&Leader>) {
    let value = leader.map(|l| String::from_utf8_lossy(&l.value).into_owned());
    let term = leader.map(|l| l.term);
    match format {
        Format::Table => match (value, term) {
            (Some(v), Some(t)) => println!("{event} {name} {v} (term {t})"),
            _ => println!("{event} {name}"),
        },
        Format::Json => println!(
            "{}",
            json!({ "event": event, "name": name, "value": value, "term": term })
        ),
    }
}
