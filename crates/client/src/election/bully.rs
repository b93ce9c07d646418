//! The bully algorithm among processes that talk over their own TCP
//! transport on loopback or a LAN, with no store. The highest live id
//! leads: a node that misses the leader's heartbeats asks every higher id;
//! if none answers in time it declares itself to all. Nothing orders two
//! declarations, so a partition elects a leader on each side: the
//! weakness the store-backed patterns do not have.
//!
//! Wire: one TCP connection per message, one line `KIND FROM\n`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use super::{ElectionError, Elector, Leader};

/// Messages waiting for the node's loop; more are dropped (a sender
/// repeats what matters every heartbeat).
const INBOX: usize = 256;
/// The longest line a peer may send.
const MAX_LINE: u64 = 64;

/// Who a bully node is and whom it knows.
#[derive(Debug, Clone)]
pub struct BullyConfig {
    /// This node's id (the highest live id leads).
    pub id: u64,
    /// The other nodes: id to address.
    pub peers: BTreeMap<u64, SocketAddr>,
    /// How often the leader announces itself.
    pub heartbeat: Duration,
    /// Silence after which a leader or an answer is given up on.
    pub timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Election,
    Answer,
    Coordinator,
}

#[derive(Debug)]
struct Shared {
    leader: Option<u64>,
    /// Peers cut off by [`BullyElector::partition`]: messages to and from
    /// them are dropped.
    blocked: BTreeSet<u64>,
}

/// A bully node: a listener and a loop, stopped when dropped.
#[derive(Debug)]
pub struct BullyElector {
    id: u64,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Receiver<Option<Leader>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for BullyElector {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn leader_of(id: u64) -> Leader {
    Leader {
        value: Bytes::from(id.to_string()),
        term: id as i64,
    }
}

impl BullyElector {
    /// Starts a node serving on `listener`.
    pub fn start(listener: TcpListener, config: BullyConfig) -> BullyElector {
        assert!(
            !config.peers.contains_key(&config.id),
            "a bully node is not its own peer"
        );
        let shared = Arc::new(Mutex::new(Shared {
            leader: None,
            blocked: BTreeSet::new(),
        }));
        let (tx, changes) = watch::channel(None);
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        let accept = tokio::spawn(accept(listener, inbox_tx));
        let node = Node {
            config: config.clone(),
            shared: shared.clone(),
            changes: tx,
            electing: None,
            answered: false,
            last_heard: Instant::now(),
        };
        let run = tokio::spawn(node.run(inbox));
        BullyElector {
            id: config.id,
            shared,
            changes,
            tasks: vec![accept, run],
        }
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Cuts this node off from `peers` (both directions) or, with an empty
    /// list, heals every cut.
    pub fn partition(&self, peers: &[u64]) {
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        s.blocked = peers.iter().copied().collect();
    }

    fn leader_id(&self) -> Option<u64> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).leader
    }
}

impl Elector for BullyElector {
    /// Every node is a candidate from its start: this waits until this one
    /// leads (never, while a higher id is alive and reachable).
    async fn campaign(&mut self) -> Result<Leader, ElectionError> {
        let mut rx = self.changes.clone();
        let me = leader_of(self.id);
        rx.wait_for(|l| l.as_ref() == Some(&me))
            .await
            .map_err(|_| ElectionError::NotLeader)?;
        Ok(me)
    }

    /// Stops the node: it no longer answers nor announces.
    async fn resign(&mut self) -> Result<(), ElectionError> {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).leader = None;
        Ok(())
    }

    async fn leader(&mut self) -> Result<Option<Leader>, ElectionError> {
        Ok(self.leader_id().map(leader_of))
    }

    fn is_leader(&self) -> bool {
        !self.tasks.is_empty() && self.leader_id() == Some(self.id)
    }

    fn changes(&mut self) -> watch::Receiver<Option<Leader>> {
        self.changes.clone()
    }
}

/// Reads one line per connection into the inbox.
async fn accept(listener: TcpListener, inbox: mpsc::Sender<(Kind, u64)>) {
    while let Ok((conn, _)) = listener.accept().await {
        let inbox = inbox.clone();
        tokio::spawn(async move {
            let mut line = String::new();
            let mut reader = tokio::io::BufReader::new(conn.take(MAX_LINE));
            let read = tokio::time::timeout(Duration::from_secs(1), reader.read_line(&mut line));
            if let Ok(Ok(_)) = read.await {
                if let Some(msg) = parse(&line) {
                    let _ = inbox.try_send(msg);
                }
            }
        });
    }
}

fn parse(line: &str) -> Option<(Kind, u64)> {
    let (kind, from) = line.trim_end().split_once(' ')?;
    let kind = match kind {
        "ELECTION" => Kind::Election,
        "ANSWER" => Kind::Answer,
        "COORDINATOR" => Kind::Coordinator,
        _ => return None,
    };
    Some((kind, from.parse().ok()?))
}

/// The node's state machine, owned by one task.
struct Node {
    config: BullyConfig,
    shared: Arc<Mutex<Shared>>,
    changes: watch::Sender<Option<Leader>>,
    /// When the election this node runs started.
    electing: Option<Instant>,
    /// A higher node answered this election.
    answered: bool,
    /// When the leader was last heard from.
    last_heard: Instant,
}

impl Node {
    async fn run(mut self, mut inbox: mpsc::Receiver<(Kind, u64)>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        loop {
            tokio::select! {
                msg = inbox.recv() => match msg {
                    Some((kind, from)) => self.on_message(kind, from),
                    None => return,
                },
                _ = tick.tick() => self.on_tick(),
            }
        }
    }

    fn id(&self) -> u64 {
        self.config.id
    }

    fn leader(&self) -> Option<u64> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner()).leader
    }

    fn set_leader(&mut self, leader: u64) {
        self.last_heard = Instant::now();
        self.electing = None;
        let mut s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        if s.leader != Some(leader) {
            s.leader = Some(leader);
            self.changes.send_replace(Some(leader_of(leader)));
        }
    }

    fn on_tick(&mut self) {
        let me = self.id();
        if self.leader() == Some(me) {
            self.send_all(Kind::Coordinator, |_| true);
            return;
        }
        let timeout = self.config.timeout;
        match self.electing {
            Some(started) if !self.answered && started.elapsed() >= timeout => self.win(),
            // A higher node answered but never declared: try again.
            Some(started) if started.elapsed() >= 2 * timeout => self.start_election(),
            Some(_) => {}
            None if self.last_heard.elapsed() >= timeout || self.leader().is_none() => {
                self.start_election()
            }
            None => {}
        }
    }

    fn on_message(&mut self, kind: Kind, from: u64) {
        let blocked = {
            let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.blocked.contains(&from)
        };
        if blocked || !self.config.peers.contains_key(&from) {
            return;
        }
        let me = self.id();
        match kind {
            Kind::Election if from < me => {
                self.send(from, Kind::Answer);
                if self.leader() == Some(me) {
                    self.send(from, Kind::Coordinator);
                } else if self.electing.is_none() {
                    self.start_election();
                }
            }
            Kind::Answer if from > me => self.answered = true,
            Kind::Coordinator if from > me => self.set_leader(from),
            // A lower node claims to lead: bully it.
            Kind::Coordinator if self.leader() == Some(me) => self.send(from, Kind::Coordinator),
            Kind::Coordinator if self.electing.is_none() => self.start_election(),
            _ => {}
        }
    }

    fn start_election(&mut self) {
        let me = self.id();
        self.electing = Some(Instant::now());
        self.answered = false;
        if self.config.peers.keys().all(|&p| p < me) {
            return self.win();
        }
        self.send_all(Kind::Election, |p| p > me);
    }

    fn win(&mut self) {
        let me = self.id();
        self.set_leader(me);
        self.send_all(Kind::Coordinator, |_| true);
    }

    fn send_all(&self, kind: Kind, to: impl Fn(u64) -> bool) {
        let peers: Vec<u64> = self
            .config
            .peers
            .keys()
            .copied()
            .filter(|&p| to(p))
            .collect();
        for p in peers {
            self.send(p, kind);
        }
    }

    /// Sends in the background, dropped when the peer is cut off or slow.
    fn send(&self, to: u64, kind: Kind) {
        let blocked = {
            let s = self.shared.lock().unwrap_or_else(|e| e.into_inner());
            s.blocked.contains(&to)
        };
        let Some(&addr) = self.config.peers.get(&to) else {
            return;
        };
        if blocked {
            return;
        }
        let word = match kind {
            Kind::Election => "ELECTION",
            Kind::Answer => "ANSWER",
            Kind::Coordinator => "COORDINATOR",
        };
        let line = format!("{word} {}\n", self.id());
        let deadline = self.config.heartbeat;
        tokio::spawn(async move {
            let send = async {
                let mut conn = TcpStream::connect(addr).await?;
                conn.write_all(line.as_bytes()).await
            };
            let _ = tokio::time::timeout(deadline, send).await;
        });
    }
}
