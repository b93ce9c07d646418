//! Refused peer input: counted in `/metrics` and reported by sender.
//!
//! Every refusal increments `concord_peer_messages_refused_total{reason}`.
//! A warning names the sender and the reason at most once per
//! [`WARN_EVERY`] per sender, with how many were refused since, so a peer
//! sending garbage in a loop cannot flood the log.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Least time between two warnings about one sender.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// Senders remembered for rate limiting (forged ids are unbounded).
const MAX_SENDERS: usize = 1024;

/// Per sender: when it was last reported, refusals since.
type Seen = HashMap<u64, (Instant, u64)>;

fn seen() -> &'static Mutex<Seen> {
    static SEEN: OnceLock<Mutex<Seen>> = OnceLock::new();
    SEEN.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Counts a refused message (or frame) from `sender`, and warns about it
/// unless that sender was reported less than [`WARN_EVERY`] ago.
pub(crate) fn refused(sender: u64, reason: &'static str, what: &str) {
    metrics::counter!("concord_peer_messages_refused_total", "reason" => reason).increment(1);
    let now = Instant::now();
    let mut seen = seen().lock();
    if seen.len() >= MAX_SENDERS && !seen.contains_key(&sender) {
        seen.clear();
    }
    let entry = seen.entry(sender).or_insert((now - WARN_EVERY, 0));
    entry.1 += 1;
    if now.duration_since(entry.0) >= WARN_EVERY {
        let count = std::mem::take(&mut entry.1);
        entry.0 = now;
        drop(seen);
        tracing::warn!(
            sender = format!("{sender:x}"),
            reason,
            refused = count,
            "refused peer input: {what}"
        );
    }
}
