//! The driver's mailbox: what the driver is asked ([`Input`]), and the
//! bounded inbox that carries it, whose senders wake the driver's poll.
//! The driver, the transport and the gRPC services all speak it; it
//! depends on none of them.
//!
//! The driver sleeps in one `mio::Poll` that watches both this inbox (a
//! `mio::Waker`) and the plaintext peer connections it reads itself
//! (`transport/inbound.rs`): a peer's message then wakes the driver
//! directly instead of waking a runtime worker that wakes the driver, one
//! thread hand-off less on each hop of a write.
//!
//! A sender wakes the poll only while the driver is parked in it; a busy
//! driver drains the channel anyway, and a wake is a syscall. No wake-up
//! is lost: the driver marks itself parked and then checks the channel
//! once more before it sleeps; a sender queues and then reads the mark.
//! Both sides order their two steps with a sequentially consistent fence,
//! so at least one of them sees the other's first step.

use std::io;
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use concord_raft::{ConfChange, Message};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::{mpsc, oneshot};

use crate::error::ServerError;

/// Driver inbox capacity.
pub const INBOX_CAPACITY: usize = 65536;

/// An input to the driver.
#[derive(Debug)]
pub enum Input {
    /// One heartbeat interval passed.
    Tick,
    /// A message from a peer.
    Peer(Message),
    /// A plaintext peer connection for the driver to read (`inbound.rs`).
    PeerConn(std::net::TcpStream),
    /// A TLS connection carrying this member's frames ended: closed by
    /// the other side or failed (its process may have died).
    PeerLost(u64),
    /// Propose an entry; its waiter is registered under `id`.
    Propose {
        /// Request id.
        id: u64,
        /// Encoded entry.
        data: Bytes,
    },
    /// Propose a membership change.
    ConfChange {
        /// Request id.
        id: u64,
        /// The change.
        cc: ConfChange,
        /// Encoded `MemberContext` (`envelope.rs`).
        ctx: Bytes,
    },
    /// A linearizable read wants a ReadIndex barrier.
    Read(oneshot::Sender<Result<(), ServerError>>),
    /// Hand leadership to a member.
    Transfer {
        /// The target member.
        target: u64,
    },
    /// Stop the driver.
    Stop,
}

/// The poll token of the inbox's waker (peer connections use the others).
pub(crate) const WAKE: mio::Token = mio::Token(usize::MAX);

/// Most readiness events taken from the poll at once.
const EVENTS: usize = 256;

#[derive(Debug)]
struct Parking {
    /// The driver is (about to be) asleep in its poll.
    parked: AtomicBool,
    waker: mio::Waker,
}

impl Parking {
    fn wake(&self) {
        fence(Ordering::SeqCst);
        if self.parked.load(Ordering::Relaxed) && self.parked.swap(false, Ordering::AcqRel) {
            if let Err(e) = self.waker.wake() {
                tracing::error!(error = %e, "waking the raft driver");
            }
        }
    }
}

/// The sending half of the driver's inbox.
#[derive(Debug, Clone)]
pub struct InboxSender {
    tx: mpsc::Sender<Input>,
    parking: Arc<Parking>,
}

impl InboxSender {
    /// Queues an input, waiting for room. False: the driver has stopped.
    pub async fn send(&self, input: Input) -> bool {
        if self.tx.send(input).await.is_err() {
            return false;
        }
        self.parking.wake();
        true
    }

    /// Queues an input if there is room. False: the inbox is full or the
    /// driver has stopped.
    pub fn try_send(&self, input: Input) -> bool {
        if self.tx.try_send(input).is_err() {
            return false;
        }
        self.parking.wake();
        true
    }

    /// The driver has stopped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// What woke a parked driver.
#[derive(Debug)]
pub(crate) enum Woken {
    /// An input was queued.
    Input(Input),
    /// Only readiness events (or a spurious wake-up).
    Events,
    /// Every sender is gone.
    Closed,
}

/// The receiving half, with the poll the driver sleeps in.
pub(crate) struct Inbox {
    rx: mpsc::Receiver<Input>,
    parking: Arc<Parking>,
    poll: mio::Poll,
    events: mio::Events,
}

impl std::fmt::Debug for Inbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbox").finish_non_exhaustive()
    }
}

/// A bounded inbox of `capacity` inputs.
pub(crate) fn channel(capacity: usize) -> io::Result<(InboxSender, Inbox)> {
    let poll = mio::Poll::new()?;
    let waker = mio::Waker::new(poll.registry(), WAKE)?;
    let parking = Arc::new(Parking {
        parked: AtomicBool::new(false),
        waker,
    });
    let (tx, rx) = mpsc::channel(capacity);
    let sender = InboxSender {
        tx,
        parking: parking.clone(),
    };
    let inbox = Inbox {
        rx,
        parking,
        poll,
        events: mio::Events::with_capacity(EVENTS),
    };
    Ok((sender, inbox))
}

impl Inbox {
    /// Where peer connections are registered.
    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// The next queued input, if any.
    pub(crate) fn try_recv(&mut self) -> Result<Input, TryRecvError> {
        self.rx.try_recv()
    }

    /// Sleeps until an input is queued or a registered source is ready, at
    /// most `timeout` (`None`: no limit). Tokens of ready sources are
    /// pushed to `ready`.
    pub(crate) fn park(
        &mut self,
        timeout: Option<Duration>,
        ready: &mut Vec<mio::Token>,
    ) -> io::Result<Woken> {
        self.parking.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        match self.rx.try_recv() {
            Ok(input) => {
                self.parking.parked.store(false, Ordering::Relaxed);
                return Ok(Woken::Input(input));
            }
            Err(TryRecvError::Disconnected) => return Ok(Woken::Closed),
            Err(TryRecvError::Empty) => {}
        }
        let polled = loop {
            match self.poll.poll(&mut self.events, timeout) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        self.parking.parked.store(false, Ordering::Relaxed);
        polled?;
        ready.extend(self.events.iter().map(|e| e.token()).filter(|t| *t != WAKE));
        match self.rx.try_recv() {
            Ok(input) => Ok(Woken::Input(input)),
            Err(TryRecvError::Disconnected) => Ok(Woken::Closed),
            Err(TryRecvError::Empty) => Ok(Woken::Events),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A sender on another thread wakes a parked receiver, every time
    /// (a lost wake-up would hang until the 10 s limit).
    #[test]
    fn a_send_wakes_the_parked_driver() {
        let (tx, mut inbox) = channel(4).unwrap();
        let mut ready = Vec::new();
        let sender = std::thread::spawn(move || {
            for _ in 0..2000 {
                while !tx.try_send(Input::Tick) {
                    std::thread::yield_now();
                }
            }
        });
        let start = Instant::now();
        let mut got = 0;
        while got < 2000 {
            assert!(start.elapsed() < Duration::from_secs(10), "lost wake-up");
            while let Ok(Input::Tick) = inbox.try_recv() {
                got += 1;
            }
            if got == 2000 {
                break;
            }
            match inbox
                .park(Some(Duration::from_secs(10)), &mut ready)
                .unwrap()
            {
                Woken::Input(Input::Tick) => got += 1,
                Woken::Input(other) => panic!("unexpected input {other:?}"),
                Woken::Events | Woken::Closed => {}
            }
        }
        sender.join().unwrap();
        assert!(ready.is_empty(), "the waker's token is not a peer's");
        // Once every sender is gone, a park says so instead of sleeping.
        assert!(matches!(
            inbox
                .park(Some(Duration::from_secs(10)), &mut ready)
                .unwrap(),
            Woken::Closed
        ));
    }
}
