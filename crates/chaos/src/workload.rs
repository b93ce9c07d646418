//! The client workload: clients doing get, put and compare-and-swap on a
//! few keys, each op recorded with its invoke and completion time in
//! `concord-check`'s history format. An op whose answer never came (an
//! error, a timeout) is recorded without completion: it may or may not
//! have taken effect.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use concord_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::request_op::Request as OpRequest;
use concord_proto::etcdserverpb::{Compare, PutRequest, RangeRequest, RequestOp, TxnRequest};
use concord_rng::SplitMix64;
use serde::Serialize;
use tonic::transport::Channel;

use crate::cluster::channel;

/// What the clients do.
#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    /// Concurrent clients.
    pub clients: usize,
    /// Keys they share.
    pub keys: usize,
    /// A request without an answer by then counts as unknown.
    pub op_timeout: Duration,
    /// Seed of the clients' choices.
    pub seed: u64,
}

/// One recorded operation (a line of `history.jsonl`).
#[derive(Debug, Clone, Serialize)]
pub struct Op {
    /// The client that issued it.
    pub client: usize,
    /// `get`, `put` or `cas`.
    pub op: &'static str,
    /// The key.
    pub key: String,
    /// The value written (put, cas).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value a cas expects (`None` with `op == "cas"`: the key absent).
    #[serde(skip_serializing_if = "skip_expected")]
    pub expected: Expected,
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
    /// An acknowledged write: a put, or a cas that swapped.
    pub fn acked_write(&self) -> bool {
        match (self.op, &self.result) {
            ("put", Some(_)) => true,
            ("cas", Some(r)) => r["ok"] == serde_json::Value::Bool(true),
            _ => false,
        }
    }
}

/// The shared record of a run.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    ops: Mutex<Vec<Op>>,
    failed_reads: AtomicUsize,
}

impl Recorder {
    /// A record whose clock starts now.
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder {
            start: Instant::now(),
            ops: Mutex::new(Vec::new()),
            failed_reads: AtomicUsize::new(0),
        })
    }

    /// Nanoseconds since the run began.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn push(&self, op: Op) {
        self.ops.lock().expect("recorder").push(op);
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
    let mut last_read: HashMap<String, Option<String>> = HashMap::new();
    let mut seq = 0u64;
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
        let key = format!("k{}", rng.below(cfg.keys as u64));
        seq += 1;
        let value = format!("{client}-{seq}");
        let roll = rng.below(10);
        let mut op = Op {
            client,
            op: "get",
            key: key.clone(),
            value: None,
            expected: Expected(None),
            invoke: rec.now(),
            complete: None,
            result: None,
            error: None,
        };
        let answer = if roll < 4 {
            tokio::time::timeout(cfg.op_timeout, get(c, &key)).await
        } else if roll < 8 {
            op.op = "put";
            op.value = Some(value.clone());
            tokio::time::timeout(cfg.op_timeout, put(c, &key, &value)).await
        } else {
            op.op = "cas";
            op.value = Some(value.clone());
            let expected = last_read.get(&key).cloned().unwrap_or(None);
            op.expected = Expected(Some(expected.clone()));
            tokio::time::timeout(cfg.op_timeout, cas(c, &key, expected, &value)).await
        };
        match answer {
            Ok(Ok(result)) => {
                op.complete = Some(rec.now());
                if op.op == "get" {
                    let v = result["value"].as_str().map(str::to_string);
                    last_read.insert(key, v);
                }
                op.result = Some(result);
                rec.push(op);
            }
            failed => {
                op.error = Some(match failed {
                    Ok(Err(e)) => e.message().to_string(),
                    _ => "timed out".to_string(),
                });
                // A failed read changed nothing; a failed write may have.
                if op.op == "get" {
                    rec.failed_reads.fetch_add(1, Ordering::Relaxed);
                } else {
                    rec.push(op);
                }
                kv = None;
                at = (at + 1) % endpoints.len();
            }
        }
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
    c.put(PutRequest {
        key: key.to_string().into(),
        value: value.to_string().into(),
        ..Default::default()
    })
    .await?;
    Ok(serde_json::json!({ "ok": true }))
}

async fn cas(
    c: &mut KvClient<Channel>,
    key: &str,
    expected: Option<String>,
    value: &str,
) -> Result<serde_json::Value, tonic::Status> {
    let compare = match expected {
        Some(v) => Compare {
            key: key.to_string().into(),
            target: CompareTarget::Value as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Value(v.into())),
            ..Default::default()
        },
        None => Compare {
            key: key.to_string().into(),
            target: CompareTarget::Version as i32,
            result: CompareResult::Equal as i32,
            target_union: Some(TargetUnion::Version(0)),
            ..Default::default()
        },
    };
    let put = RequestOp {
        request: Some(OpRequest::RequestPut(PutRequest {
            key: key.to_string().into(),
            value: value.to_string().into(),
            ..Default::default()
        })),
    };
    let r = c
        .txn(TxnRequest {
            compare: vec![compare],
            success: vec![put],
            failure: vec![],
        })
        .await?
        .into_inner();
    Ok(serde_json::json!({ "ok": r.succeeded }))
}
