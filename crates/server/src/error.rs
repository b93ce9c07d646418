//! Server errors, and their mapping to etcd's gRPC codes and messages
//! (clients match on the message strings).

use concord_mvcc::{AuthError, MvccError};
use concord_raft::RaftError;
use thiserror::Error;
use tonic::{Code, Status};

/// Everything that can fail in the server.
#[derive(Debug, Error)]
pub enum ServerError {
    /// Bad flags or config file.
    #[error("configuration: {0}")]
    Config(String),
    /// WAL or snapshot storage failed.
    #[error("storage: {0}")]
    Storage(#[from] concord_storage::StorageError),
    /// The state machine failed or refused the request.
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    /// An I/O error outside the WAL.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// No leader is known.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request did not finish in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// Leadership changed while the request was in flight.
    #[error("etcdserver: leader changed")]
    LeaderChanged,
    /// Queues are full: the client should back off.
    #[error("etcdserver: too many requests")]
    TooManyRequests,
    /// The request is over `--max-request-bytes`.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The NOSPACE alarm is raised.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// Unknown member id.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// A member with these peer URLs exists.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Promote of a member that is not a learner.
    #[error("etcdserver: can only promote a learner member")]
    NotLearner,
    /// Promote of a learner whose log is behind.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// A membership change is in progress or invalid.
    #[error("etcdserver: {0}")]
    BadMembership(String),
    /// Strict reconfiguration check: too few members have started.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Strict reconfiguration check: the change could cost the quorum.
    #[error("etcdserver: unhealthy cluster")]
    Unhealthy,
    /// This member was removed from the cluster.
    #[error("etcdserver: the member has been permanently removed from the cluster")]
    Removed,
    /// The server is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// Anything else.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl From<ServerError> for Status {
    fn from(e: ServerError) -> Status {
        let msg = match &e {
            // etcd's gRPC errors for these carry an `etcdserver: ` prefix
            // (rpctypes.ErrGRPCCompacted, ErrGRPCFutureRev); clients match on
            // the full string. The bare mvcc text is only a watch's cancel
            // reason.
            ServerError::Mvcc(m @ (MvccError::Compacted | MvccError::FutureRevision)) => {
                format!("etcdserver: {m}")
            }
            _ => e.to_string(),
        };
        let code = match &e {
            ServerError::Mvcc(m) => mvcc_code(m),
            ServerError::NoLeader | ServerError::Timeout | ServerError::LeaderChanged => {
                Code::Unavailable
            }
            ServerError::Stopped => Code::Unavailable,
            ServerError::TooManyRequests => Code::ResourceExhausted,
            ServerError::RequestTooLarge => Code::InvalidArgument,
            ServerError::NoSpace => Code::ResourceExhausted,
            ServerError::MemberNotFound => Code::NotFound,
            ServerError::PeerUrlExists => Code::FailedPrecondition,
            ServerError::NotLearner | ServerError::LearnerNotReady => Code::FailedPrecondition,
            ServerError::BadMembership(_) => Code::FailedPrecondition,
            ServerError::NotEnoughStartedMembers => Code::FailedPrecondition,
            ServerError::Unhealthy => Code::Unavailable,
            ServerError::Removed => Code::FailedPrecondition,
            ServerError::Config(_) => Code::InvalidArgument,
            ServerError::Storage(_) | ServerError::Io(_) | ServerError::Internal(_) => {
                Code::Internal
            }
        };
        Status::new(code, msg)
    }
}

fn mvcc_code(e: &MvccError) -> Code {
    match e {
        MvccError::EmptyKey
        | MvccError::RequestTooLarge
        | MvccError::TooManyTxnOps
        | MvccError::DuplicateKey
        | MvccError::InvalidRange
        | MvccError::ValueProvided
        | MvccError::LeaseProvided
        | MvccError::NotReadOnly
        | MvccError::Codec(_) => Code::InvalidArgument,
        MvccError::Compacted | MvccError::FutureRevision => Code::OutOfRange,
        MvccError::LeaseNotFound | MvccError::KeyNotFound => Code::NotFound,
        MvccError::LeaseExists | MvccError::AlreadyApplied => Code::FailedPrecondition,
        MvccError::LeaseTtlTooLarge => Code::OutOfRange,
        MvccError::Storage(_) | MvccError::Corrupt(_) => Code::Internal,
        MvccError::Auth(a) => auth_code(a),
    }
}

/// etcd's gRPC codes for its auth errors (`rpctypes`).
fn auth_code(e: &AuthError) -> Code {
    match e {
        AuthError::RootUserNotExist
        | AuthError::RootRoleNotExist
        | AuthError::UserAlreadyExist
        | AuthError::UserNotFound
        | AuthError::RoleAlreadyExist
        | AuthError::RoleNotFound
        | AuthError::RoleNotGranted
        | AuthError::PermissionNotGranted
        | AuthError::NotEnabled => Code::FailedPrecondition,
        AuthError::UserEmpty
        | AuthError::RoleEmpty
        | AuthError::AuthFailed
        | AuthError::PermissionNotGiven
        | AuthError::InvalidAuthMgmt
        | AuthError::OldRevision => Code::InvalidArgument,
        AuthError::PermissionDenied => Code::PermissionDenied,
        AuthError::InvalidToken => Code::Unauthenticated,
    }
}

/// A core error as the server reports it.
pub(crate) fn raft_error(e: RaftError) -> ServerError {
    match e {
        RaftError::NoLeader | RaftError::NotLeader(_) => ServerError::NoLeader,
        RaftError::TransferInProgress => ServerError::LeaderChanged,
        RaftError::TooManyUncommitted | RaftError::TooManyPendingReads => {
            ServerError::TooManyRequests
        }
        RaftError::LearnerNotCaughtUp(_) => ServerError::LearnerNotReady,
        RaftError::ConfChangeInProgress => {
            ServerError::BadMembership("a membership change is already in progress".into())
        }
        RaftError::InvalidConfChange(m) => ServerError::BadMembership(m),
        other => ServerError::Internal(other.to_string()),
    }
}

/// A copy of an error for each of several waiters (the common kinds keep
/// their gRPC code; the rest become internal errors with the same text).
pub(crate) fn clone_err(e: &ServerError) -> ServerError {
    match e {
        ServerError::NoLeader => ServerError::NoLeader,
        ServerError::TooManyRequests => ServerError::TooManyRequests,
        ServerError::LeaderChanged => ServerError::LeaderChanged,
        other => ServerError::Internal(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_codes_and_messages() {
        let s: Status = ServerError::Mvcc(MvccError::Compacted).into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        let s: Status = ServerError::Mvcc(MvccError::FutureRevision).into();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision is a future revision"
        );
        let s: Status = ServerError::Mvcc(MvccError::LeaseNotFound).into();
        assert_eq!(s.code(), Code::NotFound);
        assert_eq!(s.message(), "etcdserver: requested lease not found");
        let s: Status = ServerError::NoLeader.into();
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(s.message(), "etcdserver: no leader");
        let s: Status = ServerError::RequestTooLarge.into();
        assert_eq!(s.code(), Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: request is too large");
        let s: Status = ServerError::NoSpace.into();
        assert_eq!(s.code(), Code::ResourceExhausted);
        assert_eq!(s.message(), "etcdserver: mvcc: database space exceeded");
        let s: Status = ServerError::Mvcc(MvccError::AlreadyApplied).into();
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(
            s.message(),
            "concord: request already applied, response discarded"
        );
    }
}
