//! Failpoints switched at run time (only with the `failpoints` feature), as
//! etcd's gofail does: `FAILPOINTS="name=actions;..."` at start-up (in
//! `cli.rs`), and HTTP routes on the member's client and metrics listeners
//! while it runs:
//!
//! - `GET /failpoints`: every point, one `name=actions` line each (empty
//!   actions: off);
//! - `GET /failpoints/NAME`: its actions (404 for an unknown point);
//! - `PUT /failpoints/NAME` with the actions in the body (the `fail`
//!   crate's syntax: `panic`, `sleep(100)`, `1*panic`,
//!   `30*off->panic(msg)`, `off`, ...): arms it;
//! - `DELETE /failpoints/NAME`: disarms it.
//!
//! A `panic` at any point ends the process at once (the fail-stop hook,
//! `failstop.rs`: exit code 70, no destructor runs), which leaves the disk
//! as a crash at that point would.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// Every failpoint in the member's code, with where it sits.
pub const POINTS: [(&str, &str); 11] = [
    ("driver-round", "the start of each Raft driver round"),
    (
        "raft-before-save",
        "before a Ready's entries and hard state are written to the WAL and fsynced",
    ),
    (
        "raft-after-save",
        "after the WAL write and fsync, before the messages it releases are sent",
    ),
    ("raft-before-apply", "before committed entries are applied"),
    (
        "raft-after-apply",
        "after committed entries are applied (clients answered, not checkpointed)",
    ),
    (
        "snapshot-before-save",
        "a snapshot's image written to its temporary file, not synced or renamed",
    ),
    (
        "snapshot-after-save",
        "a snapshot file durable, before the driver compacts the log",
    ),
    (
        "raft-before-restore",
        "a follower saved the leader's snapshot file and WAL mark, before restoring the store",
    ),
    (
        "raft-during-restore",
        "the store restored from the leader's snapshot, the member table not yet",
    ),
    (
        "before-apply-conf-change",
        "before a membership change (ConfChange) is applied",
    ),
    (
        "after-apply-conf-change",
        "a membership change applied and the member table saved, before the proposer is answered",
    ),
];

fn known(name: &str) -> bool {
    POINTS.iter().any(|(n, _)| *n == name)
}

fn unknown(name: &str) -> (StatusCode, String) {
    let names: Vec<&str> = POINTS.iter().map(|(n, _)| *n).collect();
    (
        StatusCode::NOT_FOUND,
        format!("no failpoint {name:?}; known: {}\n", names.join(", ")),
    )
}

fn actions(name: &str) -> Option<String> {
    fail::list()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, a)| a)
}

/// The failpoint routes, merged into the member's HTTP routes.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/failpoints", get(list))
        .route("/failpoints/{name}", get(show).put(arm).delete(disarm))
}

async fn list() -> String {
    POINTS
        .iter()
        .map(|(n, _)| format!("{n}={}\n", actions(n).unwrap_or_default()))
        .collect()
}

async fn show(Path(name): Path<String>) -> (StatusCode, String) {
    if !known(&name) {
        return unknown(&name);
    }
    (StatusCode::OK, actions(&name).unwrap_or_default() + "\n")
}

async fn arm(Path(name): Path<String>, body: String) -> (StatusCode, String) {
    if !known(&name) {
        return unknown(&name);
    }
    let body = body.trim();
    match fail::cfg(name.clone(), body) {
        Ok(()) => {
            tracing::warn!(failpoint = %name, actions = %body, "failpoint armed");
            (StatusCode::OK, format!("{name}={body}\n"))
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!("failpoint {name}: bad actions {body:?}: {e}\n"),
        ),
    }
}

async fn disarm(Path(name): Path<String>) -> (StatusCode, String) {
    if !known(&name) {
        return unknown(&name);
    }
    fail::remove(&name);
    tracing::warn!(failpoint = %name, "failpoint disarmed");
    (StatusCode::NO_CONTENT, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_in_the_code_is_listed() {
        // Each listed name appears in a `failpoint!` of the sources, so a
        // renamed point cannot leave a stale entry the lab would arm.
        let sources = [
            include_str!("driver.rs"),
            include_str!("driver/apply.rs"),
            include_str!("snapshot/snapshotter.rs"),
        ]
        .concat();
        for (name, _) in POINTS {
            assert!(
                sources.contains(&format!("failpoint!(\"{name}\")")),
                "{name} is not in the code"
            );
        }
    }
}
