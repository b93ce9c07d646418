//! The proposer: hands out request ids, queues proposals and reads to the
//! driver's inbox, and keeps the waiters the driver answers when their
//! entries apply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use concord_mvcc::{MvccError, Response};
use parking_lot::Mutex;
use tokio::sync::oneshot;

use crate::error::ServerError;
use crate::mailbox::{InboxSender, Input};

/// What applying a proposal produced.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// An MVCC command's result (a request error changed nothing).
    Mvcc(Result<Response, MvccError>),
    /// A server operation or membership change was applied.
    Done,
}

/// A waiter for an applied proposal.
pub(crate) type Waiter = oneshot::Sender<Result<Outcome, ServerError>>;

/// How long a client request may wait for its entry to apply.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(7);

/// Request ids, the driver's inbox and the waiters of proposals in flight.
#[derive(Debug)]
pub(crate) struct Proposer {
    inbox: InboxSender,
    pending: Mutex<HashMap<u64, Waiter>>,
    next_request: AtomicU64,
    request_prefix: u64,
}

impl Proposer {
    /// The proposer of member `id`, sending to `inbox`.
    pub(crate) fn new(id: u64, inbox: InboxSender) -> Proposer {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        // Request ids are unique across members and restarts: every member
        // applies every entry and answers only the ids it handed out.
        let request_prefix =
            (crate::members::fnv64(&[&id.to_be_bytes(), &nanos.to_be_bytes()]) & 0xff_ffff) << 40;
        Proposer {
            inbox,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
            request_prefix,
        }
    }

    /// A fresh request id.
    pub(crate) fn request_id(&self) -> u64 {
        self.request_prefix | (self.next_request.fetch_add(1, Ordering::Relaxed) & 0xff_ffff_ffff)
    }

    /// The driver's inbox.
    pub(crate) fn inbox(&self) -> &InboxSender {
        &self.inbox
    }

    /// Queues `input` (a proposal of request `id`) and waits until the
    /// driver answers its waiter.
    pub(crate) async fn submit(&self, id: u64, input: Input) -> Result<Outcome, ServerError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().insert(id, tx);
        if !self.inbox.try_send(input) {
            self.pending.lock().remove(&id);
            metrics::counter!("concord_proposals_failed_total").increment(1);
            return Err(ServerError::TooManyRequests);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => {
                self.pending.lock().remove(&id);
                metrics::counter!("concord_proposals_failed_total").increment(1);
                Err(ServerError::Timeout)
            }
        }
    }

    /// Waits until a linearizable read may be served from the local store
    /// (ReadIndex confirmed and applied here).
    pub(crate) async fn read_barrier(&self) -> Result<(), ServerError> {
        let (tx, rx) = oneshot::channel();
        if !self.inbox.try_send(Input::Read(tx)) {
            return Err(ServerError::TooManyRequests);
        }
        match tokio::time::timeout(REQUEST_TIMEOUT, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(ServerError::Stopped),
            Err(_) => Err(ServerError::Timeout),
        }
    }

    /// Answers the waiter of `request`, if this member handed it out.
    pub(crate) fn respond(&self, request: u64, r: Result<Outcome, ServerError>) {
        if let Some(tx) = self.pending.lock().remove(&request) {
            let _ = tx.send(r);
        }
    }

    /// Fails every waiting proposal (shutdown).
    pub(crate) fn fail_all(&self, e: impl Fn() -> ServerError) {
        for (_, tx) in self.pending.lock().drain() {
            let _ = tx.send(Err(e()));
        }
    }
}
