//! The KV workloads: `put`, `range` and `txn-put`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::unary::{self, MethodUri, UnaryConn};
use bytes::Bytes;
use concord_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use concord_proto::etcdserverpb::request_op::Request;
use concord_proto::etcdserverpb::{
    Compare, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, TxnRequest,
    TxnResponse,
};
use http::HeaderValue;
use tokio::task::JoinSet;

use crate::control::{Control, Stats};
use crate::keys::{self, KeyGen, Rng};
use crate::progress::Progress;
use crate::{Args, BenchError, Consistency, Report, Workload};

/// Concurrent writers of the (unmeasured) range prefill.
const PREFILL_TASKS: u64 = 64;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Put,
    TxnPut,
    /// Reads among the first `keys` keys (the prefilled ones; 0: all keys).
    Range {
        serializable: bool,
        keys: u64,
    },
}

impl Kind {
    /// The gRPC method this kind calls.
    fn path(self) -> &'static str {
        match self {
            Kind::Put => "/etcdserverpb.KV/Put",
            Kind::TxnPut => "/etcdserverpb.KV/Txn",
            Kind::Range { .. } => "/etcdserverpb.KV/Range",
        }
    }
}

/// Runs `put`, `range` or `txn-put` against `endpoints`.
pub(crate) async fn run(
    args: &Args,
    endpoints: &[String],
    token: Option<HeaderValue>,
) -> Result<Report, BenchError> {
    let keygen = KeyGen::new(Bytes::new(), args.key_size, args.key_space);
    let kind = match args.workload {
        Workload::Put => Kind::Put,
        Workload::TxnPut => Kind::TxnPut,
        Workload::Range {
            consistency,
            prefill,
        } => {
            let timeout = args.request_timeout();
            let conns = unary::connect(endpoints, args.conns, token.clone()).await?;
            prefill_keys(&conns, &keygen, prefill, args.val_size, timeout).await?;
            Kind::Range {
                serializable: consistency == Consistency::S,
                keys: prefill,
            }
        }
        _ => unreachable!("not a KV workload"),
    };
    let seed = base_seed();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(args.conns);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel(threads);
    let mut go = Vec::with_capacity(threads);
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        let (go_tx, go_rx) = std::sync::mpsc::channel::<Arc<Control>>();
        go.push(go_tx);
        let shard = Shard {
            conns: (0..args.conns)
                .filter(|j| j % threads == t)
                .map(|j| (j, endpoints[j % endpoints.len()].clone()))
                .collect(),
            clients: (0..args.clients)
                .filter(|i| i % args.conns % threads == t)
                .collect(),
            all_conns: args.conns,
            kind,
            keygen: keygen.clone(),
            seed,
            timeout: args.request_timeout(),
            token: token.clone(),
            val_size: args.val_size,
            sequential: args.sequential_keys,
        };
        let ready = ready_tx.clone();
        let handle = std::thread::Builder::new()
            .name(format!("bench-{t}"))
            .spawn(move || shard.run(ready, go_rx))
            .map_err(BenchError::from)?;
        handles.push(handle);
    }
    drop(ready_tx);
    // Every shard has its connections before the clock starts.
    for _ in 0..threads {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e),
            None => return Err(BenchError::new("a client thread stopped")),
        }
    }
    let ctl = Arc::new(Control::new(args.total, args.duration()));
    let c = ctl.clone();
    let progress = Progress::start(
        !args.no_progress,
        args.workload.name(),
        ctl.total(),
        move || c.done(),
    );
    let start = Instant::now();
    for g in go {
        let _ = g.send(ctl.clone());
    }
    let joined = tokio::task::spawn_blocking(move || {
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError::new("a client thread panicked")))
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| BenchError(format!("client threads: {e}")))?;
    let elapsed = start.elapsed();
    progress.finish();
    let mut stats = Stats::default();
    for r in joined {
        stats.merge(&r?);
    }
    Ok(Report::new(args, args.clients, &stats, elapsed))
}

/// The clients of one thread: a single-threaded runtime with its own
/// connections, so a connection, its clients and their wake-ups stay on one
/// core. On a multi-threaded runtime the clients of a connection ran on both
/// workers, contending for h2's connection lock and waking each other
/// across threads: a tenth of this process's CPU at 256 clients.
struct Shard {
    /// `(connection number, endpoint)`.
    conns: Vec<(usize, String)>,
    /// Client numbers; client `i` uses connection `i % all_conns`.
    clients: Vec<usize>,
    all_conns: usize,
    kind: Kind,
    keygen: KeyGen,
    seed: u64,
    timeout: Duration,
    /// Sent with every request (`--user`).
    token: Option<HeaderValue>,
    val_size: usize,
    sequential: bool,
}

impl Shard {
    /// Connects, reports on `ready`, waits for the run's [`Control`] on
    /// `go` (none: the run was abandoned), runs the clients.
    fn run(
        self,
        ready: tokio::sync::mpsc::Sender<Result<(), BenchError>>,
        go: std::sync::mpsc::Receiver<Arc<Control>>,
    ) -> Result<Stats, BenchError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async move {
            let mut conns = std::collections::HashMap::new();
            for (j, url) in &self.conns {
                match UnaryConn::dial(url).await {
                    Ok(c) => drop(conns.insert(*j, c.with_token(self.token.clone()))),
                    Err(e) => {
                        let _ = ready.send(Err(e.clone())).await;
                        return Err(e);
                    }
                }
            }
            let _ = ready.send(Ok(())).await;
            // Blocking here is brief: the other shards are connecting.
            let Ok(ctl) = go.recv() else {
                return Ok(Stats::default());
            };
            // One histogram for the shard's clients: one per client (each
            // a few hundred KiB) made every record a cache miss, 3% of this
            // process's CPU at 256 clients.
            let stats = Arc::new(Mutex::new(Stats::default()));
            let mut set = JoinSet::new();
            for &i in &self.clients {
                let conn: UnaryConn = conns[&(i % self.all_conns)].clone();
                let client = Client {
                    uri: conn.method(self.kind.path()),
                    conn,
                    kind: self.kind,
                    keys: self.keygen.clone(),
                    rng: Rng::new(self.seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                    timeout: self.timeout,
                    sequential: self.sequential,
                    stats: stats.clone(),
                };
                set.spawn(client.run(ctl.clone(), self.val_size));
            }
            while let Some(r) = set.join_next().await {
                r.map_err(|e| BenchError(format!("client task: {e}")))?;
            }
            let stats = std::mem::take(&mut *stats.lock().expect("stats lock"));
            Ok(stats)
        })
    }
}

/// A seed that differs between runs.
pub(crate) fn base_seed() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_nanos() as u64) ^ u64::from(std::process::id()).rotate_left(32)
}

struct Client {
    conn: UnaryConn,
    uri: MethodUri,
    kind: Kind,
    keys: KeyGen,
    rng: Rng,
    timeout: Duration,
    /// Keys in order rather than at random (`--sequential-keys`).
    sequential: bool,
    /// Shared by the shard's clients (one thread: never contended).
    stats: Arc<Mutex<Stats>>,
}

impl Client {
    async fn run(mut self, ctl: Arc<Control>, val_size: usize) {
        let value = keys::value(&mut self.rng, val_size);
        while let Some(seq) = ctl.next_seq() {
            match self.kind {
                Kind::Put => {
                    let key = match self.sequential {
                        true => self.keys.key(seq % self.keys.key_space()),
                        false => self.keys.random(&mut self.rng),
                    };
                    let req = put(key, value.clone());
                    timed(
                        &self.stats,
                        self.timeout,
                        self.conn.call::<_, PutResponse>(&self.uri, &req),
                    )
                    .await;
                }
                Kind::TxnPut => {
                    let req = txn_put(self.keys.random(&mut self.rng), value.clone());
                    let call = self.conn.call::<_, TxnResponse>(&self.uri, &req);
                    if timed(&self.stats, self.timeout, call)
                        .await
                        .is_some_and(|r| !r.succeeded)
                    {
                        // Counted as a success by `timed`; move it to the errors.
                        let mut stats = self.stats.lock().expect("stats lock");
                        stats.ok -= 1;
                        stats.error("TxnCompareFailed");
                    }
                }
                Kind::Range { serializable, keys } => {
                    let key = match keys {
                        0 => self.keys.random(&mut self.rng),
                        n => self.keys.random_below(&mut self.rng, n),
                    };
                    let req = RangeRequest {
                        key,
                        serializable,
                        ..Default::default()
                    };
                    timed(
                        &self.stats,
                        self.timeout,
                        self.conn.call::<_, RangeResponse>(&self.uri, &req),
                    )
                    .await;
                }
            }
            ctl.finish_one();
        }
    }
}

/// Times one call under `timeout` and records its outcome (the shared stats
/// are locked only once the call is over).
async fn timed<T>(
    stats: &Mutex<Stats>,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, tonic::Status>>,
) -> Option<T> {
    let start = Instant::now();
    let r = tokio::time::timeout(timeout, call).await;
    stats.lock().expect("stats lock").outcome(start, r)
}

fn put(key: Bytes, value: Bytes) -> PutRequest {
    PutRequest {
        key,
        value,
        ..Default::default()
    }
}

/// A txn whose compare always holds (`mod_revision(key) > -1`: a missing key
/// has mod_revision 0) and whose success branch puts the key.
fn txn_put(key: Bytes, value: Bytes) -> TxnRequest {
    TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Mod as i32,
            key: key.clone(),
            range_end: Bytes::new(),
            target_union: Some(TargetUnion::ModRevision(-1)),
        }],
        success: vec![RequestOp {
            request: Some(Request::RequestPut(put(key, value))),
        }],
        failure: vec![],
    }
}

/// Writes keys `0..n` (not measured), retrying each put a few times.
async fn prefill_keys(
    conns: &[UnaryConn],
    keygen: &KeyGen,
    n: u64,
    val_size: usize,
    timeout: Duration,
) -> Result<(), BenchError> {
    let tasks = PREFILL_TASKS.min(n);
    let mut set = JoinSet::new();
    for t in 0..tasks {
        let mut conn = conns[t as usize % conns.len()].clone();
        let uri = conn.method(Kind::Put.path());
        let keygen = keygen.clone();
        let value = keys::value(&mut Rng::new(t), val_size);
        set.spawn(async move {
            for i in (t..n).step_by(tasks as usize) {
                let mut attempt = 0;
                loop {
                    let req = put(keygen.key(i), value.clone());
                    let call = conn.call::<_, PutResponse>(&uri, &req);
                    let err = match tokio::time::timeout(timeout, call).await {
                        Ok(Ok(_)) => break,
                        Ok(Err(s)) => BenchError::from(s),
                        Err(_) => BenchError::new("timed out"),
                    };
                    attempt += 1;
                    if attempt >= 3 {
                        return Err(BenchError(format!("prefill put failed: {err}")));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            Ok(())
        });
    }
    while let Some(r) = set.join_next().await {
        r.map_err(|e| BenchError(format!("prefill task: {e}")))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn txn_compare_is_always_true() {
        let t = txn_put(Bytes::from_static(b"k"), Bytes::from_static(b"v"));
        assert_eq!(t.compare.len(), 1);
        let c = &t.compare[0];
        assert_eq!(c.result, CompareResult::Greater as i32);
        assert_eq!(c.target, CompareTarget::Mod as i32);
        assert_eq!(c.target_union, Some(TargetUnion::ModRevision(-1)));
        assert!(
            matches!(&t.success[..], [RequestOp { request: Some(Request::RequestPut(p)) }]
            if p.key == "k" && p.value == "v")
        );
        assert!(t.failure.is_empty());
    }
}
