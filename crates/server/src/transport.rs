//! Peer transport: Raft messages over persistent TCP connections.
//!
//! One sender task per peer drains its bounded queue into frames (a frame
//! is a batch of messages: 4-byte big-endian length, then a protobuf
//! `Frame`), so replication batches naturally under load. When a plaintext
//! connection is idle, the driver writes its frame itself (`direct.rs`).
//! Snapshot chunks go through a second queue and connection, so a large
//! snapshot never holds up heartbeats and appends. A broken connection is re-dialled with
//! exponential backoff; messages that cannot be queued or sent are dropped,
//! which Raft tolerates (it retries).
//!
//! The listener accepts connections and hands plaintext Raft connections
//! to the driver, which reads them itself (`inbound.rs`); a TLS connection
//! is read by a task that feeds the driver's inbox. Either way each frame
//! is screened ([`screen`]): the cluster id, a removed sender, addressing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use concord_proto::concordpeer::{Frame, RaftMessage};
use concord_proto::peer::{from_wire, to_wire};
use concord_raft::{Body, Message};
use parking_lot::Mutex;
use prost::Message as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::driver::{InboxSender, Input};
use crate::tls::{accept_peer, dial_peer, PeerStream};

mod direct;
pub(crate) mod inbound;
pub(crate) mod refusals;
use direct::{encode_frame, Direct};

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 8192;
/// Most messages in one frame.
pub const MAX_MESSAGES_PER_FRAME: usize = 4096;
/// Largest frame accepted from a peer.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Backoff bounds for re-dialling a peer.
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(1000);

struct Peer {
    addr: Arc<Mutex<String>>,
    direct: Arc<Direct>,
    normal: mpsc::Sender<Message>,
    snapshot: mpsc::Sender<Message>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Sends Raft messages to peers.
pub struct Transport {
    me: u64,
    cluster_id: u64,
    rt: tokio::runtime::Handle,
    peers: Mutex<HashMap<u64, Peer>>,
    dropped: std::sync::atomic::AtomicU64,
    gone: tokio::sync::watch::Sender<bool>,
    tls: Option<TlsConnector>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport").field("me", &self.me).finish()
    }
}

impl Transport {
    /// A transport for member `me` of cluster `cluster_id`; `tls` dials
    /// `https://` peer URLs.
    pub fn new(
        me: u64,
        cluster_id: u64,
        rt: tokio::runtime::Handle,
        tls: Option<TlsConnector>,
    ) -> Arc<Transport> {
        Arc::new(Transport {
            me,
            cluster_id,
            rt,
            peers: Mutex::new(HashMap::new()),
            dropped: Default::default(),
            gone: tokio::sync::watch::channel(false).0,
            tls,
        })
    }

    /// Becomes true when a peer answers that this member was removed from
    /// the cluster (it may never see its own removal applied: the others
    /// stop talking to it as soon as they apply it).
    pub fn removed_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.gone.subscribe()
    }

    /// Adds a peer or changes its peer URL.
    pub fn set_peer(&self, id: u64, addr: String) {
        if id == self.me {
            return;
        }
        let mut peers = self.peers.lock();
        if let Some(p) = peers.get(&id) {
            *p.addr.lock() = addr;
            return;
        }
        let addr = Arc::new(Mutex::new(addr));
        let direct = Arc::new(Direct::default());
        let (ntx, nrx) = mpsc::channel(PEER_QUEUE);
        let (stx, srx) = mpsc::channel(64);
        let gone = self.gone.clone();
        let tasks = vec![
            self.rt.spawn(sender(
                self.me,
                self.cluster_id,
                id,
                addr.clone(),
                (nrx, Some(direct.clone())),
                gone.clone(),
                self.tls.clone(),
            )),
            self.rt.spawn(sender(
                self.me,
                self.cluster_id,
                id,
                addr.clone(),
                (srx, None),
                gone,
                self.tls.clone(),
            )),
        ];
        peers.insert(
            id,
            Peer {
                addr,
                direct,
                normal: ntx,
                snapshot: stx,
                tasks,
            },
        );
    }

    /// Forgets a peer (removed from the cluster).
    pub fn remove_peer(&self, id: u64) {
        if let Some(p) = self.peers.lock().remove(&id) {
            for t in p.tasks {
                t.abort();
            }
        }
    }

    /// Sends messages (one frame per peer when its connection is idle,
    /// else queued); never blocks.
    pub fn send(&self, msgs: Vec<Message>) {
        if msgs.is_empty() {
            return;
        }
        let peers = self.peers.lock();
        // Per destination, in order; a Ready addresses a handful of peers.
        let mut by_peer: Vec<(u64, Vec<Message>)> = Vec::new();
        for m in msgs {
            let Some(p) = peers.get(&m.to) else {
                self.note_drop(1);
                continue;
            };
            if matches!(m.body, Body::Snapshot { .. }) {
                if p.snapshot.try_send(m).is_err() {
                    self.note_drop(1);
                }
                continue;
            }
            match by_peer.iter_mut().find(|(to, _)| *to == m.to) {
                Some((_, v)) => v.push(m),
                None => by_peer.push((m.to, vec![m])),
            }
        }
        for (to, msgs) in by_peer {
            let p = &peers[&to];
            let dropped = p.direct.send(self.cluster_id, self.me, msgs, &p.normal);
            self.note_drop(dropped);
        }
    }

    fn note_drop(&self, n: usize) {
        if n == 0 {
            return;
        }
        self.dropped
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("concord_peer_messages_dropped_total").increment(n as u64);
    }

    /// Messages dropped so far (queue full or unknown peer).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
    }
}

async fn sender(
    me: u64,
    cluster_id: u64,
    to: u64,
    addr: Arc<Mutex<String>>,
    (mut rx, direct): (mpsc::Receiver<Message>, Option<Arc<Direct>>),
    gone: tokio::sync::watch::Sender<bool>,
    tls: Option<TlsConnector>,
) {
    let mut backoff = BACKOFF_MIN;
    let mut buf = Vec::with_capacity(64 * 1024);
    loop {
        let target = addr.lock().clone();
        let (stream, handle) = match dial_peer(&target, tls.as_ref()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::debug!(peer = to, error = %e, "cannot reach peer");
                // Drop what queued up while the peer was unreachable: it is stale.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        let (mut reader, mut stream) = tokio::io::split(stream);
        if stream.write_all(&[KIND_RAFT]).await.is_err() {
            continue;
        }
        // The peer only ever answers GONE: this member was removed.
        let gone = gone.clone();
        tokio::spawn(async move {
            let mut b = [0u8; 1];
            if reader.read_exact(&mut b).await.is_ok() && b[0] == GONE {
                tracing::warn!(
                    peer = to,
                    "a peer says this member was removed from the cluster"
                );
                gone.send_replace(true);
            }
        });
        backoff = BACKOFF_MIN;
        if let Some(d) = &direct {
            d.connected(handle);
        }
        let alive = write_frames(
            me,
            cluster_id,
            &mut rx,
            direct.as_deref(),
            &mut stream,
            &mut buf,
        )
        .await;
        if let Some(d) = &direct {
            d.disconnected();
        }
        match alive {
            Some(()) => tracing::debug!(peer = to, "peer connection lost; re-dialling"),
            None => return, // the transport is gone
        }
    }
}

/// Writes queued messages (and tails the driver left) until the connection
/// fails (`Some`) or the queue closes (`None`).
async fn write_frames(
    me: u64,
    cluster_id: u64,
    rx: &mut mpsc::Receiver<Message>,
    direct: Option<&Direct>,
    stream: &mut (impl tokio::io::AsyncWrite + Unpin),
    buf: &mut Vec<u8>,
) -> Option<()> {
    loop {
        let mut next = match direct {
            Some(d) => tokio::select! {
                m = rx.recv() => Some(m?),
                () = d.wake.notified() => None,
            },
            None => Some(rx.recv().await?),
        };
        if let Some(d) = direct {
            let pending = d.take_pending();
            if pending.broken {
                return Some(());
            }
            if !pending.tail.is_empty() && stream.write_all(&pending.tail).await.is_err() {
                return Some(());
            }
            if next.is_none() {
                next = d.hand_back(rx);
            }
        }
        // Drain the queue; with a direct path, hand the socket back to the
        // driver once the queue is empty.
        while let Some(first) = next.take() {
            let mut messages: Vec<RaftMessage> = vec![to_wire(&first)];
            while messages.len() < MAX_MESSAGES_PER_FRAME {
                match rx.try_recv() {
                    Ok(m) => messages.push(to_wire(&m)),
                    Err(_) => break,
                }
            }
            buf.clear();
            encode_frame(buf, cluster_id, me, messages);
            if stream.write_all(buf).await.is_err() {
                return Some(());
            }
            next = match direct {
                Some(d) => d.hand_back(rx),
                None => rx.try_recv().ok(),
            };
        }
    }
}

/// First byte of a connection carrying Raft frames.
pub const KIND_RAFT: u8 = 1;
/// First byte of a connection asking for the member table (a joining member).
pub const KIND_MEMBERS: u8 = 2;
/// The one byte a listener sends back on a Raft connection: "you were removed".
pub const GONE: u8 = 0xff;

/// Accepts peer connections: Raft frames go to `inbox`; a member-table
/// query is answered with the table.
pub async fn serve_peers(
    listener: TcpListener,
    inbox: InboxSender,
    shared: Arc<crate::shared::Shared>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let inbox = inbox.clone();
        let shared = shared.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            if tls.is_none() {
                // Read the kind byte before the socket is handed over: the
                // driver reads plaintext Raft connections itself.
                let mut tcp = tcp;
                let _ = tcp.set_nodelay(true);
                let mut kind = [0u8; 1];
                if tcp.read_exact(&mut kind).await.is_err() {
                    return;
                }
                if kind[0] == KIND_RAFT {
                    match tcp.into_std() {
                        Ok(tcp) => {
                            inbox.send(Input::PeerConn(tcp)).await;
                        }
                        Err(e) => tracing::warn!(error = %e, "handing a peer connection over"),
                    }
                    return;
                }
                serve_other(kind[0], Box::new(tcp), &shared).await;
                return;
            }
            let mut stream = match accept_peer(tcp, tls.as_ref()).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "peer TLS handshake failed");
                    return;
                }
            };
            let mut kind = [0u8; 1];
            if stream.read_exact(&mut kind).await.is_err() {
                return;
            }
            match kind[0] {
                KIND_RAFT => receive(stream, inbox, shared).await,
                k => serve_other(k, stream, &shared).await,
            }
        });
    }
}

/// A connection that is not a Raft stream: a member-table query is
/// answered; anything else is closed.
async fn serve_other(kind: u8, mut stream: PeerStream, shared: &crate::shared::Shared) {
    if kind == KIND_MEMBERS {
        let table = shared.members.read().encode();
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
pub(crate) fn screen(frame: Frame, shared: &crate::shared::Shared) -> Screened {
    if frame.cluster_id != shared.cluster_id {
        refusals::refused(frame.from, "other_cluster", "a frame from another cluster");
        return Screened::Close;
    }
    let from = frame.from;
    {
        let members = shared.members.read();
        if members.removed.contains(&from) {
            // A removed member must not vote, campaign or forward writes.
            refusals::refused(from, "removed_member", "a frame from a removed member");
            return Screened::Gone;
        }
        if from == shared.id || !members.members.contains_key(&from) {
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
            Ok(m) if m.to == shared.id && m.from == from => out.push(m),
            Ok(_) => refusals::refused(from, "misaddressed", "a misaddressed message"),
            Err(_) => refusals::refused(from, "malformed", "a malformed message"),
        }
    }
    Screened::Messages(out)
}

/// Reads frames from a TLS peer connection (plaintext ones are read by the
/// driver itself, `inbound.rs`).
async fn receive(mut stream: PeerStream, inbox: InboxSender, shared: Arc<crate::shared::Shared>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME_BYTES {
            tracing::warn!(len, "peer frame over the limit; closing the connection");
            return;
        }
        buf.resize(len, 0);
        if stream.read_exact(&mut buf[..]).await.is_err() {
            return;
        }
        let frame = match Frame::decode(buf.split().freeze()) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "malformed peer frame; closing the connection");
                return;
            }
        };
        match screen(frame, &shared) {
            Screened::Messages(ms) => {
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
