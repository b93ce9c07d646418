//! Maintenance and Cluster RPCs the harness needs, through `etcd-client`.

use std::time::Duration;

/// What a member's Maintenance Status RPC says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeStatus {
    /// The member's own id.
    pub id: u64,
    /// The leader it knows (0 = none).
    pub leader: u64,
    /// Raft term.
    pub term: u64,
    /// Commit index.
    pub raft_index: u64,
    /// Applied index.
    pub applied: u64,
    /// Is it a learner.
    pub is_learner: bool,
}

/// Runs `fut` on a fresh current-thread runtime in its own thread, so the
/// harness can be used from sync and async tests alike.
pub fn block_on_thread<T: Send + 'static>(
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .expect("harness thread panicked")
}

/// A client for one or more `host:port` endpoints, with short timeouts.
pub async fn client(endpoints: &[String]) -> Option<etcd_client::Client> {
    let urls: Vec<String> = endpoints.iter().map(|e| format!("http://{e}")).collect();
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(5));
    tokio::time::timeout(
        Duration::from_secs(5),
        etcd_client::Client::connect(urls, Some(opts)),
    )
    .await
    .ok()?
    .ok()
}

/// The Status RPC of the member at `addr`, or None if it does not answer.
pub fn status_of(addr: &str) -> Option<NodeStatus> {
    let addr = addr.to_string();
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let s = tokio::time::timeout(Duration::from_secs(3), c.status())
            .await
            .ok()?
            .ok()?;
        Some(NodeStatus {
            id: s.header()?.member_id(),
            leader: s.leader(),
            term: s.raft_term(),
            raft_index: s.raft_index(),
            applied: s.raft_applied_index(),
            is_learner: s.is_learner(),
        })
    })
}

/// `(name, first client URL)` of every member, from the member at `addr`.
pub fn member_list(addr: &str) -> Option<Vec<(String, String)>> {
    let addr = addr.to_string();
    block_on_thread(async move {
        let mut c = client(&[addr]).await?;
        let r = tokio::time::timeout(Duration::from_secs(3), c.member_list())
            .await
            .ok()?
            .ok()?;
        Some(
            r.members()
                .iter()
                .map(|m| {
                    let url = m.client_urls().first().cloned().unwrap_or_default();
                    (m.name().to_string(), url)
                })
                .collect(),
        )
    })
}
