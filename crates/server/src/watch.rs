//! The watch hub: live watchers and the events the driver publishes.
//!
//! Each watcher remembers `next_rev`, the first revision it has not seen.
//! The driver publishes every applied batch of events; a watcher takes the
//! ones at or after `next_rev` that match its range and filters, so it never
//! sees an event twice. A watcher whose stream queue is full, or that
//! starts in the past, is *lagging*: its stream task catches it up from the
//! store's history ([`WatchHub::catch_up`]) and it rejoins the live feed.
//! Catch-up and publish both hold the hub lock, so there are no gaps.

use std::collections::HashMap;

use bytes::Bytes;
use concord_mvcc::EventsError;
use concord_mvcc::{Event, EventType, Store};
use parking_lot::Mutex;
use tokio::sync::mpsc;

/// Most events read from history in one catch-up step.
pub const CATCH_UP_BATCH: usize = 1000;
/// Messages queued per watch stream before its watchers start lagging.
pub const STREAM_QUEUE: usize = 1024;

/// A batch of events for one watcher of a stream.
#[derive(Debug)]
pub struct Delivery {
    /// The stream-local watch id.
    pub watch_id: i64,
    /// Events, in revision order.
    pub events: Vec<Event>,
    /// Store revision when sent.
    pub revision: i64,
}

/// What a watcher wants.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    /// Start key.
    pub key: Bytes,
    /// End key (empty = just `key`, `\0` = everything from `key`).
    pub range_end: Bytes,
    /// Drop PUT events.
    pub no_put: bool,
    /// Drop DELETE events.
    pub no_delete: bool,
    /// Include the previous key-value.
    pub prev_kv: bool,
}

impl WatchSpec {
    fn matches(&self, key: &[u8]) -> bool {
        if self.range_end.is_empty() {
            return key == &self.key[..];
        }
        if key < &self.key[..] {
            return false;
        }
        &self.range_end[..] == b"\0" || key < &self.range_end[..]
    }

    fn wants(&self, e: &Event) -> bool {
        match e.kind {
            EventType::Put if self.no_put => false,
            EventType::Delete if self.no_delete => false,
            _ => self.matches(&e.kv.key),
        }
    }

    fn shape(&self, e: &Event) -> Event {
        let mut e = e.clone();
        if !self.prev_kv {
            e.prev_kv = None;
        }
        e
    }

    /// The `[key, end)` pair the store's history reader expects.
    fn history_bounds(&self) -> (Bytes, Bytes) {
        (self.key.clone(), self.range_end.clone())
    }
}

#[derive(Debug)]
struct Watcher {
    spec: WatchSpec,
    watch_id: i64,
    next_rev: i64,
    lagging: bool,
    tx: mpsc::Sender<Delivery>,
}

/// All watchers of this member.
#[derive(Debug, Default)]
pub struct WatchHub {
    inner: Mutex<HubInner>,
}

#[derive(Debug, Default)]
struct HubInner {
    next_id: u64,
    watchers: HashMap<u64, Watcher>,
}

/// Result of a catch-up step.
#[derive(Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Caught up: the watcher is live again.
    Live,
    /// More history remains.
    More,
    /// The start revision was compacted: cancel with this revision.
    Compacted(i64),
    /// The watcher is gone.
    Gone,
}

impl WatchHub {
    /// Registers a watcher starting at `start_rev` (<= 0: the next revision).
    /// Returns its hub id; a watcher starting in the past is lagging.
    pub fn add(
        &self,
        spec: WatchSpec,
        watch_id: i64,
        start_rev: i64,
        tx: mpsc::Sender<Delivery>,
        store: &Store,
    ) -> u64 {
        let mut inner = self.inner.lock();
        let current = store.current_revision();
        let next_rev = if start_rev <= 0 {
            current + 1
        } else {
            start_rev
        };
        inner.next_id += 1;
        let id = inner.next_id;
        inner.watchers.insert(
            id,
            Watcher {
                spec,
                watch_id,
                next_rev,
                lagging: next_rev <= current,
                tx,
            },
        );
        metrics::gauge!("concord_watchers").set(inner.watchers.len() as f64);
        id
    }

    /// Removes a watcher.
    pub fn remove(&self, id: u64) {
        let mut inner = self.inner.lock();
        inner.watchers.remove(&id);
        metrics::gauge!("concord_watchers").set(inner.watchers.len() as f64);
    }

    /// Is the watcher lagging.
    pub fn is_lagging(&self, id: u64) -> bool {
        self.inner
            .lock()
            .watchers
            .get(&id)
            .is_some_and(|w| w.lagging)
    }

    /// Delivers applied events (in revision order) to live watchers.
    pub fn publish(&self, events: Vec<Event>, store: &Store) {
        let mut inner = self.inner.lock();
        let revision = store.current_revision();
        for w in inner.watchers.values_mut() {
            if w.lagging {
                continue;
            }
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| e.revision.main >= w.next_rev && w.spec.wants(e))
                .map(|e| w.spec.shape(e))
                .collect();
            let last = events.last().map_or(w.next_rev - 1, |e| e.revision.main);
            if mine.is_empty() {
                w.next_rev = w.next_rev.max(last + 1);
                continue;
            }
            let d = Delivery {
                watch_id: w.watch_id,
                events: mine,
                revision,
            };
            match w.tx.try_send(d) {
                Ok(()) => w.next_rev = last + 1,
                Err(_) => w.lagging = true,
            }
        }
    }

    /// One catch-up step for a lagging watcher: reads history from
    /// `next_rev` and queues it.
    pub fn catch_up(&self, id: u64, store: &Store) -> CatchUp {
        let mut inner = self.inner.lock();
        let Some(w) = inner.watchers.get_mut(&id) else {
            return CatchUp::Gone;
        };
        if !w.lagging {
            return CatchUp::Live;
        }
        let (key, end) = w.spec.history_bounds();
        let events = match store.events_since(w.next_rev, &key, &end, CATCH_UP_BATCH) {
            Ok(e) => e,
            Err(EventsError::Compacted(c)) => return CatchUp::Compacted(c.compact_revision),
            Err(EventsError::Storage(e)) => {
                // Tried again at the next catch-up tick.
                tracing::error!(error = %e, "reading history for a watch");
                return CatchUp::More;
            }
        };
        let current = store.current_revision();
        let last = events.last().map(|e| e.revision.main);
        let mine: Vec<Event> = events
            .iter()
            .filter(|e| w.spec.wants(e))
            .map(|e| w.spec.shape(e))
            .collect();
        if !mine.is_empty() {
            let d = Delivery {
                watch_id: w.watch_id,
                events: mine,
                revision: current,
            };
            if w.tx.try_send(d).is_err() {
                return CatchUp::More;
            }
        }
        match last {
            Some(l) if events.len() >= CATCH_UP_BATCH && l < current => {
                w.next_rev = l + 1;
                CatchUp::More
            }
            _ => {
                w.next_rev = current + 1;
                w.lagging = false;
                CatchUp::Live
            }
        }
    }

    /// The driver applied up to the store's current revision without
    /// building events (nobody watched when it looked). A watcher added
    /// since then that has not seen those revisions reads them from history
    /// instead: it is marked lagging. Holds the hub lock, as publish does.
    pub fn skipped(&self, store: &Store) {
        let mut inner = self.inner.lock();
        let current = store.current_revision();
        for w in inner.watchers.values_mut() {
            if w.next_rev <= current {
                w.lagging = true;
            }
        }
    }

    /// Number of watchers.
    pub fn len(&self) -> usize {
        self.inner.lock().watchers.len()
    }

    /// True when nobody watches.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_mvcc::{Command, PutRequest};

    fn put(store: &mut Store, index: u64, key: &str) {
        let cmd = Command::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            ..Default::default()
        });
        store.apply_batch(&[(index, cmd)]).unwrap();
    }

    fn spec() -> WatchSpec {
        WatchSpec {
            key: Bytes::from_static(b"\0"),
            range_end: Bytes::from_static(b"\0"),
            no_put: false,
            no_delete: false,
            prev_kv: false,
        }
    }

    /// A watcher added between the driver's "nobody watches" look and its
    /// apply gets the revisions applied without events from history.
    #[test]
    fn a_watcher_added_while_events_were_off_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("db")).unwrap();
        let hub = WatchHub::default();
        put(&mut store, 1, "a");
        assert!(hub.is_empty()); // the driver looks: nobody watches
        store.set_events(false);
        let (tx, mut rx) = mpsc::channel(8);
        let id = hub.add(spec(), 7, 0, tx, &store); // from the next revision
        put(&mut store, 2, "b");
        assert!(!hub.is_lagging(id));
        hub.skipped(&store);
        assert!(hub.is_lagging(id));
        assert_eq!(hub.catch_up(id, &store), CatchUp::Live);
        let d = rx.try_recv().unwrap();
        assert_eq!(d.watch_id, 7);
        let keys: Vec<_> = d.events.iter().map(|e| e.kv.key.clone()).collect();
        assert_eq!(keys, vec![Bytes::from_static(b"b")]);
        // A watcher that starts after the skipped revisions stays live.
        let (tx, _rx2) = mpsc::channel(8);
        let later = hub.add(spec(), 8, 0, tx, &store);
        hub.skipped(&store);
        assert!(!hub.is_lagging(later));
    }
}
