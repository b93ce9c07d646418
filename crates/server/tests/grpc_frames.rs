//! Malformed gRPC framing on the KV methods, sent over a bare HTTP/2
//! connection: every bad request is refused with an error status, the
//! member keeps serving, and nothing is written. With
//! `CONCORD_COMPAT_SERVER=etcd` the same requests go to real etcd (whose
//! codes differ; only "refused" is checked there).

mod common;

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use common::*;
use concord_proto::etcdserverpb::{PutRequest, PutResponse, RangeRequest, RangeResponse};
use concord_proto::grpc_frame;
use h2::client::SendRequest;
use http::{HeaderValue, Request};
use prost::Message as _;
use tokio::time::timeout;

/// The outcome of one call: `grpc-status`, `grpc-message`, reply bytes.
struct Reply {
    code: i32,
    message: String,
    data: Bytes,
}

async fn call(
    send: &mut SendRequest<Bytes>,
    url: &str,
    path: &str,
    extra: &[(&'static str, &'static str)],
    body: Bytes,
) -> Reply {
    let mut req = Request::post(format!("{url}{path}")).body(()).unwrap();
    let h = req.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/grpc"));
    h.insert("te", HeaderValue::from_static("trailers"));
    for (k, v) in extra {
        h.insert(*k, HeaderValue::from_static(v));
    }
    std::future::poll_fn(|cx| send.poll_ready(cx))
        .await
        .unwrap();
    let (resp, mut stream) = send.send_request(req, false).unwrap();
    stream.send_data(body, true).unwrap();
    let (parts, mut body) = resp.await.unwrap().into_parts();
    assert_eq!(parts.status, 200, "gRPC replies are HTTP 200");
    let mut data = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await.unwrap().unwrap_or_default();
    // A trailers-only reply carries the status in its headers.
    let status = |name: &str| {
        trailers
            .get(name)
            .or_else(|| parts.headers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
    };
    Reply {
        code: status("grpc-status").expect("grpc-status").parse().unwrap(),
        message: grpc_frame::percent_decode(status("grpc-message").unwrap_or_default().as_bytes()),
        data: data.freeze(),
    }
}

fn frame(flag: u8, msg: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_u8(flag);
    b.put_u32(msg.len() as u32);
    b.extend_from_slice(msg);
    b.freeze()
}

fn decode<M: prost::Message + Default>(data: &[u8]) -> M {
    assert_eq!(data[0], 0);
    let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
    assert_eq!(data.len(), 5 + len);
    M::decode(&data[5..]).unwrap()
}

#[test]
fn malformed_kv_frames_are_refused_and_change_nothing() {
    let c = Cluster::start(1);
    let addr = c.addrs()[0].clone();
    let url = format!("http://{addr}");
    let concord = std::env::var("CONCORD_COMPAT_SERVER").is_err();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async { timeout(Duration::from_secs(60), test(&addr, &url, concord)).await })
        .expect("test timed out");
    drop(c);
}

async fn test(addr: &str, url: &str, concord: bool) {
    {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(conn);
        let put = "/etcdserverpb.KV/Put";
        let good = PutRequest {
            key: Bytes::from_static(b"bad/never"),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        }
        .encode_to_vec();

        // Compressed flag without a grpc-encoding.
        let r = call(&mut send, url, put, &[], frame(1, &good)).await;
        assert_ne!(r.code, 0);
        if concord {
            assert_eq!(r.code, tonic::Code::Internal as i32);
            assert!(r.message.contains("compressed-flag"), "{}", r.message);
        }
        // A length beyond any limit, with the message never arriving.
        let mut huge = BytesMut::new();
        huge.put_u8(0);
        huge.put_u32(64 << 20);
        let r = call(&mut send, url, put, &[], huge.freeze()).await;
        assert_ne!(r.code, 0);
        if concord {
            // As etcd (grpc-go) answers it.
            assert_eq!(r.code, tonic::Code::ResourceExhausted as i32);
            assert!(r.message.contains("larger than max"), "{}", r.message);
        }
        // Not protobuf: a length-delimited field running past the end.
        let r = call(&mut send, url, put, &[], frame(0, &[0x0a, 0x7f, 1])).await;
        assert_eq!(r.code, tonic::Code::Internal as i32, "{}", r.message);
        // No message at all, and a message cut short.
        let r = call(&mut send, url, put, &[], Bytes::new()).await;
        assert_ne!(r.code, 0);
        if concord {
            assert_eq!(r.code, tonic::Code::Internal as i32, "{}", r.message);
        }
        let cut = frame(0, &good);
        let r = call(&mut send, url, put, &[], cut.slice(..cut.len() - 2)).await;
        assert_ne!(r.code, 0);
        // Compressed with an encoding the member does not offer.
        let gz = [("grpc-encoding", "gzip")];
        let r = call(&mut send, url, put, &gz, frame(1, &good)).await;
        assert_eq!(r.code, tonic::Code::Unimplemented as i32, "{}", r.message);

        // A good put on the same connection, then a read: only it is there.
        let ok = PutRequest {
            key: Bytes::from_static(b"good/1"),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        };
        let r = call(&mut send, url, put, &[], frame(0, &ok.encode_to_vec())).await;
        assert_eq!(r.code, 0, "{}", r.message);
        let rev = decode::<PutResponse>(&r.data).header.unwrap().revision;
        assert!(rev > 0);
        let all = RangeRequest {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            ..Default::default()
        };
        let path = "/etcdserverpb.KV/Range";
        let r = call(&mut send, url, path, &[], frame(0, &all.encode_to_vec())).await;
        assert_eq!(r.code, 0, "{}", r.message);
        let got = decode::<RangeResponse>(&r.data);
        let keys: Vec<_> = got.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"good/1")]);
        assert_eq!(got.header.unwrap().revision, rev);

        if concord {
            // The calls above are counted, timed and committed in /metrics.
            let (code, body) = http_get(addr, "/metrics").expect("GET /metrics");
            assert_eq!(code, 200);
            let value = |prefix: &str| -> f64 {
                body.lines()
                    .find(|l| l.starts_with(prefix))
                    .and_then(|l| l.rsplit(' ').next())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("no {prefix} in /metrics:\n{body}"))
            };
            // The good put and range are counted (refusals never reach a handler).
            assert!(value("concord_grpc_requests_total{method=\"Put\"}") >= 1.0);
            assert!(value("concord_grpc_requests_total{method=\"Range\"}") >= 1.0);
            let puts = "concord_grpc_request_duration_seconds_count{method=\"Put\"}";
            assert!(value(puts) >= 1.0);
            assert!(value("concord_proposals_committed_total") >= 1.0);
            assert!(value("concord_wal_fsync_duration_seconds_count") >= 1.0);
            assert!(value("concord_raft_term") >= 1.0);
        }
    }
}
