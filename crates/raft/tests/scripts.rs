//! Script-driven interaction tests: `tests/testdata/*.txt`.
//!
//! Each stanza is a command, `----`, and the expected trace. Run with
//! `REWRITE=1 cargo test -p concord-raft --test scripts` to rewrite the
//! expected output after an intended change (then read the diff!).
//! `RUN=name.txt` runs a single file. The commands are listed in
//! `tests/SCRIPTS.md`.

use std::collections::HashMap;

use bytes::Bytes;
use concord_raft::testkit::{describe, Cluster, Filter};
use concord_raft::{ConfChange, ConfChangeStep, Config, NodeId, ReadMode, Role};
use datadriven::TestCase;

fn main_ids(tc: &TestCase) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = tc
        .args
        .iter()
        .filter(|(_, v)| v.is_empty())
        .filter_map(|(k, _)| k.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

fn one_id(tc: &TestCase) -> NodeId {
    let ids = main_ids(tc);
    assert_eq!(ids.len(), 1, "{}: expected one node id", tc.directive);
    ids[0]
}

fn arg<T: std::str::FromStr>(args: &HashMap<String, Vec<String>>, key: &str) -> Option<T> {
    args.get(key).and_then(|v| v.first()).map(|s| {
        s.parse()
            .ok()
            .unwrap_or_else(|| panic!("bad value for {key}"))
    })
}

fn config(id: NodeId, args: &HashMap<String, Vec<String>>) -> Config {
    let mut c = Config::new(id, 1);
    c.election_tick = arg(args, "election").unwrap_or(10);
    c.heartbeat_tick = arg(args, "heartbeat").unwrap_or(1);
    c.pre_vote = arg(args, "pre-vote").unwrap_or(false);
    c.check_quorum = arg(args, "check-quorum").unwrap_or(false);
    c.max_size_per_msg = arg(args, "max-size").unwrap_or(c.max_size_per_msg);
    c.max_inflight_msgs = arg(args, "max-inflight").unwrap_or(c.max_inflight_msgs);
    c.snapshot_chunk_size = arg(args, "chunk").unwrap_or(c.snapshot_chunk_size);
    c.max_uncommitted_bytes = arg(args, "max-uncommitted").unwrap_or(c.max_uncommitted_bytes);
    c.disable_proposal_forwarding = !arg(args, "forwarding").unwrap_or(true);
    if arg(args, "lease").unwrap_or(false) {
        c.read_mode = ReadMode::LeaseBased;
        c.max_clock_drift_ticks = arg(args, "drift").unwrap_or(1);
    }
    c
}

fn parse_conf_change(input: &str) -> ConfChange {
    let mut cc = ConfChange::default();
    for word in input.split_whitespace() {
        let (kind, id) = word.split_at(1);
        match (kind, word) {
            (_, "joint") => cc.joint = true,
            (_, "leave-joint") => {}
            ("v", _) => cc
                .changes
                .push(ConfChangeStep::AddVoter(id.parse().expect("id"))),
            ("l", _) => cc
                .changes
                .push(ConfChangeStep::AddLearner(id.parse().expect("id"))),
            ("r", _) => cc
                .changes
                .push(ConfChangeStep::Remove(id.parse().expect("id"))),
            _ => panic!("bad conf change word {word}"),
        }
    }
    cc
}

fn status_line(c: &mut Cluster, id: NodeId) -> String {
    if c.crashed.contains_key(&id) {
        return format!("{id}: crashed");
    }
    let s = c.node(id).status();
    let cs = &s.conf_state;
    let mut line = format!(
        "{id}: {:?} term={} vote={} lead={} commit={} applied={} log={}..{} voters={:?}",
        s.role,
        s.hard_state.term,
        s.hard_state.vote,
        s.leader,
        s.hard_state.commit,
        s.applied,
        s.first_index,
        s.last_index,
        cs.voters
    );
    if !cs.voters_outgoing.is_empty() {
        line += &format!(" outgoing={:?}", cs.voters_outgoing);
    }
    if !cs.learners.is_empty() {
        line += &format!(" learners={:?}", cs.learners);
    }
    if !cs.learners_next.is_empty() {
        line += &format!(" learners_next={:?}", cs.learners_next);
    }
    line
}

fn result<E: std::fmt::Display>(r: Result<(), E>) -> String {
    match r {
        Ok(()) => String::new(),
        Err(e) => format!("error: {e}\n"),
    }
}

fn run(c: &mut Cluster, tc: &mut TestCase) -> String {
    let args = tc.args.clone();
    let mut out = String::new();
    match tc.directive.as_str() {
        "add-nodes" => {
            let n: u64 = arg(&args, "n").expect("n=");
            let ids: Vec<NodeId> = (1..=n).collect();
            c.bootstrap(&ids, |id| config(id, &args));
            return "ok\n".into();
        }
        "add-joiner" => {
            let id = one_id(tc);
            c.join(config(id, &args));
            return "ok\n".into();
        }
        "campaign" => c.node(one_id(tc)).campaign(),
        "tick" => {
            let n = arg(&args, "n").unwrap_or(1);
            for id in main_ids(tc) {
                c.tick(id, n);
            }
        }
        "propose" => {
            let data: String = arg(&args, "data").expect("data=");
            out += &result(c.node(one_id(tc)).propose(Bytes::from(data)));
        }
        "conf-change" => {
            let cc = parse_conf_change(&tc.input);
            out += &result(c.node(one_id(tc)).propose_conf_change(cc));
        }
        "read-index" => {
            let ctx: String = arg(&args, "ctx").expect("ctx=");
            out += &result(c.node(one_id(tc)).read_index(Bytes::from(ctx)));
        }
        "transfer-leader" => {
            let to: NodeId = arg(&args, "to").expect("to=");
            c.node(one_id(tc)).transfer_leader(to);
        }
        "compact" => {
            let id = one_id(tc);
            let applied = c.node(id).status().applied;
            out += &result(c.compact(id, applied));
        }
        "process-ready" => {
            for id in main_ids(tc) {
                c.handle_ready(id);
            }
        }
        "stabilize" => c.stabilize(&main_ids(tc)),
        "deliver" | "drop" => {
            let filter = Filter {
                from: arg(&args, "from"),
                to: arg(&args, "to"),
                drop: tc.directive == "drop",
            };
            let picked: Vec<String> = c
                .queue
                .iter()
                .filter(|m| {
                    filter.from.is_none_or(|f| f == m.from) && filter.to.is_none_or(|t| t == m.to)
                })
                .map(describe::message)
                .collect();
            if tc.directive == "deliver" {
                for p in picked {
                    c.trace.push(format!("  deliver {p}"));
                }
            }
            c.deliver(filter);
        }
        "queue" => {
            for m in &c.queue {
                out += &format!("{}\n", describe::message(m));
            }
        }
        "crash" => c.crash(one_id(tc)),
        "restart" => c.restart(one_id(tc)),
        "partition" => {
            let groups: Vec<Vec<NodeId>> = tc
                .input
                .lines()
                .map(|l| {
                    l.split_whitespace()
                        .map(|w| w.parse().expect("id"))
                        .collect()
                })
                .collect();
            c.partition(&groups);
        }
        "cut" => {
            let (from, to) = (
                arg(&args, "from").expect("from="),
                arg(&args, "to").expect("to="),
            );
            c.cut.insert((from, to));
        }
        "heal" => c.heal(),
        "status" => {
            let mut ids = main_ids(tc);
            if ids.is_empty() {
                ids = c.members.keys().chain(c.crashed.keys()).copied().collect();
                ids.sort_unstable();
            }
            for id in ids {
                out += &status_line(c, id);
                out.push('\n');
            }
        }
        "progress" => {
            for (id, p) in c.node(one_id(tc)).status().progress {
                let learner = if p.is_learner { " learner" } else { "" };
                out += &format!(
                    "{id}: {} match={} next={} inflight={}{learner}\n",
                    p.state, p.matched, p.next, p.inflight
                );
            }
        }
        "log" => {
            let id = one_id(tc);
            let m = &c.members[&id];
            let es: Vec<String> = m.storage.entries.iter().map(describe::entry).collect();
            out += &format!("{}\n", es.join("\n"));
        }
        "applied" => {
            let id = one_id(tc);
            let data: Vec<String> = c.members[&id]
                .storage
                .applied_data
                .iter()
                .map(|d| String::from_utf8_lossy(d).into_owned())
                .collect();
            out += &format!("{:?}\n", data);
        }
        "check-agreement" => {
            c.assert_state_machines_agree();
            out += "ok\n";
        }
        "lease" => {
            let id = one_id(tc);
            let n = c.node(id);
            out += &format!("lease_valid={} now={}\n", n.lease_valid(), n.now());
        }
        "role" => {
            let id = one_id(tc);
            let r = c.node(id).status().role;
            out += &format!(
                "{}\n",
                if r == Role::Leader {
                    "leader"
                } else {
                    "not leader"
                }
            );
        }
        other => panic!("unknown command {other}"),
    }
    let trace = c.take_trace();
    trace + &out
}

#[test]
fn scripts() {
    datadriven::walk("tests/testdata", |f| {
        let mut cluster = Cluster::new();
        f.run(|tc| run(&mut cluster, tc));
    });
}
