//! What a [`crate::Client`] is built from.

use std::time::Duration;

use crate::{BreakerConfig, Credentials, RetryPolicy, TlsConfig};

/// Endpoints, timeouts, retries and TLS of a client.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Endpoints as `host:port`, `http://host:port` or `https://host:port`.
    pub endpoints: Vec<String>,
    /// Time to open a connection to one endpoint.
    pub connect_timeout: Duration,
    /// Deadline of each attempt of a call (streams: of opening them).
    pub request_timeout: Duration,
    /// Retries of safe calls.
    pub retry: RetryPolicy,
    /// TLS for `https://` endpoints (and `host:port` ones when set).
    pub tls: Option<TlsConfig>,
    /// Add the client URLs of all members (`MemberList`) at connect.
    pub discover: bool,
    /// Send writes to the leader's client URL when it is known.
    pub leader_routing: bool,
    /// Session guarantees: serializable reads carry the highest revision
    /// this client has seen, and a Concord member serves them only once it
    /// has applied it (read-your-writes and monotonic reads from any
    /// member). An etcd server ignores it.
    pub session_guarantees: bool,
    /// The circuit breaker of each endpoint.
    pub breaker: BreakerConfig,
    /// Log in as this user (etcd's Auth); none: send no token (a server
    /// with `--client-cert-auth` then takes the certificate's name).
    pub credentials: Option<Credentials>,
}

impl ClientConfig {
    /// Defaults for these endpoints: 2 s to connect, 5 s per attempt,
    /// [`RetryPolicy::default`], discovery, leader routing and session
    /// guarantees on.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> ClientConfig {
        ClientConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            tls: None,
            discover: true,
            leader_routing: true,
            session_guarantees: true,
            breaker: BreakerConfig::default(),
            credentials: None,
        }
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, d: Duration) -> ClientConfig {
        self.connect_timeout = d;
        self
    }

    /// Sets the deadline of each attempt.
    pub fn request_timeout(mut self, d: Duration) -> ClientConfig {
        self.request_timeout = d;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, policy: RetryPolicy) -> ClientConfig {
        self.retry = policy;
        self
    }

    /// Sets TLS.
    pub fn tls(mut self, tls: TlsConfig) -> ClientConfig {
        self.tls = Some(tls);
        self
    }

    /// Turns endpoint discovery at connect on or off.
    pub fn discover(mut self, on: bool) -> ClientConfig {
        self.discover = on;
        self
    }

    /// Sets the endpoints' circuit breakers.
    pub fn breaker(mut self, breaker: BreakerConfig) -> ClientConfig {
        self.breaker = breaker;
        self
    }

    /// Turns session guarantees on or off.
    pub fn session_guarantees(mut self, on: bool) -> ClientConfig {
        self.session_guarantees = on;
        self
    }

    /// Logs in as `user` with `password`.
    pub fn credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> ClientConfig {
        self.credentials = Some(Credentials::new(user, password));
        self
    }

    /// Turns leader routing of writes on or off.
    pub fn leader_routing(mut self, on: bool) -> ClientConfig {
        self.leader_routing = on;
        self
    }
}
