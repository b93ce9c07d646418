//! Requests a follower hands to the leader over the leader's client URL
//! (plain or TLS): lease keep-alives and time-to-live queries, whose
//! clocks run on the leader, and membership changes, whose safety checks
//! need the leader's view of who is reachable.

use tonic::transport::Channel;
use tonic::Status;

use super::State;
use crate::error::ServerError;

/// A channel to the current leader's client URL.
pub async fn leader_channel(state: &State) -> Result<Channel, Status> {
    let leader = state.raft_status().leader;
    if leader == 0 {
        return Err(ServerError::NoLeader.into());
    }
    let url = state
        .members
        .read()
        .members
        .get(&leader)
        .and_then(|m| m.client_urls.first().cloned())
        .ok_or(ServerError::NoLeader)?;
    connect(&url, state.me.client_tls.clone()).await
}

/// A gRPC channel to a member's client URL (`https://` through `tls`).
async fn connect(
    url: &str,
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
) -> Result<Channel, Status> {
    let unavailable = |_| Status::from(ServerError::NoLeader);
    if !crate::tls::is_tls_url(url) {
        let url = if url.starts_with("http") {
            url.to_string()
        } else {
            format!("http://{url}")
        };
        let ep = Channel::from_shared(url).map_err(|e| Status::internal(e.to_string()))?;
        return ep.connect().await.map_err(unavailable);
    }
    let Some(tls) = tls else {
        return Err(Status::unavailable(format!(
            "{url}: the leader serves TLS but this member has no --cert-file"
        )));
    };
    // The endpoint's URI only names the authority; the connector dials TLS.
    let plain = format!("http://{}", url.trim_start_matches("https://"));
    let ep = Channel::from_shared(plain).map_err(|e| Status::internal(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(tls);
    let target = url.to_string();
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        let (target, tls) = (target.clone(), tls.clone());
        async move {
            let s = crate::tls::dial(&target, Some(&tls)).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
        }
    });
    ep.connect_with_connector(connector)
        .await
        .map_err(unavailable)
}
