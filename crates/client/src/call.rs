//! One call: route, deadline, classification of its failure, and retries
//! where they are safe.

use std::future::Future;
use std::time::{Duration, Instant};

use tonic::{Response, Status};

use crate::auth::Chan;
use crate::error::Class;
use crate::retry::Backoff;
use crate::{Client, Error};

/// What kind of call: decides routing and whether a retry is safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Safety {
    /// A read (or any call without effect): retried freely.
    Read,
    /// A write that must not be applied twice: sent once; only a failure
    /// to connect (nothing sent) moves it to another endpoint.
    Write,
    /// A write the caller marked idempotent (it carries a request id, or
    /// applying it twice is harmless): retried as a read is.
    IdempotentWrite,
}

impl Safety {
    fn retry_after(self, class: Class) -> bool {
        match class {
            Class::NotSent => true,
            Class::Broken | Class::AliveBusy => self != Safety::Write,
            Class::Final => false,
        }
    }

    fn is_write(self) -> bool {
        self != Safety::Read
    }
}

impl Client {
    /// A read through the retry loop.
    pub(crate) async fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        self.call(Safety::Read, f).await
    }

    /// Runs `f` on an endpoint's channel under the deadline, and again on
    /// another (or the same, after a pause) while `safety` allows it, the
    /// policy's attempts and budget last. A call refused for its token
    /// goes again once after a fresh login, whatever `safety` says: the
    /// refusal came before anything applied.
    pub(crate) async fn call<T, F, Fut>(&self, safety: Safety, mut f: F) -> Result<T, Error>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        let policy = self.inner.config.retry.clone();
        let mut backoff = Backoff::new(&policy, self.backoff_seed());
        let start = Instant::now();
        let mut attempt = 0u32;
        let mut relogged = false;
        loop {
            let url = self.route_call(safety).await;
            let started = Instant::now();
            let (result, serial) = self.attempt(&url, &mut f).await;
            let no_answer = matches!(
                result,
                Err(Error::Connect { .. } | Error::Transport { .. } | Error::Timeout { .. })
            );
            self.inner
                .breakers
                .record(&url, no_answer, started.elapsed());
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if !relogged && self.relogin(&err, serial) {
                relogged = true;
                continue;
            }
            let class = err.class();
            self.note_failure(&url, class, safety);
            attempt += 1;
            let delay = backoff.delay(attempt - 1);
            let spent = start.elapsed() + delay;
            if !safety.retry_after(class) || attempt >= policy.max_attempts || spent > policy.budget
            {
                return Err(err);
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    }

    /// One attempt on `url` under the deadline, and the serial of the
    /// token it carried.
    async fn attempt<T, F, Fut>(&self, url: &str, f: &mut F) -> (Result<T, Error>, u64)
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match self.channel_and_serial(url).await {
            Ok((ch, serial)) => (self.attempt_on(url, ch, f).await, serial),
            Err(e) => (Err(e), 0),
        }
    }

    async fn attempt_on<T, F, Fut>(&self, url: &str, ch: Chan, f: &mut F) -> Result<T, Error>
    where
        F: FnMut(Chan) -> Fut,
        Fut: Future<Output = Result<Response<T>, Status>>,
    {
        match tokio::time::timeout(self.timeout, f(ch)).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(Error::from_status(url, status)),
            Err(_) => Err(Error::Timeout {
                endpoint: url.to_string(),
                deadline: self.timeout,
            }),
        }
    }

    /// Where the next attempt goes: writes to the leader when known (asked
    /// for when not), everything else to the current endpoint; then the
    /// breakers have their say.
    pub(crate) async fn route(&self, safety: Safety) -> String {
        let preferred = self.preferred(safety).await;
        let urls = self.inner.endpoints.urls();
        self.inner.breakers.pick(preferred, &urls, false)
    }

    /// As [`Client::route`], for a call whose outcome the breakers learn:
    /// a read may be a half-open breaker's probe.
    async fn route_call(&self, safety: Safety) -> String {
        let preferred = self.preferred(safety).await;
        let urls = self.inner.endpoints.urls();
        self.inner
            .breakers
            .pick(preferred, &urls, safety == Safety::Read)
    }

    async fn preferred(&self, safety: Safety) -> String {
        let eps = &self.inner.endpoints;
        if safety.is_write() && self.inner.config.leader_routing {
            if let Some(leader) = eps.leader() {
                return leader;
            }
            let ask = self.with_timeout(self.timeout.min(Duration::from_secs(1)));
            if let Ok(Some(leader)) = ask.refresh_leader().await {
                return leader;
            }
        }
        eps.current()
    }

    /// Bookkeeping after a failed attempt.
    fn note_failure(&self, url: &str, class: Class, safety: Safety) {
        let eps = &self.inner.endpoints;
        match class {
            Class::NotSent | Class::Broken => eps.failed(url),
            Class::AliveBusy if safety.is_write() => eps.set_leader(None),
            _ => {}
        }
    }

    /// Marks `url` failed (streams that broke on it).
    pub(crate) fn endpoint_failed(&self, url: &str) {
        self.inner.endpoints.failed(url);
    }
}
