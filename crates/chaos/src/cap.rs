//! `cap`: cut the leader of a 3-member cluster off from the other two
//! (network namespaces; the lab's clients still reach every member), and
//! on each side try writes, linearizable reads and serializable reads of
//! one key for the length of the partition. The table says what each
//! side could do and what it answered; a serializable read is stale when
//! it returns an older value than the newest write acknowledged before it
//! was sent. After healing, every acknowledged write must be found at its
//! revision.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::{PutRequest, RangeRequest};
use serde::Serialize;

use crate::cluster::{channel, Cluster, NETWORKED_PEER_PORT};
use crate::lab::RunConfig;
use crate::netfault::{apply, NetPlan};
use crate::relay::Relays;
use crate::{LabError, Target};

/// The key both sides write and read.
const KEY: &[u8] = b"cap/x";
/// A request without an answer by then is a timeout.
const TIMEOUT: Duration = Duration::from_secs(1);
/// The three requests tried.
const REQUESTS: [&str; 3] = ["write", "linearizable read", "serializable read"];

/// One request and its answer.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The member asked (index).
    pub member: usize,
    /// `write`, `linearizable read` or `serializable read`.
    pub request: &'static str,
    /// Sent, ms since the partition.
    pub sent_ms: f64,
    /// Answered, ms since the partition (`None`: error or timeout).
    pub answered_ms: Option<f64>,
    /// The value written or read.
    pub value: Option<String>,
    /// A write's revision.
    pub revision: Option<i64>,
    /// The error message, or `timeout`.
    pub error: Option<String>,
}

/// One row of the table: a side and a request.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// `minority` or `majority`.
    pub side: &'static str,
    /// The side's members.
    pub members: String,
    /// The request.
    pub request: &'static str,
    /// Answered.
    pub ok: usize,
    /// Failed, by message.
    pub errors: BTreeMap<String, usize>,
    /// Without an answer within `TIMEOUT`.
    pub timeouts: usize,
    /// Reads that returned an older value than the newest write
    /// acknowledged (on any side) before they were sent.
    pub stale: usize,
    /// When the side first answered this request (ms since the partition).
    pub first_ok_ms: Option<f64>,
}

/// The outcome (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct CapReport {
    /// The system under test.
    pub target: Target,
    /// How long the partition lasted (s).
    pub secs: f64,
    /// The partition, in words.
    pub partition: String,
    /// The table.
    pub cells: Vec<Cell>,
    /// Acknowledged writes not found at their revision after healing.
    pub lost_writes: usize,
}

impl CapReport {
    /// No acknowledged write lost, and no linearizable read stale.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0
            && self
                .cells
                .iter()
                .all(|c| c.request != "linearizable read" || c.stale == 0)
    }
}

/// Partitions the leader off for `cfg.secs`, asks both sides, heals,
/// checks the acknowledged writes; writes `report.json` and `report.md`.
pub async fn run(cfg: RunConfig, progress: &dyn Fn(&str)) -> Result<CapReport, LabError> {
    std::fs::create_dir_all(&cfg.out)?;
    let mut cluster = Cluster::start_networked(cfg.target, &cfg.binary, 3, &cfg.out)?;
    let leader = cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let urls = cluster.endpoints();
    put(&urls[leader], "initial")
        .await
        .map_err(LabError::Connect)?;
    let majority: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let mut plan = NetPlan {
        label: format!(
            "m{} / m{} m{}",
            leader + 1,
            majority[0] + 1,
            majority[1] + 1
        ),
        ..NetPlan::default()
    };
    for &o in &majority {
        plan.cuts.extend([(leader, o), (o, leader)]);
    }
    let net = cluster
        .network()
        .ok_or_else(|| LabError::Net("no network namespaces".into()))?;
    let mut relays = Relays::new(cfg.seed);
    apply(&plan, net, &mut relays, NETWORKED_PEER_PORT).await?;
    progress(&format!("partitioned {} (the leader alone)", plan.label));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|i| tokio::spawn(ask(i, urls[i].clone(), t0, cfg.secs)))
        .collect();
    let mut samples = Vec::new();
    for t in tasks {
        samples.extend(t.await.unwrap_or_default());
    }
    cluster.heal()?;
    progress("healed; looking up every acknowledged write");
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let lost = lost(&urls, &samples).await;
    drop(cluster);
    let samples_json = serde_json::to_string_pretty(&samples).expect("samples serialize");
    std::fs::write(cfg.out.join("samples.json"), samples_json)?;
    let report = CapReport {
        target: cfg.target,
        secs: cfg.secs.as_secs_f64(),
        partition: plan.label,
        cells: table(&samples, leader),
        lost_writes: lost,
    };
    let json = serde_json::to_string_pretty(&report).expect("a report serializes");
    std::fs::write(cfg.out.join("report.json"), json)?;
    std::fs::write(cfg.out.join("report.md"), markdown(&report))?;
    Ok(report)
}

/// Member `i`'s requests, in turn, until `secs` have passed since `t0`.
async fn ask(i: usize, url: String, t0: Instant, secs: Duration) -> Vec<Sample> {
    let mut out = Vec::new();
    let mut seq = 0;
    while t0.elapsed() < secs {
        for request in REQUESTS {
            seq += 1;
            let sent = t0.elapsed();
            let value = format!("m{}-{seq}", i + 1);
            let answer = tokio::time::timeout(TIMEOUT, async {
                match request {
                    "write" => put(&url, &value)
                        .await
                        .map(|r| (Some(value.clone()), Some(r))),
                    r => get(&url, r == "serializable read").await.map(|v| (v, None)),
                }
            })
            .await;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let mut s = Sample {
                member: i,
                request,
                sent_ms: ms(sent),
                answered_ms: None,
                value: None,
                revision: None,
                error: None,
            };
            match answer {
                Ok(Ok((v, rev))) => {
                    (s.answered_ms, s.value, s.revision) = (Some(ms(t0.elapsed())), v, rev);
                }
                Ok(Err(e)) => s.error = Some(e),
                Err(_) => s.error = Some("timeout".into()),
            }
            out.push(s);
        }
    }
    out
}

async fn put(url: &str, value: &str) -> Result<i64, String> {
    let ch = channel(url, Duration::from_millis(500))
        .await
        .map_err(|e| e.to_string())?;
    let req = PutRequest {
        key: KEY.to_vec().into(),
        value: value.as_bytes().to_vec().into(),
        ..Default::default()
    };
    let r = KvClient::new(ch)
        .put(req)
        .await
        .map_err(|e| e.message().to_string())?;
    Ok(r.into_inner().header.map_or(0, |h| h.revision))
}

/// Reads the key (at `revision` if not 0); its value, if present.
async fn read(url: &str, serializable: bool, revision: i64) -> Result<Option<String>, String> {
    let ch = channel(url, Duration::from_millis(500))
        .await
        .map_err(|e| e.to_string())?;
    let req = RangeRequest {
        key: KEY.to_vec().into(),
        serializable,
        revision,
        ..Default::default()
    };
    let r = KvClient::new(ch)
        .range(req)
        .await
        .map_err(|e| e.message().to_string())?;
    let kv = r.into_inner().kvs.into_iter().next();
    Ok(kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned()))
}

async fn get(url: &str, serializable: bool) -> Result<Option<String>, String> {
    read(url, serializable, 0).await
}

/// Acknowledged writes whose revision does not hold their value on the
/// healed cluster.
async fn lost(urls: &[String], samples: &[Sample]) -> usize {
    let mut lost = 0;
    for s in samples.iter().filter(|s| s.request == "write") {
        let (Some(v), Some(rev)) = (&s.value, s.revision) else {
            continue;
        };
        let mut found = None;
        for url in urls.iter().cycle().take(6) {
            if let Ok(got) = read(url, false, rev).await {
                found = Some(got);
                break;
            }
        }
        if found.flatten().as_deref() != Some(v) {
            lost += 1;
        }
    }
    lost
}

/// The table: one row per side and request.
fn table(samples: &[Sample], leader: usize) -> Vec<Cell> {
    // Acknowledged writes: (answered at, revision), and each value's
    // revision ("initial" was written before the partition).
    let acked: Vec<(f64, i64)> = samples
        .iter()
        .filter_map(|s| Some((s.answered_ms?, s.revision?)))
        .collect();
    let mut rev_of: BTreeMap<&str, i64> = samples
        .iter()
        .filter_map(|s| Some((s.value.as_deref()?, s.revision?)))
        .collect();
    rev_of.insert("initial", 0);
    let mut cells = Vec::new();
    for (side, minority) in [("minority", true), ("majority", false)] {
        let on_side = |m: usize| (m == leader) == minority;
        let members: Vec<String> = (0..3)
            .filter(|&m| on_side(m))
            .map(|m| format!("m{}", m + 1))
            .collect();
        for request in REQUESTS {
            let mut c = Cell {
                side,
                members: members.join(" "),
                request,
                ok: 0,
                errors: BTreeMap::new(),
                timeouts: 0,
                stale: 0,
                first_ok_ms: None,
            };
            for s in samples
                .iter()
                .filter(|s| s.request == request && on_side(s.member))
            {
                match (&s.error, s.answered_ms) {
                    (Some(e), _) if e == "timeout" => c.timeouts += 1,
                    (Some(e), _) => *c.errors.entry(e.clone()).or_default() += 1,
                    (None, at) => {
                        c.ok += 1;
                        c.first_ok_ms = c.first_ok_ms.or(at);
                    }
                }
                // Stale: the value of a write older than one acknowledged
                // before this read was sent (a value of a write answered
                // later, or never, was concurrent and is not judged).
                let newest = acked.iter().filter(|w| w.0 < s.sent_ms).map(|w| w.1).max();
                let got = s.value.as_deref().and_then(|v| rev_of.get(v));
                if request != "write" && s.error.is_none() {
                    if let (Some(n), Some(&g)) = (newest, got) {
                        c.stale += usize::from(g < n);
                    }
                }
            }
            cells.push(c);
        }
    }
    cells
}

/// The report in words.
pub fn markdown(r: &CapReport) -> String {
    let mut s = String::new();
    let verdict = if r.passed() { "passed" } else { "FAILED" };
    let _ = writeln!(
        s,
        "# cap on {:?}: partition {} for {:.0} s (the leader alone)\n\n**{verdict}**: \
         acknowledged writes lost: {}.\n",
        r.target, r.partition, r.secs, r.lost_writes
    );
    let _ = writeln!(
        s,
        "| side | members | request | ok | error | timeout | first ok | stale reads |\n\
         |---|---|---|---:|---|---:|---:|---:|"
    );
    for c in &r.cells {
        let errors: Vec<String> = c
            .errors
            .iter()
            .map(|(m, n)| format!("{n}× \"{m}\""))
            .collect();
        let errors = if errors.is_empty() {
            "0".into()
        } else {
            errors.join("; ")
        };
        let first = c.first_ok_ms.map_or("-".into(), |v| format!("{v:.0} ms"));
        let stale = if c.request == "write" {
            "-".into()
        } else {
            format!("{} of {}", c.stale, c.ok)
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {errors} | {} | {first} | {stale} |",
            c.side, c.members, c.request, c.ok, c.timeouts
        );
    }
    s
}
