//! A session: one lease that recipes attach their keys to, kept alive
//! until the session closes. Keys of a session vanish when it is lost.

use crate::{Client, Error, KeepAlive};

/// A lease the recipes hang their keys on.
#[derive(Debug)]
pub struct Session {
    client: Client,
    lease: i64,
    ttl: i64,
    keep_alive: Option<KeepAlive>,
}

impl Session {
    /// Grants a lease of `ttl` seconds and keeps it alive.
    pub async fn new(client: &Client, ttl: i64) -> Result<Session, Error> {
        let grant = client.lease_grant(ttl, 0).await?;
        let keep_alive = Some(client.keep_alive(grant.id, grant.ttl));
        Ok(Session {
            client: client.clone(),
            lease: grant.id,
            ttl: grant.ttl,
            keep_alive,
        })
    }

    /// A session on a lease the caller manages (grants, renews, revokes):
    /// nothing here renews it.
    pub fn on_lease(client: &Client, lease: i64, ttl: i64) -> Session {
        Session {
            client: client.clone(),
            lease,
            ttl,
            keep_alive: None,
        }
    }

    /// The lease.
    pub fn lease(&self) -> i64 {
        self.lease
    }

    /// The TTL the server granted, in seconds.
    pub fn ttl(&self) -> i64 {
        self.ttl
    }

    /// The client the session was made with.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// False once the keep-alive found the lease lost (always true for a
    /// session on a caller-managed lease).
    pub fn is_alive(&self) -> bool {
        self.keep_alive
            .as_ref()
            .is_none_or(|k| matches!(k.state(), crate::LeaseState::Alive { .. }))
    }

    /// Waits until the lease is lost (never returns for a session on a
    /// caller-managed lease: nothing here watches it).
    pub async fn lost(&mut self) -> Error {
        match &mut self.keep_alive {
            Some(k) => k.lost().await,
            None => std::future::pending().await,
        }
    }

    /// Stops renewing and revokes the lease: every key of the session goes.
    pub async fn close(mut self) -> Result<(), Error> {
        self.keep_alive = None;
        self.client.lease_revoke(self.lease).await.map(|_| ())
    }
}
