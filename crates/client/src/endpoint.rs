//! Endpoints: their spelling, one channel each, which one is in use, and
//! the leader's.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::{Error, TlsConfig};

/// `host:port` becomes `http://host:port` (`https://` with TLS); URLs keep
/// their scheme; a trailing `/` goes.
pub fn normalize(endpoint: &str, tls: bool) -> Result<String, Error> {
    let bad = |reason: &str| Error::InvalidEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let url = if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else if trimmed.contains("://") {
        return Err(bad("the scheme must be http or https"));
    } else {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://{trimmed}")
    };
    let uri: tonic::transport::Uri = url.parse().map_err(|_| bad("not a URL"))?;
    if uri.host().is_none() || uri.port_u16().is_none() {
        return Err(bad("expected host:port"));
    }
    Ok(url)
}

/// The endpoint list with a channel per endpoint, shared by all calls.
#[derive(Debug)]
pub(crate) struct Endpoints {
    state: Mutex<State>,
    connect_timeout: Duration,
    tls: Option<TlsConfig>,
}

#[derive(Debug)]
struct State {
    urls: Vec<String>,
    channels: HashMap<String, Channel>,
    /// Index of the endpoint calls go to first.
    current: usize,
    /// The leader's client URL, when known.
    leader: Option<String>,
}

impl Endpoints {
    pub(crate) fn new(
        urls: Vec<String>,
        connect_timeout: Duration,
        tls: Option<TlsConfig>,
    ) -> Endpoints {
        Endpoints {
            state: Mutex::new(State {
                urls,
                channels: HashMap::new(),
                current: 0,
                leader: None,
            }),
            connect_timeout,
            tls,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// All endpoints.
    pub(crate) fn urls(&self) -> Vec<String> {
        self.lock().urls.clone()
    }

    /// The endpoint calls go to first.
    pub(crate) fn current(&self) -> String {
        let s = self.lock();
        s.urls[s.current % s.urls.len()].clone()
    }

    /// The leader's client URL, if known.
    pub(crate) fn leader(&self) -> Option<String> {
        self.lock().leader.clone()
    }

    /// Records the leader's client URL (or that it is unknown).
    pub(crate) fn set_leader(&self, url: Option<String>) {
        self.lock().leader = url;
    }

    /// Adds endpoints not yet known (discovery), keeping the order.
    pub(crate) fn add(&self, urls: impl IntoIterator<Item = String>) {
        let mut s = self.lock();
        for url in urls {
            if !s.urls.contains(&url) {
                s.urls.push(url);
            }
        }
    }

    /// `url` failed: drop its channel, move on from it, forget it as leader.
    pub(crate) fn failed(&self, url: &str) {
        let mut s = self.lock();
        s.channels.remove(url);
        let n = s.urls.len();
        if s.urls[s.current % n] == url {
            s.current = (s.current + 1) % n;
        }
        if s.leader.as_deref() == Some(url) {
            s.leader = None;
        }
    }

    /// The channel of `url`, connected now if there is none.
    pub(crate) async fn channel(&self, url: &str) -> Result<Channel, Error> {
        if let Some(ch) = self.lock().channels.get(url) {
            return Ok(ch.clone());
        }
        let ch = self.connect(url).await?;
        self.lock().channels.insert(url.to_string(), ch.clone());
        Ok(ch)
    }

    async fn connect(&self, url: &str) -> Result<Channel, Error> {
        let err = |message: String| Error::Connect {
            endpoint: url.to_string(),
            message,
        };
        let mut ep = Endpoint::from_shared(url.to_string())
            .map_err(|e| err(e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if url.starts_with("https://") {
            let tls = self.tls.clone().unwrap_or_default();
            let host = ep.uri().host().unwrap_or_default().to_string();
            ep = ep
                .tls_config(tls.to_tonic(&host))
                .map_err(|e| Error::Tls(e.to_string()))?;
        }
        match tokio::time::timeout(self.connect_timeout, ep.connect()).await {
            Ok(Ok(ch)) => Ok(ch),
            Ok(Err(e)) => Err(err(format!("{e}: {:?}", std::error::Error::source(&e)))),
            Err(_) => Err(err(format!(
                "no connection within {:?}",
                self.connect_timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings() {
        assert_eq!(
            normalize("127.0.0.1:2379", false).unwrap(),
            "http://127.0.0.1:2379"
        );
        assert_eq!(
            normalize("localhost:2379", true).unwrap(),
            "https://localhost:2379"
        );
        assert_eq!(normalize("http://h:1/", true).unwrap(), "http://h:1");
        assert_eq!(normalize("https://h:1", false).unwrap(), "https://h:1");
        assert!(normalize("unix://x", false).is_err());
        assert!(normalize("h", false).is_err());
        assert!(normalize("http://h", false).is_err());
    }

    #[test]
    fn failure_moves_on_and_forgets_the_leader() {
        let urls = vec!["http://a:1".to_string(), "http://b:1".to_string()];
        let eps = Endpoints::new(urls, Duration::from_secs(1), None);
        eps.set_leader(Some("http://a:1".into()));
        eps.failed("http://a:1");
        assert_eq!(eps.current(), "http://b:1");
        assert_eq!(eps.leader(), None);
        eps.failed("http://a:1");
        assert_eq!(eps.current(), "http://b:1");
        eps.add(["http://b:1".to_string(), "http://c:1".to_string()]);
        assert_eq!(eps.urls().len(), 3);
    }
}
