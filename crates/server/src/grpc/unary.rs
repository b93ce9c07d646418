//! The KV service's unary calls served straight off the HTTP/2 stream.
//!
//! On the leader under load, the route from hyper to a KV handler (axum's
//! router, tonic's `Routes`, the generated server's dispatch, tonic's
//! streaming decoder and encoder bodies) cost more CPU than the handler:
//! boxed futures moved through each layer, a body adapter per layer. This
//! service reads the one request message itself, calls the same handler
//! ([`Kv`] on [`KvService`]), and answers with one DATA frame and the
//! trailers. Everything else (the other services, KV calls with a
//! `grpc-encoding`, plain HTTP) goes to the router unchanged. tonic's
//! server layers (`grpc-timeout` and the rest) still wrap both paths.
//!
//! Malformed input is refused as tonic refuses it (same codes and
//! messages), and a request is never buffered beyond the decoding limit.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use concord_proto::etcdserverpb::kv_server::Kv;
use concord_proto::grpc_frame;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt as _;
use tonic::body::Body;
use tonic::metadata::MetadataMap;
use tonic::service::Routes;
use tonic::Status;
use tower::Service;

use super::kv::{KvMethod, KvService};

/// The client listener's service: KV unary calls here, the rest to `routes`.
#[derive(Clone)]
pub struct ClientService {
    kv: Arc<KvService>,
    routes: Routes,
    max_message: usize,
}

impl std::fmt::Debug for ClientService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientService")
            .field("max_message", &self.max_message)
            .finish_non_exhaustive()
    }
}

impl ClientService {
    /// Serves KV calls with `kv` (requests up to `max_message` bytes) and
    /// everything else with `routes`.
    pub fn new(kv: KvService, routes: Routes, max_message: usize) -> ClientService {
        ClientService {
            kv: Arc::new(kv),
            routes,
            max_message,
        }
    }
}

impl Service<Request<Body>> for ClientService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        // Both paths are always ready (Routes is).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        match KvMethod::of_path(req.uri().path()).filter(|_| plain_grpc(req.headers())) {
            Some(m) => Box::pin(serve(self.kv.clone(), m, req, self.max_message)),
            None => Box::pin(self.routes.call(req)),
        }
    }
}

/// A gRPC request (`application/grpc`, or `application/grpc+proto` and the
/// like; not gRPC-Web) without compression. Anything else takes tonic's
/// path, which answers it as tonic does.
fn plain_grpc(h: &HeaderMap) -> bool {
    let grpc = h.get(http::header::CONTENT_TYPE).is_some_and(|c| {
        let c = c.as_bytes();
        c == b"application/grpc" || c.starts_with(b"application/grpc+")
    });
    let identity = h
        .get("grpc-encoding")
        .is_none_or(|e| e.as_bytes() == b"identity");
    grpc && identity
}

async fn serve(
    kv: Arc<KvService>,
    method: KvMethod,
    req: Request<Body>,
    max: usize,
) -> Result<Response<Body>, Infallible> {
    let reply = match call(&kv, method, req, max).await {
        Ok(data) => data,
        Err(status) => return Ok(status.into_http()),
    };
    let mut resp = Response::new(Body::new(Unary {
        data: Some(reply),
        trailers: true,
    }));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    Ok(resp)
}

/// Decodes the request, runs the handler, encodes the reply frame.
async fn call(
    kv: &KvService,
    method: KvMethod,
    req: Request<Body>,
    max: usize,
) -> Result<Bytes, Status> {
    let (parts, body) = req.into_parts();
    let msg = read_message(body, max).await?;
    let meta = MetadataMap::from_headers(parts.headers);
    let ext = parts.extensions;
    macro_rules! unary {
        ($handler:ident) => {{
            let m = prost::Message::decode(msg).map_err(|e| Status::internal(e.to_string()))?;
            let r = kv
                .$handler(tonic::Request::from_parts(meta, ext, m))
                .await?;
            Ok(grpc_frame::encode(r.get_ref()))
        }};
    }
    match method {
        KvMethod::Range => unary!(range),
        KvMethod::Put => unary!(put),
        KvMethod::DeleteRange => unary!(delete_range),
        KvMethod::Txn => unary!(txn),
        KvMethod::Compact => unary!(compact),
    }
}

/// The first message of a request body, as tonic's decoder reads it.
async fn read_message(mut body: Body, max: usize) -> Result<Bytes, Status> {
    let mut buf = BytesMut::new();
    let mut want: Option<usize> = None;
    loop {
        if want.is_none() && buf.len() >= 5 {
            match buf[0] {
                0 => {}
                1 => {
                    return Err(Status::internal(
                        "protocol error: received message with compressed-flag but no grpc-encoding was specified",
                    ))
                }
                f => {
                    return Err(Status::internal(format!(
                        "protocol error: received message with invalid compression flag: {f} (valid flags are 0 and 1), while sending request"
                    )))
                }
            }
            let len = u32::from_be_bytes(buf[1..5].try_into().expect("4 bytes")) as usize;
            if len > max {
                // etcd's gRPC server (grpc-go) answers this.
                return Err(Status::resource_exhausted(format!(
                    "grpc: received message larger than max ({len} vs. {max})"
                )));
            }
            want = Some(5 + len);
        }
        if let Some(n) = want.filter(|&n| buf.len() >= n) {
            buf.advance(5);
            return Ok(buf.split_to(n - 5).freeze());
        }
        let frame = match body.frame().await {
            Some(f) => f.map_err(|e| Status::internal(e.to_string()))?,
            None if buf.is_empty() => return Err(Status::internal("Missing request message.")),
            None => return Err(Status::internal("Unexpected EOF decoding stream.")),
        };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
        }
    }
}

/// A unary reply body: the message frame, then `grpc-status: 0`.
struct Unary {
    data: Option<Bytes>,
    trailers: bool,
}

impl http_body::Body for Unary {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        if std::mem::take(&mut self.trailers) {
            let mut t = HeaderMap::with_capacity(1);
            t.insert("grpc-status", HeaderValue::from_static("0"));
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && !self.trailers
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_proto::etcdserverpb::PutRequest;
    use grpc_frame::encode;
    use http_body::Body as _;

    fn body(chunks: Vec<Vec<u8>>) -> Body {
        let stream = tokio_stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c)))),
        );
        Body::new(http_body_util::StreamBody::new(stream))
    }

    async fn read(chunks: Vec<Vec<u8>>, max: usize) -> Result<Bytes, Status> {
        read_message(body(chunks), max).await
    }

    #[tokio::test]
    async fn a_message_split_across_frames_is_reassembled() {
        let req = PutRequest {
            key: Bytes::from_static(b"key"),
            value: Bytes::from(vec![7; 300]),
            ..Default::default()
        };
        let frame = encode(&req).to_vec();
        let chunks = vec![
            frame[..3].to_vec(),
            frame[3..100].to_vec(),
            frame[100..].to_vec(),
        ];
        let msg = read(chunks, 1024).await.unwrap();
        assert_eq!(<PutRequest as prost::Message>::decode(msg).unwrap(), req);
    }

    #[tokio::test]
    async fn malformed_bodies_are_refused_as_tonic_refuses_them() {
        let frame = encode(&PutRequest {
            key: Bytes::from_static(b"k"),
            ..Default::default()
        })
        .to_vec();
        let e = read(vec![], 1024).await.unwrap_err();
        assert_eq!(
            (e.code(), e.message()),
            (tonic::Code::Internal, "Missing request message.")
        );
        let e = read(vec![frame[..frame.len() - 1].to_vec()], 1024)
            .await
            .unwrap_err();
        assert_eq!(e.message(), "Unexpected EOF decoding stream.");
        let mut compressed = frame.clone();
        compressed[0] = 1;
        let e = read(vec![compressed], 1024).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("compressed-flag"), "{e:?}");
        let mut flag = frame.clone();
        flag[0] = 9;
        assert!(read(vec![flag], 1024)
            .await
            .unwrap_err()
            .message()
            .contains("flag: 9"));
    }

    #[tokio::test]
    async fn an_oversized_message_is_refused_from_its_header() {
        // Only the header arrives: the length alone refuses it, nothing
        // beyond it is awaited or buffered.
        let header = vec![0, 0, 0x10, 0, 0];
        let e = read(vec![header], 4096).await.unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            "grpc: received message larger than max (1048576 vs. 4096)"
        );
    }

    #[test]
    fn only_plain_grpc_kv_calls_take_this_path() {
        assert!(matches!(
            KvMethod::of_path("/etcdserverpb.KV/Put"),
            Some(KvMethod::Put)
        ));
        assert!(KvMethod::of_path("/etcdserverpb.KV/Nope").is_none());
        for (i, m) in KvMethod::ALL.into_iter().enumerate() {
            // observe() indexes its metric handles by the discriminant.
            assert_eq!(m as usize, i);
            let path = format!("/etcdserverpb.KV/{}", m.name());
            assert_eq!(KvMethod::of_path(&path), Some(m));
        }
        assert!(KvMethod::of_path("/etcdserverpb.Lease/LeaseGrant").is_none());
        let mut h = HeaderMap::new();
        assert!(!plain_grpc(&h), "no content-type");
        h.insert(
            "content-type",
            HeaderValue::from_static("application/grpc-web"),
        );
        assert!(!plain_grpc(&h), "gRPC-Web is not gRPC");
        h.insert(
            "content-type",
            HeaderValue::from_static("application/grpc+proto"),
        );
        assert!(plain_grpc(&h));
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        assert!(plain_grpc(&h));
        h.insert("grpc-encoding", HeaderValue::from_static("identity"));
        assert!(plain_grpc(&h));
        h.insert("grpc-encoding", HeaderValue::from_static("gzip"));
        assert!(!plain_grpc(&h), "compressed requests go to tonic");
    }

    #[tokio::test]
    async fn the_reply_body_is_one_frame_then_ok_trailers() {
        let mut b = Unary {
            data: Some(Bytes::from_static(b"\0\0\0\0\0")),
            trailers: true,
        };
        assert!(!b.is_end_stream());
        let f = b.frame().await.unwrap().unwrap();
        assert_eq!(f.into_data().unwrap().len(), 5);
        let t = b.frame().await.unwrap().unwrap().into_trailers().unwrap();
        assert_eq!(t.get("grpc-status").unwrap(), "0");
        assert!(b.is_end_stream());
        assert!(b.frame().await.is_none());
    }
}
