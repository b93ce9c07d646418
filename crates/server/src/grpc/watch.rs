//! The Watch service: one bidirectional stream carries many watches.
//!
//! Each stream has one task that reads requests, forwards deliveries from
//! the hub, catches lagging watchers up from history, and sends progress
//! notifications. Responses go out through a bounded channel.

use std::collections::HashMap;
use std::pin::Pin;
use std::time::Duration;

use concord_mvcc::Access;

use concord_proto::etcdserverpb::watch_create_request::FilterType;
use concord_proto::etcdserverpb::watch_server::Watch;
use concord_proto::etcdserverpb::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::{convert, count, current_header, header, State};
use crate::watch::{CatchUp, Delivery, WatchSpec, STREAM_QUEUE};

/// Most watches on one stream.
pub const MAX_WATCHES_PER_STREAM: usize = 10_000;
/// Interval of progress notifications for watches that asked for them.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(10 * 60);
/// How often lagging watchers are caught up.
const CATCH_UP_INTERVAL: Duration = Duration::from_millis(20);

/// The Watch service.
#[derive(Debug, Clone)]
pub struct WatchService {
    /// Shared server state.
    pub state: State,
    /// Progress notification interval (shorter in tests).
    pub progress_interval: Duration,
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

struct StreamWatch {
    hub_id: u64,
    progress_notify: bool,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        req: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<WatchStream>, Status> {
        count("Watch");
        // The stream's caller; each watch is checked when it is created.
        let user = self.state.auth.caller(&req)?.user;
        let (out_tx, out_rx) = mpsc::channel(256);
        let state = self.state.clone();
        let interval = self.progress_interval;
        tokio::spawn(run_stream(state, user, req.into_inner(), out_tx, interval));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }
}

async fn run_stream(
    state: State,
    user: Option<String>,
    mut input: Streaming<WatchRequest>,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    progress_interval: Duration,
) {
    let (tx, mut deliveries) = mpsc::channel::<Delivery>(STREAM_QUEUE);
    let mut watches: HashMap<i64, StreamWatch> = HashMap::new();
    let mut next_watch_id: i64 = 0;
    let mut catch_up = tokio::time::interval(CATCH_UP_INTERVAL);
    let mut progress = tokio::time::interval(progress_interval);
    progress.tick().await;
    let mut shutdown = state.shutdown.subscribe();
    loop {
        tokio::select! {
            msg = input.next() => {
                let req = match msg {
                    Some(Ok(r)) => r,
                    _ => break,
                };
                let Some(r) = req.request_union else { continue };
                let resp = match r {
                    watch_request::RequestUnion::CreateRequest(c) => {
                        create(&state, user.as_deref(), c, &tx, &mut watches, &mut next_watch_id)
                    }
                    watch_request::RequestUnion::CancelRequest(c) => {
                        if let Some(w) = watches.remove(&c.watch_id) {
                            state.watch.remove(w.hub_id);
                        }
                        WatchResponse {
                            header: Some(current_header(&state)),
                            watch_id: c.watch_id,
                            canceled: true,
                            ..Default::default()
                        }
                    }
                    watch_request::RequestUnion::ProgressRequest(_) => WatchResponse {
                        header: Some(current_header(&state)),
                        watch_id: -1,
                        ..Default::default()
                    },
                };
                if out.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            d = deliveries.recv() => {
                let Some(d) = d else { break };
                if !watches.contains_key(&d.watch_id) {
                    continue;
                }
                let resp = WatchResponse {
                    header: Some(header(&state, d.revision)),
                    watch_id: d.watch_id,
                    events: d.events.into_iter().map(convert::event).collect(),
                    ..Default::default()
                };
                if out.send(Ok(resp)).await.is_err() {
                    break;
                }
            }
            _ = catch_up.tick() => {
                let mut canceled = Vec::new();
                for (&wid, w) in &watches {
                    if !state.watch.is_lagging(w.hub_id) {
                        continue;
                    }
                    let r = {
                        let store = state.store.read();
                        state.watch.catch_up(w.hub_id, &store)
                    };
                    if let CatchUp::Compacted(rev) = r {
                        canceled.push((wid, rev));
                    }
                }
                for (wid, rev) in canceled {
                    if let Some(w) = watches.remove(&wid) {
                        state.watch.remove(w.hub_id);
                    }
                    let resp = WatchResponse {
                        header: Some(current_header(&state)),
                        watch_id: wid,
                        canceled: true,
                        compact_revision: rev,
                        cancel_reason: "mvcc: required revision has been compacted".into(),
                        ..Default::default()
                    };
                    if out.send(Ok(resp)).await.is_err() {
                        break;
                    }
                }
            }
            _ = progress.tick() => {
                for (&wid, w) in &watches {
                    if w.progress_notify && !state.watch.is_lagging(w.hub_id) {
                        let resp = WatchResponse {
                            header: Some(current_header(&state)),
                            watch_id: wid,
                            ..Default::default()
                        };
                        let _ = out.try_send(Ok(resp));
                    }
                }
            }
            _ = shutdown.changed() => break,
        }
    }
    for (_, w) in watches {
        state.watch.remove(w.hub_id);
    }
}

fn create(
    state: &State,
    user: Option<&str>,
    c: WatchCreateRequest,
    tx: &mpsc::Sender<Delivery>,
    watches: &mut HashMap<i64, StreamWatch>,
    next_watch_id: &mut i64,
) -> WatchResponse {
    let fail = |wid: i64, reason: &str| WatchResponse {
        header: Some(current_header(state)),
        watch_id: wid,
        created: true,
        canceled: true,
        cancel_reason: reason.to_string(),
        ..Default::default()
    };
    let wid = if c.watch_id != 0 {
        c.watch_id
    } else {
        while watches.contains_key(next_watch_id) {
            *next_watch_id += 1;
        }
        *next_watch_id
    };
    if watches.contains_key(&wid) {
        return fail(wid, "etcdserver: duplicate watch ID");
    }
    if watches.len() >= MAX_WATCHES_PER_STREAM {
        return fail(wid, "etcdserver: too many watches on this stream");
    }
    if c.key.is_empty() {
        return fail(wid, "etcdserver: key is not provided");
    }
    if convert::is_backwards(&c.key, &c.range_end) {
        return fail(wid, "etcdserver: range end is before key");
    }
    let view = state.auth.view();
    if view
        .check_range(user, &c.key, &c.range_end, Access::Read)
        .is_err()
    {
        // etcd answers a refused watch with the invalid watch id.
        return fail(-1, "etcdserver: permission denied");
    }
    let spec = WatchSpec {
        key: c.key,
        range_end: c.range_end,
        no_put: c.filters.contains(&(FilterType::Noput as i32)),
        no_delete: c.filters.contains(&(FilterType::Nodelete as i32)),
        prev_kv: c.prev_kv,
    };
    let (hub_id, rev) = {
        let store = state.store.read();
        let compacted = store.compact_revision();
        if c.start_revision > 0 && c.start_revision <= compacted {
            return WatchResponse {
                header: Some(header(state, store.current_revision())),
                watch_id: wid,
                created: true,
                canceled: true,
                compact_revision: compacted,
                cancel_reason: "mvcc: required revision has been compacted".into(),
                ..Default::default()
            };
        }
        let id = state
            .watch
            .add(spec, wid, c.start_revision, tx.clone(), &store);
        (id, store.current_revision())
    };
    watches.insert(
        wid,
        StreamWatch {
            hub_id,
            progress_notify: c.progress_notify,
        },
    );
    WatchResponse {
        header: Some(header(state, rev)),
        watch_id: wid,
        created: true,
        ..Default::default()
    }
}
