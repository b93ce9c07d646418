//! Exactly-once writes: a [`WriteSession`] tags each write with a request id
//! (session id, sequence number) in gRPC metadata. A Concord server
//! applies a write at most once per id and answers a retry with the
//! response it recorded, so the session retries its writes through
//! broken connections and leader changes as it retries reads.
//!
//! Keys: [`SESSION_KEY`] (the session id, hex) and [`SEQ_KEY`] (the
//! number, decimal). One write of a session is in flight at a time: the
//! server keeps only the last number's response, so a second write sent
//! before the first's answer could make the first's retry unanswerable.
//! An etcd server ignores the keys: there, the retries are not safe.

use std::sync::atomic::{AtomicU64, Ordering};

use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::{DeleteRangeResponse, PutResponse, ResponseHeader, TxnResponse};
use concord_rng::SplitMix64;
use tonic::metadata::MetadataValue;

use crate::call::Safety;
use crate::{Client, Error, GetOptions, PutOptions, Txn};

/// Metadata key of the session id (a `u64` in hex).
pub const SESSION_KEY: &str = "concord-session";
/// Metadata key of the sequence number (a `u64` in decimal).
pub const SEQ_KEY: &str = "concord-seq";

/// Writes applied exactly once by a Concord cluster (see the module
/// docs). Made by [`Client::write_session`]; writes of one session run one at
/// a time.
#[derive(Debug)]
pub struct WriteSession {
    client: Client,
    id: u64,
    /// The last number handed out; held for the whole of a write.
    seq: tokio::sync::Mutex<u64>,
}

/// A session id unlikely to be drawn twice: clock, process and a counter.
fn fresh_id() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = nanos ^ (u64::from(std::process::id()) << 32) ^ n.rotate_left(17);
    SplitMix64::new(seed).next_u64().max(1)
}

impl Client {
    /// A new session of exactly-once writes (a fresh random id).
    pub fn write_session(&self) -> WriteSession {
        WriteSession {
            client: self.clone(),
            id: fresh_id(),
            seq: tokio::sync::Mutex::new(0),
        }
    }
}

fn tagged<T>(msg: T, id: u64, seq: u64) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    let meta = req.metadata_mut();
    let session = MetadataValue::try_from(format!("{id:x}")).expect("hex is ASCII");
    meta.insert(SESSION_KEY, session);
    meta.insert(SEQ_KEY, MetadataValue::from(seq));
    req
}

/// A response with an etcd header.
trait HasHeader {
    fn header(&self) -> Option<&ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ty),*) => {$(
        impl HasHeader for $t {
            fn header(&self) -> Option<&ResponseHeader> {
                self.header.as_ref()
            }
        }
    )*};
}

has_header!(PutResponse, DeleteRangeResponse, TxnResponse);

fn header<T: HasHeader>(r: &T) -> Option<&ResponseHeader> {
    r.header()
}

impl WriteSession {
    /// The session id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The client the session writes through.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one tagged write (the next number) with retries.
    async fn write<M, T, F, Fut>(&self, msg: M, mut send: F) -> Result<T, Error>
    where
        M: Clone,
        T: HasHeader,
        F: FnMut(KvClient<crate::auth::Chan>, tonic::Request<M>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let mut last = self.seq.lock().await;
        *last += 1;
        let seq = *last;
        let id = self.id;
        let resp = self
            .client
            .call(Safety::IdempotentWrite, |ch| {
                send(KvClient::new(ch), tagged(msg.clone(), id, seq))
            })
            .await?;
        self.client.saw(header(&resp));
        Ok(resp)
    }

    /// Put, exactly once (`opts.idempotent` is not needed).
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: PutOptions,
    ) -> Result<PutResponse, Error> {
        let req = crate::kv::put_request(key.as_ref(), value.as_ref(), &opts);
        self.write(req, |mut kv, r| async move { kv.put(r).await })
            .await
    }

    /// Deletes the key (or the range `opts` names), exactly once.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        opts: GetOptions,
        prev_kv: bool,
    ) -> Result<DeleteRangeResponse, Error> {
        let req = crate::kv::delete_request(key.as_ref(), &opts, prev_kv);
        self.write(req, |mut kv, r| async move { kv.delete_range(r).await })
            .await
    }

    /// A transaction, exactly once (one without writes is a plain read).
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        if txn.is_read_only() {
            return self.client.txn(txn).await;
        }
        let req = txn.into_request();
        self.write(req, |mut kv, r| async move { kv.txn(r).await })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ_and_metadata_is_spelled_as_the_server_reads_it() {
        let ids: std::collections::HashSet<u64> = (0..1000).map(|_| fresh_id()).collect();
        assert_eq!(ids.len(), 1000);
        let req = tagged((), 0xab, 7);
        assert_eq!(req.metadata().get(SESSION_KEY).unwrap(), "ab");
        assert_eq!(req.metadata().get(SEQ_KEY).unwrap(), "7");
    }
}
