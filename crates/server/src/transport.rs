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

use concord_raft::{Body, Message};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;

use crate::members::MemberTable;
use crate::tls::dial_peer;

mod direct;
mod frame;
pub(crate) mod inbound;
mod listen;
pub(crate) mod refusals;
use direct::Direct;
use frame::MAX_MESSAGES_PER_FRAME;
use frame::{batches, encode_frame};
pub(crate) use listen::{screen, Screened};
pub use listen::{serve_peers, GONE, KIND_MEMBERS, KIND_RAFT};

/// What the transport needs to screen what peers send: the cluster, this
/// member, and the member table (who is a member, who was removed).
#[derive(Debug, Clone)]
pub(crate) struct Screen {
    /// This cluster's id.
    pub cluster_id: u64,
    /// This member's id.
    pub own_id: u64,
    /// The member table, as the driver applies it.
    pub members: Arc<parking_lot::RwLock<MemberTable>>,
}

/// Messages queued per peer before new ones are dropped.
pub const PEER_QUEUE: usize = 8192;
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
    /// Messages dropped (tests; the metric counts them in production).
    #[cfg(test)]
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
            #[cfg(test)]
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
        #[cfg(test)]
        self.dropped
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        metrics::counter!("concord_peer_messages_dropped_total").increment(n as u64);
    }

    /// Messages dropped so far (queue full or unknown peer).
    #[cfg(test)]
    pub(crate) fn dropped(&self) -> u64 {
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
                // Drop what queued up while the peer was unreachable, and
                // during the wait: it is stale, and Raft sends anew what still
                // matters. Left queued, a second of heartbeats reaches a
                // member back from the dead at once, and every answer costs
                // the leader work.
                while rx.try_recv().is_ok() {}
                tokio::time::sleep(backoff).await;
                while rx.try_recv().is_ok() {}
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
            let mut queued = vec![first];
            while queued.len() < MAX_MESSAGES_PER_FRAME {
                match rx.try_recv() {
                    Ok(m) => queued.push(m),
                    Err(_) => break,
                }
            }
            buf.clear();
            let (frames, dropped) = batches(queued);
            if dropped > 0 {
                metrics::counter!("concord_peer_messages_dropped_total").increment(dropped as u64);
            }
            for f in frames {
                encode_frame(buf, cluster_id, me, f);
            }
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
