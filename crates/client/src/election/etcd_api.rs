//! Election through etcd's Election API: the server keeps the queue of
//! candidates (keys `NAME/<lease>`) and answers Campaign when ours is first.

use std::time::Duration;

use bytes::Bytes;
use concord_proto::v3electionpb::election_client::ElectionClient;
use concord_proto::v3electionpb::{CampaignRequest, LeaderKey, LeaderRequest, ResignRequest};
use tokio::sync::watch;
use tokio_stream::StreamExt;

use super::{ElectionError, Elector, Leader};
use crate::{Client, Error, Safety, Session};

/// How long one Campaign call may wait for its turn.
const CAMPAIGN_DEADLINE: Duration = Duration::from_secs(24 * 3600);

/// A candidate using the server's Election service.
#[derive(Debug)]
pub struct EtcdElector {
    session: Session,
    name: Bytes,
    value: Bytes,
    led: Option<LeaderKey>,
    observer: Option<Observer>,
}

#[derive(Debug)]
struct Observer {
    rx: watch::Receiver<Option<Leader>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl EtcdElector {
    /// A candidate in election `name` offering `value`, on `session`.
    pub fn new(session: Session, name: &str, value: impl Into<Bytes>) -> EtcdElector {
        EtcdElector {
            session,
            name: Bytes::from(name.to_string()),
            value: value.into(),
            led: None,
            observer: None,
        }
    }

    /// The session the candidacy hangs on.
    pub fn session(&self) -> &Session {
        &self.session
    }

    fn client(&self) -> &Client {
        self.session.client()
    }
}

fn leader_of(kv: concord_proto::mvccpb::KeyValue) -> Leader {
    Leader {
        value: kv.value,
        term: kv.create_revision,
    }
}

impl Elector for EtcdElector {
    async fn campaign(&mut self) -> Result<Leader, ElectionError> {
        let req = CampaignRequest {
            name: self.name.clone(),
            lease: self.session.lease(),
            value: self.value.clone(),
        };
        // Campaigning again with the same lease is the same candidacy.
        let long = self.client().with_timeout(CAMPAIGN_DEADLINE);
        let call = long.call(Safety::IdempotentWrite, |ch| {
            let req = req.clone();
            async move { ElectionClient::new(ch).campaign(req).await }
        });
        let resp = tokio::select! {
            r = call => r?,
            e = self.session.lost() => return Err(ElectionError::SessionLost(e.to_string())),
        };
        let key = resp.leader.ok_or(ElectionError::NotLeader)?;
        let won = Leader {
            value: self.value.clone(),
            term: key.rev,
        };
        self.led = Some(key);
        Ok(won)
    }

    async fn resign(&mut self) -> Result<(), ElectionError> {
        let Some(key) = self.led.take() else {
            return Err(ElectionError::NotLeader);
        };
        let req = ResignRequest { leader: Some(key) };
        self.client()
            .call(Safety::IdempotentWrite, |ch| {
                let req = req.clone();
                async move { ElectionClient::new(ch).resign(req).await }
            })
            .await?;
        Ok(())
    }

    async fn leader(&mut self) -> Result<Option<Leader>, ElectionError> {
        let req = LeaderRequest {
            name: self.name.clone(),
        };
        let got = self
            .client()
            .read(|ch| {
                let req = req.clone();
                async move { ElectionClient::new(ch).leader(req).await }
            })
            .await;
        match got {
            Ok(resp) => Ok(resp.kv.map(leader_of)),
            Err(e) if e.code() == Some(tonic::Code::NotFound) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn is_leader(&self) -> bool {
        self.led.is_some() && self.session.is_alive()
    }

    fn changes(&mut self) -> watch::Receiver<Option<Leader>> {
        if let Some(o) = &self.observer {
            return o.rx.clone();
        }
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(observe(self.client().clone(), self.name.clone(), tx));
        self.observer = Some(Observer {
            rx: rx.clone(),
            task,
        });
        rx
    }
}

/// Follows the Observe stream, re-opened on another endpoint when it
/// breaks (on the same one after a fresh login when its token was refused).
async fn observe(client: Client, name: Bytes, tx: watch::Sender<Option<Leader>>) {
    while !tx.is_closed() {
        let url = client.route(Safety::Read).await;
        let mut relogged = false;
        if let Ok((ch, serial)) = client.channel_and_serial(&url).await {
            let req = LeaderRequest { name: name.clone() };
            match ElectionClient::new(ch).observe(req).await {
                Ok(resp) => {
                    let mut stream = resp.into_inner();
                    while let Some(Ok(r)) = stream.next().await {
                        if tx.send(r.kv.map(leader_of)).is_err() {
                            return;
                        }
                    }
                }
                Err(status) => {
                    relogged = client.relogin(&Error::from_status(&url, status), serial);
                }
            }
        }
        if !relogged {
            client.endpoint_failed(&url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
