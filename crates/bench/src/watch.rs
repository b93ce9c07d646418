//! The `watch` workload: `watchers` streams watch one prefix while a single
//! put client writes `total` keys under it. Each value starts with the send
//! time (nanoseconds since a shared epoch, little-endian), so each watcher
//! measures put-to-event latency; every watcher must see every put.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::conn::Channel;
use bytes::{BufMut, Bytes, BytesMut};
use concord_proto::etcdserverpb::watch_request::RequestUnion;
use concord_proto::etcdserverpb::{PutRequest, WatchCreateRequest, WatchRequest, WatchResponse};
use concord_proto::mvccpb::event::EventType;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::codec::Streaming;

use crate::control::{Control, Stats};
use crate::keys::{self, prefix_end, KeyGen, Rng};
use crate::kv::base_seed;
use crate::progress::Progress;
use crate::report::rate;
use crate::{Args, BenchError, Report};

/// How long watchers wait for missing events once the puts are done (reset
/// by every event received).
const IDLE_GRACE: Duration = Duration::from_secs(10);

/// Runs the watch fan-out workload.
pub(crate) async fn run(
    args: &Args,
    channels: &[Channel],
    watchers: usize,
) -> Result<Report, BenchError> {
    let timeout = args.request_timeout();
    let prefix = Bytes::from(format!("/concord-bench/watch/{:016x}/", base_seed()));
    let keygen = KeyGen::new(prefix.clone(), args.key_size, args.key_space);

    let mut opening = JoinSet::new();
    for w in 0..watchers {
        let ch = channels[w % channels.len()].clone();
        let (key, end) = (prefix.clone(), prefix_end(&prefix));
        opening.spawn(async move {
            match tokio::time::timeout(timeout, open(ch, key, end)).await {
                Ok(r) => r,
                Err(_) => Err(BenchError::new("watch create timed out")),
            }
        });
    }
    let mut streams = Vec::with_capacity(watchers);
    while let Some(r) = opening.join_next().await {
        streams.push(r.map_err(|e| BenchError(format!("watch task: {e}")))??);
    }

    let epoch = Instant::now();
    let delivered = Arc::new(AtomicU64::new(0));
    let (target_tx, target_rx) = watch::channel(None);
    let mut set = JoinSet::new();
    for (tx, stream) in streams {
        let w = Watcher {
            _requests: tx,
            stream,
            epoch,
            delivered: delivered.clone(),
        };
        set.spawn(w.run(target_rx.clone()));
    }

    let ctl = Control::new(args.total, args.duration());
    let d = delivered.clone();
    let len = ctl.total().map(|t| t * watchers as u64);
    let progress = Progress::start(!args.no_progress, "watch events", len, move || {
        d.load(Ordering::Relaxed)
    });
    let start = Instant::now();
    let puts = put_loop(args, &channels[0], &keygen, &ctl, epoch).await;
    let puts_done = Instant::now();
    // Watchers stop once they have seen every acknowledged put.
    let _ = target_tx.send(Some(puts.ok));

    let mut events = Stats::default();
    let mut missing = 0;
    let mut last_event = puts_done;
    while let Some(r) = set.join_next().await {
        let out = r.map_err(|e| BenchError(format!("watcher task: {e}")))?;
        missing += puts.ok.saturating_sub(out.stats.ok);
        last_event = last_event.max(out.last_event.unwrap_or(start));
        events.merge(&out.stats);
    }
    progress.finish();

    for (code, n) in &puts.errors {
        *events.errors.entry(code.clone()).or_default() += n;
    }
    let mut report = Report::new(args, watchers, &events, last_event - start);
    report.total = puts.ok + puts.error_count();
    report.missing_events = Some(missing);
    report.events_delivered = Some(events.ok);
    report.put_throughput = Some(rate(puts.ok, (puts_done - start).as_secs_f64()));
    Ok(report)
}

/// Opens a watch stream on `[key, end)` and waits until it is created. The
/// sender must be kept: closing the request side ends the stream.
async fn open(
    ch: Channel,
    key: Bytes,
    range_end: Bytes,
) -> Result<(mpsc::Sender<WatchRequest>, Streaming<WatchResponse>), BenchError> {
    let (tx, rx) = mpsc::channel(4);
    let create = WatchCreateRequest {
        key,
        range_end,
        ..Default::default()
    };
    let req = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(create)),
    };
    tx.send(req)
        .await
        .map_err(|_| BenchError::new("watch request channel closed"))?;
    let mut stream = ch
        .watch()
        .watch(ReceiverStream::new(rx))
        .await?
        .into_inner();
    loop {
        match stream.message().await? {
            Some(r) if r.canceled => {
                return Err(BenchError(format!("watch canceled: {}", r.cancel_reason)))
            }
            Some(r) if r.created => return Ok((tx, stream)),
            Some(_) => {}
            None => return Err(BenchError::new("watch stream ended before created")),
        }
    }
}

/// The single closed-loop put client.
async fn put_loop(
    args: &Args,
    ch: &Channel,
    keygen: &KeyGen,
    ctl: &Control,
    epoch: Instant,
) -> Stats {
    let mut kv = ch.kv();
    let mut rng = Rng::new(base_seed());
    let filler = keys::value(&mut rng, args.val_size);
    let mut stats = Stats::default();
    while ctl.next() {
        let req = PutRequest {
            key: keygen.random(&mut rng),
            value: stamped(&filler, epoch.elapsed()),
            ..Default::default()
        };
        stats.timed(args.request_timeout(), kv.put(req)).await;
        ctl.finish_one();
    }
    stats
}

/// `filler` with its first 8 bytes replaced by `since_epoch` in nanoseconds.
fn stamped(filler: &[u8], since_epoch: Duration) -> Bytes {
    let mut v = BytesMut::with_capacity(filler.len().max(8));
    v.put_u64_le(since_epoch.as_nanos() as u64);
    v.put_slice(filler.get(8..).unwrap_or_default());
    v.freeze()
}

/// The send time stamped into a value, if it has one.
fn stamp(value: &[u8]) -> Option<Duration> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(Duration::from_nanos(u64::from_le_bytes(b)))
}

struct Watcher {
    _requests: mpsc::Sender<WatchRequest>,
    stream: Streaming<WatchResponse>,
    epoch: Instant,
    delivered: Arc<AtomicU64>,
}

struct WatcherOut {
    /// `ok` counts put events received; the histogram holds their latency.
    stats: Stats,
    last_event: Option<Instant>,
}

impl Watcher {
    /// Receives events until it has `target` of them (once the target is
    /// known), the stream fails, or no event came for [`IDLE_GRACE`] after
    /// the target was set.
    async fn run(mut self, mut target: watch::Receiver<Option<u64>>) -> WatcherOut {
        let mut stats = Stats::default();
        let mut last_event = None;
        let mut give_up: Option<tokio::time::Instant> = None;
        loop {
            let tgt = *target.borrow_and_update();
            if let Some(t) = tgt {
                if stats.ok >= t {
                    break;
                }
                give_up.get_or_insert_with(|| tokio::time::Instant::now() + IDLE_GRACE);
            }
            let deadline = give_up;
            let idle = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                msg = self.stream.message() => match msg {
                    Ok(Some(resp)) if resp.canceled => {
                        stats.error("WatchCanceled");
                        break;
                    }
                    Ok(Some(resp)) => {
                        let now = self.epoch.elapsed();
                        for ev in &resp.events {
                            if ev.r#type != EventType::Put as i32 {
                                continue;
                            }
                            let sent = ev.kv.as_ref().and_then(|kv| stamp(&kv.value));
                            stats.ok(now.saturating_sub(sent.unwrap_or(now)));
                            self.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        if !resp.events.is_empty() {
                            last_event = Some(Instant::now());
                            if give_up.is_some() {
                                give_up = Some(tokio::time::Instant::now() + IDLE_GRACE);
                            }
                        }
                    }
                    Ok(None) => {
                        stats.error("WatchStreamEnded");
                        break;
                    }
                    Err(s) => {
                        stats.status(&s);
                        break;
                    }
                },
                changed = target.changed(), if tgt.is_none() => {
                    if changed.is_err() {
                        break;
                    }
                }
                () = idle => break,
            }
        }
        WatcherOut { stats, last_event }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip() {
        let filler = vec![b'x'; 256];
        let v = stamped(&filler, Duration::from_nanos(123_456_789));
        assert_eq!(v.len(), 256);
        assert_eq!(&v[8..], &filler[8..]);
        assert_eq!(stamp(&v), Some(Duration::from_nanos(123_456_789)));
        assert_eq!(stamped(b"", Duration::from_nanos(5)).len(), 8);
        assert_eq!(stamp(b"short"), None);
    }
}
