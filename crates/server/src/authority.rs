//! Repairs the HTTP/2 `:authority` of clients that write their endpoint
//! with its scheme.
//!
//! etcd's Go client (etcdctl included) dialled with
//! `--endpoints=http://127.0.0.1:2379` sends `:authority:
//! http://127.0.0.1:2379`. That is not an authority, and the `h2` crate
//! under hyper resets every such stream with PROTOCOL_ERROR before any of
//! our code sees the request; etcd's own server ignores the authority.
//!
//! This layer sits between the socket (or the TLS stream) and hyper and
//! reads the client's first header block:
//! - a valid (or absent) authority, or a connection that is not HTTP/2:
//!   every byte passes through untouched from then on, with no parsing;
//! - an invalid one: every header block of the connection is decoded and
//!   encoded again with the authority repaired (scheme and trailing slash
//!   stripped) or, when even that is not an authority, left out. Other
//!   frames pass through as they are.
//!
//! Decision and rewriting start with the connection's first block, so the
//! HPACK dynamic table hyper decodes with is only ever fed by our encoder
//! on a rewritten connection (the two never drift apart).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;
/// Frames we write: HTTP/2's default SETTINGS_MAX_FRAME_SIZE, which any
/// server accepts.
const MAX_OUT_FRAME: usize = 16 * 1024;
/// Largest header block (all its frames) this layer buffers; a larger one
/// ends the connection (hyper's own header list limit is lower).
pub const MAX_HEADER_BLOCK: usize = 1 << 20;
/// Largest frame buffered whole while deciding (before the first block
/// only SETTINGS, WINDOW_UPDATE, PING and PRIORITY frames come).
const MAX_EARLY_FRAME: usize = 64 * 1024;
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Waiting for the connection preface.
    Preface,
    /// HTTP/2, before the end of the first header block.
    Deciding,
    /// Re-encoding every header block.
    Rewriting,
    /// Untouched from here on.
    Passing,
}

/// A header block being collected from HEADERS and CONTINUATION frames.
#[derive(Debug, Default)]
struct Block {
    stream: u32,
    end_stream: bool,
    fragment: Vec<u8>,
    /// The frames as received (passed on unchanged if the block is valid).
    raw: Vec<u8>,
}

/// A client connection whose `:authority` is repaired when needed.
pub struct AuthorityRepair<S> {
    inner: S,
    mode: Mode,
    /// Bytes read and not yet looked at.
    raw: BytesMut,
    /// Bytes ready for hyper.
    out: BytesMut,
    block: Option<Block>,
    /// Payload bytes of a non-header frame still to pass through.
    passing: usize,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
}

impl<S> std::fmt::Debug for AuthorityRepair<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthorityRepair")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl<S> AuthorityRepair<S> {
    /// Wraps a freshly accepted connection.
    pub fn new(inner: S) -> Self {
        AuthorityRepair {
            inner,
            mode: Mode::Preface,
            raw: BytesMut::new(),
            out: BytesMut::new(),
            block: None,
            passing: 0,
            decoder: Decoder::new(),
            encoder: Encoder::new(),
        }
    }

    /// Moves what can be decided from `raw` to `out`. Returns false when
    /// more input is needed.
    fn process(&mut self) -> io::Result<bool> {
        match self.mode {
            Mode::Passing => {
                if self.raw.is_empty() {
                    return Ok(false);
                }
                let all = self.raw.split();
                self.out.unsplit(all);
                Ok(true)
            }
            Mode::Preface => {
                let n = self.raw.len().min(PREFACE.len());
                if self.raw[..n] != PREFACE[..n] {
                    self.mode = Mode::Passing; // HTTP/1.1 (or garbage hyper refuses)
                    return Ok(true);
                }
                if n < PREFACE.len() {
                    return Ok(false);
                }
                let preface = self.raw.split_to(PREFACE.len());
                self.out.unsplit(preface);
                self.mode = Mode::Deciding;
                Ok(true)
            }
            Mode::Deciding | Mode::Rewriting => self.frame(),
        }
    }

    /// Handles (part of) one frame.
    fn frame(&mut self) -> io::Result<bool> {
        if self.passing > 0 {
            let n = self.passing.min(self.raw.len());
            if n == 0 {
                return Ok(false);
            }
            let bytes = self.raw.split_to(n);
            self.out.unsplit(bytes);
            self.passing -= n;
            return Ok(true);
        }
        if self.raw.len() < FRAME_HEADER {
            return Ok(false);
        }
        let len = u32::from_be_bytes([0, self.raw[0], self.raw[1], self.raw[2]]) as usize;
        let (kind, flags) = (self.raw[3], self.raw[4]);
        let stream =
            u32::from_be_bytes([self.raw[5], self.raw[6], self.raw[7], self.raw[8]]) & 0x7fff_ffff;
        let header_frame = kind == HEADERS || kind == CONTINUATION || self.block.is_some();
        if !header_frame {
            if self.mode == Mode::Rewriting {
                // Stream it: its payload is not looked at.
                let head = self.raw.split_to(FRAME_HEADER);
                self.out.unsplit(head);
                self.passing = len;
                return Ok(true);
            }
            if len > MAX_EARLY_FRAME {
                self.mode = Mode::Passing; // not a client we can help; hyper decides
                return Ok(true);
            }
        }
        if self.raw.len() < FRAME_HEADER + len {
            let pending = self.block.as_ref().map_or(0, |b| b.raw.len());
            if header_frame && pending + FRAME_HEADER + len > MAX_HEADER_BLOCK {
                return Err(too_large());
            }
            self.raw.reserve(FRAME_HEADER + len - self.raw.len());
            return Ok(false);
        }
        let frame = self.raw.split_to(FRAME_HEADER + len);
        if !header_frame {
            self.out.unsplit(frame);
            return Ok(true);
        }
        self.header_frame(kind, flags, stream, frame)?;
        Ok(true)
    }

    /// Collects a HEADERS or CONTINUATION frame; at the end of its block,
    /// decides or rewrites.
    fn header_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        frame: BytesMut,
    ) -> io::Result<()> {
        let payload = &frame[FRAME_HEADER..];
        let fragment = match kind {
            HEADERS if self.block.is_none() => {
                let mut start = 0;
                let mut pad = 0;
                if flags & PADDED != 0 {
                    pad = *payload
                        .first()
                        .ok_or_else(|| bad("padded frame without length"))?
                        as usize;
                    start = 1;
                }
                if flags & PRIORITY != 0 {
                    start += 5;
                }
                if start + pad > payload.len() {
                    return Err(bad("header frame shorter than its padding"));
                }
                self.block = Some(Block {
                    stream,
                    end_stream: flags & END_STREAM != 0,
                    ..Block::default()
                });
                &payload[start..payload.len() - pad]
            }
            CONTINUATION if self.block.as_ref().is_some_and(|b| b.stream == stream) => payload,
            _ => return Err(bad("header block interrupted")),
        };
        let block = self.block.as_mut().expect("a block is open");
        if block.raw.len() + frame.len() > MAX_HEADER_BLOCK {
            return Err(too_large());
        }
        block.fragment.extend_from_slice(fragment);
        block.raw.extend_from_slice(&frame);
        if flags & END_HEADERS != 0 {
            let block = self.block.take().expect("a block is open");
            self.end_block(block)?;
        }
        Ok(())
    }

    fn end_block(&mut self, block: Block) -> io::Result<()> {
        let mut fields = Vec::new();
        let decoded = self.decoder.decode_with_cb(&block.fragment, |n, v| {
            fields.push((n.into_owned(), v.into_owned()))
        });
        if decoded.is_err() {
            if self.mode == Mode::Deciding {
                // Let hyper answer it as it would.
                self.out.extend_from_slice(&block.raw);
                self.mode = Mode::Passing;
                return Ok(());
            }
            return Err(bad("malformed header block"));
        }
        let needs_repair = fields
            .iter()
            .any(|(n, v)| n == b":authority" && !valid_authority(v));
        if self.mode == Mode::Deciding && !needs_repair {
            self.out.extend_from_slice(&block.raw);
            self.mode = Mode::Passing;
            return Ok(());
        }
        if self.mode == Mode::Deciding {
            tracing::debug!("client sends a URL as :authority; repairing its requests");
            metrics::counter!("concord_client_authority_repaired_total").increment(1);
        }
        self.mode = Mode::Rewriting;
        let fields: Vec<(Vec<u8>, Vec<u8>)> = fields
            .into_iter()
            .filter_map(|(n, v)| {
                if n == b":authority" {
                    repair_authority(&v).map(|v| (n, v))
                } else {
                    Some((n, v))
                }
            })
            .collect();
        let encoded = self
            .encoder
            .encode(fields.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        write_block(&mut self.out, block.stream, block.end_stream, &encoded);
        Ok(())
    }
}

/// Writes a header block as a HEADERS frame and as many CONTINUATION
/// frames as it needs (an empty block is one empty HEADERS frame).
fn write_block(out: &mut BytesMut, stream: u32, end_stream: bool, block: &[u8]) {
    let mut rest = block;
    let mut first = true;
    loop {
        let (chunk, tail) = rest.split_at(rest.len().min(MAX_OUT_FRAME));
        let mut flags = 0;
        if first && end_stream {
            flags |= END_STREAM;
        }
        if tail.is_empty() {
            flags |= END_HEADERS;
        }
        out.put_uint(chunk.len() as u64, 3);
        out.put_u8(if first { HEADERS } else { CONTINUATION });
        out.put_u8(flags);
        out.put_u32(stream);
        out.put_slice(chunk);
        if tail.is_empty() {
            return;
        }
        rest = tail;
        first = false;
    }
}

fn valid_authority(v: &[u8]) -> bool {
    http::uri::Authority::try_from(v).is_ok()
}

/// `http://host:port/` -> `host:port`; `None` when no authority is left.
fn repair_authority(v: &[u8]) -> Option<Vec<u8>> {
    if valid_authority(v) {
        return Some(v.to_vec());
    }
    let s = std::str::from_utf8(v).ok()?;
    let s = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .unwrap_or(s)
        .trim_end_matches('/');
    valid_authority(s.as_bytes()).then(|| s.as_bytes().to_vec())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("HTTP/2: {what}"))
}

fn too_large() -> io::Error {
    bad("header block over the limit")
}

impl<S: AsyncRead + Unpin> AsyncRead for AuthorityRepair<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = &mut *self;
        loop {
            if !me.out.is_empty() {
                let n = me.out.len().min(buf.remaining());
                buf.put_slice(&me.out[..n]);
                me.out.advance(n);
                return Poll::Ready(Ok(()));
            }
            if me.mode == Mode::Passing && me.raw.is_empty() {
                // Decided: no copies from here on.
                return Pin::new(&mut me.inner).poll_read(cx, buf);
            }
            if me.process()? {
                continue;
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    // End of input: hand over whatever is left as it is.
                    me.mode = Mode::Passing;
                    if let Some(b) = me.block.take() {
                        me.out.extend_from_slice(&b.raw);
                    }
                    let rest = me.raw.split();
                    me.out.unsplit(rest);
                    if me.out.is_empty() {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Ready(Ok(())) => me.raw.extend_from_slice(rb.filled()),
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityRepair<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityRepair<S>
{
    type ConnectInfo = S::ConnectInfo;
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Yields its bytes a few at a time, to cut frames anywhere.
    struct Trickle(Vec<u8>, usize, usize);

    impl AsyncRead for Trickle {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.2.min(self.0.len() - self.1).min(buf.remaining());
            let at = self.1;
            buf.put_slice(&self.0[at..at + n]);
            self.1 += n;
            Poll::Ready(Ok(()))
        }
    }

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = BytesMut::new();
        f.put_uint(payload.len() as u64, 3);
        f.put_u8(kind);
        f.put_u8(flags);
        f.put_u32(stream);
        f.put_slice(payload);
        f.to_vec()
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn request(authority: &str, path: &str) -> Fields {
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", path),
            (":authority", authority),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    /// A client connection: preface, SETTINGS, then for each request a
    /// header block (the second split into HEADERS + CONTINUATION, padded
    /// and with priority) and a DATA frame.
    fn client(authority: &str) -> Vec<u8> {
        let mut enc = Encoder::new();
        let mut c = PREFACE.to_vec();
        c.extend(frame(0x4, 0, 0, &[0, 3, 0, 0, 0, 100]));
        let first = request(authority, "/etcdserverpb.KV/Range");
        let b = enc.encode(first.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        c.extend(frame(HEADERS, END_HEADERS, 1, &b));
        c.extend(frame(0x0, END_STREAM, 1, &[0, 0, 0, 0, 2, 10, 0]));
        let second = request(authority, "/etcdserverpb.Maintenance/Status");
        let b = enc.encode(second.iter().map(|(n, v)| (n.as_slice(), v.as_slice())));
        let (a, rest) = b.split_at(b.len() / 2);
        let mut p = vec![2u8]; // pad length
        p.extend([0, 0, 0, 1, 16]); // priority
        p.extend(a);
        p.extend([0, 0]);
        c.extend(frame(HEADERS, END_STREAM | PADDED | PRIORITY, 3, &p));
        c.extend(frame(CONTINUATION, END_HEADERS, 3, rest));
        c
    }

    async fn through(input: Vec<u8>, step: usize) -> Vec<u8> {
        let mut r = AuthorityRepair::new(Trickle(input, 0, step));
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        out
    }

    /// Decodes what the server would see: (frame kind, header list or payload).
    fn frames(mut b: &[u8]) -> Vec<(u8, Fields)> {
        assert!(b.starts_with(PREFACE));
        b = &b[PREFACE.len()..];
        let mut dec = Decoder::new();
        let mut out = Vec::new();
        let mut block = Vec::new();
        while !b.is_empty() {
            let len = u32::from_be_bytes([0, b[0], b[1], b[2]]) as usize;
            let (kind, flags) = (b[3], b[4]);
            let mut p = &b[9..9 + len];
            if kind == HEADERS || kind == CONTINUATION {
                if flags & PADDED != 0 {
                    let pad = p[0] as usize;
                    p = &p[1..p.len() - pad];
                }
                if kind == HEADERS && flags & PRIORITY != 0 {
                    p = &p[5..];
                }
                block.extend_from_slice(p);
                if flags & END_HEADERS != 0 {
                    out.push((HEADERS, dec.decode(&block).unwrap()));
                    block.clear();
                }
            } else {
                out.push((kind, vec![(vec![], p.to_vec())]));
            }
            b = &b[9 + len..];
        }
        out
    }

    #[tokio::test]
    async fn a_url_as_authority_is_repaired_in_every_request() {
        for step in [1, 7, 4096] {
            let out = through(client("http://127.0.0.1:2379"), step).await;
            let got = frames(&out);
            let headers: Vec<_> = got.iter().filter(|(k, _)| *k == HEADERS).collect();
            assert_eq!(headers.len(), 2);
            assert_eq!(
                headers[0].1,
                request("127.0.0.1:2379", "/etcdserverpb.KV/Range")
            );
            assert_eq!(
                headers[1].1,
                request("127.0.0.1:2379", "/etcdserverpb.Maintenance/Status")
            );
            // SETTINGS and DATA pass as they were.
            assert_eq!(got[0], (0x4, vec![(vec![], vec![0, 3, 0, 0, 0, 100])]));
            assert_eq!(got[2], (0x0, vec![(vec![], vec![0, 0, 0, 0, 2, 10, 0])]));
        }
    }

    #[tokio::test]
    async fn what_cannot_be_repaired_is_left_out() {
        let out = through(client("unix:///var/run/x.sock"), 5).await;
        let got = frames(&out);
        let first = &got[1].1;
        assert!(first.iter().all(|(n, _)| n != b":authority"), "{first:?}");
        assert_eq!(first.len(), 5);
    }

    #[tokio::test]
    async fn valid_authorities_and_http1_pass_untouched() {
        for input in [
            client("127.0.0.1:2379"),
            client("localhost"),
            b"GET /health HTTP/1.1\r\nHost: http://x\r\n\r\n".to_vec(),
            b"PRI * HTTP/2.0\r\n".to_vec(), // cut short
        ] {
            for step in [1, 3, 100_000] {
                assert_eq!(through(input.clone(), step).await, input);
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_header_block_ends_the_connection() {
        let mut c = PREFACE.to_vec();
        let big = vec![0u8; MAX_OUT_FRAME];
        c.extend(frame(HEADERS, 0, 1, &big));
        for _ in 0..MAX_HEADER_BLOCK / MAX_OUT_FRAME {
            c.extend(frame(CONTINUATION, 0, 1, &big));
        }
        let mut r = AuthorityRepair::new(Trickle(c, 0, 1 << 20));
        let mut out = Vec::new();
        let e = r.read_to_end(&mut out).await.unwrap_err();
        assert!(e.to_string().contains("over the limit"), "{e}");
    }

    #[test]
    fn authorities_are_repaired_as_etcd_clients_write_them() {
        let r = |s: &str| repair_authority(s.as_bytes()).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(
            r("http://127.0.0.1:2379").as_deref(),
            Some("127.0.0.1:2379")
        );
        assert_eq!(r("https://[::1]:2379/").as_deref(), Some("[::1]:2379"));
        assert_eq!(r("10.0.0.1:2379").as_deref(), Some("10.0.0.1:2379"));
        assert_eq!(r("unix:///tmp/s"), None);
    }
}
