//! The client listener (gRPC and HTTP on one port, as etcd does) and the
//! metrics listener: `/health`, `/livez`, `/readyz`, `/metrics` (and
//! `/failpoints` with the `failpoints` feature).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::State as AxState;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use concord_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use concord_proto::v3electionpb::election_server::ElectionServer;
use concord_proto::v3lockpb::lock_server::LockServer;
use http::{Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::convert::Infallible;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_stream::StreamExt as _;
use tonic::body::Body;
use tower::Service;

use crate::authority::AuthorityRepair;
use crate::grpc;
use crate::shared::Shared;

static METRICS: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder once per process.
pub fn install_metrics() {
    METRICS.get_or_init(|| {
        let buckets = [
            0.0001, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512,
            1.024, 2.048, 4.096, 8.192,
        ];
        PrometheusBuilder::new()
            .set_buckets(&buckets)
            .ok()?
            .install_recorder()
            .ok()
    });
}

/// Everything served on a client URL: the gRPC services plus HTTP health
/// and metrics routes.
#[derive(Clone, Debug)]
pub struct ClientRouter {
    state: Arc<Shared>,
    min_ttl: i64,
    token: String,
}

/// The services of this member.
pub fn router(state: Arc<Shared>, min_ttl: i64, token: &str) -> ClientRouter {
    ClientRouter {
        state,
        min_ttl,
        token: token.to_string(),
    }
}

fn http_routes(state: Arc<Shared>) -> Router {
    let r = Router::new()
        .route("/health", get(health))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    // `/failpoints` only in builds with failpoints (failpoint.rs).
    #[cfg(feature = "failpoints")]
    let r = r.merge(crate::failpoint::routes());
    r.with_state(state)
}

/// Serves gRPC and HTTP on one client listener.
pub async fn serve_grpc(
    listener: TcpListener,
    r: ClientRouter,
    shared: Arc<Shared>,
    max_request_bytes: usize,
    max_streams: u32,
    tls: Option<TlsAcceptor>,
) {
    // etcd accepts messages up to the request limit plus gRPC overhead.
    let max = max_request_bytes + 512 * 1024;
    let s = r.state.clone();
    let kv = KvServer::new(grpc::kv::KvService { state: s.clone() }).max_decoding_message_size(max);
    let watch = WatchServer::new(grpc::watch::WatchService {
        state: s.clone(),
        progress_interval: grpc::watch::PROGRESS_INTERVAL,
    })
    .max_decoding_message_size(max);
    let lease = LeaseServer::new(grpc::lease::LeaseService {
        state: s.clone(),
        min_ttl: r.min_ttl,
    });
    let cluster = ClusterServer::new(grpc::cluster::ClusterService {
        state: s.clone(),
        token: r.token.clone(),
    });
    let maintenance =
        MaintenanceServer::new(grpc::maintenance::MaintenanceService { state: s.clone() })
            .max_encoding_message_size(usize::MAX);
    let lock = LockServer::new(grpc::lock::LockService { state: s.clone() });
    let election = ElectionServer::new(grpc::election::ElectionService { state: s.clone() });
    let auth = AuthServer::new(grpc::auth::AuthService { state: s.clone() });
    let routes = tonic::service::Routes::new(kv)
        .add_service(watch)
        .add_service(lease)
        .add_service(cluster)
        .add_service(maintenance)
        .add_service(lock)
        .add_service(election)
        .add_service(auth);
    let app = routes.into_axum_router().merge(http_routes(s.clone()));
    let kv = grpc::kv::KvService { state: s };
    let svc = grpc::unary::ClientService::new(kv, tonic::service::Routes::from(app), max);
    serve_app(svc, listener, shared, Some(max_streams), tls).await;
}

/// Serves `svc` (gRPC and HTTP/1.1) on `listener`, with TLS when an
/// acceptor is given, until the member shuts down.
async fn serve_app<S>(
    svc: S,
    listener: TcpListener,
    shared: Arc<Shared>,
    max_streams: Option<u32>,
    tls: Option<TlsAcceptor>,
) where
    S: Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let mut stop = shared.shutdown.subscribe();
    let signal = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .max_concurrent_streams(max_streams)
        .http2_keepalive_interval(Some(Duration::from_secs(30)));
    let r = match tls {
        None => {
            let incoming = tonic::transport::server::TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .map(|conn| conn.map(AuthorityRepair::new));
            server
                .serve_with_incoming_shutdown(svc, incoming, signal)
                .await
        }
        Some(acceptor) => {
            server
                .serve_with_incoming_shutdown(
                    svc,
                    crate::tls::incoming(listener, acceptor).map(|c| c.map(AuthorityRepair::new)),
                    signal,
                )
                .await
        }
    };
    if let Err(e) = r {
        tracing::error!(error = %e, "client listener failed");
    }
}

/// Serves only the HTTP routes (`--listen-metrics-urls`).
pub async fn serve_metrics(listener: TcpListener, shared: Arc<Shared>, tls: Option<TlsAcceptor>) {
    let routes = tonic::service::Routes::from(http_routes(shared.clone()));
    serve_app(routes, listener, shared, None, tls).await;
}

async fn health(AxState(s): AxState<Arc<Shared>>) -> impl IntoResponse {
    let ok = s.raft_status().leader != 0
        && s.published()
        && !s.no_space()
        && tokio::time::timeout(Duration::from_secs(1), s.read_barrier())
            .await
            .is_ok_and(|r| r.is_ok());
    let reason = if ok {
        ""
    } else if s.no_space() {
        "ALARM NOSPACE"
    } else if !s.published() {
        "NOT PUBLISHED"
    } else {
        "RAFT NO LEADER"
    };
    let body = format!(r#"{{"health":"{ok}","reason":"{reason}"}}"#);
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, [("content-type", "application/json")], body)
}

/// Alive unless the member cannot go on or its Raft driver is stuck (a
/// supervisor or a liveness probe then restarts it).
async fn livez(AxState(s): AxState<Arc<Shared>>) -> impl IntoResponse {
    if let Some(why) = s.fatal_reason() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not alive: {why}\n"),
        );
    }
    if let Some(d) = s.driver_stalled() {
        let msg = format!("not alive: raft driver stuck for {} ms\n", d.as_millis());
        return (StatusCode::SERVICE_UNAVAILABLE, msg);
    }
    (StatusCode::OK, "ok\n".to_string())
}

async fn readyz(AxState(s): AxState<Arc<Shared>>) -> impl IntoResponse {
    let st = s.raft_status();
    if st.leader != 0 && s.published() && !s.removed.load(std::sync::atomic::Ordering::Relaxed) {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader\n".to_string(),
        )
    }
}

async fn metrics_text(AxState(s): AxState<Arc<Shared>>) -> impl IntoResponse {
    metrics::gauge!("concord_leases").set(s.store.read().leases().len() as f64);
    metrics::gauge!("concord_db_size_bytes").set(grpc::maintenance::db_size(&s) as f64);
    let body = METRICS
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default();
    (
        StatusCode::OK,
        [("content-type", "text/plain; version=0.0.4")],
        body,
    )
}
