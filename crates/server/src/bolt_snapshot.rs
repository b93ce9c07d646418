//! The Maintenance.Snapshot image (to be replaced by an etcd-layout bbolt file).

use tonic::Status;

use crate::grpc::State;

/// Builds the snapshot file streamed to `etcdctl snapshot save`.
pub fn build(_state: &State) -> Result<Vec<u8>, Status> {
    Err(Status::unimplemented(
        "concord: snapshot streaming is not ready",
    ))
}
