//! Watchers: clients watching every workload key (the prefix `k`) from
//! revision 1, each event and each reconnect or compaction notice
//! recorded. A broken stream is watched again, from another member, from
//! one past the last revision seen.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use concord_check::{EventKind, WatchEntry, WatchLog};
use concord_proto::etcdserverpb::watch_client::WatchClient;
use concord_proto::etcdserverpb::watch_request::RequestUnion;
use concord_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::cluster::channel;

/// The watched range: every workload key (`k0`, `k1`, ...).
pub const RANGE: (&str, &str) = ("k", "l");

/// When watchers stop: once the run is over (`stop`) and they have seen
/// `until` (the newest revision of the range, set after the final read),
/// or when `give_up` is set.
#[derive(Debug, Default)]
pub struct Drain {
    /// The run is over.
    pub stop: AtomicBool,
    /// The revision to reach (0: not known yet).
    pub until: AtomicU64,
    /// Stop now, caught up or not.
    pub give_up: AtomicBool,
}

/// Watches until `drain` says to stop; returns what it saw.
pub async fn watch(watcher: usize, endpoints: Vec<String>, drain: Arc<Drain>) -> WatchLog {
    let mut log = WatchLog {
        watcher,
        key: RANGE.0.into(),
        range_end: RANGE.1.into(),
        start: 1,
        entries: Vec::new(),
    };
    let mut next = 1u64;
    let mut at = watcher % endpoints.len();
    let mut first = true;
    while !done(&drain, next) {
        if !first {
            log.entries.push(WatchEntry::Reconnect { resume: next });
            at = (at + 1) % endpoints.len();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        first = false;
        if let Some(compact) = stream(&endpoints[at], &mut next, &mut log, &drain).await {
            log.entries.push(WatchEntry::Compacted {
                resume: next,
                compact,
            });
            next = compact;
            first = true; // the notice stands for the reconnect
        }
    }
    log
}

fn done(drain: &Drain, next: u64) -> bool {
    let until = drain.until.load(Ordering::Relaxed);
    drain.give_up.load(Ordering::Relaxed)
        || (drain.stop.load(Ordering::Relaxed) && until > 0 && next > until)
}

/// One watch stream, until it breaks, goes quiet for too long after the
/// run, or the drain ends; returns the compaction revision if the store
/// cancelled the watch for one.
async fn stream(url: &str, next: &mut u64, log: &mut WatchLog, drain: &Drain) -> Option<u64> {
    let ch = channel(url, Duration::from_millis(500)).await.ok()?;
    let (tx, rx) = mpsc::channel(1);
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
            key: RANGE.0.into(),
            range_end: RANGE.1.into(),
            start_revision: *next as i64,
            ..Default::default()
        })),
    };
    tx.send(create).await.ok()?;
    let mut responses = WatchClient::new(ch)
        .watch(ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    let mut quiet = 0;
    while !done(drain, *next) {
        let msg = match tokio::time::timeout(Duration::from_millis(200), responses.message()).await
        {
            Ok(Ok(Some(m))) => m,
            Ok(_) => return None, // the stream broke
            Err(_) => {
                // A paused or cut-off member sends nothing; once the run is
                // over, silence while behind means: try another member.
                quiet += 1;
                if drain.stop.load(Ordering::Relaxed) && quiet >= 10 {
                    return None;
                }
                continue;
            }
        };
        quiet = 0;
        if msg.compact_revision > 0 {
            return Some(msg.compact_revision as u64);
        }
        if msg.canceled {
            return None;
        }
        for e in msg.events {
            let Some(kv) = e.kv else { continue };
            let rev = kv.mod_revision as u64;
            let kind = if e.r#type == 1 {
                EventKind::Delete
            } else {
                EventKind::Put
            };
            log.entries.push(WatchEntry::Event {
                rev,
                key: String::from_utf8_lossy(&kv.key).into_owned(),
                kind,
                value: (kind == EventKind::Put)
                    .then(|| String::from_utf8_lossy(&kv.value).into_owned()),
            });
            *next = (*next).max(rev + 1);
        }
    }
    drop(tx);
    None
}
