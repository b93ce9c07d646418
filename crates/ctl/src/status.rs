//! `concordctl status`: one row per member (leader, term, commit and
//! applied index, replication lag behind the leader's commit index, db
//! size), then the raised alarms.

use concord_client::pb::StatusResponse;
use serde_json::json;

use crate::{Format, Global};

/// Show every member's state and the cluster's alarms.
#[derive(Debug, clap::Args)]
pub struct Args {}

struct Row {
    endpoint: String,
    status: Result<StatusResponse, String>,
}

pub async fn run(global: &Global, _args: Args) -> anyhow::Result<u8> {
    let client = global.client().await?;
    let mut rows = Vec::new();
    for endpoint in client.endpoints() {
        let status = client.status_of(&endpoint).await.map_err(|e| e.to_string());
        rows.push(Row { endpoint, status });
    }
    if rows.iter().all(|r| r.status.is_err()) {
        let why = rows.first().and_then(|r| r.status.as_ref().err().cloned());
        anyhow::bail!("no member answered: {}", why.unwrap_or_default());
    }
    let alarms = client.alarm_list().await?.alarms;
    // The leader's commit index, which every member's applied index trails.
    let leader_commit = rows.iter().find_map(|r| {
        let s = r.status.as_ref().ok()?;
        (s.header.as_ref()?.member_id == s.leader).then_some(s.raft_index)
    });
    let alarm_names: Vec<(String, &str)> = alarms
        .iter()
        .map(|a| (format!("{:x}", a.member_id), alarm_name(a.alarm)))
        .collect();
    match global.format {
        Format::Json => {
            let members: Vec<_> = rows
                .iter()
                .map(|r| match &r.status {
                    Ok(s) => json!({
                        "endpoint": r.endpoint,
                        "id": format!("{:x}", member_id(s)),
                        "version": s.version,
                        "is_leader": member_id(s) == s.leader,
                        "is_learner": s.is_learner,
                        "raft_term": s.raft_term,
                        "commit_index": s.raft_index,
                        "applied_index": s.raft_applied_index,
                        "lag": leader_commit.map(|c| c.saturating_sub(s.raft_applied_index)),
                        "db_size": s.db_size,
                        "db_size_in_use": s.db_size_in_use,
                        "errors": s.errors,
                    }),
                    Err(e) => json!({ "endpoint": r.endpoint, "error": e }),
                })
                .collect();
            let alarms: Vec<_> = alarm_names
                .iter()
                .map(|(id, a)| json!({ "member_id": id, "alarm": a }))
                .collect();
            println!("{}", json!({ "members": members, "alarms": alarms }));
        }
        Format::Table => {
            let head = [
                "ENDPOINT", "ID", "VERSION", "LEADER", "TERM", "COMMIT", "APPLIED", "LAG",
                "DB SIZE", "ERRORS",
            ];
            let body: Vec<Vec<String>> = rows.iter().map(|r| row(r, leader_commit)).collect();
            print_table(&head, &body);
            if alarm_names.is_empty() {
                println!("alarms: none");
            }
            for (id, a) in &alarm_names {
                println!("alarm: member {id}: {a}");
            }
        }
    }
    Ok(0)
}

fn member_id(s: &StatusResponse) -> u64 {
    s.header.as_ref().map_or(0, |h| h.member_id)
}

fn row(r: &Row, leader_commit: Option<u64>) -> Vec<String> {
    let s = match &r.status {
        Ok(s) => s,
        Err(e) => {
            let mut cells = vec![r.endpoint.clone()];
            cells.extend(std::iter::repeat_n("-".to_string(), 8));
            cells.push(e.clone());
            return cells;
        }
    };
    let lag = leader_commit.map_or("?".into(), |c| {
        c.saturating_sub(s.raft_applied_index).to_string()
    });
    vec![
        r.endpoint.clone(),
        format!("{:x}", member_id(s)),
        s.version.clone(),
        (member_id(s) == s.leader).to_string(),
        s.raft_term.to_string(),
        s.raft_index.to_string(),
        s.raft_applied_index.to_string(),
        lag,
        human_bytes(s.db_size),
        s.errors.join("; "),
    ]
}

fn alarm_name(alarm: i32) -> &'static str {
    match alarm {
        1 => "NOSPACE",
        2 => "CORRUPT",
        _ => "NONE",
    }
}

fn human_bytes(n: i64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// Columns padded to their widest cell, separated by two spaces.
fn print_table(head: &[&str], body: &[Vec<String>]) {
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for row in body {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(head.to_vec());
    for row in body {
        line(row.iter().map(String::as_str).collect());
    }
}
