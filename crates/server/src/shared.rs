//! State shared between the Raft driver thread and the gRPC services.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_mvcc::{MvccError, Response, Store};
use concord_raft::{ConfChange, Role};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{oneshot, watch};

use crate::driver::{InboxSender, Input};
use crate::envelope::{self, Payload};
use crate::error::ServerError;
use crate::members::MemberTable;
use crate::watch::WatchHub;

/// What applying a proposal produced.
#[derive(Debug)]
pub enum Outcome {
    /// An MVCC command's result (a request error changed nothing).
    Mvcc(Result<Response, MvccError>),
    /// A server operation or membership change was applied.
    Done,
}

/// A waiter for an applied proposal.
pub type Waiter = oneshot::Sender<Result<Outcome, ServerError>>;

/// This member's Raft status, refreshed by the driver after every `Ready`.
#[derive(Debug, Clone, Default)]
pub struct RaftStatus {
    /// Current term.
    pub term: u64,
    /// Known leader (0 = none).
    pub leader: u64,
    /// Role.
    pub is_leader: bool,
    /// Commit index.
    pub commit: u64,
    /// Applied index.
    pub applied: u64,
    /// Last log index.
    pub last_index: u64,
    /// Is this member a learner.
    pub is_learner: bool,
}

/// How long a client request may wait for its entry to apply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Everything the services and the driver share.
#[derive(Debug)]
pub struct Shared {
    /// This member's id.
    pub id: u64,
    /// Cluster id.
    pub cluster_id: u64,
    /// Member name.
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// The state machine.
    pub store: RwLock<Store>,
    /// The member table.
    pub members: RwLock<MemberTable>,
    /// Live watches.
    pub watch: WatchHub,
    /// Status, refreshed by the driver.
    pub status: RwLock<RaftStatus>,
    /// Changes whenever the leader changes (value: leader id).
    pub leader_rx: watch::Receiver<u64>,
    pub(crate) leader_tx: watch::Sender<u64>,
    /// The driver's inbox.
    pub(crate) inbox: InboxSender,
    pub(crate) pending: Mutex<HashMap<u64, Waiter>>,
    next_request: AtomicU64,
    request_prefix: u64,
    /// Set once this member is removed from the cluster.
    pub removed: AtomicBool,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: u64,
    /// Backend file size, refreshed every second (the quota check).
    backend_size: AtomicU64,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// Process start, the origin of [`Shared::now_ms`].
    pub started: Instant,
    /// Signals the whole server to stop.
    pub shutdown: watch::Sender<bool>,
    /// Dials other members' `https://` client URLs (requests forwarded to
    /// the leader); set at start-up when client URLs use TLS.
    pub client_tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// `--strict-reconfig-check`.
    pub strict_reconfig: bool,
    /// Leader only: the members it heard from within an election timeout
    /// (refreshed every tick; empty on followers).
    pub active_peers: RwLock<Vec<u64>>,
    /// When the driver last began a round ([`Shared::now_ms`] scale).
    pub(crate) driver_round_ms: AtomicI64,
    /// A driver silent for longer is stuck (`/livez`; `failstop.rs`).
    pub stall_bound: Duration,
    /// Why the member cannot go on, once it cannot ([`Shared::fatal`]).
    fatal: Mutex<Option<String>>,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        cluster_id: u64,
        name: String,
        client_urls: Vec<String>,
        data_dir: PathBuf,
        store: Store,
        members: MemberTable,
        inbox: InboxSender,
        max_request_bytes: usize,
        quota_backend_bytes: u64,
    ) -> Shared {
        let (leader_tx, leader_rx) = watch::channel(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Request ids are unique across members and restarts: every member
        // applies every entry and answers only the ids it handed out.
        let request_prefix =
            (crate::members::fnv64(&[&id.to_be_bytes(), &nanos.to_be_bytes()]) & 0xff_ffff) << 40;
        Shared {
            id,
            cluster_id,
            name,
            client_urls,
            data_dir,
            store: RwLock::new(store),
            members: RwLock::new(members),
            watch: WatchHub::default(),
            status: RwLock::new(RaftStatus::default()),
            leader_rx,
            leader_tx,
            inbox,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            request_prefix,
            removed: AtomicBool::new(false),
            max_request_bytes,
            quota_backend_bytes,
            backend_size: AtomicU64::new(0),
            max_txn_ops: crate::config::DEFAULT_MAX_TXN_OPS,
            started: Instant::now(),
            shutdown: watch::channel(false).0,
            client_tls: None,
            strict_reconfig: true,
            active_peers: RwLock::new(Vec::new()),
            driver_round_ms: AtomicI64::new(0),
            stall_bound: crate::failstop::stall_bound(Duration::from_secs(1)),
            fatal: Mutex::new(None),
        }
    }

    /// The member cannot go on (its driver panicked, a critical task
    /// ended): nothing more is written to the backend, every request
    /// fails, and the member stops; `run` returns the error.
    pub fn fatal(&self, why: String) {
        tracing::error!("fatal: {why}; stopping the member");
        if let Some(mut store) = self.store.try_write_for(Duration::from_secs(1)) {
            store.poison();
        }
        self.fatal.lock().get_or_insert(why);
        let _ = self.shutdown.send(true);
    }

    /// Why the member stopped, if it could not go on.
    pub fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().clone()
    }

    /// The driver began a round now.
    pub(crate) fn driver_progress(&self) {
        self.driver_round_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the driver has been stuck, once past [`Shared::stall_bound`].
    pub fn driver_stalled(&self) -> Option<Duration> {
        let last = self.driver_round_ms.load(Ordering::Relaxed);
        let silent = Duration::from_millis((self.now_ms() - last).max(0) as u64);
        (silent > self.stall_bound).then_some(silent)
    }

    /// Milliseconds on this process's monotonic clock (lease timing).
    pub fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    fn request_id(&self) -> u64 {
        self.request_prefix | (self.next_request.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff)
    }

    fn check_serving(&self) -> Result<(), ServerError> {
        if self.removed.load(Ordering::Relaxed) {
            return Err(ServerError::Removed);
        }
        Ok(())
    }

    /// Proposes a payload and waits until it is applied here.
    pub async fn propose(&self, payload: Payload) -> Result<Outcome, ServerError> {
        self.check_serving()?;
        let id = self.request_id();
        let data = envelope::encode(id, &payload);
        if data.len() > self.max_request_bytes + 1024 {
            return Err(ServerError::RequestTooLarge);
        }
        self.submit(id, Input::Propose { id, data }).await
    }

    /// Proposes a membership change and waits until it is applied here.
    pub async fn propose_conf_change(
        &self,
        cc: ConfChange,
        member: Option<crate::members::Member>,
    ) -> Result<Outcome, ServerError> {
        self.check_serving()?;
        let id = self.request_id();
        let ctx = envelope::MemberContext {
            request: id,
            member,
        };
        let ctx = Bytes::from(serde_json::to_vec(&ctx).expect("context encodes"));
        self.submit(id, Input::ConfChange { id, cc, ctx }).await
    }

    async fn submit(&self, id: u64, input: Input) -> Result<Outcome, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        if !self.inbox.try_send(input) {
            self.pending.lock().remove(&id);
            metrics::counter!("concord_proposals_failed_total").increment(1);
            return Err(ServerError::TooManyRequests);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.pending.lock().remove(&id);
                metrics::counter!("concord_proposals_failed_total").increment(1);
                Err(ServerError::Timeout)
            }
        }
    }

    /// Waits until a linearizable read may be served from the local store
    /// (ReadIndex confirmed and applied here).
    pub async fn read_barrier(&self) -> Result<(), ServerError> {
        self.check_serving()?;
        let (tx, rx) = oneshot::channel();
        if !self.inbox.try_send(Input::Read(tx)) {
            return Err(ServerError::TooManyRequests);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }

    /// Asks the leader to hand leadership to `target` and waits for it.
    pub async fn transfer_leader(&self, target: u64) -> Result<(), ServerError> {
        let mut rx = self.leader_rx.clone();
        if !self.inbox.try_send(Input::Transfer { target }) {
            return Err(ServerError::TooManyRequests);
        }
        let wait = async {
            loop {
                if *rx.borrow_and_update() == target {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(REQUEST_TIMEOUT, wait)
            .await
            .map_err(|_| ServerError::Timeout)
    }

    /// Current Raft status.
    pub fn raft_status(&self) -> RaftStatus {
        self.status.read().clone()
    }

    /// The backend file's size as last measured.
    pub fn backend_size(&self) -> u64 {
        self.backend_size.load(Ordering::Relaxed)
    }

    /// Records the backend file's size.
    pub fn set_backend_size(&self, bytes: u64) {
        self.backend_size.store(bytes, Ordering::Relaxed);
    }

    /// True when a NOSPACE alarm is raised.
    pub fn no_space(&self) -> bool {
        self.members.read().alarms.iter().any(|&(_, a)| a == 1)
    }

    /// Answers the waiter of `request`, if this member handed it out.
    pub(crate) fn respond(&self, request: u64, r: Result<Outcome, ServerError>) {
        if let Some(tx) = self.pending.lock().remove(&request) {
            let _ = tx.send(r);
        }
    }

    /// Fails every waiting proposal (shutdown).
    pub(crate) fn fail_all(&self, e: impl Fn() -> ServerError) {
        for (_, tx) in self.pending.lock().drain() {
            let _ = tx.send(Err(e()));
        }
    }

    /// Has this member's name and client URLs reached the member table (as
    /// in etcd, it is not ready to serve before).
    pub fn published(&self) -> bool {
        self.members
            .read()
            .members
            .get(&self.id)
            .is_some_and(|m| m.name == self.name && m.client_urls == self.client_urls)
    }

    /// Is this member the leader now.
    pub fn is_leader(&self) -> bool {
        self.status.read().is_leader
    }

    pub(crate) fn set_role(&self, role: Role, leader: u64) {
        let mut s = self.status.write();
        s.is_leader = role == Role::Leader;
        s.leader = leader;
        drop(s);
        self.leader_tx.send_replace(leader);
    }
}

#[cfg(test)]
impl Shared {
    /// A member's shared state over a fresh store in `dir`, for unit tests
    /// (no driver runs; the inbox's receiving half is returned).
    pub(crate) fn for_tests(
        id: u64,
        cluster_id: u64,
        dir: &std::path::Path,
    ) -> (std::sync::Arc<Shared>, crate::driver::Inbox) {
        let store = Store::open(dir.join("db")).expect("open store");
        let (tx, inbox) = crate::driver::inbox_channel(16).expect("inbox");
        let shared = Shared::new(
            id,
            cluster_id,
            format!("m{id}"),
            vec![],
            dir.to_path_buf(),
            store,
            MemberTable::default(),
            tx,
            1 << 20,
            1 << 30,
        );
        (std::sync::Arc::new(shared), inbox)
    }
}
