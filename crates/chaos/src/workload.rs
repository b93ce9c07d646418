//! The key-value workload: clients doing get, put, compare-and-swap and
//! multi-key txns (the mix is configurable) on a few keys, each op recorded with its invoke and completion time in
//! `concord-check`'s history format. An op whose answer never came (an
//! error, a timeout) is recorded without completion: it may or may not
//! have taken effect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_check::{Cmp, TxnOp};
use concord_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::request_op::Request as OpRequest;
use concord_proto::etcdserverpb::response_op::Response as OpResponse;
use concord_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, ResponseHeader, TxnRequest,
};
use concord_rng::SplitMix64;
use serde::Serialize;
use tonic::transport::Channel;

use crate::cluster::channel;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent key-value clients.
    pub clients: usize,
    /// Keys they share.
    pub keys: usize,
    /// How often each kind of key-value op is chosen.
    pub mix: Mix,
    /// Clients watching every workload key (`crate::watchers`).
    pub watchers: usize,
    /// Clients taking locks (`crate::locks`).
    pub lock_holders: usize,
    /// Clients granting, keeping alive and ending leases (`crate::leases`).
    pub lease_clients: usize,
    /// A request without an answer by then counts as unknown.
    pub op_timeout: Duration,
    /// Seed of the clients' choices.
    pub seed: u64,
}

impl WorkloadConfig {
    /// The defaults of `concord-lab run`, with `clients` and `keys`.
    pub fn new(clients: usize, keys: usize, seed: u64) -> WorkloadConfig {
        WorkloadConfig {
            clients,
            keys,
            mix: Mix::default(),
            watchers: 2,
            lock_holders: 3,
            lease_clients: 2,
            op_timeout: Duration::from_secs(1),
            seed,
        }
    }
}

/// Weights of get, put, compare-and-swap and multi-key txn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    /// Linearizable reads.
    pub get: u64,
    /// Blind writes.
    pub put: u64,
    /// Compare-and-swap of one key.
    pub cas: u64,
    /// Transactions over keys of one group of [`TXN_GROUP`].
    pub txn: u64,
}

impl Default for Mix {
    fn default() -> Mix {
        Mix {
            get: 4,
            put: 3,
            cas: 1,
            txn: 2,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `get=4,put=3,cas=1,txn=2` (kinds left out weigh 0).
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut mix = Mix {
            get: 0,
            put: 0,
            cas: 0,
            txn: 0,
        };
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (kind, w) = part
                .split_once('=')
                .ok_or(format!("{part:?}: want kind=weight"))?;
            let w: u64 = w.parse().map_err(|_| format!("{part:?}: bad weight"))?;
            match kind.trim() {
                "get" => mix.get = w,
                "put" => mix.put = w,
                "cas" => mix.cas = w,
                "txn" => mix.txn = w,
                k => return Err(format!("unknown op kind {k:?} (get, put, cas, txn)")),
            }
        }
        if mix.get + mix.put + mix.cas + mix.txn == 0 {
            return Err("the mix weighs nothing".into());
        }
        Ok(mix)
    }
}

impl Mix {
    fn pick(&self, rng: &mut SplitMix64) -> &'static str {
        let total = self.get + self.put + self.cas + self.txn;
        let mut r = rng.below(total.max(1));
        for (kind, w) in [("get", self.get), ("put", self.put), ("cas", self.cas)] {
            if r < w {
                return kind;
            }
            r -= w;
        }
        "txn"
    }
}

/// A txn touches keys of one group of this many consecutive keys, so the
/// checker's key partitions stay small.
pub const TXN_GROUP: usize = 4;

/// The body of a multi-key txn, flattened into its history line.
#[derive(Debug, Clone, Serialize)]
pub struct TxnBody {
    /// Guards.
    pub compares: Vec<concord_check::Compare>,
    /// Ops run if every guard holds.
    pub success: Vec<TxnOp>,
    /// Ops run otherwise.
    pub failure: Vec<TxnOp>,
}

/// One recorded operation (a line of `history.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The client that issued it.
    pub client: usize,
    /// `get`, `put`, `cas` or `txn`.
    pub op: &'static str,
    /// The key (a txn's: the first it compares).
    pub key: String,
    /// The value written (put, cas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value a cas expects (`None` with `op == "cas"`: the key absent).
    #[serde(skip_serializing_if = "skip_expected")]
    pub expected: Expected,
    /// A txn's compares and branches.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnBody>,
    /// Nanoseconds since the run began.
    pub invoke: u64,
    /// When the answer came; `None`: it never did.
    pub complete: Option<u64>,
    /// The answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Why it failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A cas's expectation, serialized only for cas (`null` = absent).
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Expected(pub Option<Option<String>>);

fn skip_expected(e: &Expected) -> bool {
    e.0.is_none()
}

impl Op {
    /// An acknowledged write: a put, a cas that swapped, a txn whose
    /// success branch (the one that writes) ran.
    pub fn acked_write(&self) -> bool {
        match (self.op, &self.result) {
            ("put", Some(_)) => true,
            ("cas", Some(r)) => r["ok"] == serde_json::Value::Bool(true),
            ("txn", Some(r)) => r["succeeded"] == serde_json::Value::Bool(true),
            _ => false,
        }
    }

    /// The (key, value) pairs it writes if it takes effect (a txn: its
    /// success branch's puts).
    pub fn writes(&self) -> Vec<(&str, &str)> {
        match (&self.txn, &self.value) {
            (Some(t), _) => t
                .success
                .iter()
                .filter_map(|op| match op {
                    TxnOp::Put { key, value } => Some((key.as_str(), value.as_str())),
                    _ => None,
                })
                .collect(),
            (None, Some(v)) => vec![(self.key.as_str(), v.as_str())],
            (None, None) => Vec::new(),
        }
    }

    /// The revision of an acknowledged write (its answer's header).
    pub fn rev(&self) -> Option<u64> {
        self.result.as_ref()?["rev"].as_u64()
    }
}

/// The shared record of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    failed_reads: AtomicUsize,
    refused_writes: AtomicUsize,
}

impl Recorder {
    /// A record whose clock starts now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            failed_reads: AtomicUsize::new(0),
            refused_writes: AtomicUsize::new(0),
        })
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    pub(crate) fn push(&self, op: Op) {
        self.ops.lock().expect("recorder").push(op);
    }

    /// Writes a member refused with "no leader" before proposing them
    /// (not in the history: they changed nothing).
    pub fn refused_writes(&self) -> usize {
        self.refused_writes.load(Ordering::Relaxed)
    }

    /// Reads that failed (not in the history: they changed nothing).
    pub fn failed_reads(&self) -> usize {
        self.failed_reads.load(Ordering::Relaxed)
    }

    /// Everything recorded, in completion order.
    pub fn ops(&self) -> Vec<Op> {
        self.ops.lock().expect("recorder").clone()
    }
}

/// Runs the clients until `stop` is set.
pub async fn run(
    cfg: WorkloadConfig,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut tasks = Vec::new();
    for client in 0..cfg.clients {
        let (cfg, endpoints, rec, stop) =
            (cfg.clone(), endpoints.clone(), rec.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            client_loop(client, cfg, endpoints, rec, stop).await
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

async fn client_loop(
    client: usize,
    cfg: WorkloadConfig,
    endpoints: Vec<String>,
    rec: Arc<Recorder>,
    stop: Arc<AtomicBool>,
) {
    let mut rng = SplitMix64::new(cfg.seed ^ (client as u64).wrapping_mul(0x9E37));
    let mut at = client % endpoints.len();
    let mut kv: Option<KvClient<Channel>> = None;
    // What this client last saw each key hold: a cas or txn expects it.
    let mut known: HashMap<String, Option<String>> = HashMap::new();
    let mut seq = 0u64;
    // Since when the current member has answered only with errors.
    let mut failing_since: Option<u64> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = kv.as_mut() else {
            match channel(&endpoints[at], Duration::from_millis(500)).await {
                Ok(ch) => kv = Some(KvClient::new(ch)),
                Err(_) => {
                    at = (at + 1) % endpoints.len();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            continue;
        };
        seq += 1;
        let mut op = choose(&cfg, &mut rng, client, seq, &known);
        op.invoke = rec.now();
        match tokio::time::timeout(cfg.op_timeout, execute(c, &op)).await {
            Ok(Ok(result)) => {
                op.complete = Some(rec.now());
                op.result = Some(result);
                learn(&op, &mut known);
                rec.push(op);
                failing_since = None;
            }
            failed => {
                // A member that answered (no leader yet, leader changed) is
                // alive: stay with it, as etcd's clients do. Move on only
                // from one that did not answer in time or refused us: a
                // client that moves on every error walks into the member
                // that is down (a paused one holds each request until its
                // deadline).
                let answered = matches!(&failed, Ok(Err(e)) if answered_by_member(e));
                // "No leader" is answered before anything is proposed.
                let refused = matches!(&failed, Ok(Err(e)) if e.message().contains("no leader"));
                op.error = Some(match failed {
                    Ok(Err(e)) => e.message().to_string(),
                    _ => "timed out".to_string(),
                });
                // A failed read or a refused write changed nothing; any
                // other failed write may have.
                if op.op == "get" {
                    rec.failed_reads.fetch_add(1, Ordering::Relaxed);
                } else if refused {
                    rec.refused_writes.fetch_add(1, Ordering::Relaxed);
                } else {
                    rec.push(op);
                }
                // ... but not forever: a member cut off in a minority
                // answers "no leader" for as long as the partition lasts.
                let since = *failing_since.get_or_insert(rec.now());
                if !answered || rec.now() - since > STAY_WITH_ANSWERING.as_nanos() as u64 {
                    kv = None;
                    at = (at + 1) % endpoints.len();
                    failing_since = None;
                }
                // Without a pause, "no leader" answered at once during an
                // election floods the history with unknown writes, and
                // each makes the checker's search harder.
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
    }
}

/// How long a client stays with a member that answers only errors such as
/// "no leader": longer than an election takes, shorter than a partition.
const STAY_WITH_ANSWERING: Duration = Duration::from_millis(1500);

/// An error the member itself answered with while it waits for a leader:
/// the member is up, and the next request to it will likely succeed.
fn answered_by_member(e: &tonic::Status) -> bool {
    let m = e.message();
    m.contains("no leader") || m.contains("leader changed")
}

/// The next op: its kind from the mix, its keys and a fresh value.
fn choose(
    cfg: &WorkloadConfig,
    rng: &mut SplitMix64,
    client: usize,
    seq: u64,
    known: &HashMap<String, Option<String>>,
) -> Op {
    let key = format!("k{}", rng.below(cfg.keys as u64));
    let value = format!("{client}-{seq}");
    let mut op = Op {
        client,
        op: cfg.mix.pick(rng),
        key,
        value: Some(value),
        expected: Expected(None),
        txn: None,
        invoke: 0,
        complete: None,
        result: None,
        error: None,
    };
    match op.op {
        "get" => op.value = None,
        "cas" => op.expected = Expected(Some(known.get(&op.key).cloned().flatten())),
        "txn" => {
            let value = op.value.take().unwrap_or_default();
            let group = cfg.keys.clamp(1, TXN_GROUP);
            let base = rng.below((cfg.keys / group) as u64) as usize * group;
            let o = rng.below(group as u64) as usize;
            let k = |i: usize| format!("k{}", base + (o + i) % group);
            op.key = k(0);
            op.txn = Some(txn_body(&k(0), &k(1), &k(2), &value, known));
        }
        _ => {}
    }
    op
}

/// If `a` holds what this client last saw, write `value` to `a` and `b`
/// and read `c`; otherwise read `a` and `b`.
fn txn_body(
    a: &str,
    b: &str,
    c: &str,
    value: &str,
    known: &HashMap<String, Option<String>>,
) -> TxnBody {
    let cmp = match known.get(a).cloned().flatten() {
        Some(v) => Cmp::Equal { value: v },
        None => Cmp::Absent,
    };
    let put = |key: &str| TxnOp::Put {
        key: key.to_string(),
        value: value.to_string(),
    };
    let get = |key: &str| TxnOp::Get {
        key: key.to_string(),
    };
    let mut success = vec![put(a)];
    if b != a {
        success.push(put(b));
    }
    success.push(get(c));
    TxnBody {
        compares: vec![concord_check::Compare {
            key: a.to_string(),
            cmp,
        }],
        success,
        failure: vec![get(a), get(b)],
    }
}

/// Remembers what an answered op showed of its keys.
fn learn(op: &Op, known: &mut HashMap<String, Option<String>>) {
    let Some(r) = &op.result else { return };
    let value = |v: &serde_json::Value| v.as_str().map(str::to_string);
    if op.acked_write() {
        for (k, v) in op.writes() {
            known.insert(k.to_string(), Some(v.to_string()));
        }
    }
    match (&op.txn, op.op) {
        (None, "get") => {
            known.insert(op.key.clone(), value(&r["value"]));
        }
        (Some(t), _) if r["succeeded"] == false => {
            for (g, v) in t
                .failure
                .iter()
                .zip(r["values"].as_array().into_iter().flatten())
            {
                known.insert(g.key().to_string(), value(v));
            }
        }
        _ => {}
    }
}

/// Sends `op` and returns its answer in the history's result format (a
/// write's with `rev`, its header revision).
async fn execute(c: &mut KvClient<Channel>, op: &Op) -> Result<serde_json::Value, tonic::Status> {
    let value = op.value.as_deref().unwrap_or_default();
    match (op.op, &op.txn) {
        ("put", _) => put(c, &op.key, value).await,
        ("cas", _) => cas(c, &op.key, op.expected.0.clone().flatten(), value).await,
        ("txn", Some(t)) => txn(c, t).await,
        _ => get(c, &op.key).await,
    }
}

/// A linearizable read of `key`: `{"value": v}`, `null` if absent.
pub(crate) async fn get(
    c: &mut KvClient<Channel>,
    key: &str,
) -> Result<serde_json::Value, tonic::Status> {
    let r = c
        .range(RangeRequest {
            key: key.to_string().into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let value = r
        .kvs
        .first()
        .map(|kv| String::from_utf8_lossy(&kv.value).into_owned());
    Ok(serde_json::json!({ "value": value }))
}

async fn put(
    c: &mut KvClient<Channel>,
    key: &str,
    value: &str,
) -> Result<serde_json::Value, tonic::Status> {
    let r = c
        .put(PutRequest {
            key: key.to_string().into(),
            value: value.to_string().into(),
            ..Default::default()
        })
        .await?
        .into_inner();
    Ok(serde_json::json!({ "ok": true, "rev": revision(&r.header) }))
}

async fn cas(
    c: &mut KvClient<Channel>,
    key: &str,
    expected: Option<String>,
    value: &str,
) -> Result<serde_json::Value, tonic::Status> {
    let cmp = match expected {
        Some(value) => Cmp::Equal { value },
        None => Cmp::Absent,
    };
    let put = TxnOp::Put {
        key: key.to_string(),
        value: value.to_string(),
    };
    let r = c
        .txn(TxnRequest {
            compare: vec![compare(key, &cmp)],
            success: vec![request_op(&put)],
            failure: vec![],
        })
        .await?
        .into_inner();
    Ok(serde_json::json!({ "ok": r.succeeded, "rev": revision(&r.header) }))
}

async fn txn(c: &mut KvClient<Channel>, t: &TxnBody) -> Result<serde_json::Value, tonic::Status> {
    let r = c
        .txn(TxnRequest {
            compare: t.compares.iter().map(|c| compare(&c.key, &c.cmp)).collect(),
            success: t.success.iter().map(request_op).collect(),
            failure: t.failure.iter().map(request_op).collect(),
        })
        .await?
        .into_inner();
    let values: Vec<Option<String>> = r
        .responses
        .iter()
        .filter_map(|resp| match &resp.response {
            Some(OpResponse::ResponseRange(g)) => Some(
                g.kvs
                    .first()
                    .map(|kv| String::from_utf8_lossy(&kv.value).into_owned()),
            ),
            _ => None,
        })
        .collect();
    Ok(serde_json::json!({
        "succeeded": r.succeeded,
        "values": values,
        "rev": revision(&r.header),
    }))
}

fn revision(h: &Option<ResponseHeader>) -> i64 {
    h.as_ref().map_or(0, |h| h.revision)
}

/// The etcd compare for a model compare (only the kinds the workload uses:
/// a value equal, or the key absent, i.e. version 0).
fn compare(key: &str, cmp: &Cmp) -> Compare {
    let (target, union) = match cmp {
        Cmp::Equal { value } => (
            CompareTarget::Value,
            TargetUnion::Value(value.clone().into()),
        ),
        _ => (CompareTarget::Version, TargetUnion::Version(0)),
    };
    Compare {
        key: key.to_string().into(),
        target: target as i32,
        result: CompareResult::Equal as i32,
        target_union: Some(union),
        ..Default::default()
    }
}

fn request_op(op: &TxnOp) -> RequestOp {
    let request = match op {
        TxnOp::Get { key } => OpRequest::RequestRange(RangeRequest {
            key: key.clone().into(),
            ..Default::default()
        }),
        TxnOp::Put { key, value } => OpRequest::RequestPut(PutRequest {
            key: key.clone().into(),
            value: value.clone().into(),
            ..Default::default()
        }),
        TxnOp::Delete { key } => OpRequest::RequestDeleteRange(DeleteRangeRequest {
            key: key.clone().into(),
            ..Default::default()
        }),
    };
    RequestOp {
        request: Some(request),
    }
}
