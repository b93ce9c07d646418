//! Watch: a stream of events that resumes on another endpoint after a
//! broken stream, from the last revision seen + 1.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use concord_proto::etcdserverpb::watch_client::WatchClient;
use concord_proto::etcdserverpb::watch_request::RequestUnion;
use concord_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use concord_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;

use crate::error::Class;
use crate::retry::Backoff;
use crate::{Client, Error, GetOptions};

/// What to watch.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Keys covered (single key, prefix or range).
    pub range: GetOptions,
    /// First revision wanted (0: from now).
    pub start_revision: i64,
    /// Events carry the previous key-value.
    pub prev_kv: bool,
}

/// The events of one revision (or several, in order).
#[derive(Debug, Clone)]
pub struct WatchBatch {
    /// The events, in revision order.
    pub events: Vec<Event>,
    /// The endpoint that sent them.
    pub endpoint: String,
}

/// A running watch; dropping it stops it.
#[derive(Debug)]
pub struct Watcher {
    rx: mpsc::Receiver<Result<WatchBatch, Error>>,
    endpoint: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Watcher {
    /// The next batch; an error ends the watch ([`Error::Compacted`] when
    /// the revision wanted is gone). `None` once ended.
    pub async fn next(&mut self) -> Option<Result<WatchBatch, Error>> {
        self.rx.recv().await
    }

    /// The endpoint the stream is open on now.
    pub fn endpoint(&self) -> Option<String> {
        self.endpoint
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Client {
    /// Watches `key` (and what `opts.range` adds).
    pub async fn watch(&self, key: impl AsRef<[u8]>, opts: WatchOptions) -> Result<Watcher, Error> {
        let (tx, rx) = mpsc::channel(64);
        let endpoint = Arc::new(Mutex::new(None));
        let run = Run {
            client: self.clone(),
            key: Bytes::copy_from_slice(key.as_ref()),
            range_end: opts.range.end_for(key.as_ref()),
            prev_kv: opts.prev_kv,
            next_rev: opts.start_revision,
            tx,
            endpoint: endpoint.clone(),
        };
        let task = tokio::spawn(run.run());
        Ok(Watcher { rx, endpoint, task })
    }
}

/// The task behind a [`Watcher`].
struct Run {
    client: Client,
    key: Bytes,
    range_end: Bytes,
    prev_kv: bool,
    /// The first revision not yet delivered (0: from whatever is now).
    next_rev: i64,
    tx: mpsc::Sender<Result<WatchBatch, Error>>,
    endpoint: Arc<Mutex<Option<String>>>,
}

/// How one stream ended.
enum End {
    /// Broken: open another.
    Broken,
    /// Refused at open with this answer, sent with the token of this
    /// serial.
    Refused(Error, u64),
    /// Over: the error was sent, or nobody listens.
    Over,
}

impl Run {
    async fn run(mut self) {
        let policy = self.client.inner.config.retry.clone();
        let mut backoff = Backoff::new(&policy, self.client.backoff_seed());
        let mut failures = 0u32;
        let mut relogged = false;
        loop {
            let url = self.client.route(crate::Safety::Read).await;
            *self.endpoint.lock().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
            match self.stream(&url).await {
                End::Over => return,
                // A refused token: log in again and reopen, once in a row.
                End::Refused(err, serial) if !relogged && self.client.relogin(&err, serial) => {
                    relogged = true;
                }
                End::Refused(err, _) => {
                    let _ = self.tx.send(Err(err)).await;
                    return;
                }
                End::Broken => {
                    relogged = false;
                    self.client.endpoint_failed(&url);
                    tokio::time::sleep(backoff.delay(failures.min(10))).await;
                    failures += 1;
                }
            }
        }
    }

    fn create(&self) -> WatchRequest {
        WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                key: self.key.clone(),
                range_end: self.range_end.clone(),
                start_revision: self.next_rev,
                prev_kv: self.prev_kv,
                ..Default::default()
            })),
        }
    }

    /// One stream on `url`, until it breaks or the watch is over.
    async fn stream(&mut self, url: &str) -> End {
        let (ch, serial) = match self.client.channel_and_serial(url).await {
            Ok(c) => c,
            Err(e @ Error::AuthFailed { .. }) => return End::Refused(e, 0),
            Err(_) => return End::Broken,
        };
        let (req_tx, req_rx) = mpsc::channel(4);
        let _ = req_tx.send(self.create()).await;
        let opened = tokio::time::timeout(
            self.client.timeout,
            WatchClient::new(ch).watch(tokio_stream::wrappers::ReceiverStream::new(req_rx)),
        )
        .await;
        let mut stream = match opened {
            Ok(Ok(resp)) => resp.into_inner(),
            Ok(Err(status)) => match Error::from_status(url, status) {
                // The server's own refusal (no token, a refused one): no
                // other endpoint answers differently.
                e @ Error::Status { .. } if e.class() == Class::Final => {
                    return End::Refused(e, serial)
                }
                _ => return End::Broken,
            },
            Err(_) => return End::Broken,
        };
        // `req_tx` lives as long as the stream: dropping it half-closes.
        while let Some(msg) = stream.next().await {
            let Ok(resp) = msg else { return End::Broken };
            if let Some(end) = self.deliver(url, resp).await {
                return end;
            }
        }
        drop(req_tx);
        End::Broken
    }

    /// Hands a response's new events on; `Some` when the watch is over.
    async fn deliver(&mut self, url: &str, resp: WatchResponse) -> Option<End> {
        if resp.canceled {
            let err = if resp.compact_revision > 0 {
                Error::Compacted {
                    compact_revision: resp.compact_revision,
                }
            } else {
                Error::WatchCanceled(resp.cancel_reason)
            };
            let _ = self.tx.send(Err(err)).await;
            return Some(End::Over);
        }
        if resp.created && self.next_rev == 0 {
            // From now on: what follows the revision the watch was made at.
            self.next_rev = resp.header.map_or(0, |h| h.revision + 1);
        }
        let next = self.next_rev;
        let events: Vec<Event> = resp
            .events
            .into_iter()
            .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= next))
            .collect();
        let last = events.last().and_then(|e| e.kv.as_ref())?.mod_revision;
        self.next_rev = last + 1;
        let batch = WatchBatch {
            events,
            endpoint: url.to_string(),
        };
        self.tx.send(Ok(batch)).await.err().map(|_| End::Over)
    }
}
