//! The client's errors, and how a failed attempt is classified.

use std::time::Duration;

use tonic::{Code, Status};

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a gRPC error (its code and message kept).
    #[error("{endpoint}: {code:?}: {message}")]
    Status {
        /// The endpoint that answered.
        endpoint: String,
        /// The gRPC status code.
        code: Code,
        /// The status message (etcd's text, e.g. `etcdserver: no leader`).
        message: String,
    },
    /// The connection failed or broke: the request may or may not have
    /// reached the server.
    #[error("{endpoint}: transport: {message}")]
    Transport {
        /// The endpoint the request went to.
        endpoint: String,
        /// What the transport said.
        message: String,
    },
    /// No connection could be made: the request was never sent.
    #[error("{endpoint}: connect: {message}")]
    Connect {
        /// The endpoint that could not be reached.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The call's deadline passed without an answer.
    #[error("{endpoint}: no answer within {deadline:?}")]
    Timeout {
        /// The endpoint the request went to.
        endpoint: String,
        /// The deadline that passed.
        deadline: Duration,
    },
    /// An endpoint that is not `host:port` or an `http(s)://` URL.
    #[error("invalid endpoint {endpoint:?}: {reason}")]
    InvalidEndpoint {
        /// The endpoint as written.
        endpoint: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client was given no endpoints.
    #[error("no endpoints")]
    NoEndpoints,
    /// The TLS configuration could not be used.
    #[error("tls: {0}")]
    Tls(String),
    /// Logging in was refused: wrong user name or password.
    #[error("{endpoint}: logging in as {user:?}: {message}")]
    AuthFailed {
        /// The endpoint that refused.
        endpoint: String,
        /// The user name.
        user: String,
        /// etcd's text: `etcdserver: authentication failed, invalid user
        /// ID or password`.
        message: String,
    },
    /// A watch's start revision has been compacted away.
    #[error("watch: revision compacted (compact revision {compact_revision})")]
    Compacted {
        /// The oldest revision the server still has.
        compact_revision: i64,
    },
    /// The server canceled a watch for another reason.
    #[error("watch canceled: {0}")]
    WatchCanceled(String),
    /// A kept-alive lease expired or was revoked.
    #[error("lease {id:x} lost: {reason}")]
    LeaseLost {
        /// The lease.
        id: i64,
        /// Why it is gone.
        reason: String,
    },
}

impl Error {
    /// The gRPC code, when the server answered with one.
    pub fn code(&self) -> Option<Code> {
        match self {
            Error::Status { code, .. } => Some(*code),
            Error::AuthFailed { .. } => Some(Code::InvalidArgument),
            _ => None,
        }
    }

    /// The error of a status from `endpoint`: a transport failure or the
    /// server's answer.
    pub(crate) fn from_status(endpoint: &str, status: Status) -> Error {
        let endpoint = endpoint.to_string();
        if is_transport(&status) {
            let message = match std::error::Error::source(&status) {
                Some(src) => format!("{}: {src}", status.message()),
                None => status.message().to_string(),
            };
            return Error::Transport { endpoint, message };
        }
        Error::Status {
            endpoint,
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// What the retry loop may do after this error.
    pub(crate) fn class(&self) -> Class {
        match self {
            Error::Connect { .. } => Class::NotSent,
            // A read refused before it was served (session guarantees):
            // another member may serve it.
            Error::Status { code, message, .. }
                if *code == Code::Unavailable && message.starts_with(BEHIND) =>
            {
                Class::NotSent
            }
            Error::Transport { .. } | Error::Timeout { .. } => Class::Broken,
            Error::Status { code, message, .. } if member_alive_busy(*code, message) => {
                Class::AliveBusy
            }
            _ => Class::Final,
        }
    }
}

/// How a failed attempt bears on retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// The request never left: safe to send elsewhere, even a write.
    NotSent,
    /// The connection broke or the deadline passed: the request may have
    /// been applied; the endpoint is suspect.
    Broken,
    /// The member answered that it has no leader, the leader changed, or
    /// it is overloaded: it is alive, try again after a pause.
    AliveBusy,
    /// The server's answer: no retry helps.
    Final,
}

/// How a Concord member refuses a serializable read it is too far behind
/// for (`concord-min-revision`).
const BEHIND: &str = "concord: member is behind";

/// A status made by the transport (tonic attaches the cause), not by the
/// server: etcd's own errors carry the `etcdserver: ` prefix and no source.
fn is_transport(status: &Status) -> bool {
    if std::error::Error::source(status).is_some() {
        return true;
    }
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Cancelled
    ) && !status.message().starts_with("etcdserver")
        && !status.message().starts_with(BEHIND)
}

/// etcd's answers from a member that is alive but cannot serve right now.
fn member_alive_busy(code: Code, message: &str) -> bool {
    const BUSY: [&str; 4] = [
        "etcdserver: no leader",
        "etcdserver: leader changed",
        "etcdserver: request timed out",
        "etcdserver: too many requests",
    ];
    matches!(code, Code::Unavailable | Code::ResourceExhausted) && BUSY.contains(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let busy = Error::from_status("e", Status::unavailable("etcdserver: no leader"));
        assert_eq!(busy.class(), Class::AliveBusy);
        let broken = Error::from_status("e", Status::unavailable("connection reset"));
        assert_eq!(broken.class(), Class::Broken);
        let fin = Error::from_status(
            "e",
            Status::out_of_range("etcdserver: mvcc: required revision has been compacted"),
        );
        assert_eq!(fin.class(), Class::Final);
        assert_eq!(fin.code(), Some(Code::OutOfRange));
        let behind = Error::from_status(
            "e",
            Status::unavailable(format!("{BEHIND} the revision the client has seen")),
        );
        assert_eq!(
            behind.class(),
            Class::NotSent,
            "another member may serve it"
        );
    }
}
