//! An async client for Concord and any etcd v3 endpoint.
//!
//! [`Client::connect`] takes a [`ClientConfig`]: endpoints written as
//! `host:port`, `http://host:port` or `https://host:port` (TLS from
//! [`TlsConfig`]), a connect timeout and a deadline for every attempt.
//! Each endpoint has one channel; a transport failure or a passed deadline
//! moves calls to the next endpoint. Discovery adds every member's client
//! URL; writes go to the leader's client URL when it is known.
//!
//! Retries ([`RetryPolicy`]: exponential backoff with full jitter, seeded)
//! happen only where they are safe: reads, and writes the caller marks
//! idempotent. A plain write is sent once; a connection that breaks under
//! it surfaces as [`Error::Transport`], since the write may have applied.
//! A [`WriteSession`] ([`Client::write_session`]) tags writes with a request id that
//! a Concord server applies at most once, so its writes are retried too.
//!
//! A circuit breaker per endpoint ([`BreakerConfig`]) keeps calls away
//! from a member that fails or answers slowly, lets a bounded number of
//! probes through after a while, and closes again when they succeed.
//!
//! Auth: with [`ClientConfig::credentials`] the client logs in (etcd's
//! `Authenticate`), sends the token with every request and stream, and
//! after `etcdserver: invalid auth token` logs in again and sends the call
//! once more; wrong credentials are [`Error::AuthFailed`].
//!
//! Streams: [`Client::watch`] resumes on another endpoint after a broken
//! stream from the last revision seen + 1; [`Client::keep_alive`] keeps a
//! lease alive across leader changes and says when it is lost.
//!
//! Recipes: [`Mutex`] (a lock on a [`Session`]'s lease with fencing
//! tokens, [`Fence`]d writes the store checks, and a [`FencingGuard`] for
//! resources outside the store) and leader election four ways behind the
//! [`Elector`] trait: etcd's Election API ([`EtcdElector`]), a leader by
//! lease that steps down before its lease can expire ([`LeaseElector`]),
//! ZooKeeper-style sequential keys ([`SequentialElector`]) and the bully
//! algorithm over its own transport ([`BullyElector`]).
#![deny(missing_docs)]

mod auth;
mod breaker;
mod call;
mod client;
mod cluster;
mod config;
mod election;
mod endpoint;
mod error;
mod fencing;
mod keepalive;
mod kv;
mod lease;
mod lock;
mod retry;
mod session;
mod tls;
mod txn;
mod watch;
mod write_session;

pub use auth::{Credentials, TOKEN_KEY};
pub use breaker::{BreakerConfig, BreakerState};
pub use call::Safety;
pub use client::Client;
pub use config::ClientConfig;
pub use election::{
    BullyConfig, BullyElector, ElectionError, Elector, EtcdElector, Leader, LeaseElector,
    SequentialElector,
};
pub use endpoint::normalize;
pub use error::Error;
pub use fencing::{FencingError, FencingGuard};
pub use keepalive::{KeepAlive, LeaseState};
pub use kv::{prefix_end, GetOptions, PutOptions, MIN_REVISION_KEY};
pub use lock::{Fence, LockError, LockGuard, Mutex};
pub use retry::{Backoff, RetryPolicy};
pub use session::Session;
pub use tls::TlsConfig;
pub use txn::{Cmp, Op, Txn, When};
pub use watch::{WatchBatch, WatchOptions, Watcher};
pub use write_session::{WriteSession, SEQ_KEY, SESSION_KEY};

/// The generated etcd v3 types the client speaks.
pub use concord_proto::{etcdserverpb as pb, mvccpb};
