//! The member's tasks: listeners, the ticker, the removal watch, the quota
//! check and the auto-compactor. A task that ends before shutdown (a
//! panic, an accept loop that gave up) stops the member.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::{Listeners, Member};
use crate::config::{self, Config};
use crate::error::ServerError;
use crate::mailbox::{InboxSender, Input};
use crate::shared::Shared;
use crate::tls::{self, Tls};

/// Tasks the member cannot live without.
#[derive(Default)]
pub(super) struct Tasks {
    set: JoinSet<&'static str>,
    names: HashMap<tokio::task::Id, &'static str>,
}

impl Tasks {
    fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let h = self.set.spawn(async move {
            task.await;
            name
        });
        self.names.insert(h.id(), name);
    }

    /// Waits for the first task to end and says how it ended (pending
    /// forever when there are none).
    pub(super) async fn first_ended(&mut self) -> String {
        let Some(ended) = self.set.join_next().await else {
            return std::future::pending().await;
        };
        match ended {
            Ok(name) => format!("{name} ended"),
            Err(e) => {
                let name = self.names.get(&e.id()).copied().unwrap_or("a task");
                match e.try_into_panic() {
                    Ok(p) => format!(
                        "{name} panicked: {}",
                        crate::failstop::panic_message(p.as_ref())
                    ),
                    Err(e) => format!("{name} failed: {e}"),
                }
            }
        }
    }

    /// Stops every task.
    pub(super) fn abort_all(&mut self) {
        self.set.abort_all();
    }
}

/// Spawns the member's tasks and serves its listeners.
pub(super) fn spawn_all(
    cfg: &Config,
    tls: &Tls,
    listeners: Listeners,
    m: &Member,
) -> Result<Tasks, ServerError> {
    let mut tasks = Tasks::default();
    // Listeners were bound in URL order: the scheme says which serve TLS.
    let peer_urls = config::list(&cfg.listen_peer_urls);
    for (l, url) in listeners.peer.into_iter().zip(&peer_urls) {
        let acceptor = tls.peer_acceptor.clone().filter(|_| tls::is_tls_url(url));
        let serve = crate::transport::serve_peers(l, m.inbox.clone(), m.screen.clone(), acceptor);
        tasks.spawn("peer listener", serve);
    }
    tasks.spawn("ticker", tick(m.inbox.clone(), cfg.tick()));
    let gone = m.transport.removed_signal();
    tasks.spawn("removal watch", watch_removal(gone, m.shared.clone()));
    let quota_state = m.shared.clone();
    tasks.spawn("quota check", async move {
        let mut iv = tokio::time::interval(Duration::from_secs(1));
        loop {
            iv.tick().await;
            crate::grpc::maintenance::check_quota(&quota_state).await;
        }
    });
    let retention = crate::compactor::Retention::parse(
        &cfg.auto_compaction_mode,
        &cfg.auto_compaction_retention,
    )
    .map_err(ServerError::Config)?;
    let compactor = crate::compactor::run(m.shared.clone(), retention);
    tasks.spawn("auto compaction", compactor);
    serve_clients(
        &mut tasks,
        cfg,
        tls,
        listeners.client,
        listeners.metrics,
        &m.shared,
    );
    Ok(tasks)
}

/// Serves gRPC (and HTTP) on the client listeners, metrics on the others.
fn serve_clients(
    tasks: &mut Tasks,
    cfg: &Config,
    tls: &Tls,
    client: Vec<tokio::net::TcpListener>,
    metrics: Vec<tokio::net::TcpListener>,
    shared: &Arc<Shared>,
) {
    let min_ttl = ((cfg.election_timeout * 3).div_ceil(2)).div_ceil(1000) as i64;
    let router = crate::http::router(shared.clone(), min_ttl.max(1), &cfg.initial_cluster_token);
    let client_urls = config::list(&cfg.listen_client_urls);
    for (l, url) in client.into_iter().zip(&client_urls) {
        let acceptor = tls.client.clone().filter(|_| tls::is_tls_url(url));
        let serve = crate::http::serve_grpc(
            l,
            router.clone(),
            shared.clone(),
            cfg.max_request_bytes,
            cfg.max_concurrent_streams,
            acceptor,
        );
        tasks.spawn("client listener", serve);
    }
    let metrics_urls = config::list(&cfg.listen_metrics_urls);
    for (l, url) in metrics.into_iter().zip(&metrics_urls) {
        let acceptor = tls.client.clone().filter(|_| tls::is_tls_url(url));
        let serve = crate::http::serve_metrics(l, shared.clone(), acceptor);
        tasks.spawn("metrics listener", serve);
    }
}

/// Sends the driver a tick every `interval` until it stops.
fn tick(inbox: InboxSender, interval: Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut iv = tokio::time::interval(interval);
        loop {
            iv.tick().await;
            if inbox.is_closed() {
                return;
            }
            inbox.try_send(Input::Tick);
        }
    })
}

/// Stops the member once the cluster has removed it.
async fn watch_removal(mut gone: tokio::sync::watch::Receiver<bool>, shared: Arc<Shared>) {
    if gone.wait_for(|g| *g).await.is_ok() {
        shared
            .removed
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("the member has been permanently removed from the cluster; stopping");
        let _ = shared.shutdown.send(true);
    }
}
