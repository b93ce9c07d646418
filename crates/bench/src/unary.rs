//! Unary gRPC calls on a bare `h2` connection, for the KV workloads.
//!
//! The load generator shares the CPU with the members it measures, so its
//! cost per request lowers every system's throughput alike and hides how
//! far apart they are. Under a tonic client on hyper, one put cost this
//! process about 35 µs of CPU: tonic's codec and body layers, and a task
//! hyper spawns per request to pipe the body. Here a call is one h2 stream
//! driven from the calling task: the request is encoded once into the
//! stream's single DATA frame, the reply is read and decoded in place.
//!
//! The wire format is gRPC's (`application/grpc`, 5-byte length-prefixed
//! uncompressed messages, `grpc-status` in the trailers, or in the headers
//! of a trailers-only reply), so any etcd v3 endpoint answers as it would
//! any client.

use bytes::{Bytes, BytesMut};
use concord_proto::grpc_frame;
use h2::client::SendRequest;
use http::{HeaderMap, HeaderValue, Method, Request, Uri};
use tonic::{Code, Status};

use crate::BenchError;

/// Largest reply accepted (etcd's default max receive size is 4 MiB; a
/// bench reply is far smaller). A bound on what one call buffers.
const MAX_REPLY: usize = 16 << 20;

/// hyper's client defaults, so this connection's flow control matches the
/// tonic connections' (h2's own 64 KiB default would stall large replies).
const STREAM_WINDOW: u32 = 2 << 20;
const CONN_WINDOW: u32 = 5 << 20;

/// One HTTP/2 connection for unary calls; clones share it.
#[derive(Clone, Debug)]
pub struct UnaryConn {
    send: SendRequest<Bytes>,
    origin: String,
    /// Sent as `token` metadata on every call (etcd auth).
    token: Option<HeaderValue>,
}

/// A method's full URI on one connection (built once, cloned per call).
#[derive(Clone, Debug)]
pub struct MethodUri(Uri);

impl UnaryConn {
    /// Connects to `url` (`http://host:port`).
    pub async fn dial(url: &str) -> Result<UnaryConn, BenchError> {
        let (_, tcp) = crate::conn::dial_tcp(url).await?;
        let (send, conn) = h2::client::Builder::new()
            .initial_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONN_WINDOW)
            .handshake::<_, Bytes>(tcp)
            .await
            .map_err(|e| BenchError(format!("connecting to {url}: {e}")))?;
        tokio::spawn(async move {
            // Ends when every clone of the sender is dropped or the peer closes.
            let _ = conn.await;
        });
        Ok(UnaryConn {
            send,
            origin: url.trim_end_matches('/').to_string(),
            token: None,
        })
    }

    /// This connection, sending `token` (if any) with every call.
    pub fn with_token(mut self, token: Option<HeaderValue>) -> UnaryConn {
        self.token = token;
        self
    }

    /// The URI of `path` (`/package.Service/Method`) on this connection.
    pub fn method(&self, path: &str) -> MethodUri {
        let uri = format!("{}{path}", self.origin)
            .parse()
            .expect("an endpoint URL followed by a method path is a URI");
        MethodUri(uri)
    }

    /// Calls the unary method at `uri` with `req`.
    pub async fn call<Req, Resp>(&mut self, uri: &MethodUri, req: &Req) -> Result<Resp, Status>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let mut head = Request::new(());
        *head.method_mut() = Method::POST;
        *head.uri_mut() = uri.0.clone();
        let h = head.headers_mut();
        h.insert("content-type", HeaderValue::from_static("application/grpc"));
        h.insert("te", HeaderValue::from_static("trailers"));
        if let Some(t) = &self.token {
            h.insert("token", t.clone());
        }

        std::future::poll_fn(|cx| self.send.poll_ready(cx))
            .await
            .map_err(transport)?;
        let (reply, mut body) = self.send.send_request(head, false).map_err(transport)?;
        body.send_data(grpc_frame::encode(req), true)
            .map_err(transport)?;

        let reply = reply.await.map_err(transport)?;
        let (parts, mut body) = reply.into_parts();
        if parts.status != http::StatusCode::OK {
            return Err(Status::new(
                Code::Unknown,
                format!("HTTP status {}", parts.status),
            ));
        }
        // A trailers-only reply carries the status in its headers.
        if let Some(r) = status_of(&parts.headers) {
            r?;
        }
        let mut data = BytesMut::new();
        while let Some(chunk) = body.data().await {
            let chunk = chunk.map_err(transport)?;
            let _ = body.flow_control().release_capacity(chunk.len());
            if data.len() + chunk.len() > MAX_REPLY {
                return Err(Status::resource_exhausted("reply larger than 16 MiB"));
            }
            data.extend_from_slice(&chunk);
        }
        let trailers = body.trailers().await.map_err(transport)?;
        match trailers.as_ref().and_then(status_of) {
            Some(r) => r?,
            None => return Err(Status::internal("reply without grpc-status")),
        }
        decode(&data)
    }
}

/// Opens `n` connections, connection `j` to `endpoints[j % endpoints.len()]`,
/// each sending `token`.
pub async fn connect(
    endpoints: &[String],
    n: usize,
    token: Option<HeaderValue>,
) -> Result<Vec<UnaryConn>, BenchError> {
    let mut conns = Vec::with_capacity(n);
    for j in 0..n {
        let c = UnaryConn::dial(&endpoints[j % endpoints.len()]).await?;
        conns.push(c.with_token(token.clone()));
    }
    Ok(conns)
}

/// Logs in as `user` (`name:password`) at `endpoint`; the token, valid on
/// every member (etcd replicates logins).
pub async fn authenticate(endpoint: &str, user: &str) -> Result<HeaderValue, BenchError> {
    use concord_proto::etcdserverpb::{AuthenticateRequest, AuthenticateResponse};
    let (name, password) = user
        .split_once(':')
        .ok_or_else(|| BenchError::new("--user must be name:password"))?;
    let mut conn = UnaryConn::dial(endpoint).await?;
    let uri = conn.method("/etcdserverpb.Auth/Authenticate");
    let req = AuthenticateRequest {
        name: name.to_string(),
        password: password.to_string(),
    };
    let resp: AuthenticateResponse = conn.call(&uri, &req).await?;
    HeaderValue::from_str(&resp.token)
        .map_err(|_| BenchError::new("the server answered a token that is not a header value"))
}

fn transport(e: h2::Error) -> Status {
    Status::unavailable(format!("HTTP/2: {e}"))
}

/// The one message of a unary reply.
fn decode<Resp: prost::Message + Default>(data: &[u8]) -> Result<Resp, Status> {
    let Some((&[flag, a, b, c, d], rest)) = data.split_first_chunk::<5>() else {
        return Err(Status::internal(format!(
            "reply of {} bytes has no message",
            data.len()
        )));
    };
    if flag != 0 {
        return Err(Status::internal("compressed reply (none was offered)"));
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if rest.len() != len {
        return Err(Status::internal(format!(
            "reply frame says {len} bytes, {} arrived",
            rest.len()
        )));
    }
    Resp::decode(rest).map_err(|e| Status::internal(format!("decoding the reply: {e}")))
}

/// The call's outcome if `headers` carry a `grpc-status`.
fn status_of(headers: &HeaderMap) -> Option<Result<(), Status>> {
    let code = headers.get("grpc-status")?;
    let code = match code.to_str().ok().and_then(|s| s.parse::<i32>().ok()) {
        Some(0) => return Some(Ok(())),
        Some(c) => Code::from_i32(c),
        None => return Some(Err(Status::internal("unparsable grpc-status"))),
    };
    let message = headers
        .get("grpc-message")
        .map(|m| grpc_frame::percent_decode(m.as_bytes()))
        .unwrap_or_default();
    Some(Err(Status::new(code, message)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_proto::etcdserverpb::PutRequest;
    use grpc_frame::encode;

    #[test]
    fn a_frame_decodes_to_its_message() {
        let req = PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"value"),
            ..Default::default()
        };
        assert_eq!(decode::<PutRequest>(&encode(&req)).unwrap(), req);
    }

    #[test]
    fn malformed_replies_are_errors() {
        let good = encode(&PutRequest {
            key: Bytes::from_static(b"k"),
            ..Default::default()
        });
        assert!(decode::<PutRequest>(&good[..4]).is_err(), "short header");
        assert!(
            decode::<PutRequest>(&good[..good.len() - 1]).is_err(),
            "truncated"
        );
        let mut longer = good.to_vec();
        longer.push(0);
        assert!(decode::<PutRequest>(&longer).is_err(), "trailing bytes");
        let mut compressed = good.to_vec();
        compressed[0] = 1;
        assert!(decode::<PutRequest>(&compressed).is_err(), "compressed");
        // Field 1 (key) as a length-delimited field that runs past the end.
        let bad = [0, 0, 0, 0, 2, 0x0a, 5];
        assert!(decode::<PutRequest>(&bad).is_err(), "bad protobuf");
    }

    #[test]
    fn grpc_status_and_message_are_read() {
        let mut h = HeaderMap::new();
        assert!(status_of(&h).is_none());
        h.insert("grpc-status", HeaderValue::from_static("0"));
        assert!(matches!(status_of(&h), Some(Ok(()))));
        h.insert("grpc-status", HeaderValue::from_static("9"));
        h.insert(
            "grpc-message",
            HeaderValue::from_static("etcdserver: mvcc: required revision has been compacted%21"),
        );
        let s = status_of(&h).unwrap().unwrap_err();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted!"
        );
        h.insert("grpc-status", HeaderValue::from_static("x"));
        assert_eq!(status_of(&h).unwrap().unwrap_err().code(), Code::Internal);
    }
}
