//! KV calls: get, put, delete, txn, compact.

use bytes::Bytes;
use concord_proto::etcdserverpb::kv_client::KvClient;
use concord_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RangeResponse, TxnResponse,
};

use tonic::metadata::MetadataValue;

use crate::call::Safety;
use crate::{Client, Error, Txn};

/// Metadata key of the revision a serializable read must not go below
/// (the highest this client has seen; see [`crate::ClientConfig`]).
pub const MIN_REVISION_KEY: &str = "concord-min-revision";

/// The end of the range holding every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Which keys a get or delete covers, and how a get reads.
#[derive(Debug, Clone, Default)]
pub struct GetOptions {
    range_end: Vec<u8>,
    prefix: bool,
    revision: i64,
    limit: i64,
    serializable: bool,
    keys_only: bool,
    count_only: bool,
}

impl GetOptions {
    /// A single key, linearizable, at the newest revision.
    pub fn new() -> GetOptions {
        GetOptions::default()
    }

    /// Every key starting with the key.
    pub fn prefix(mut self) -> GetOptions {
        self.prefix = true;
        self
    }

    /// Keys from the key up to `end` (exclusive; `[0]` for all keys).
    pub fn range_end(mut self, end: impl AsRef<[u8]>) -> GetOptions {
        self.range_end = end.as_ref().to_vec();
        self
    }

    /// Read at this revision.
    pub fn revision(mut self, rev: i64) -> GetOptions {
        self.revision = rev;
        self
    }

    /// At most this many keys.
    pub fn limit(mut self, n: i64) -> GetOptions {
        self.limit = n;
        self
    }

    /// Serve from the member's local state (may be stale; no quorum).
    pub fn serializable(mut self) -> GetOptions {
        self.serializable = true;
        self
    }

    /// Keys without values.
    pub fn keys_only(mut self) -> GetOptions {
        self.keys_only = true;
        self
    }

    /// Only the count.
    pub fn count_only(mut self) -> GetOptions {
        self.count_only = true;
        self
    }

    pub(crate) fn end_for(&self, key: &[u8]) -> Bytes {
        if self.prefix {
            prefix_end(key).into()
        } else {
            Bytes::from(self.range_end.clone())
        }
    }

    /// The range request for `key`.
    pub fn to_request(&self, key: &[u8]) -> RangeRequest {
        RangeRequest {
            key: Bytes::copy_from_slice(key),
            range_end: self.end_for(key),
            limit: self.limit,
            revision: self.revision,
            serializable: self.serializable,
            keys_only: self.keys_only,
            count_only: self.count_only,
            ..Default::default()
        }
    }
}

/// How a put is made.
#[derive(Debug, Clone, Copy, Default)]
pub struct PutOptions {
    /// Attach to this lease (0: none).
    pub lease: i64,
    /// Return the previous key-value.
    pub prev_kv: bool,
    /// The caller vouches that applying the put twice is harmless: it may
    /// be retried after a broken connection.
    pub idempotent: bool,
}

impl Client {
    /// Range read (retried: reads are safe).
    pub async fn get(
        &self,
        key: impl AsRef<[u8]>,
        opts: GetOptions,
    ) -> Result<RangeResponse, Error> {
        let req = opts.to_request(key.as_ref());
        // Serializable reads say what this client has seen (session
        // guarantees); linearizable ones need not.
        let min = (req.serializable && self.inner.config.session_guarantees)
            .then(|| self.seen_revision())
            .filter(|rev| *rev > 0);
        let resp = self
            .read(|ch| {
                let mut r = tonic::Request::new(req.clone());
                if let Some(rev) = min {
                    r.metadata_mut()
                        .insert(MIN_REVISION_KEY, MetadataValue::from(rev));
                }
                async move { KvClient::new(ch).range(r).await }
            })
            .await?;
        self.saw(resp.header.as_ref());
        Ok(resp)
    }

    /// Put; sent once unless `opts.idempotent`.
    pub async fn put(
        &self,
        key: impl AsRef<[u8]>,
        value: impl AsRef<[u8]>,
        opts: PutOptions,
    ) -> Result<PutResponse, Error> {
        let req = put_request(key.as_ref(), value.as_ref(), &opts);
        let resp = self
            .call(write_safety(opts.idempotent), |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).put(req).await }
            })
            .await?;
        self.saw(resp.header.as_ref());
        Ok(resp)
    }

    /// Deletes the key (or the range `opts` names); sent once.
    pub async fn delete(
        &self,
        key: impl AsRef<[u8]>,
        opts: GetOptions,
        prev_kv: bool,
    ) -> Result<DeleteRangeResponse, Error> {
        let req = delete_request(key.as_ref(), &opts, prev_kv);
        let resp = self
            .call(Safety::Write, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).delete_range(req).await }
            })
            .await?;
        self.saw(resp.header.as_ref());
        Ok(resp)
    }

    /// A transaction; retried only when it has no writes, or the caller
    /// marks it idempotent.
    pub async fn txn(&self, txn: Txn) -> Result<TxnResponse, Error> {
        let safety = if txn.is_read_only() {
            Safety::Read
        } else {
            write_safety(txn.idempotent)
        };
        let req = txn.into_request();
        let resp = self
            .call(safety, |ch| {
                let req = req.clone();
                async move { KvClient::new(ch).txn(req).await }
            })
            .await?;
        self.saw(resp.header.as_ref());
        Ok(resp)
    }

    /// Compacts history below `revision` (retried: compacting twice is
    /// harmless).
    pub async fn compact(
        &self,
        revision: i64,
        physical: bool,
    ) -> Result<CompactionResponse, Error> {
        let req = CompactionRequest { revision, physical };
        self.call(Safety::IdempotentWrite, |ch| async move {
            KvClient::new(ch).compact(req).await
        })
        .await
    }
}

fn write_safety(idempotent: bool) -> Safety {
    if idempotent {
        Safety::IdempotentWrite
    } else {
        Safety::Write
    }
}

/// The request of a put of `value` at `key` with `opts`.
pub(crate) fn put_request(key: &[u8], value: &[u8], opts: &PutOptions) -> PutRequest {
    PutRequest {
        key: Bytes::copy_from_slice(key),
        value: Bytes::copy_from_slice(value),
        lease: opts.lease,
        prev_kv: opts.prev_kv,
        ..Default::default()
    }
}

/// The request of a delete of `key` (or the range `opts` names).
pub(crate) fn delete_request(key: &[u8], opts: &GetOptions, prev_kv: bool) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: Bytes::copy_from_slice(key),
        range_end: opts.end_for(key),
        prev_kv,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"a"), b"b");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), vec![0]);
        let req = GetOptions::new().prefix().to_request(b"k/");
        assert_eq!(&req.range_end[..], b"k0");
    }
}
