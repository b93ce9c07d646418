//! Crash scenarios: a member dies at a failpoint in Concord's own code (a
//! WAL fsync, applying entries, saving or restoring a snapshot, applying a
//! membership change) and is restarted from its data without it.
//!
//! The member's server must be built with failpoints (`cargo build
//! --release -p concord-server --features failpoints`): the lab arms a
//! point with `PUT /failpoints/NAME` (body `panic`) on the member's client
//! URL, or through `FAILPOINTS` for a restart, then waits for the process
//! to exit. A `panic` there ends the member at once (its fail-stop hook:
//! exit code 70, no destructor runs), leaving its disk as a crash would.
//! etcd has no such points in its release builds: the lab refuses these
//! scenarios for it.

use std::time::Duration;

use concord_proto::etcdserverpb::cluster_client::ClusterClient;
use concord_proto::etcdserverpb::{MemberAddRequest, MemberRemoveRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::cluster::{channel, Cluster, Target};
use crate::scenario::{FaultKind, Scenario};
use crate::LabError;

/// The crash scenarios (Concord only).
pub const SCENARIOS: [Scenario; 7] = [
    Scenario {
        name: "crash-before-fsync",
        about: "failpoint: the leader dies before its WAL write and fsync; restart; repeat",
        kind: FaultKind::CrashBeforeFsync,
    },
    Scenario {
        name: "crash-after-fsync",
        about: "failpoint: the leader dies after its WAL fsync, before sending what it released",
        kind: FaultKind::CrashAfterFsync,
    },
    Scenario {
        name: "crash-before-apply",
        about: "failpoint: the leader dies before applying committed entries; restart; repeat",
        kind: FaultKind::CrashBeforeApply,
    },
    Scenario {
        name: "crash-after-apply",
        about: "failpoint: the leader dies after applying (clients answered, not checkpointed)",
        kind: FaultKind::CrashAfterApply,
    },
    Scenario {
        name: "crash-snapshot-save",
        about: "failpoint: a member dies with a snapshot image written, not synced or renamed",
        kind: FaultKind::CrashSnapshotSave,
    },
    Scenario {
        name: "crash-snapshot-restore",
        about: "failpoint: a follower far behind dies installing the leader's snapshot",
        kind: FaultKind::CrashSnapshotRestore,
    },
    Scenario {
        name: "crash-membership",
        about: "failpoint: a follower dies applying a membership change (a learner added)",
        kind: FaultKind::CrashMembership,
    },
];

/// `--snapshot-count` of the crash runs whose points need snapshots: about
/// a second of the lab's writes on a debug build, so that an armed leader
/// reaches its point well within [`HIT_WITHIN`] (at 2000 it often did not
/// and was SIGKILLed instead, a plain leader kill).
const SNAPSHOT_COUNT: u64 = 500;

/// How long the lab waits for an armed member to reach its point.
const HIT_WITHIN: Duration = Duration::from_secs(8);

/// How long a killed follower stays down so that the leader snapshots and
/// compacts its log past it (`crash-snapshot-restore`).
const BEHIND_FOR: Duration = Duration::from_secs(4);

/// The build command that puts failpoints in the server.
pub const BUILD_HINT: &str = "cargo build --release -p concord-server --features failpoints";

impl FaultKind {
    /// A crash at a failpoint (Concord built with failpoints only).
    pub fn is_crash(self) -> bool {
        SCENARIOS.iter().any(|s| s.kind == self)
    }
}

/// The failpoint a crash scenario arms.
fn point(kind: FaultKind) -> &'static str {
    match kind {
        FaultKind::CrashBeforeFsync => "raft-before-save",
        FaultKind::CrashAfterFsync => "raft-after-save",
        FaultKind::CrashBeforeApply => "raft-before-apply",
        FaultKind::CrashAfterApply => "raft-after-apply",
        FaultKind::CrashSnapshotSave => "snapshot-before-save",
        FaultKind::CrashSnapshotRestore => "raft-before-restore",
        FaultKind::CrashMembership => "before-apply-conf-change",
        _ => unreachable!("{kind:?} is not a crash"),
    }
}

/// Extra server flags a scenario needs (snapshots every few seconds).
pub fn extra_args(kind: FaultKind) -> Vec<String> {
    match kind {
        FaultKind::CrashSnapshotSave | FaultKind::CrashSnapshotRestore => {
            vec![format!("--snapshot-count={SNAPSHOT_COUNT}")]
        }
        _ => Vec::new(),
    }
}

/// Refuses a crash scenario for a target without failpoints.
pub fn check_target(kind: FaultKind, target: Target) -> Result<(), LabError> {
    if kind.is_crash() && target != Target::Concord {
        return Err(LabError::Failpoints(format!(
            "{kind:?} crashes a member at a failpoint in Concord's code; \
             {target:?} has none (run it with --target concord)"
        )));
    }
    Ok(())
}

/// Fails with what to do when the server has no `/failpoints` (a build
/// without the feature).
pub async fn check_server(cluster: &Cluster) -> Result<(), LabError> {
    let url = &cluster.endpoints()[0];
    match http(url, "GET", "/failpoints", "").await {
        Ok((200, _)) => Ok(()),
        Ok((code, _)) => Err(LabError::Failpoints(format!(
            "the server answers {code} on /failpoints: it was built without failpoints; \
             build it with `{BUILD_HINT}` and pass that binary with --binary"
        ))),
        Err(e) => Err(LabError::Failpoints(format!(
            "asking {url} for /failpoints: {e}"
        ))),
    }
}

/// Injects one crash; returns what happened, in words.
pub async fn inject(
    cluster: &mut Cluster,
    kind: FaultKind,
    leader: usize,
    pick: u64,
) -> Result<String, LabError> {
    let n = cluster.size();
    let follower = {
        let k = (pick % (n as u64 - 1)) as usize;
        k + usize::from(k >= leader)
    };
    let name = point(kind);
    let member = match kind {
        FaultKind::CrashSnapshotSave => leader,
        FaultKind::CrashSnapshotRestore | FaultKind::CrashMembership => follower,
        _ => leader,
    };
    let began = tokio::time::Instant::now();
    match kind {
        FaultKind::CrashSnapshotRestore => {
            // Down long enough for the leader to snapshot and compact its
            // log past it; back with the point armed from the start.
            cluster.kill(member)?;
            tokio::time::sleep(BEHIND_FOR).await;
            let env = vec![("FAILPOINTS".to_string(), format!("{name}=panic"))];
            cluster.restart_with_env(member, &env)?;
        }
        _ => arm(cluster, member, name).await?,
    }
    let learner = if kind == FaultKind::CrashMembership {
        Some(add_learner(cluster, leader).await?)
    } else {
        None
    };
    let hit = wait_exit(cluster, member, HIT_WITHIN).await?;
    let ms = began.elapsed().as_millis();
    if let Some(id) = learner {
        // The change is undone while the member is down: its restart
        // replays both from its WAL or the leader.
        remove_member(cluster, leader, id).await?;
    }
    let who = cluster.name(member).to_string();
    Ok(match hit {
        Some(code) => format!("{who} at {name} (exit {code} after {ms} ms)"),
        None => {
            // Not reached in time: the member is killed instead, so the run
            // goes on; the label says so.
            cluster.kill(member)?;
            format!("{who} killed: {name} not reached within {HIT_WITHIN:?}")
        }
    })
}

async fn arm(cluster: &Cluster, member: usize, name: &str) -> Result<(), LabError> {
    let url = &cluster.endpoints()[member];
    let path = format!("/failpoints/{name}");
    match http(url, "PUT", &path, "panic").await {
        Ok((200, _)) => Ok(()),
        Ok((code, body)) => Err(LabError::Failpoints(format!(
            "arming {name} on {url}: {code} {}",
            body.trim()
        ))),
        Err(e) => Err(LabError::Failpoints(format!("arming {name} on {url}: {e}"))),
    }
}

/// Polls member `i` until its process exits; its exit code, or `None` if
/// it still runs after `within`.
async fn wait_exit(
    cluster: &mut Cluster,
    i: usize,
    within: Duration,
) -> Result<Option<i32>, LabError> {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if let Some(status) = cluster.try_exited(i)? {
            return Ok(Some(status.code().unwrap_or(-1)));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(None)
}

/// Adds a learner that never starts (it holds no vote, so quorum is
/// unchanged); returns its id.
async fn add_learner(cluster: &Cluster, leader: usize) -> Result<u64, LabError> {
    let ch = channel(&cluster.endpoints()[leader], Duration::from_secs(2)).await?;
    // A port nothing listens on: the leader's dials fail quietly.
    let req = MemberAddRequest {
        peer_ur_ls: vec!["http://127.0.0.1:9".to_string()],
        is_learner: true,
    };
    let r = ClusterClient::new(ch)
        .member_add(req)
        .await
        .map_err(|e| LabError::Connect(format!("adding a learner: {}", e.message())))?;
    r.into_inner()
        .member
        .map(|m| m.id)
        .ok_or_else(|| LabError::Connect("MemberAdd answered without the member".into()))
}

async fn remove_member(cluster: &Cluster, leader: usize, id: u64) -> Result<(), LabError> {
    let ch = channel(&cluster.endpoints()[leader], Duration::from_secs(2)).await?;
    ClusterClient::new(ch)
        .member_remove(MemberRemoveRequest { id })
        .await
        .map_err(|e| LabError::Connect(format!("removing the learner: {}", e.message())))?;
    Ok(())
}

/// One HTTP/1.1 request to a member's client URL (`http://host:port`);
/// the status and the body.
async fn http(url: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let addr = url.trim_start_matches("http://").trim_end_matches('/');
    let talk = async {
        let mut s = TcpStream::connect(addr).await?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&buf).into_owned())
    };
    let text = tokio::time::timeout(Duration::from_secs(3), talk)
        .await
        .map_err(|_| std::io::Error::other("no answer within 3 s"))??;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP answer"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |x| x.1);
    Ok((code, body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_scenarios_are_concord_only_and_each_arms_a_point() {
        for s in SCENARIOS {
            assert!(s.kind.is_crash() && !s.kind.is_network());
            assert!(!point(s.kind).is_empty());
            assert!(check_target(s.kind, Target::Etcd).is_err());
            assert!(check_target(s.kind, Target::Concord).is_ok());
        }
        assert!(!FaultKind::KillLeader.is_crash());
        assert!(check_target(FaultKind::KillLeader, Target::Etcd).is_ok());
    }
}
