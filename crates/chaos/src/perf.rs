//! `consensus-perf`: many trials of a leader kill and a leader pause, one
//! fault at a time under the key-value workload, timing each election
//! (from the fault to a survivor reporting a new leader in
//! Maintenance.Status, and to the first acknowledged write) and counting
//! throughput before, during and after each fault.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Cluster;
use crate::lab::{by_key, read_back, RunConfig};
use crate::scenario::FaultKind;
use crate::verify::{history_jsonl, linearizable, lost_writes, recovery};
use crate::workload::{self, Op, Recorder};
use crate::{LabError, Target};

/// How long throughput is counted before a fault and after its healing.
const WINDOW: Duration = Duration::from_secs(2);
/// How long past the outage a fault lasts while no new leader is known.
const LATE: Duration = Duration::from_secs(8);

/// One fault and what followed.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    /// Kill or pause of the leader.
    pub kind: FaultKind,
    /// The member hit.
    pub member: String,
    /// From the fault to a survivor reporting a new leader (`None`: none
    /// within the outage and 8 s more).
    pub election_ms: Option<f64>,
    /// From the fault to the first acknowledged write invoked after it.
    pub first_write_ms: Option<f64>,
    /// Answered ops per second in the `WINDOW` before the fault.
    pub before_ops: f64,
    /// ... while the fault lasted.
    pub during_ops: f64,
    /// ... in the `WINDOW` after the member was back.
    pub after_ops: f64,
}

/// Percentiles of one measure over the trials of one kind.
#[derive(Debug, Clone, Serialize)]
pub struct Spread {
    /// Trials measured.
    pub n: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `v` (nearest rank); `None` when empty.
    pub fn of(mut v: Vec<f64>) -> Option<Spread> {
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Some(Spread {
            n: v.len(),
            p50: rank(0.5),
            p90: rank(0.9),
            p99: rank(0.99),
            max: v[v.len() - 1],
        })
    }
}

/// The outcome (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct PerfReport {
    /// The system under test.
    pub target: Target,
    /// Trials of each kind.
    pub trials: usize,
    /// Seed of the clients.
    pub seed: u64,
    /// Every trial, in order.
    pub runs: Vec<Trial>,
    /// Per kind: election time, first write, mean throughput before,
    /// during and after.
    pub summary: Vec<KindSummary>,
    /// Acknowledged writes the cluster lost (must be 0).
    pub lost_writes: usize,
    /// `concord-check`'s verdict on the whole history.
    pub linearizable: String,
}

/// One fault kind's figures.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    /// The fault.
    pub kind: FaultKind,
    /// Trials without a new leader within the outage.
    pub no_leader: usize,
    /// Election time (ms).
    pub election: Option<Spread>,
    /// Time to the first acknowledged write (ms).
    pub first_write: Option<Spread>,
    /// Mean ops/s before, during and after.
    pub ops_per_sec: [f64; 3],
}

impl PerfReport {
    /// Every trial elected a leader, nothing was lost, the history is
    /// linearizable.
    pub fn passed(&self) -> bool {
        self.lost_writes == 0
            && self.linearizable == "ok"
            && self.summary.iter().all(|k| k.no_leader == 0)
    }
}

/// Answered ops per second completed in `[from, to)` (ns).
fn rate(ops: &[Op], from: u64, to: u64) -> f64 {
    let n = ops
        .iter()
        .filter(|o| o.result.is_some() && o.complete.is_some_and(|c| c >= from && c < to))
        .count();
    n as f64 / ((to.saturating_sub(from)) as f64 / 1e9).max(1e-3)
}

/// Runs `trials` leader kills and `trials` leader pauses (alternating) on a
/// loopback cluster under `cfg`'s key-value clients.
pub async fn run(
    cfg: RunConfig,
    trials: usize,
    progress: &dyn Fn(&str),
) -> Result<PerfReport, LabError> {
    std::fs::create_dir_all(&cfg.out)?;
    let mut cluster = Cluster::start(cfg.target, &cfg.binary, cfg.members, &cfg.out)?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(workload::run(
        cfg.workload.clone(),
        cluster.endpoints(),
        rec.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(WINDOW).await;
    let mut marks = Vec::new();
    for t in 0..2 * trials {
        let kind = [FaultKind::KillLeader, FaultKind::PauseLeader][t % 2];
        let leader = cluster.wait_for_leader(Duration::from_secs(10)).await?;
        let (start, elected) = fault(&mut cluster, kind, leader, &rec, cfg.outage).await?;
        let end = rec.now();
        progress(&format!(
            "trial {}/{}: {kind:?} {}: new leader after {}",
            t + 1,
            2 * trials,
            cluster.name(leader),
            elected.map_or("never".into(), |e| format!("{:.0} ms", e as f64 / 1e6))
        ));
        marks.push((kind, cluster.name(leader).to_string(), start, elected, end));
        tokio::time::sleep(WINDOW).await;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = clients.await;
    cluster.heal()?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let read = read_back(&cluster).await?;
    drop(cluster);
    let ops = rec.ops();
    std::fs::write(cfg.out.join("history.jsonl"), history_jsonl(&ops))?;
    progress("checking the history");
    let runs: Vec<Trial> = marks
        .into_iter()
        .map(|(kind, member, start, elected, end)| {
            let ms = |ns: u64| ns as f64 / 1e6;
            let w = WINDOW.as_nanos() as u64;
            Trial {
                kind,
                member,
                election_ms: elected.map(ms),
                first_write_ms: recovery(&ops, start, true).map(ms),
                before_ops: rate(&ops, start.saturating_sub(w), start),
                during_ops: rate(&ops, start, end),
                after_ops: rate(&ops, end, end + w),
            }
        })
        .collect();
    let report = PerfReport {
        target: cfg.target,
        trials,
        seed: cfg.seed,
        summary: [FaultKind::KillLeader, FaultKind::PauseLeader]
            .into_iter()
            .map(|k| summarize(k, &runs))
            .collect(),
        runs,
        lost_writes: lost_writes(&ops, &by_key(&read, cfg.workload.keys)).len(),
        linearizable: linearizable(&ops, Duration::from_secs(120)),
    };
    let json = serde_json::to_string_pretty(&report).expect("a report serializes");
    std::fs::write(cfg.out.join("report.json"), json)?;
    std::fs::write(cfg.out.join("report.md"), markdown(&report))?;
    Ok(report)
}

/// Kills or pauses `leader`, polls the survivors for a new leader for the
/// outage, then restarts or resumes it. Returns the fault's start and the
/// election time (ns), on the recorder's clock.
async fn fault(
    cluster: &mut Cluster,
    kind: FaultKind,
    leader: usize,
    rec: &Recorder,
    outage: Duration,
) -> Result<(u64, Option<u64>), LabError> {
    let start = rec.now();
    if kind == FaultKind::KillLeader {
        cluster.kill(leader)?;
    } else {
        cluster.pause(leader)?;
    }
    let deadline = tokio::time::Instant::now() + outage;
    let mut elected = None;
    // An election slower than the outage is waited for (up to LATE more),
    // not cut short by the old leader's return.
    loop {
        // `leader()` asks only running, unpaused members: the old leader
        // does not answer, so any leader found is a new one.
        if elected.is_none() && cluster.leader().await.is_some() {
            elected = Some(rec.now() - start);
        }
        let now = tokio::time::Instant::now();
        if now >= deadline && (elected.is_some() || now >= deadline + LATE) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cluster.heal()?;
    Ok((start, elected))
}

fn summarize(kind: FaultKind, runs: &[Trial]) -> KindSummary {
    let mine: Vec<&Trial> = runs.iter().filter(|r| r.kind == kind).collect();
    let mean =
        |f: fn(&Trial) -> f64| mine.iter().map(|r| f(r)).sum::<f64>() / (mine.len().max(1) as f64);
    KindSummary {
        kind,
        no_leader: mine.iter().filter(|r| r.election_ms.is_none()).count(),
        election: Spread::of(mine.iter().filter_map(|r| r.election_ms).collect()),
        first_write: Spread::of(mine.iter().filter_map(|r| r.first_write_ms).collect()),
        ops_per_sec: [
            mean(|r| r.before_ops),
            mean(|r| r.during_ops),
            mean(|r| r.after_ops),
        ],
    }
}

/// The report in words.
pub fn markdown(r: &PerfReport) -> String {
    let mut s = String::new();
    let verdict = if r.passed() { "passed" } else { "FAILED" };
    let _ = writeln!(
        s,
        "# consensus-perf on {:?}, {} trials of each fault, seed {}\n\n**{verdict}**: \
         lost acknowledged writes: {}; linearizability: {}.\n",
        r.target, r.trials, r.seed, r.lost_writes, r.linearizable
    );
    let _ = writeln!(
        s,
        "| fault | measure | n | p50 | p90 | p99 | max |\n|---|---|---:|---:|---:|---:|---:|"
    );
    for k in &r.summary {
        for (what, sp) in [("election", &k.election), ("first write", &k.first_write)] {
            if let Some(sp) = sp {
                let _ = writeln!(
                    s,
                    "| {:?} | {what} | {} | {:.0} ms | {:.0} ms | {:.0} ms | {:.0} ms |",
                    k.kind, sp.n, sp.p50, sp.p90, sp.p99, sp.max
                );
            }
        }
    }
    let _ = writeln!(
        s,
        "\n| fault | no leader | ops/s before | during | after |\n|---|---:|---:|---:|---:|"
    );
    for k in &r.summary {
        let [b, d, a] = k.ops_per_sec;
        let _ = writeln!(
            s,
            "| {:?} | {} | {b:.0} | {d:.0} | {a:.0} |",
            k.kind, k.no_leader
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::Spread;

    #[test]
    fn nearest_rank_percentiles() {
        let s = Spread::of((1..=10).map(f64::from).collect()).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (5.0, 9.0, 10.0, 10.0));
        assert!(Spread::of(Vec::new()).is_none());
    }
}
