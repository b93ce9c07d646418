//! The peer listener: accepts connections, reads each one's kind byte,
//! hands plaintext Raft connections to the driver (`inbound.rs`), reads TLS
//! Raft connections in a task, and answers member-table queries; every
//! frame is screened ([`screen`]) before its messages go further.
//!
//! Bounds, the same on both paths: at most [`MAX_PENDING`] connections in
//! their handshake or before their kind byte, each for at most
//! [`FIRST_BYTE_TIMEOUT`]; at most [`MAX_TLS_CONNS`] TLS Raft connections
//! (the driver caps the plaintext ones, `inbound::MAX_CONNS`); frames read
//! as they arrive, never allocated from their length prefix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use concord_proto::concordpeer::Frame;
use concord_proto::peer::from_wire;
use concord_raft::Message;
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use super::frame::take_frame;
use super::{refusals, Screen};
use crate::mailbox::{InboxSender, Input};
use crate::tls::{accept_peer, PeerStream};

/// First byte of a connection carrying Raft frames.
pub const KIND_RAFT: u8 = 1;
/// First byte of a connection asking for the member table (a joining member).
pub const KIND_MEMBERS: u8 = 2;
/// The one byte a listener sends back on a Raft connection: "you were removed".
pub const GONE: u8 = 0xff;
/// Most connections in their TLS handshake or waiting for their kind byte;
/// beyond it new connections are closed at once.
pub const MAX_PENDING: usize = 256;
/// Longest a new connection may take to send its kind byte (after its TLS
/// handshake, itself bounded by `tls::HANDSHAKE_TIMEOUT`).
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most TLS Raft connections read at once (a peer has two).
pub const MAX_TLS_CONNS: usize = 256;
/// Bytes read from a TLS connection at once.
const READ_CHUNK: usize = 64 * 1024;

/// The listener's bounds (the constants above; smaller in tests).
#[derive(Debug, Clone, Copy)]
struct Bounds {
    pending: usize,
    first_byte: Duration,
    tls_conns: usize,
}

const BOUNDS: Bounds = Bounds {
    pending: MAX_PENDING,
    first_byte: FIRST_BYTE_TIMEOUT,
    tls_conns: MAX_TLS_CONNS,
};

/// Accepts peer connections until the member stops.
pub async fn serve_peers(
    listener: TcpListener,
    inbox: InboxSender,
    screen: Screen,
    tls: Option<TlsAcceptor>,
) {
    serve_with(listener, inbox, screen, tls, BOUNDS).await
}

async fn serve_with(
    listener: TcpListener,
    inbox: InboxSender,
    screen: Screen,
    tls: Option<TlsAcceptor>,
    bounds: Bounds,
) {
    let pending = Arc::new(Semaphore::new(bounds.pending));
    let tls_conns = Arc::new(Semaphore::new(bounds.tls_conns));
    let live = LiveConns::default();
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = pending.clone().try_acquire_owned() else {
            metrics::counter!("concord_peer_connections_refused_total").increment(1);
            tracing::debug!("too many peer connections pending; closing a new one");
            continue;
        };
        let (inbox, screen, tls) = (inbox.clone(), screen.clone(), tls.clone());
        let (tls_conns, live) = (tls_conns.clone(), live.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let first = async {
                let mut kind = [0u8; 1];
                match &tls {
                    None => {
                        let mut tcp = tcp;
                        tcp.read_exact(&mut kind).await?;
                        std::io::Result::Ok((Conn::Plain(tcp), kind[0]))
                    }
                    Some(acceptor) => {
                        let mut s = accept_peer(tcp, Some(acceptor)).await?;
                        s.read_exact(&mut kind).await?;
                        Ok((Conn::Tls(s), kind[0]))
                    }
                }
            };
            let (conn, kind) = match tokio::time::timeout(bounds.first_byte, first).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "peer connection failed before its kind byte");
                    return;
                }
                Err(_) => {
                    metrics::counter!("concord_peer_connections_refused_total").increment(1);
                    tracing::debug!("peer connection sent no kind byte in time; closed");
                    return;
                }
            };
            drop(permit);
            match (kind, conn) {
                // The driver reads plaintext Raft connections itself.
                (KIND_RAFT, Conn::Plain(tcp)) => match tcp.into_std() {
                    Ok(tcp) => {
                        inbox.send(Input::PeerConn(tcp)).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "handing a peer connection over"),
                },
                (KIND_RAFT, Conn::Tls(stream)) => {
                    let Ok(_held) = tls_conns.try_acquire_owned() else {
                        metrics::counter!("concord_peer_connections_refused_total").increment(1);
                        tracing::warn!("too many TLS peer connections; closing a new one");
                        return;
                    };
                    receive(stream, inbox, screen, live).await;
                }
                (k, Conn::Plain(tcp)) => serve_other(k, Box::new(tcp), &screen).await,
                (k, Conn::Tls(stream)) => serve_other(k, stream, &screen).await,
            }
        });
    }
}

/// A connection past its kind byte.
enum Conn {
    Plain(tokio::net::TcpStream),
    Tls(PeerStream),
}

/// A connection that is not a Raft stream: a member-table query is
/// answered; anything else is closed.
async fn serve_other(kind: u8, mut stream: PeerStream, screen: &Screen) {
    if kind == KIND_MEMBERS {
        let table = screen.members.read().encode();
        let mut out = (table.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&table);
        let _ = stream.write_all(&out).await;
    }
}

/// What a frame from a peer connection calls for.
pub(crate) enum Screened {
    /// Messages for the driver.
    Messages(Vec<Message>),
    /// Close the connection.
    Close,
    /// The sender was removed from the cluster: send it [`GONE`], then close.
    Gone,
}

/// Checks a decoded frame: the cluster, the sender (a current member,
/// not removed), each message's addressing. Invalid messages are dropped,
/// counted and reported ([`refusals`]); what reaches the driver is then
/// checked against the core's state (`RawNode::check_message`).
pub(crate) fn screen(frame: Frame, screen: &Screen) -> Screened {
    if frame.cluster_id != screen.cluster_id {
        refusals::refused(frame.from, "other_cluster", "a frame from another cluster");
        return Screened::Close;
    }
    let from = frame.from;
    {
        let members = screen.members.read();
        if members.removed.contains(&from) {
            // A removed member must not vote, campaign or forward writes.
            refusals::refused(from, "removed_member", "a frame from a removed member");
            return Screened::Gone;
        }
        if from == screen.own_id || !members.members.contains_key(&from) {
            // As etcd's peer handler: senders that are not members are refused.
            refusals::refused(
                from,
                "not_member",
                "a frame from a sender that is not a member",
            );
            return Screened::Close;
        }
    }
    let mut out = Vec::with_capacity(frame.messages.len());
    for m in frame.messages {
        match from_wire(m) {
            Ok(m) if m.to == screen.own_id && m.from == from => out.push(m),
            Ok(_) => refusals::refused(from, "misaddressed", "a misaddressed message"),
            Err(_) => refusals::refused(from, "malformed", "a malformed message"),
        }
    }
    Screened::Messages(out)
}

/// How many TLS Raft connections each member has open here, so that only
/// the close of a member's last one reads as its process being gone.
#[derive(Clone, Default)]
struct LiveConns(Arc<Mutex<HashMap<u64, usize>>>);

/// One open connection of `peer`, counted in a [`LiveConns`] until dropped.
struct LiveConn {
    live: LiveConns,
    peer: u64,
}

impl LiveConns {
    fn open(&self, peer: u64) -> LiveConn {
        *self.0.lock().entry(peer).or_default() += 1;
        LiveConn {
            live: self.clone(),
            peer,
        }
    }
}

impl LiveConn {
    /// Closes it; true if it was the member's last connection.
    fn close(self) -> bool {
        let last = self.uncount();
        std::mem::forget(self);
        last
    }

    /// Takes it off the count; true if none of the member's is left.
    fn uncount(&self) -> bool {
        let mut map = self.live.0.lock();
        let n = map.get_mut(&self.peer).expect("counted when opened");
        // Invariant: a member's count covers its open connections, so >= 1.
        assert!(*n >= 1, "live connection count underflow");
        *n -= 1;
        if *n == 0 {
            map.remove(&self.peer);
            return true;
        }
        false
    }
}

impl Drop for LiveConn {
    fn drop(&mut self) {
        self.uncount();
    }
}

/// Reads frames from a TLS peer connection as they arrive (plaintext ones
/// are read by the driver itself, `inbound.rs`).
async fn receive(mut stream: PeerStream, inbox: InboxSender, screen: Screen, live: LiveConns) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // The member whose frames this connection carries, once one of its
    // messages passed the screen.
    let mut peer: Option<LiveConn> = None;
    loop {
        let frame = match take_frame(&mut buf) {
            Ok(Some(f)) => f,
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                match stream.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => {
                        // Closed by the other side: if it was the member's
                        // last connection its process may have died, which
                        // the driver may act on at once.
                        if let Some(conn) = peer {
                            let p = conn.peer;
                            if conn.close() {
                                inbox.send(Input::PeerLost(p)).await;
                            }
                        }
                        return;
                    }
                    Ok(_) => continue,
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "bad peer frame; closing the connection");
                return;
            }
        };
        let from = frame.from;
        match self::screen(frame, &screen) {
            Screened::Messages(ms) => {
                if peer.is_none() && !ms.is_empty() {
                    peer = Some(live.open(from));
                }
                for m in ms {
                    if !inbox.send(Input::Peer(m)).await {
                        return;
                    }
                }
            }
            Screened::Close => return,
            Screened::Gone => {
                let _ = stream.write_all(&[GONE]).await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Instant;

    #[test]
    fn only_the_close_of_a_members_last_tls_connection_counts() {
        let live = LiveConns::default();
        let (a, b) = (live.open(2), live.open(2));
        let dropped = live.open(2);
        drop(dropped);
        assert!(!a.close(), "member 2 still has a connection");
        assert!(b.close());
        assert!(live.0.lock().is_empty());
    }

    /// Reads until the peer closes (true) or `within` passes (false).
    fn closed_within(s: &mut std::net::TcpStream, within: Duration) -> bool {
        s.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 16];
        match s.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_and_surplus_connections_are_closed_and_raft_ones_handed_over() {
        let (tx, mut inbox) = crate::mailbox::channel(16).unwrap();
        let screen = Screen {
            cluster_id: 7,
            own_id: 1,
            members: Default::default(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let bounds = Bounds {
            pending: 2,
            first_byte: Duration::from_millis(300),
            tls_conns: 1,
        };
        tokio::spawn(serve_with(listener, tx, screen, None, bounds));
        let outcome = tokio::task::spawn_blocking(move || {
            // Two silent connections fill the pending slots; a third is
            // closed at once.
            let mut a = std::net::TcpStream::connect(addr).unwrap();
            let mut b = std::net::TcpStream::connect(addr).unwrap();
            std::thread::sleep(Duration::from_millis(50));
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let t = Instant::now();
            assert!(closed_within(&mut c, Duration::from_millis(200)));
            assert!(
                t.elapsed() < Duration::from_millis(200),
                "surplus closed at once"
            );
            // The silent ones are closed after the first-byte timeout.
            let t = Instant::now();
            assert!(closed_within(&mut a, Duration::from_secs(3)));
            assert!(closed_within(&mut b, Duration::from_secs(3)));
            let waited = t.elapsed();
            assert!(
                waited >= Duration::from_millis(150) && waited < Duration::from_secs(2),
                "{waited:?}"
            );
            // A slot is free again: a Raft connection goes to the driver.
            let mut r = std::net::TcpStream::connect(addr).unwrap();
            r.write_all(&[KIND_RAFT]).unwrap();
            r
        })
        .await
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(3), async {
            loop {
                if let Ok(Input::PeerConn(_)) = inbox.try_recv() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert!(got.is_ok(), "the Raft connection was not handed over");
        drop(outcome);
    }
}
