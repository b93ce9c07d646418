//! One lab run: start a cluster, run the workload (key-value clients,
//! watchers, lock holders, lease clients), inject the scenario's faults on
//! schedule, heal, read every key back, let the watchers catch up, verify,
//! and report.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_check::FinalKv;
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::RangeRequest;
use concord_rng::SplitMix64;
use serde::Serialize;

use crate::clock::ClockConfig;
use crate::cluster::{channel, Cluster, Target, NETWORKED_PEER_PORT};
use crate::crash;
use crate::extra::Extra;
use crate::leaders::{count_between, LeaderChange, LeaderWatch};
use crate::netfault;
use crate::relay::Relays;
use crate::scenario::{schedule, FaultKind, Scenario};
use crate::skew::{self, ClockFaults, ClockSummary};
use crate::validate::{self, Plant, Verdicts};
use crate::verify::{history_jsonl, linearizable, lost_writes, recovery};
use crate::watchers::RANGE;
use crate::workload::{self, Op, Recorder, WorkloadConfig};
use crate::LabError;

/// What a run does.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The scenario.
    pub scenario: Scenario,
    /// The system under test.
    pub target: Target,
    /// Its server binary.
    pub binary: PathBuf,
    /// Members (3 or 5).
    pub members: usize,
    /// Length of the run.
    pub secs: Duration,
    /// Seed of the schedule and the clients.
    pub seed: u64,
    /// Where data, logs, history and report go.
    pub out: PathBuf,
    /// Time from one fault's start to the next's.
    pub every: Duration,
    /// How long a fault lasts.
    pub outage: Duration,
    /// The clients.
    pub workload: WorkloadConfig,
    /// Faults planted in the records before validation, only for tests
    /// that show a check can fail (empty in real runs).
    pub plant: Vec<Plant>,
    /// Lease reads and clock faults.
    pub clock: ClockConfig,
}

/// One injected fault and what it did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// What was done.
    pub kind: FaultKind,
    /// To which member.
    pub member: String,
    /// When it began and ended (ms since the run began).
    pub start_ms: f64,
    /// When the member was restarted or resumed.
    pub end_ms: f64,
    /// From the fault to the first acknowledged write invoked after it.
    pub rto_write_ms: Option<f64>,
    /// From the fault to the first answered (linearizable) read after it.
    pub rto_read_ms: Option<f64>,
    /// Client requests that failed or timed out, invoked in the window.
    pub errors: usize,
    /// Leader changes seen from the fault's start to the next fault's (or
    /// the run's end): a new leader, or a moment with none.
    pub leader_changes: usize,
}

/// The outcome of a run (`report.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The system under test.
    pub target: Target,
    /// The scenario's name.
    pub scenario: &'static str,
    /// The seed.
    pub seed: u64,
    /// Members.
    pub members: usize,
    /// Length of the run in seconds.
    pub secs: f64,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// Operations recorded.
    pub ops: usize,
    /// Operations answered.
    pub ok: usize,
    /// Writes without an answer (may or may not have taken effect).
    pub unknown: usize,
    /// Reads that failed (recorded only in this count).
    pub failed_reads: usize,
    /// Writes refused with "no leader" before they were proposed (recorded
    /// only in this count).
    pub refused_writes: usize,
    /// Answered requests among all the key-value clients sent (answered,
    /// unknown writes and failed reads): the availability the clients saw.
    pub availability: f64,
    /// Acknowledged writes the healed cluster does not hold: the RPO.
    pub lost_writes: usize,
    /// `concord-check`'s verdict on the history.
    pub linearizable: String,
    /// Terms that began during the run (each an election, won or not).
    pub elections: u64,
    /// The watch, lock and lease validators' verdicts.
    pub checks: Verdicts,
    /// Leadership as the lab saw it move (the first entry is the leader
    /// the run began with).
    pub leader_changes: Vec<LeaderChange>,
    /// What clock faults did, in a run with them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSummary>,
}

impl Report {
    /// True when every check passed (a checker that ran out of time is
    /// not a pass).
    pub fn passed(&self) -> bool {
        self.lost_writes == 0 && self.linearizable == "ok" && self.checks.violations().is_empty()
    }
}

/// Runs the lab once; `progress` hears what is happening.
pub async fn run(cfg: RunConfig, progress: &dyn Fn(&str)) -> Result<Report, LabError> {
    crash::check_target(cfg.scenario.kind, cfg.target)?;
    std::fs::create_dir_all(&cfg.out)?;
    let mut clocks = ClockFaults::new(&cfg)?;
    let mut cluster = start_cluster(&cfg, clocks.as_ref()).await?;
    let first_term = cluster.term().await.unwrap_or(0);
    progress("cluster up; workload started");
    let rec = Recorder::new();
    let stop = Arc::new(AtomicBool::new(false));
    let clients = tokio::spawn(workload::run(
        cfg.workload.clone(),
        cluster.endpoints(),
        rec.clone(),
        stop.clone(),
    ));
    let mut extra = Extra::start(&cfg.workload, &cluster.endpoints(), &rec);
    let leaders = LeaderWatch::start(cluster.named_endpoints(), rec.clone());
    let sampler = clocks
        .is_some()
        .then(|| skew::sample_leaders(cluster.endpoints(), rec.clone(), stop.clone()));
    let began = tokio::time::Instant::now();
    let faults = inject_all(&cfg, &mut cluster, &mut clocks, &rec, progress).await?;
    tokio::time::sleep_until(began + cfg.secs).await;
    stop.store(true, Ordering::Relaxed);
    let _ = clients.await;
    let leader_samples = match sampler {
        Some((task, log)) => {
            let _ = task.await;
            let log = log.lock().expect("leader log").clone();
            log
        }
        None => Vec::new(),
    };
    let mut records = extra.stop().await;
    cluster.heal()?;
    // A member that stays down is named in the progress; the read-back
    // still goes to the members that run.
    failed_restarts(&mut cluster, progress).await?;
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    let last_term = cluster.term().await.unwrap_or(first_term);
    let leader_changes = leaders.stop().await;
    progress("healed; reading every key back");
    let read = read_back(&cluster).await?;
    let newest = read.iter().map(|f| f.mod_rev).max().unwrap_or(0);
    extra
        .drain(newest, Duration::from_secs(15), &mut records)
        .await;
    let pids = cluster.pids();
    drop(cluster);
    if clocks.is_some() {
        crate::clock::remove_shm(&pids);
    }
    let ops = rec.ops();
    std::fs::write(cfg.out.join("history.jsonl"), history_jsonl(&ops))?;
    for &p in &cfg.plant {
        validate::plant(&mut records, &ops, p);
    }
    validate::write(&cfg.out, &records)?;
    let finals = by_key(&read, cfg.workload.keys);
    progress("checking the history, watches, locks and leases");
    let report = Report {
        target: cfg.target,
        scenario: cfg.scenario.name,
        seed: cfg.seed,
        members: cfg.members,
        secs: cfg.secs.as_secs_f64(),
        faults: records_of(&faults, &ops, &leader_changes, cfg.secs),
        leader_changes,
        ops: ops.len(),
        ok: ops.iter().filter(|o| o.result.is_some()).count(),
        unknown: ops.iter().filter(|o| o.result.is_none()).count(),
        failed_reads: rec.failed_reads(),
        refused_writes: rec.refused_writes(),
        availability: availability(
            ops.len(),
            rec.failed_reads() + rec.refused_writes(),
            ops.iter().filter(|o| o.result.is_some()).count(),
        ),
        lost_writes: lost_writes(&ops, &finals).len(),
        linearizable: linearizable(&ops, Duration::from_secs(120)),
        elections: last_term.saturating_sub(first_term),
        checks: validate::validate(&records, &ops, &read),
        clock: clocks.as_ref().map(|c| c.summary(&ops, &leader_samples)),
    };
    crate::report::write(&cfg.out, &report)?;
    draw(&cfg.out, &report, &ops)?;
    Ok(report)
}

/// Answered over sent: `recorded` ops (answered or unknown writes) and
/// `failed` ones (failed reads and refused writes, not recorded); 1 when
/// nothing was sent.
fn availability(recorded: usize, failed: usize, answered: usize) -> f64 {
    let sent = recorded + failed;
    if sent == 0 {
        return 1.0;
    }
    answered as f64 / sent as f64
}

/// A fresh cluster for `cfg`, with a leader.
async fn start_cluster(cfg: &RunConfig, clocks: Option<&ClockFaults>) -> Result<Cluster, LabError> {
    let mut opts = skew::member_options(cfg.target, &cfg.clock, clocks)?;
    opts.args.extend(crash::extra_args(cfg.scenario.kind));
    let (target, binary, n, out) = (cfg.target, &cfg.binary, cfg.members, &cfg.out);
    let cluster = if cfg.scenario.kind.is_network() {
        Cluster::start_networked_with(target, binary, n, out, &opts)?
    } else {
        Cluster::start_with(target, binary, n, out, &opts)?
    };
    cluster.wait_for_leader(Duration::from_secs(20)).await?;
    if cfg.scenario.kind.is_crash() {
        crash::check_server(&cluster).await?;
    }
    Ok(cluster)
}

/// One fault: kind, label, start and end (ns on the recorder's clock).
type Injected = (FaultKind, String, u64, u64);

/// The scenario's faults on their schedule, each healed after the outage.
async fn inject_all(
    cfg: &RunConfig,
    cluster: &mut Cluster,
    clocks: &mut Option<ClockFaults>,
    rec: &Arc<Recorder>,
    progress: &dyn Fn(&str),
) -> Result<Vec<Injected>, LabError> {
    let mut rng = SplitMix64::new(cfg.seed);
    let mut relays = Relays::new(cfg.seed);
    let mut faults = Vec::new();
    let began = tokio::time::Instant::now();
    let kind = cfg.scenario.kind;
    for at in schedule(cfg.secs, Duration::from_secs(2), cfg.every) {
        tokio::time::sleep_until(began + at).await;
        if kind == FaultKind::None {
            continue;
        }
        let Some(leader) = cluster.leader().await else {
            progress("no leader known; fault skipped");
            continue;
        };
        let mut start = rec.now();
        let label = match clocks.as_mut() {
            Some(c) => {
                c.inject_fault(cluster, leader, rec, &mut rng, &mut relays)
                    .await?
            }
            None => inject(cluster, kind, leader, &mut rng, &mut relays).await?,
        };
        if kind.is_network() || kind.is_crash() {
            // The fault begins when its last rule is in place (installing
            // them takes some ms), or when the member died at its point.
            start = rec.now();
        }
        progress(&format!("{kind:?} {label}"));
        tokio::time::sleep(cfg.outage).await;
        let label = crate::membership::after_outage(cluster, kind, &mut rng, label).await?;
        cluster.heal()?;
        let end = rec.now();
        relays.clear();
        let label = match failed_restarts(cluster, progress).await? {
            Some(failed) => format!("{label}; **restart failed**: {failed}"),
            None => label,
        };
        if let Some(c) = clocks.as_mut() {
            c.heal(rec.now())?;
        }
        faults.push((kind, label, start, end));
    }
    Ok(faults)
}

/// `timeline.svg` and `timeline.png` of a finished run.
fn draw(out: &std::path::Path, report: &Report, ops: &[Op]) -> Result<(), LabError> {
    let title = format!(
        "{} on {:?}, {} members, seed {}",
        report.scenario, report.target, report.members, report.seed
    );
    let windows = crate::timeline::windows(&report.faults);
    let answered = crate::timeline::answered(ops);
    crate::timeline::write(
        out,
        &crate::timeline::Picture {
            title: &title,
            ops: &answered,
            faults: &windows,
            leaders: &report.leader_changes,
            secs: report.secs,
        },
    )
}

/// The members that exited soon after a heal restarted them (their logs
/// say why), in words; `None` when all still run. The report must show
/// it: a member that stays down leaves the cluster one failure from
/// unavailable, and its port free for another process.
async fn failed_restarts(
    cluster: &mut Cluster,
    progress: &dyn Fn(&str),
) -> Result<Option<String>, LabError> {
    let exited = cluster.exited_within(Duration::from_secs(1)).await?;
    if exited.is_empty() {
        return Ok(None);
    }
    let words = exited.join(", ");
    progress(&format!("restart failed: {words}"));
    Ok(Some(words))
}

/// Injects one fault of `kind`; returns which member(s) it hit, in words.
async fn inject(
    cluster: &mut Cluster,
    kind: FaultKind,
    leader: usize,
    rng: &mut SplitMix64,
    relays: &mut Relays,
) -> Result<String, LabError> {
    let member = match kind {
        FaultKind::KillFollower => {
            let k = rng.below(cluster.size() as u64 - 1) as usize;
            k + usize::from(k >= leader)
        }
        _ => leader,
    };
    match kind {
        k if k.is_membership() => return crate::membership::inject(cluster, k, leader, rng).await,
        k if k.is_crash() => return crash::inject(cluster, k, leader, rng.next_u64()).await,
        FaultKind::KillLeader | FaultKind::KillFollower => cluster.kill(member)?,
        FaultKind::PauseLeader => cluster.pause(member)?,
        FaultKind::None => {}
        _ => {
            let plan = netfault::plan(kind, leader, cluster.size(), rng)
                .ok_or_else(|| LabError::Net(format!("{kind:?} is not a network fault")))?;
            let net = cluster
                .network()
                .ok_or_else(|| LabError::Net("the cluster has no network namespaces".into()))?;
            netfault::apply(&plan, net, relays, NETWORKED_PEER_PORT).await?;
            return Ok(plan.label);
        }
    }
    Ok(cluster.name(member).to_string())
}

/// The fault records, each with the leader changes up to the next fault.
fn records_of(
    faults: &[Injected],
    ops: &[Op],
    leaders: &[LeaderChange],
    secs: Duration,
) -> Vec<FaultRecord> {
    let run_end = secs.as_nanos() as u64;
    faults
        .iter()
        .enumerate()
        .map(|(i, (kind, member, start, end))| {
            let next = faults.get(i + 1).map_or(run_end, |f| f.2);
            let mut r = record(ops, *kind, member.clone(), *start, *end);
            r.leader_changes = count_between(leaders, r.start_ms, next as f64 / 1e6);
            r
        })
        .collect()
}

fn record(ops: &[Op], kind: FaultKind, member: String, start: u64, end: u64) -> FaultRecord {
    let ms = |ns: u64| ns as f64 / 1e6;
    let rto_write = recovery(ops, start, true);
    let until = end + rto_write.unwrap_or(0);
    FaultRecord {
        kind,
        member,
        start_ms: ms(start),
        end_ms: ms(end),
        rto_write_ms: rto_write.map(ms),
        rto_read_ms: recovery(ops, start, false).map(ms),
        errors: ops
            .iter()
            .filter(|o| o.error.is_some() && o.invoke >= start && o.invoke <= until)
            .count(),
        leader_changes: 0,
    }
}

/// Each workload key's final value (`None`: absent).
pub(crate) fn by_key(read: &[FinalKv], keys: usize) -> HashMap<String, Option<String>> {
    let mut out: HashMap<String, Option<String>> =
        (0..keys).map(|k| (format!("k{k}"), None)).collect();
    for f in read {
        out.insert(f.key.clone(), Some(f.value.clone()));
    }
    out
}

/// Every workload key with its value and mod revision, read linearizably
/// from the healed cluster in one range (another member is tried when the
/// read fails).
pub(crate) async fn read_back(cluster: &Cluster) -> Result<Vec<FinalKv>, LabError> {
    let endpoints = cluster.endpoints();
    let mut last = String::from("no member answered");
    for attempt in 0..40 {
        let url = &endpoints[attempt % endpoints.len()];
        if let Ok(ch) = channel(url, Duration::from_millis(500)).await {
            let req = RangeRequest {
                key: RANGE.0.into(),
                range_end: RANGE.1.into(),
                ..Default::default()
            };
            match KvClient::new(ch).range(req).await {
                Ok(r) => {
                    let kvs = r.into_inner().kvs.into_iter();
                    return Ok(kvs
                        .map(|kv| FinalKv {
                            key: String::from_utf8_lossy(&kv.key).into_owned(),
                            value: String::from_utf8_lossy(&kv.value).into_owned(),
                            mod_rev: kv.mod_revision as u64,
                        })
                        .collect());
                }
                Err(e) => last = e.message().to_string(),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(LabError::Connect(format!("reading the keys back: {last}")))
}

#[cfg(test)]
mod tests {
    use super::availability;

    #[test]
    fn availability_counts_unknown_writes_and_failed_reads_as_unanswered() {
        assert_eq!(availability(0, 0, 0), 1.0);
        assert_eq!(availability(10, 0, 10), 1.0);
        // 8 recorded (7 answered, 1 unknown write) and 2 failed reads.
        assert!((availability(8, 2, 7) - 0.7).abs() < 1e-9);
    }
}
