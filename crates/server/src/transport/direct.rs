//! The driver's direct path to a peer.
//!
//! When a plaintext connection is idle, the driver thread writes its frame
//! to the socket itself instead of queueing the messages for the sender
//! task. That saves waking the task for every replication round: two
//! thread hand-offs per write's critical path (the leader's append and the
//! follower's ack), tens of microseconds each on a busy 2-core machine.
//!
//! Who writes is decided under one lock, so frames never interleave:
//! - the task owns the socket while it dials, while messages wait in its
//!   queue, and while the unsent tail of a frame the driver started is
//!   pending; the driver then queues its messages behind them;
//! - otherwise the driver writes; a short write (the socket buffer is full)
//!   or an error hands the socket back to the task with the tail.
//!
//! TLS connections are never written directly (the TLS session lives in
//! the task), so they always take the queue.

use std::io::{self, Write as _};

use concord_raft::Message;
use parking_lot::Mutex;
use tokio::sync::{mpsc, Notify};

use super::encode_frame;

/// Shared between the driver (writer when idle) and a peer's sender task.
#[derive(Debug, Default)]
pub(crate) struct Direct {
    state: Mutex<State>,
    /// Wakes the sender task: a tail to finish, or a broken socket.
    pub(crate) wake: Notify,
}

#[derive(Debug)]
struct State {
    /// A second handle on the task's plaintext socket.
    stream: Option<std::net::TcpStream>,
    /// The sender task owns the socket (see the module docs).
    // Invariant: !task_owns implies stream.is_some() and tail.is_empty().
    task_owns: bool,
    /// The unsent end of a frame the driver started.
    tail: Vec<u8>,
    /// A direct write failed: the task must re-dial.
    broken: bool,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl Default for State {
    fn default() -> Self {
        State {
            stream: None,
            task_owns: true,
            tail: Vec::new(),
            broken: false,
            buf: Vec::with_capacity(64 * 1024),
        }
    }
}

/// What the task must do before it writes anything else.
pub(crate) struct Pending {
    /// Bytes of a frame the driver started; write them first.
    pub(crate) tail: Vec<u8>,
    /// The connection failed under the driver: re-dial.
    pub(crate) broken: bool,
}

impl Direct {
    /// Sends `msgs` (all to this peer, in order): written to the socket
    /// when the driver may, otherwise queued for the task. Returns how many
    /// were dropped (queue full, or a failed write; Raft resends).
    pub(crate) fn send(
        &self,
        cluster_id: u64,
        me: u64,
        msgs: Vec<Message>,
        queue: &mpsc::Sender<Message>,
    ) -> usize {
        let mut st = self.state.lock();
        if st.task_owns {
            let mut dropped = 0;
            for m in msgs {
                if queue.try_send(m).is_err() {
                    dropped += 1;
                }
            }
            return dropped;
        }
        let count = msgs.len();
        let mut buf = std::mem::take(&mut st.buf);
        buf.clear();
        let (frames, too_large) = super::batches(msgs);
        for f in frames {
            encode_frame(&mut buf, cluster_id, me, f);
        }
        let stream = st
            .stream
            .as_ref()
            .expect("invariant: the driver writes only to a stream");
        let mut dropped = too_large;
        match write_some(stream, &buf) {
            Ok(n) if n == buf.len() => {}
            Ok(n) => {
                st.tail = buf[n..].to_vec();
                st.task_owns = true;
                self.wake.notify_one();
            }
            Err(_) => {
                st.stream = None;
                st.broken = true;
                st.task_owns = true;
                dropped = count;
                self.wake.notify_one();
            }
        }
        st.buf = buf;
        dropped
    }

    /// The task connected; `stream` is the driver's handle (None for TLS).
    /// The task owns the socket until it has written what queued up while
    /// it dialled and hands it over (the wake-up makes it look at once).
    pub(crate) fn connected(&self, stream: Option<std::net::TcpStream>) {
        let mut st = self.state.lock();
        st.stream = stream;
        st.task_owns = true;
        st.broken = false;
        st.tail.clear();
        self.wake.notify_one();
    }

    /// The task lost the connection: the driver queues until it re-dials.
    pub(crate) fn disconnected(&self) {
        let mut st = self.state.lock();
        st.stream = None;
        st.task_owns = true;
        st.tail.clear();
    }

    /// What the task must finish first.
    pub(crate) fn take_pending(&self) -> Pending {
        let mut st = self.state.lock();
        Pending {
            tail: std::mem::take(&mut st.tail),
            broken: std::mem::take(&mut st.broken),
        }
    }

    /// The task has written everything: it either gets the next queued
    /// message (and keeps the socket) or hands the socket to the driver.
    pub(crate) fn hand_back(&self, queue: &mut mpsc::Receiver<Message>) -> Option<Message> {
        let mut st = self.state.lock();
        if let Ok(m) = queue.try_recv() {
            return Some(m);
        }
        if st.stream.is_some() && st.tail.is_empty() && !st.broken {
            st.task_owns = false;
        }
        None
    }
}

/// One non-blocking write; 0 when the socket buffer is full.
fn write_some(mut stream: &std::net::TcpStream, buf: &[u8]) -> io::Result<usize> {
    let mut written = 0;
    while written < buf.len() {
        match stream.write(&buf[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(e),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::sync::Arc;
    use std::time::Duration;

    use concord_proto::concordpeer::Frame;
    use concord_proto::peer::from_wire;
    use concord_raft::Body;
    use prost::Message as _;

    use super::*;
    use crate::transport::{Transport, KIND_RAFT};

    fn heartbeat(seq: u64) -> Message {
        Message {
            group: 1,
            from: 1,
            to: 2,
            term: 1,
            body: Body::Heartbeat {
                commit: seq,
                ctx: 0,
            },
        }
    }

    /// Reads frames until `want` heartbeats or `deadline`; returns their
    /// sequence numbers in arrival order.
    fn read_heartbeats(conn: &mut std::net::TcpStream, want: u64) -> Vec<u64> {
        let mut seqs = Vec::new();
        let mut len = [0u8; 4];
        while (seqs.len() as u64) < want {
            if conn.read_exact(&mut len).is_err() {
                break;
            }
            let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
            conn.read_exact(&mut body).expect("a whole frame");
            let frame = Frame::decode(&body[..]).expect("frames never interleave");
            assert_eq!((frame.cluster_id, frame.from), (7, 1));
            for m in frame.messages {
                match from_wire(m).expect("valid message").body {
                    Body::Heartbeat { commit, .. } => seqs.push(commit),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        seqs
    }

    /// Waits until the driver may write directly.
    fn wait_handed_to_driver(direct: &Direct) {
        for _ in 0..500 {
            if !direct.state.lock().task_owns {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("the sender task never handed the connection to the driver");
    }

    /// Accepts a connection from the transport and checks its kind byte.
    fn accept(listener: &std::net::TcpListener) -> std::net::TcpStream {
        raft_connection(listener.accept().unwrap().0)
    }

    /// A blocking connection with a read timeout whose kind byte is Raft.
    fn raft_connection(mut conn: std::net::TcpStream) -> std::net::TcpStream {
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut kind = [0u8; 1];
        conn.read_exact(&mut kind).unwrap();
        assert_eq!(kind[0], KIND_RAFT);
        conn
    }

    /// A transport from member 1 (cluster 7) to a listener standing in for
    /// member 2. A peer has two connections (normal and snapshot); returns
    /// the normal one, found with a probe, and the other (keep it open).
    fn start(
        rt: &tokio::runtime::Runtime,
    ) -> (
        Arc<Transport>,
        std::net::TcpListener,
        std::net::TcpStream,
        std::net::TcpStream,
    ) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let transport = Transport::new(1, 7, rt.handle().clone(), None);
        transport.set_peer(2, format!("http://{addr}"));
        let (a, b) = (accept(&listener), accept(&listener));
        wait_handed_to_driver(&transport.peers.lock()[&2].direct);
        transport.send(vec![heartbeat(u64::MAX)]);
        a.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let probe_on_a = a.peek(&mut [0u8; 1]).is_ok();
        a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (mut normal, other) = if probe_on_a { (a, b) } else { (b, a) };
        assert_eq!(read_heartbeats(&mut normal, 1), vec![u64::MAX]);
        (transport, listener, normal, other)
    }

    #[test]
    fn a_full_socket_hands_the_tail_to_the_task_and_order_holds() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (transport, _listener, mut conn, _snapshots) = start(&rt);
        let direct = transport.peers.lock()[&2].direct.clone();

        // The reader does not read: the socket buffer fills, a direct write
        // comes up short and the task takes over the tail and the queue.
        let mut sent = 0u64;
        while !direct.state.lock().task_owns && sent < 5_000_000 {
            transport.send((sent..sent + 1000).map(heartbeat).collect());
            sent += 1000;
        }
        assert!(direct.state.lock().task_owns, "never filled the socket");
        for _ in 0..20 {
            transport.send((sent..sent + 1000).map(heartbeat).collect());
            sent += 1000;
        }
        let seqs = read_heartbeats(&mut conn, sent - transport.dropped());
        assert_eq!(seqs.len() as u64 + transport.dropped(), sent);
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "out of order");

        // Drained: the socket goes back to the driver, and frames still arrive.
        wait_handed_to_driver(&direct);
        transport.send((sent..sent + 10).map(heartbeat).collect());
        assert_eq!(
            read_heartbeats(&mut conn, 10),
            (sent..sent + 10).collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_connection_closed_by_the_peer_is_redialled_and_sending_resumes() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (transport, listener, first, _snapshots) = start(&rt);
        drop(first);
        // The driver keeps sending: a write fails once the close is seen,
        // the task re-dials (the snapshot connection stays up, so the next
        // connection is the normal one again).
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seq = 0;
        let conn = loop {
            assert!(std::time::Instant::now() < deadline, "never re-dialled");
            transport.send(vec![heartbeat(seq)]);
            seq += 1;
            std::thread::sleep(Duration::from_millis(5));
            match listener.accept() {
                Ok((conn, _)) => break conn,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        };
        let mut conn = raft_connection(conn);
        wait_handed_to_driver(&transport.peers.lock()[&2].direct);
        let fresh: Vec<u64> = (seq + 100..seq + 110).collect();
        transport.send(fresh.iter().copied().map(heartbeat).collect());
        // Heartbeats queued while re-dialling may come first.
        let mut got = Vec::new();
        while got.last() != fresh.last() {
            let more = read_heartbeats(&mut conn, 1);
            assert!(!more.is_empty(), "the connection ended early");
            got.extend(more);
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert!(got.ends_with(&fresh), "{got:?}");
    }
}
