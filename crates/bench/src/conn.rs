//! Endpoints and connections for the streaming workloads (watch, lease
//! keep-alive) and the leader lookup; the KV workloads use `unary.rs`.
//!
//! A connection is a bare HTTP/2 client connection (hyper) under tonic's
//! generated clients, not a `tonic::transport::Channel`: a Channel puts a
//! buffer task (and its reconnect machinery) in front of the connection,
//! one more task hand-off per request in each direction. The load generator
//! shares the CPU with the members it measures, so its cost per request
//! counts; it does not reconnect (a broken connection fails the run).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::lease_client::LeaseClient;
use concord_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use concord_proto::etcdserverpb::watch_client::WatchClient;
use concord_proto::etcdserverpb::StatusRequest;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tonic::codegen::http::{Request, Response, Uri};
use tonic::codegen::Service;

use crate::BenchError;

/// One HTTP/2 connection to an endpoint; cheap to clone (clones share it).
#[derive(Clone, Debug)]
pub struct Channel {
    send: SendRequest<tonic::body::Body>,
    origin: Uri,
}

impl Channel {
    /// The endpoint's URL, for tonic clients' `with_origin`.
    pub fn origin(&self) -> Uri {
        self.origin.clone()
    }

    /// A KV client on this connection.
    pub fn kv(&self) -> KvClient<Channel> {
        KvClient::with_origin(self.clone(), self.origin())
    }

    /// A Lease client on this connection.
    pub fn lease(&self) -> LeaseClient<Channel> {
        LeaseClient::with_origin(self.clone(), self.origin())
    }

    /// A Watch client on this connection.
    pub fn watch(&self) -> WatchClient<Channel> {
        WatchClient::with_origin(self.clone(), self.origin())
    }
}

impl Service<Request<tonic::body::Body>> for Channel {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        Box::pin(self.send.send_request(req))
    }
}

/// A TCP connection (no Nagle) to `url` (`http://host:port`), and the URL
/// parsed.
pub(crate) async fn dial_tcp(url: &str) -> Result<(Uri, tokio::net::TcpStream), BenchError> {
    let origin: Uri = url
        .parse()
        .map_err(|e| BenchError(format!("endpoint {url}: {e}")))?;
    let addr = origin
        .authority()
        .ok_or_else(|| BenchError(format!("endpoint {url}: no host:port")))?
        .to_string();
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(&addr))
        .await
        .map_err(|_| BenchError(format!("connecting to {url}: timed out")))?
        .map_err(|e| BenchError(format!("connecting to {url}: {e}")))?;
    tcp.set_nodelay(true)
        .map_err(|e| BenchError(format!("connecting to {url}: {e}")))?;
    Ok((origin, tcp))
}

/// Connects to `url` (`http://host:port`).
async fn dial(url: &str) -> Result<Channel, BenchError> {
    let (origin, tcp) = dial_tcp(url).await?;
    let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| BenchError(format!("connecting to {url}: {}", chain(&e))))?;
    tokio::spawn(async move {
        // Ends when every clone of the sender is dropped or the peer closes.
        let _ = conn.await;
    });
    Ok(Channel { send, origin })
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `host:port` or `http://host:port` (trailing `/` dropped) as an
/// `http://` URL. TLS is not supported.
pub fn normalize_endpoint(ep: &str) -> Result<String, BenchError> {
    let ep = ep.trim().trim_end_matches('/');
    let rest = ep.strip_prefix("http://").unwrap_or(ep);
    if ep.starts_with("https://") || rest.contains("://") {
        return Err(BenchError(format!(
            "endpoint {ep:?}: only plain http is supported"
        )));
    }
    let port_ok = rest
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok || rest.contains('/') {
        return Err(BenchError(format!("endpoint {ep:?}: expected host:port")));
    }
    Ok(format!("http://{rest}"))
}

/// Normalizes a list of endpoints (elements may themselves be
/// comma-separated; empty elements are skipped). At least one is required.
pub fn parse_endpoints(eps: &[String]) -> Result<Vec<String>, BenchError> {
    let out = eps
        .iter()
        .flat_map(|e| e.split(','))
        .filter(|e| !e.trim().is_empty())
        .map(normalize_endpoint)
        .collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err(BenchError::new("no endpoints"));
    }
    Ok(out)
}

/// An error and its sources, `: `-separated (tonic's transport errors say
/// little at the top level).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// Opens `n` connections, connection `j` to `endpoints[j % endpoints.len()]`.
pub async fn connect(endpoints: &[String], n: usize) -> Result<Vec<Channel>, BenchError> {
    let mut channels = Vec::with_capacity(n);
    for j in 0..n {
        channels.push(dial(&endpoints[j % endpoints.len()]).await?);
    }
    Ok(channels)
}

/// The endpoint whose member is the leader (Maintenance.Status: `leader ==
/// header.member_id`).
pub async fn find_leader(endpoints: &[String]) -> Result<String, BenchError> {
    let mut seen = Vec::new();
    for url in endpoints {
        let status = async {
            let ch = dial(url).await?;
            let resp = MaintenanceClient::with_origin(ch.clone(), ch.origin())
                .status(StatusRequest {})
                .await?;
            Ok::<_, BenchError>(resp.into_inner())
        };
        match tokio::time::timeout(CONNECT_TIMEOUT * 2, status).await {
            Ok(Ok(s)) => {
                let member = s.header.as_ref().map_or(0, |h| h.member_id);
                if s.leader != 0 && s.leader == member {
                    return Ok(url.clone());
                }
                seen.push(format!("{url}: member {member:x}, leader {:x}", s.leader));
            }
            Ok(Err(e)) => seen.push(format!("{url}: {e}")),
            Err(_) => seen.push(format!("{url}: status timed out")),
        }
    }
    Err(BenchError(format!(
        "no endpoint is the leader ({})",
        seen.join("; ")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_with_or_without_scheme() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:2379").unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize_endpoint(" http://localhost:22379/ ").unwrap(),
            "http://localhost:22379"
        );
        assert_eq!(
            normalize_endpoint("[::1]:2379").unwrap(),
            "http://[::1]:2379"
        );
        for bad in [
            "https://x:1",
            "grpc://x:1",
            "x",
            "x:port",
            ":2379",
            "x:1/path",
            "x:70000",
        ] {
            assert!(normalize_endpoint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_lists() {
        let eps = parse_endpoints(&[
            "127.0.0.1:2379,127.0.0.1:22379".to_string(),
            "http://127.0.0.1:32379".to_string(),
            String::new(),
        ])
        .unwrap();
        assert_eq!(
            eps,
            vec![
                "http://127.0.0.1:2379",
                "http://127.0.0.1:22379",
                "http://127.0.0.1:32379"
            ]
        );
        assert!(parse_endpoints(&[",".to_string()]).is_err());
        assert!(parse_endpoints(&["a:1,https://b:2".to_string()]).is_err());
    }
}
