//! Slow links without `tc netem`: a DNAT rule in a member's namespace
//! sends its new peer connections to another member to a TCP relay of
//! the lab's (on the bridge's address), which holds every chunk it reads,
//! in either direction, for the link's latency ± jitter before writing
//! it on, in order. Direct connections that were open when the link
//! slowed are reset (a REJECT rule), so the members dial again, through
//! the relay.

use std::net::SocketAddr;
use std::time::Duration;

use concord_rng::SplitMix64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::net::{Network, Rule};
use crate::netfault::LATENCY_MS;
use crate::LabError;

/// Chunks a relay holds per direction before it stops reading.
const HELD_CHUNKS: usize = 1024;

/// The relays of the links slowed now; dropping it (or
/// [`Relays::clear`]) stops them and closes their connections.
#[derive(Debug)]
pub struct Relays {
    stop: watch::Sender<bool>,
    seed: u64,
}

impl Relays {
    /// No relays yet; jitter drawn from `seed`.
    pub fn new(seed: u64) -> Relays {
        Relays {
            stop: watch::channel(false).0,
            seed,
        }
    }

    /// Starts relays that slow the peer traffic between members `a` and
    /// `b` (both ways); returns the rules that send it through them.
    pub async fn slow_link(
        &mut self,
        net: &Network,
        a: usize,
        b: usize,
        port: u16,
    ) -> Result<Vec<Rule>, LabError> {
        let mut rules = Vec::new();
        for (from, to) in [(a, b), (b, a)] {
            let listener = TcpListener::bind((net.gateway(), 0)).await?;
            let via = listener.local_addr()?.port();
            let target = SocketAddr::new(net.addr(to).into(), port);
            self.seed = concord_rng::mix(self.seed.wrapping_add(1));
            let stop = self.stop.subscribe();
            tokio::spawn(accept(listener, target, self.seed, stop));
            rules.push(net.redirect(from, to, port, via));
            rules.push(net.reset_direct(from, to));
        }
        Ok(rules)
    }

    /// Stops every relay.
    pub fn clear(&mut self) {
        self.stop = watch::channel(false).0;
    }
}

/// Accepts connections and relays each to `target` until stopped.
async fn accept(
    listener: TcpListener,
    target: SocketAddr,
    seed: u64,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = SplitMix64::new(seed);
    loop {
        let conn = tokio::select! {
            c = listener.accept() => c,
            _ = stop.changed() => return,
        };
        let Ok((inbound, _)) = conn else { continue };
        let (s1, s2) = (rng.next_u64(), rng.next_u64());
        let stop = stop.clone();
        tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (ri, wi) = inbound.into_split();
            let (ro, wo) = outbound.into_split();
            let mut stop = stop;
            tokio::select! {
                _ = async { tokio::join!(pipe(ri, wo, s1), pipe(ro, wi, s2)) } => {}
                _ = stop.changed() => {}
            }
        });
    }
}

/// Copies `from` to `to`, each chunk released `LATENCY_MS` ± jitter
/// after it was read, never before the chunk read ahead of it.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    seed: u64,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(HELD_CHUNKS);
    let reader = async move {
        let mut rng = SplitMix64::new(seed);
        let (lat, jit) = LATENCY_MS;
        let mut last = Instant::now();
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            let ms = lat - jit + rng.below(2 * jit + 1);
            last = last.max(Instant::now() + Duration::from_millis(ms));
            if tx.send((last, buf[..n].to_vec())).await.is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
