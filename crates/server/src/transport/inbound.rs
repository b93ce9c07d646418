//! Plaintext peer connections read by the driver thread itself.
//!
//! The listener task reads a connection's kind byte and hands a Raft
//! connection to the driver, which registers it in the poll it sleeps in
//! (`mailbox.rs`). A message from a peer then wakes the driver
//! directly: before, a runtime worker woke on the socket, decoded the
//! frame and woke the driver through its channel, about 20 µs per hop on
//! this 2-core machine, twice on a write's critical path (the follower's
//! append, the leader's ack).
//!
//! Reading is bounded: at most [`MAX_CONNS`] connections, frames of at
//! most `MAX_FRAME_BYTES`, and a message and byte budget per connection and
//! round; a connection that still has data when its budget runs out stays
//! marked readable and is read again next round, before the driver sleeps.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::time::Instant;

use bytes::BytesMut;
use concord_proto::concordpeer::Frame;
use concord_raft::Message;

use super::frame::take_frame;
use super::{screen, Screen, Screened, GONE};
use crate::mailbox::WAKE;

/// Most peer connections read by the driver (a peer has two, for messages
/// and snapshots). A new one beyond it replaces the one that has gone
/// longest without a valid frame, so idle or stale connections cannot
/// lock a member's peers out; a dropped peer just dials again.
pub(crate) const MAX_CONNS: usize = 256;
/// Bytes read from a socket at once.
const READ_CHUNK: usize = 64 * 1024;
/// Bytes read from one connection per round (snapshot chunks are large
/// and few: the message budget alone would not bound them).
const MAX_READ_PER_ROUND: usize = 8 * 1024 * 1024;

struct Conn {
    stream: mio::net::TcpStream,
    /// Bytes read and not yet a whole frame.
    buf: BytesMut,
    /// The socket may have more to read (edge-triggered: set by the poll,
    /// cleared when a read would block).
    readable: bool,
    /// When it was accepted or last delivered a valid frame.
    last_active: Instant,
    /// The member whose frames it carries, once one was accepted.
    peer: Option<u64>,
}

/// The driver's peer connections.
pub(crate) struct Inbound {
    conns: HashMap<usize, Conn>,
    next_token: usize,
    /// [`MAX_CONNS`] (smaller in tests).
    max_conns: usize,
    /// Reused read buffer.
    scratch: Vec<u8>,
    screen: Screen,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("conns", &self.conns.len())
            .finish()
    }
}

/// How reading a connection ended.
enum Ended {
    /// The budget ran out; more may be buffered or readable.
    Budget,
    /// The socket has nothing more for now.
    Drained,
    /// Refused or malformed: drop it.
    Closed,
    /// The peer closed it or it failed (the peer's process may have died).
    Lost,
}

impl Inbound {
    /// No connections yet.
    pub(crate) fn new(screen: Screen) -> Inbound {
        Inbound {
            conns: HashMap::new(),
            next_token: 0,
            max_conns: MAX_CONNS,
            scratch: vec![0; READ_CHUNK],
            screen,
        }
    }

    /// Takes over a peer connection (nonblocking, its kind byte read).
    pub(crate) fn add(&mut self, registry: &mio::Registry, tcp: std::net::TcpStream) {
        if self.conns.len() >= self.max_conns {
            let stalest = self
                .conns
                .iter()
                .min_by_key(|(_, c)| c.last_active)
                .map(|(t, _)| *t);
            if let Some(mut c) = stalest.and_then(|t| self.conns.remove(&t)) {
                tracing::warn!("too many peer connections; dropping the stalest");
                let _ = registry.deregister(&mut c.stream);
            }
        }
        if let Err(e) = tcp.set_nonblocking(true) {
            tracing::warn!(error = %e, "peer connection");
            return;
        }
        let mut stream = mio::net::TcpStream::from_std(tcp);
        let token = self.next_token;
        self.next_token = (self.next_token + 1) % WAKE.0;
        if let Err(e) = registry.register(&mut stream, mio::Token(token), mio::Interest::READABLE) {
            tracing::warn!(error = %e, "registering a peer connection");
            return;
        }
        let conn = Conn {
            stream,
            buf: BytesMut::new(),
            // Data may have arrived before the registration.
            readable: true,
            last_active: Instant::now(),
            peer: None,
        };
        self.conns.insert(token, conn);
    }

    /// Marks the connections the poll reported.
    pub(crate) fn mark_readable(&mut self, tokens: &[mio::Token]) {
        for t in tokens {
            if let Some(c) = self.conns.get_mut(&t.0) {
                c.readable = true;
            }
        }
    }

    /// Some connection is known to have more to read.
    pub(crate) fn any_readable(&self) -> bool {
        self.conns.values().any(|c| c.readable)
    }

    /// Reads the readable connections, handing each message to `step`, up
    /// to `budget` messages per connection. Returns how many were handed;
    /// members whose connection the other side closed are pushed to `lost`.
    pub(crate) fn read(
        &mut self,
        registry: &mio::Registry,
        budget: usize,
        lost: &mut Vec<u64>,
        mut step: impl FnMut(Message),
    ) -> usize {
        let mut handed = 0;
        let mut closed = Vec::new();
        let mut gone = Vec::new();
        for (&token, conn) in self.conns.iter_mut().filter(|(_, c)| c.readable) {
            let mut n = 0;
            let end = read_conn(
                conn,
                &mut self.scratch,
                budget,
                |m| {
                    n += 1;
                    step(m)
                },
                |frame| screen(frame, &self.screen),
            );
            handed += n;
            match end {
                Ended::Budget => {}
                Ended::Drained => conn.readable = false,
                Ended::Closed => closed.push(token),
                Ended::Lost => {
                    gone.extend(conn.peer);
                    closed.push(token);
                }
            }
        }
        for token in closed {
            if let Some(mut c) = self.conns.remove(&token) {
                let _ = registry.deregister(&mut c.stream);
            }
        }
        // A member is lost only when no connection of its own is left: a
        // stray connection in its name (a forged one, an old one) closing
        // says nothing about its process while its live one still carries.
        for peer in gone {
            if !self.conns.values().any(|c| c.peer == Some(peer)) && !lost.contains(&peer) {
                lost.push(peer);
            }
        }
        handed
    }
}

/// Reads whole frames from one connection until the socket would block,
/// it closes, or `budget` messages were handed on or
/// [`MAX_READ_PER_ROUND`] bytes read.
fn read_conn(
    conn: &mut Conn,
    scratch: &mut [u8],
    budget: usize,
    mut step: impl FnMut(Message),
    mut screen: impl FnMut(Frame) -> Screened,
) -> Ended {
    let (mut handed, mut read) = (0, 0);
    loop {
        loop {
            let frame = match take_frame(&mut conn.buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "bad peer frame; closing the connection");
                    return Ended::Closed;
                }
            };
            let from = frame.from;
            match screen(frame) {
                Screened::Messages(ms) => {
                    conn.last_active = Instant::now();
                    // Only a frame with a message that passed makes the
                    // connection the sender's.
                    if !ms.is_empty() {
                        conn.peer = Some(from);
                    }
                    handed += ms.len();
                    ms.into_iter().for_each(&mut step);
                }
                Screened::Close => return Ended::Closed,
                Screened::Gone => {
                    let _ = conn.stream.write(&[GONE]);
                    return Ended::Closed;
                }
            }
            if handed >= budget {
                return Ended::Budget;
            }
        }
        if read >= MAX_READ_PER_ROUND {
            return Ended::Budget;
        }
        match conn.stream.read(scratch) {
            Ok(0) => return Ended::Lost,
            Ok(n) => {
                read += n;
                conn.buf.extend_from_slice(&scratch[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ended::Drained,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Ended::Lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::frame::MAX_FRAME_BYTES;
    use concord_proto::concordpeer::Frame;
    use concord_proto::peer::to_wire;
    use concord_raft::Body;
    use prost::Message as _;
    use std::net::{TcpListener, TcpStream};

    const CLUSTER: u64 = 7;
    const ME: u64 = 1;

    fn framed(f: &Frame) -> Vec<u8> {
        let body = f.encode_to_vec();
        let mut out = (body.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(&body);
        out
    }

    fn heartbeat_frame(cluster_id: u64, from: u64, commit: u64) -> Vec<u8> {
        let m = Message {
            group: 1,
            from,
            to: ME,
            term: 3,
            body: Body::Heartbeat { commit, ctx: 0 },
        };
        framed(&Frame {
            cluster_id,
            from,
            messages: vec![to_wire(&m)],
        })
    }

    /// A connected pair: the peer's end, and ours handed to `inbound`.
    fn connect(l: &TcpListener, inbound: &mut Inbound, reg: &mio::Registry) -> TcpStream {
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        inbound.add(reg, ours);
        peer
    }

    /// Reads until `done` says so or 300 ms passed: the messages handed
    /// on and the members reported lost.
    fn read_until(
        inbound: &mut Inbound,
        reg: &mio::Registry,
        done: impl Fn(&[Message], &[u64]) -> bool,
    ) -> (Vec<Message>, Vec<u64>) {
        let (mut got, mut lost) = (Vec::new(), Vec::new());
        let start = Instant::now();
        while !done(&got, &lost) && start.elapsed() < std::time::Duration::from_millis(300) {
            inbound.read(reg, 1000, &mut lost, |m| got.push(m));
            // Edge-triggered: without the poll, treat every socket as readable.
            for c in inbound.conns.values_mut() {
                c.readable = true;
            }
        }
        (got, lost)
    }

    /// Reads until `want` messages came or 300 ms passed.
    fn read_n(inbound: &mut Inbound, reg: &mio::Registry, want: usize) -> Vec<Message> {
        read_until(inbound, reg, |got, _| got.len() >= want).0
    }

    /// Reads for up to 300 ms; the members reported lost.
    fn read_lost(inbound: &mut Inbound, reg: &mio::Registry) -> Vec<u64> {
        read_until(inbound, reg, |_, lost| !lost.is_empty()).1
    }

    /// A screen of cluster [`CLUSTER`] for member [`ME`] whose other
    /// members are `ids`.
    fn screen_with(ids: &[u64]) -> Screen {
        let screen = Screen {
            cluster_id: CLUSTER,
            own_id: ME,
            members: Default::default(),
        };
        for &id in ids {
            screen.members.write().add(crate::members::Member {
                id,
                name: format!("m{id}"),
                peer_urls: vec![],
                client_urls: vec![],
                is_learner: false,
            });
        }
        screen
    }

    #[test]
    fn frames_from_real_sockets_are_screened_and_connections_bounded() {
        let (_tx, inbox) = crate::mailbox::channel(16).unwrap();
        // Members 2 and 4 send; anyone else is not a member and refused.
        let screen = screen_with(&[2, 4]);
        screen.members.write().removed.insert(9);
        let reg = inbox.registry();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut inbound = Inbound::new(screen);
        inbound.max_conns = 8;

        // Two frames in one write, then one in two halves: three messages.
        let mut good = connect(&l, &mut inbound, reg);
        let mut two = heartbeat_frame(CLUSTER, 2, 5);
        two.extend(heartbeat_frame(CLUSTER, 2, 6));
        good.write_all(&two).unwrap();
        let third = heartbeat_frame(CLUSTER, 2, 7);
        good.write_all(&third[..3]).unwrap();
        good.flush().unwrap();
        assert_eq!(read_n(&mut inbound, reg, 2).len(), 2);
        good.write_all(&third[3..]).unwrap();
        let got = read_n(&mut inbound, reg, 1);
        assert_eq!(got.len(), 1);
        assert!(matches!(got[0].body, Body::Heartbeat { commit: 7, .. }));

        // Another cluster, a removed member, garbage: each connection is
        // dropped and nothing reaches the driver; the removed one hears GONE.
        let mut other = connect(&l, &mut inbound, reg);
        other
            .write_all(&heartbeat_frame(CLUSTER + 1, 3, 1))
            .unwrap();
        let mut removed = connect(&l, &mut inbound, reg);
        removed.write_all(&heartbeat_frame(CLUSTER, 9, 1)).unwrap();
        let mut stranger = connect(&l, &mut inbound, reg);
        stranger.write_all(&heartbeat_frame(CLUSTER, 5, 1)).unwrap();
        let mut garbage = connect(&l, &mut inbound, reg);
        garbage.write_all(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
        assert!(read_n(&mut inbound, reg, 1).is_empty());
        assert_eq!(inbound.conns.len(), 1, "only the good connection is left");
        let mut reply = [0u8; 1];
        removed.read_exact(&mut reply).unwrap();
        assert_eq!(reply[0], GONE);

        // At the limit, a new connection replaces the stalest one, never
        // the one that keeps delivering frames.
        let mut idle = Vec::new();
        for _ in 1..inbound.max_conns {
            idle.push(connect(&l, &mut inbound, reg));
        }
        assert_eq!(inbound.conns.len(), inbound.max_conns);
        good.write_all(&heartbeat_frame(CLUSTER, 2, 8)).unwrap();
        assert_eq!(read_n(&mut inbound, reg, 1).len(), 1);
        for _ in 0..3 {
            idle.push(connect(&l, &mut inbound, reg));
        }
        assert_eq!(inbound.conns.len(), inbound.max_conns);
        // The newest connection was taken, not refused.
        let newest = idle.last_mut().unwrap();
        newest.write_all(&heartbeat_frame(CLUSTER, 4, 1)).unwrap();
        let got = read_n(&mut inbound, reg, 1);
        assert!(matches!(got[..], [Message { from: 4, .. }]));
        good.write_all(&heartbeat_frame(CLUSTER, 2, 9)).unwrap();
        let got = read_n(&mut inbound, reg, 1);
        assert!(matches!(
            got[..],
            [Message {
                body: Body::Heartbeat { commit: 9, .. },
                ..
            }]
        ));
    }

    #[test]
    fn a_member_is_lost_only_when_its_last_connection_closes() {
        let (_tx, inbox) = crate::mailbox::channel(16).unwrap();
        let screen = screen_with(&[2]);
        let reg = inbox.registry();
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut inbound = Inbound::new(screen);
        let mut real = connect(&l, &mut inbound, reg);
        real.write_all(&heartbeat_frame(CLUSTER, 2, 1)).unwrap();
        assert_eq!(read_n(&mut inbound, reg, 1).len(), 1);

        // A second connection in member 2's name (forged, or an old one)
        // delivers a frame and closes: member 2's live one still carries.
        let mut stray = connect(&l, &mut inbound, reg);
        stray.write_all(&heartbeat_frame(CLUSTER, 2, 1)).unwrap();
        assert_eq!(read_n(&mut inbound, reg, 1).len(), 1);
        drop(stray);
        assert_eq!(read_lost(&mut inbound, reg), Vec::<u64>::new());
        assert_eq!(inbound.conns.len(), 1, "the stray connection is dropped");

        // A connection whose frames all were refused is nobody's.
        let mut misaddressed = connect(&l, &mut inbound, reg);
        let to_other = Message {
            group: 1,
            from: 2,
            to: ME + 5,
            term: 3,
            body: Body::Heartbeat { commit: 1, ctx: 0 },
        };
        let frame = framed(&Frame {
            cluster_id: CLUSTER,
            from: 2,
            messages: vec![to_wire(&to_other)],
        });
        misaddressed.write_all(&frame).unwrap();
        assert!(read_n(&mut inbound, reg, 1).is_empty());
        assert_eq!(inbound.conns.len(), 2);

        // The member's last connection closing reports it, once, though
        // the misaddressed one in its name is still open.
        drop(real);
        assert_eq!(read_lost(&mut inbound, reg), vec![2]);
        drop(misaddressed);
        assert_eq!(read_lost(&mut inbound, reg), Vec::<u64>::new());
        assert!(inbound.conns.is_empty());
    }

    #[test]
    fn frames_are_taken_whole_and_oversized_ones_refused() {
        let f = Frame {
            cluster_id: 7,
            from: 2,
            messages: vec![],
        };
        let bytes = framed(&f);
        let mut buf = BytesMut::new();
        // Byte by byte: nothing until the last byte arrives.
        for (i, b) in bytes.iter().enumerate() {
            buf.extend_from_slice(&[*b]);
            let got = take_frame(&mut buf).unwrap();
            assert_eq!(got.is_some(), i == bytes.len() - 1);
            if let Some(g) = got {
                assert_eq!(g, f);
            }
        }
        assert!(buf.is_empty());
        // Two frames in one read come out one at a time.
        buf.extend_from_slice(&bytes);
        buf.extend_from_slice(&bytes);
        assert!(take_frame(&mut buf).unwrap().is_some());
        assert!(take_frame(&mut buf).unwrap().is_some());
        assert!(take_frame(&mut buf).unwrap().is_none());
        // A length over the limit is refused from the header alone.
        let mut big = BytesMut::from(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes()[..]);
        assert!(take_frame(&mut big).is_err());
        // So is a body that is not a frame.
        let mut bad = BytesMut::from(&[0, 0, 0, 2, 0xff, 0xff][..]);
        assert!(take_frame(&mut bad).is_err());
    }
}
