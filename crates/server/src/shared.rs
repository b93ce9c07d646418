//! State shared between the Raft driver thread and the gRPC services,
//! split by what changes together: who this member is and the limits its
//! flags set ([`Identity`], [`Limits`], fixed at start-up), the
//! [`Proposer`] (request ids, the inbox, waiters), and the state handles
//! the driver updates and the services read.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use concord_mvcc::Store;
use concord_raft::{ConfChange, Role};
use parking_lot::{Mutex, RwLock};
use tokio::sync::watch;

use crate::auth::jwt::JwtTokens;
use crate::auth::Gate;
use crate::datadir::DataDir;
use crate::envelope::{self, Payload};
use crate::error::ServerError;
use crate::mailbox::{InboxSender, Input};
use crate::members::MemberTable;
use crate::proposer::{Outcome, Proposer, REQUEST_TIMEOUT};
use crate::watch::WatchHub;

/// Who this member is: fixed at start-up.
#[derive(Debug)]
pub(crate) struct Identity {
    /// This member's id.
    pub id: u64,
    /// Cluster id.
    pub cluster_id: u64,
    /// Member name.
    pub name: String,
    /// Advertised client URLs.
    pub client_urls: Vec<String>,
    /// Data directory.
    pub data_dir: DataDir,
    /// Dials other members' `https://` client URLs (requests forwarded to
    /// the leader); set when client URLs use TLS.
    pub client_tls: Option<Arc<rustls::ClientConfig>>,
}

/// What this member's flags allow: fixed at start-up.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--quota-backend-bytes`.
    pub quota_backend_bytes: u64,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--strict-reconfig-check`.
    pub strict_reconfig: bool,
    /// A driver silent for longer is stuck (`/livez`; `failstop.rs`).
    pub stall_bound: Duration,
    /// `--auth-token-ttl`.
    pub auth_token_ttl: Duration,
    /// `--bcrypt-cost`.
    pub bcrypt_cost: u32,
    /// `--auth-token jwt,...`: signed tokens instead of simple ones.
    pub jwt: Option<Arc<JwtTokens>>,
}

/// This member's Raft status, refreshed by the driver after every `Ready`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftStatus {
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

/// Everything the services and the driver share.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Who this member is.
    pub me: Identity,
    /// What its flags allow.
    pub limits: Limits,
    /// Request ids, the driver's inbox, waiters.
    pub proposer: Proposer,
    /// The state machine.
    pub store: RwLock<Store>,
    /// The auth store's view, tokens and callers.
    pub auth: Gate,
    /// The member table (shared with the transport's screen).
    pub members: Arc<RwLock<MemberTable>>,
    /// Live watches.
    pub watch: WatchHub,
    /// Status, refreshed by the driver.
    pub status: RwLock<RaftStatus>,
    /// Changes whenever the leader changes (value: leader id).
    pub leader_rx: watch::Receiver<u64>,
    leader_tx: watch::Sender<u64>,
    /// Set once this member is removed from the cluster.
    pub removed: AtomicBool,
    /// Backend file size, refreshed every second (the quota check).
    backend_size: AtomicU64,
    /// Process start, the origin of [`Shared::now_ms`].
    pub started: Instant,
    /// Signals the whole server to stop.
    pub shutdown: watch::Sender<bool>,
    /// Leader only: the members it heard from within an election timeout
    /// (refreshed every tick; empty on followers).
    pub active_peers: RwLock<Vec<u64>>,
    /// When the driver last began a round ([`Shared::now_ms`] scale).
    driver_round_ms: AtomicI64,
    /// Why the member cannot go on, once it cannot ([`Shared::fatal`]).
    fatal: Mutex<Option<String>>,
}

impl Shared {
    /// The shared state of member `me` over its store and member table.
    pub(crate) fn new(
        me: Identity,
        limits: Limits,
        store: Store,
        members: Arc<RwLock<MemberTable>>,
        inbox: InboxSender,
    ) -> Shared {
        let (leader_tx, leader_rx) = watch::channel(0);
        let auth = Gate::new(
            store.auth().clone(),
            limits.auth_token_ttl,
            limits.bcrypt_cost,
            limits.jwt.clone(),
        );
        Shared {
            auth,
            proposer: Proposer::new(me.id, inbox),
            me,
            limits,
            store: RwLock::new(store),
            members,
            watch: WatchHub::default(),
            status: RwLock::new(RaftStatus::default()),
            leader_rx,
            leader_tx,
            removed: AtomicBool::new(false),
            backend_size: AtomicU64::new(0),
            started: Instant::now(),
            shutdown: watch::channel(false).0,
            active_peers: RwLock::new(Vec::new()),
            driver_round_ms: AtomicI64::new(0),
            fatal: Mutex::new(None),
        }
    }

    /// The data directory.
    pub(crate) fn data_dir(&self) -> &DataDir {
        &self.me.data_dir
    }
    /// The member cannot go on (its driver panicked, a critical task
    /// ended): nothing more is written to the backend, every request
    /// fails, and the member stops; `run` returns the error.
    pub(crate) fn fatal(&self, why: String) {
        tracing::error!("fatal: {why}; stopping the member");
        if let Some(mut store) = self.store.try_write_for(Duration::from_secs(1)) {
            store.poison();
        }
        self.fatal.lock().get_or_insert(why);
        let _ = self.shutdown.send(true);
    }

    /// Why the member stopped, if it could not go on.
    pub(crate) fn fatal_reason(&self) -> Option<String> {
        self.fatal.lock().clone()
    }

    /// The driver began a round now.
    pub(crate) fn driver_progress(&self) {
        self.driver_round_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the driver has been stuck, once past [`Limits::stall_bound`].
    pub(crate) fn driver_stalled(&self) -> Option<Duration> {
        let last = self.driver_round_ms.load(Ordering::Relaxed);
        let silent = Duration::from_millis((self.now_ms() - last).max(0) as u64);
        (silent > self.limits.stall_bound).then_some(silent)
    }

    /// Milliseconds on this process's monotonic clock (lease timing).
    pub(crate) fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    fn check_serving(&self) -> Result<(), ServerError> {
        if self.removed.load(Ordering::Relaxed) {
            return Err(ServerError::Removed);
        }
        Ok(())
    }

    /// Proposes a payload and waits until it is applied here.
    pub(crate) async fn propose(&self, payload: Payload) -> Result<Outcome, ServerError> {
        self.check_serving()?;
        let id = self.proposer.request_id();
        let data = envelope::encode(id, &payload);
        if data.len() > self.limits.max_request_bytes + 1024 {
            return Err(ServerError::RequestTooLarge);
        }
        self.proposer.submit(id, Input::Propose { id, data }).await
    }

    /// Proposes a membership change and waits until it is applied here.
    pub(crate) async fn propose_conf_change(
        &self,
        cc: ConfChange,
        member: Option<crate::members::Member>,
    ) -> Result<Outcome, ServerError> {
        self.check_serving()?;
        let id = self.proposer.request_id();
        let ctx = envelope::MemberContext {
            request: id,
            member,
        };
        let ctx = Bytes::from(serde_json::to_vec(&ctx).expect("context encodes"));
        self.proposer
            .submit(id, Input::ConfChange { id, cc, ctx })
            .await
    }

    /// Waits until a linearizable read may be served from the local store
    /// (ReadIndex confirmed and applied here).
    pub(crate) async fn read_barrier(&self) -> Result<(), ServerError> {
        self.check_serving()?;
        self.proposer.read_barrier().await
    }

    /// Asks the leader to hand leadership to `target` and waits for it.
    pub(crate) async fn transfer_leader(&self, target: u64) -> Result<(), ServerError> {
        let mut rx = self.leader_rx.clone();
        if !self.proposer.inbox().try_send(Input::Transfer { target }) {
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
    pub(crate) fn raft_status(&self) -> RaftStatus {
        self.status.read().clone()
    }

    /// The backend file's size as last measured.
    pub(crate) fn backend_size(&self) -> u64 {
        self.backend_size.load(Ordering::Relaxed)
    }

    /// Records the backend file's size.
    pub(crate) fn set_backend_size(&self, bytes: u64) {
        self.backend_size.store(bytes, Ordering::Relaxed);
    }

    /// True when a NOSPACE alarm is raised.
    pub(crate) fn no_space(&self) -> bool {
        self.members.read().alarms.iter().any(|&(_, a)| a == 1)
    }

    /// Has this member's name and client URLs reached the member table (as
    /// in etcd, it is not ready to serve before).
    pub(crate) fn published(&self) -> bool {
        self.members
            .read()
            .members
            .get(&self.me.id)
            .is_some_and(|m| m.name == self.me.name && m.client_urls == self.me.client_urls)
    }

    /// Is this member the leader now.
    pub(crate) fn is_leader(&self) -> bool {
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
    ) -> (Arc<Shared>, crate::mailbox::Inbox) {
        let store = Store::open(dir.join("db")).expect("open store");
        let (tx, inbox) = crate::mailbox::channel(16).expect("inbox");
        let me = Identity {
            id,
            cluster_id,
            name: format!("m{id}"),
            client_urls: vec![],
            data_dir: DataDir::new(dir),
            client_tls: None,
        };
        let members = Arc::new(RwLock::new(MemberTable::default()));
        let limits = Limits {
            max_request_bytes: 1 << 20,
            quota_backend_bytes: 1 << 30,
            max_txn_ops: 128,
            strict_reconfig: true,
            stall_bound: Duration::from_secs(3),
            auth_token_ttl: Duration::from_secs(300),
            bcrypt_cost: 4,
            jwt: None,
        };
        let shared = Shared::new(me, limits, store, members, tx);
        (Arc::new(shared), inbox)
    }
}
