//! Starting a member: a short sequence of named steps. Open the data
//! directory's storage, decide how the member starts and start its node
//! (`open.rs`, `plan.rs`), wire the shared state, transport and driver,
//! spawn the driver thread and the tasks (`tasks.rs`), wait for a stop,
//! and shut down.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concord_storage::{GroupCommit, GroupCommitOptions};
use parking_lot::RwLock;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::datadir::DataDir;
use crate::driver::{Driver, DriverParts};
use crate::error::ServerError;
use crate::mailbox::{self, InboxSender, Input, INBOX_CAPACITY};
use crate::shared::{Identity, Limits, Shared};
use crate::tls::Tls;
use crate::transport::{Screen, Transport};

mod open;
mod plan;
mod tasks;

/// Bound sockets, so that tests can pick free ports.
#[derive(Debug)]
pub struct Listeners {
    /// Client listeners (gRPC and HTTP).
    pub client: Vec<TcpListener>,
    /// Peer listener.
    pub peer: Vec<TcpListener>,
    /// Metrics listeners (HTTP only).
    pub metrics: Vec<TcpListener>,
}

impl Listeners {
    /// Binds every URL in the configuration.
    pub async fn bind(cfg: &Config) -> Result<Listeners, ServerError> {
        async fn all(addrs: Vec<String>) -> Result<Vec<TcpListener>, ServerError> {
            let mut out = Vec::new();
            for a in addrs {
                out.push(
                    TcpListener::bind(&a)
                        .await
                        .map_err(|e| ServerError::Config(format!("cannot listen on {a}: {e}")))?,
                );
            }
            Ok(out)
        }
        Ok(Listeners {
            client: all(cfg.client_listen_addrs()?).await?,
            peer: all(cfg.peer_listen_addrs()?).await?,
            metrics: all(cfg.metrics_listen_addrs()?).await?,
        })
    }
}

/// A wired member, before its threads and tasks run.
pub(crate) struct Member {
    shared: Arc<Shared>,
    transport: Arc<Transport>,
    inbox: InboxSender,
    screen: Screen,
}

/// Runs a member until `shutdown` resolves or the member stops itself
/// (removed from the cluster, fatal storage error).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::http::install_metrics();
    let tls = Tls::load(&cfg)?;
    let dir = DataDir::create(&cfg.data_dir)?;
    let storage = open::open_storage(&dir)?;
    let started = open::start(&cfg, &tls, &dir, storage).await?;
    let (member, driver) = wire(&cfg, &tls, dir, started)?;
    let driver_thread = spawn_driver(driver, member.shared.clone())?;
    let mut tasks = tasks::spawn_all(&cfg, &tls, listeners, &member)?;
    let me = &member.shared.me;
    tracing::info!(
        name = %cfg.name,
        member = format!("{:x}", me.id),
        cluster = format!("{:x}", me.cluster_id),
        "serving clients on {}",
        cfg.listen_client_urls
    );
    let shared = &member.shared;
    let mut stopped = shared.shutdown.subscribe();
    tokio::select! {
        _ = shutdown => {}
        _ = stopped.wait_for(|s| *s) => {}
        why = tasks.first_ended() => {
            if !*shared.shutdown.borrow() {
                shared.fatal(why);
            }
        }
    }
    shut_down(member, tasks, driver_thread).await
}

/// Builds the shared state, the transport and the driver of a started
/// member.
fn wire(
    cfg: &Config,
    tls: &Tls,
    dir: DataDir,
    s: open::Started,
) -> Result<(Member, Driver), ServerError> {
    let (inbox, inbox_rx) = mailbox::channel(INBOX_CAPACITY)?;
    let cluster_id = s.members.cluster_id;
    let rt = tokio::runtime::Handle::current();
    let transport = Transport::new(s.id, cluster_id, rt, tls.peer_connector.clone());
    for m in s.members.members.values() {
        if let Some(u) = m.peer_urls.first() {
            transport.set_peer(m.id, u.clone());
        }
    }
    let me = Identity {
        id: s.id,
        cluster_id,
        name: cfg.name.clone(),
        client_urls: cfg.advertised_client_urls(),
        data_dir: dir,
        client_tls: tls.member_client.clone(),
    };
    let limits = Limits {
        max_request_bytes: cfg.max_request_bytes,
        quota_backend_bytes: cfg.quota_backend_bytes,
        max_txn_ops: cfg.max_txn_ops,
        strict_reconfig: cfg.strict_reconfig_check,
        stall_bound: crate::failstop::stall_bound(Duration::from_millis(cfg.election_timeout)),
        auth_token_ttl: Duration::from_secs(cfg.auth_token_ttl),
        bcrypt_cost: cfg.bcrypt_cost,
        jwt: crate::auth::jwt::JwtTokens::from_flag(&cfg.auth_token)?.map(Arc::new),
    };
    let members = Arc::new(RwLock::new(s.members));
    let screen = Screen {
        cluster_id,
        own_id: s.id,
        members: members.clone(),
    };
    let shared = Arc::new(Shared::new(me, limits, s.store, members, inbox.clone()));
    let driver = Driver::new(DriverParts {
        node: s.node,
        shared: shared.clone(),
        transport: transport.clone(),
        wal: GroupCommit::start(s.wal, GroupCommitOptions::default())?,
        snaps: s.snaps,
        inbox: inbox_rx,
        screen: screen.clone(),
        snapshot_count: cfg.snapshot_count.max(1),
        snapshot_index: s.snapshot_index,
        applied: s.applied,
        election_ticks: cfg.election_ticks() as u64,
    });
    let member = Member {
        shared,
        transport,
        inbox,
        screen,
    };
    Ok((member, driver))
}

/// Runs the driver on its own thread. The binaries exit from their panic
/// hook before a panic gets here; an embedded server reports it and stops
/// (fail-stop).
fn spawn_driver(
    driver: Driver,
    shared: Arc<Shared>,
) -> Result<std::thread::JoinHandle<Result<(), ServerError>>, ServerError> {
    let thread = std::thread::Builder::new()
        .name("raft-driver".into())
        .spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run()));
            r.unwrap_or_else(|p| {
                let why = format!(
                    "the raft driver panicked: {}",
                    crate::failstop::panic_message(p.as_ref())
                );
                shared.fatal(why.clone());
                Err(ServerError::Internal(why))
            })
        })?;
    Ok(thread)
}

/// Stops the driver and makes the backend durable; a member that could
/// not go on reports why.
async fn shut_down(
    member: Member,
    mut tasks: tasks::Tasks,
    driver_thread: std::thread::JoinHandle<Result<(), ServerError>>,
) -> Result<(), ServerError> {
    tracing::info!("shutting down");
    let shared = member.shared;
    let _ = shared.shutdown.send(true);
    member.inbox.send(Input::Stop).await;
    tasks.abort_all();
    if let Some(why) = shared.fatal_reason() {
        // Nothing more is written: memory may be ahead of what was applied
        // in order; on restart the WAL is the truth.
        return Err(ServerError::Internal(why));
    }
    let r = tokio::task::spawn_blocking(move || driver_thread.join())
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
    match r {
        Ok(r) => r,
        Err(_) => Err(ServerError::Internal("raft driver panicked".into())),
    }?;
    shared.store.write().checkpoint()?;
    Ok(())
}
