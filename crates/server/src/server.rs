//! Starting a member: open or bootstrap storage, start the driver thread,
//! the peer transport, the ticker and the gRPC/HTTP listeners.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use concord_mvcc::{Limits, Store};
use concord_raft::{Config as RaftConfig, RawNode, ReadMode};
use concord_storage::{
    FsDisk, GroupCommit, GroupCommitOptions, SnapshotMark, SnapshotOptions, SnapshotStore, Wal,
    WalOptions,
};
use tokio::net::TcpListener;

use crate::config::{self, Config};
use crate::datadir::{self, backend_path, Plan};
use crate::driver::{inbox_channel, Driver, Input, GROUP, INBOX_CAPACITY};
use crate::error::ServerError;
use crate::members::MemberTable;
use crate::shared::Shared;
use crate::tls::{self, Tls};
use crate::transport::{serve_peers, Transport};

/// redb cache size of a member.
pub const BACKEND_CACHE_BYTES: usize = 16 * 1024 * 1024;
/// Cache of values read back from the backend: values stay in memory only
/// until a checkpoint writes them (about a second).
pub const VALUE_CACHE_BYTES: usize = 32 * 1024 * 1024;
/// The store's own bound on a command's keys and values, the same on
/// every member (the flag's bound is checked on arrival).
pub const APPLY_MAX_REQUEST_BYTES: usize = 32 * 1024 * 1024;
/// The store's own bound on a txn's lists, the same on every member.
pub const APPLY_MAX_TXN_OPS: usize = 1 << 16;

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

/// Runs a member until `shutdown` resolves or the member stops itself
/// (removed from the cluster, fatal storage error).
pub async fn run(
    cfg: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    crate::http::install_metrics();
    let tls = Tls::load(&cfg)?;
    std::fs::create_dir_all(&cfg.data_dir)?;
    let data_dir = cfg.data_dir.clone();
    // The store applies what every member applies alike: its limits must
    // not depend on this member's flags (members with different
    // --max-request-bytes or --max-txn-ops would diverge). The flags are
    // enforced where requests arrive (grpc/kv.rs, Shared::propose).
    let limits = Limits {
        max_request_bytes: APPLY_MAX_REQUEST_BYTES,
        max_txn_ops: APPLY_MAX_TXN_OPS,
        // Values read back go through the value cache; redb's page cache
        // holds the B-tree pages that lookups and commits walk.
        backend_cache_bytes: BACKEND_CACHE_BYTES,
        value_cache_bytes: VALUE_CACHE_BYTES,
    };
    let mut store = Store::open_with(backend_path(&data_dir), limits)?;
    let snaps = Arc::new(SnapshotStore::open(
        FsDisk,
        data_dir.join("snap"),
        SnapshotOptions::default(),
    )?);
    let (mut wal, recovered) = Wal::open(FsDisk, data_dir.join("wal"), WalOptions::default())?;
    if let Some(t) = &recovered.torn_tail {
        tracing::warn!(?t, "cut a torn tail off the WAL");
    }
    let existing_log = recovered.groups.get(&GROUP).cloned();
    let saved = MemberTable::load(&data_dir)?;
    // A restart starts from the newest snapshot's metadata (its image is
    // read only if the backend is behind it); its member table stands in
    // for a missing file.
    let snapshot = match (&existing_log, snaps.latest(GROUP)?) {
        (Some(_), Some(info)) => Some(snaps.data_section(GROUP, info.index)?),
        _ => None,
    };
    let snapshot_table = match (&saved, &snapshot) {
        (None, Some((meta, at, _))) => Some(
            crate::snapshot::read_table(|o, n| {
                snaps
                    .read_chunk(GROUP, meta.index, at + o, n)
                    .map(|b| b.to_vec())
                    .map_err(|e| e.to_string())
            })
            .map_err(ServerError::Internal)?,
        ),
        _ => None,
    };
    let peer_urls = cfg.advertised_peer_urls();
    let found = datadir::Found {
        wal_log: existing_log.is_some(),
        backend_applied: store.applied_index(),
        id_file: datadir::read_member_id(&data_dir)?,
        table: saved.as_ref().or(snapshot_table.as_ref()),
        peer_urls: &peer_urls,
        new_cluster: cfg.initial_cluster_state == "new",
    };
    let plan = datadir::plan(&found, &data_dir).map_err(ServerError::Config)?;

    let raft_cfg = |id: u64| {
        let mut c = RaftConfig::new(id, GROUP);
        c.election_tick = cfg.election_ticks();
        c.heartbeat_tick = 1;
        c.pre_vote = true;
        c.check_quorum = true;
        c.read_mode = ReadMode::Safe;
        c.seed = id ^ std::process::id() as u64;
        c.snapshot_chunk_size = crate::driver::SNAPSHOT_CHUNK_BYTES as usize;
        c
    };

    let (members, id, node, snapshot_index, applied) = match plan {
        Plan::Restart { id, rebuilt } => {
            if rebuilt {
                tracing::warn!(
                    member = format!("{id:x}"),
                    "the member_id file was missing or damaged; found this member in the \
                     member table by its peer URLs and wrote the file again"
                );
            }
            let log = existing_log.expect("a restart has a WAL log");
            let mut table = saved
                .or(snapshot_table)
                .expect("a restart has a member table");
            let mut applied = store.applied_index();
            let snap_index = snapshot.as_ref().map_or(0, |(m, _, _)| m.index);
            if let Some((meta, _, _)) = &snapshot {
                if meta.index > applied {
                    // Saved from the leader just before a crash: restore it
                    // (loaded whole and verified).
                    let s = snaps.load(GROUP, meta.index)?;
                    let (t, image) =
                        crate::snapshot::decode(&s.data).map_err(ServerError::Internal)?;
                    store.restore(image)?;
                    t.save(&data_dir)?;
                    table = t;
                    applied = meta.index;
                }
                wal.record_snapshot(
                    GROUP,
                    SnapshotMark {
                        index: meta.index,
                        term: meta.term,
                    },
                )?;
            }
            let image_len = snapshot.as_ref().map(|(_, _, len)| *len);
            // The core gets the metadata; the image stays in the file.
            let snapshot = snapshot.map(|(meta, _, _)| concord_raft::Snapshot {
                meta,
                data: Default::default(),
            });
            let mut state = log.into_initial_state(GROUP, snapshot, applied)?;
            // A commit-only hard state is written without waiting for its
            // fsync, so the WAL may remember a lower commit than the backend
            // applied; what was applied was committed.
            if state.hard_state.commit < applied {
                state.hard_state.commit = applied;
            }
            let mut node = RawNode::restart(raft_cfg(id), state)
                .map_err(|e| ServerError::Config(e.to_string()))?;
            if let Some(len) = image_len {
                node.set_external_snapshot(len);
            }
            tracing::info!(
                member = format!("{id:x}"),
                applied,
                "restarted from the data directory"
            );
            (table, id, node, snap_index, applied)
        }
        Plan::Bootstrap => {
            let initial: Vec<(String, Vec<String>)> = cfg
                .initial_members()?
                .into_iter()
                .map(|m| (m.name, m.peer_urls))
                .collect();
            let table = MemberTable::bootstrap(&initial, &cfg.initial_cluster_token);
            let id = table
                .members
                .values()
                .find(|m| m.name == cfg.name)
                .map(|m| m.id)
                .ok_or_else(|| ServerError::Config("--name not in --initial-cluster".into()))?;
            let voters: Vec<u64> = table.members.keys().copied().collect();
            table.save(&data_dir)?;
            let node = RawNode::bootstrap(raft_cfg(id), &voters)
                .map_err(|e| ServerError::Config(e.to_string()))?;
            tracing::info!(member = format!("{id:x}"), "bootstrapped a new cluster");
            (table, id, node, 0, 0)
        }
        Plan::Join => {
            let table = crate::join::fetch_members(&cfg, tls.peer_connector.as_ref()).await?;
            let id = table
                .find_by_peer_urls(&peer_urls)
                .map(|m| m.id)
                .ok_or_else(|| {
                    ServerError::Config(format!(
                        "the cluster has no member with peer URLs {peer_urls:?}: add it with MemberAdd first"
                    ))
                })?;
            table.save(&data_dir)?;
            let node = RawNode::restart(raft_cfg(id), Default::default())
                .map_err(|e| ServerError::Config(e.to_string()))?;
            tracing::info!(member = format!("{id:x}"), "joining an existing cluster");
            (table, id, node, 0, 0)
        }
    };
    datadir::save_member_id(&data_dir, id)?;

    let rt = tokio::runtime::Handle::current();
    let (inbox_tx, inbox_rx) = inbox_channel(INBOX_CAPACITY)?;
    let cluster_id = members.cluster_id;
    let transport = Transport::new(id, cluster_id, rt.clone(), tls.peer_connector.clone());
    for m in members.members.values() {
        if let Some(u) = m.peer_urls.first() {
            transport.set_peer(m.id, u.clone());
        }
    }
    let mut shared = Shared::new(
        id,
        cluster_id,
        cfg.name.clone(),
        cfg.advertised_client_urls(),
        data_dir.clone(),
        store,
        members,
        inbox_tx.clone(),
        cfg.max_request_bytes,
        cfg.quota_backend_bytes,
    );
    shared.client_tls = tls.member_client.clone();
    shared.strict_reconfig = cfg.strict_reconfig_check;
    shared.max_txn_ops = cfg.max_txn_ops;
    shared.stall_bound = crate::failstop::stall_bound(Duration::from_millis(cfg.election_timeout));
    let shared = Arc::new(shared);
    let wal = GroupCommit::start(wal, GroupCommitOptions::default())?;
    let driver = Driver::new(
        cfg.election_ticks() as u64,
        node,
        shared.clone(),
        transport.clone(),
        wal,
        snaps,
        inbox_rx,
        cfg.snapshot_count.max(1),
        snapshot_index,
        applied,
    );
    let driver_shared = shared.clone();
    let driver_thread = std::thread::Builder::new()
        .name("raft-driver".into())
        .spawn(move || {
            // The binaries exit from their panic hook before this; an
            // embedded server reports the panic and stops (fail-stop).
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver.run()));
            r.unwrap_or_else(|p| {
                let why = format!(
                    "the raft driver panicked: {}",
                    crate::failstop::panic_message(p.as_ref())
                );
                driver_shared.fatal(why.clone());
                Err(ServerError::Internal(why))
            })
        })?;

    // Tasks the member cannot live without: one that ends before shutdown
    // (a panic, an accept loop that gave up) stops the member.
    let mut tasks = tokio::task::JoinSet::new();
    let mut task_names = std::collections::HashMap::new();
    let mut spawn = |name: &'static str,
                     task: std::pin::Pin<Box<dyn Future<Output = ()> + Send>>| {
        let h = tasks.spawn(async move {
            task.await;
            name
        });
        task_names.insert(h.id(), name);
    };
    // Listeners were bound in URL order: the scheme says which serve TLS.
    let peer_urls = config::list(&cfg.listen_peer_urls);
    for (l, url) in listeners.peer.into_iter().zip(&peer_urls) {
        let acceptor = tls.peer_acceptor.clone().filter(|_| tls::is_tls_url(url));
        spawn(
            "peer listener",
            Box::pin(serve_peers(l, inbox_tx.clone(), shared.clone(), acceptor)),
        );
    }
    let tick = cfg.tick();
    let ticker_inbox = inbox_tx.clone();
    spawn(
        "ticker",
        Box::pin(async move {
            let mut iv = tokio::time::interval(tick);
            loop {
                iv.tick().await;
                if ticker_inbox.is_closed() {
                    return;
                }
                ticker_inbox.try_send(Input::Tick);
            }
        }),
    );
    let mut gone = transport.removed_signal();
    let gone_state = shared.clone();
    spawn(
        "removal watch",
        Box::pin(async move {
            if gone.wait_for(|g| *g).await.is_ok() {
                gone_state
                    .removed
                    .store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(
                    "the member has been permanently removed from the cluster; stopping"
                );
                let _ = gone_state.shutdown.send(true);
            }
        }),
    );
    let quota_state = shared.clone();
    spawn(
        "quota check",
        Box::pin(async move {
            let mut iv = tokio::time::interval(Duration::from_secs(1));
            loop {
                iv.tick().await;
                crate::grpc::maintenance::check_quota(&quota_state).await;
            }
        }),
    );

    let retention = crate::compactor::Retention::parse(
        &cfg.auto_compaction_mode,
        &cfg.auto_compaction_retention,
    )
    .map_err(ServerError::Config)?;
    spawn(
        "auto compaction",
        Box::pin(crate::compactor::run(shared.clone(), retention)),
    );

    let min_ttl = ((cfg.election_timeout * 3).div_ceil(2)).div_ceil(1000) as i64;
    let router = crate::http::router(shared.clone(), min_ttl.max(1), &cfg.initial_cluster_token);
    let client_urls = config::list(&cfg.listen_client_urls);
    for (l, url) in listeners.client.into_iter().zip(&client_urls) {
        let acceptor = tls.client.clone().filter(|_| tls::is_tls_url(url));
        spawn(
            "client listener",
            Box::pin(crate::http::serve_grpc(
                l,
                router.clone(),
                shared.clone(),
                cfg.max_request_bytes,
                cfg.max_concurrent_streams,
                acceptor,
            )),
        );
    }
    let metrics_urls = config::list(&cfg.listen_metrics_urls);
    for (l, url) in listeners.metrics.into_iter().zip(&metrics_urls) {
        let acceptor = tls.client.clone().filter(|_| tls::is_tls_url(url));
        spawn(
            "metrics listener",
            Box::pin(crate::http::serve_metrics(l, shared.clone(), acceptor)),
        );
    }
    tracing::info!(
        name = %cfg.name,
        member = format!("{id:x}"),
        cluster = format!("{cluster_id:x}"),
        "serving clients on {}",
        cfg.listen_client_urls
    );

    let mut stopped = shared.shutdown.subscribe();
    tokio::select! {
        _ = shutdown => {}
        _ = stopped.wait_for(|s| *s) => {}
        Some(ended) = tasks.join_next() => {
            let why = match ended {
                Ok(name) => format!("{name} ended"),
                Err(e) => {
                    let name = task_names.get(&e.id()).copied().unwrap_or("a task");
                    match e.try_into_panic() {
                        Ok(p) => format!(
                            "{name} panicked: {}",
                            crate::failstop::panic_message(p.as_ref())
                        ),
                        Err(e) => format!("{name} failed: {e}"),
                    }
                }
            };
            if !*shared.shutdown.borrow() {
                shared.fatal(why);
            }
        }
    }
    tracing::info!("shutting down");
    let _ = shared.shutdown.send(true);
    inbox_tx.send(Input::Stop).await;
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
