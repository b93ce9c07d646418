//! Forged and malformed peer frames sent over real sockets to running
//! members' peer ports. Each is refused before it reaches the Raft core and
//! counted in `/metrics`; the members keep serving (writes, fresh
//! serializable reads, `/livez`), keep their leader, and their data stays
//! intact and identical. etcd's peer handler likewise refuses senders that
//! are not members.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use concord_proto::concordpeer::Frame;
use concord_proto::peer::to_wire;
use concord_raft::{Body, ConfState, Entry, Message, SnapshotMeta};
use etcd_client::GetOptions;
use prost::Message as _;

/// The cluster id every response header carries.
fn cluster_id(addr: &str) -> u64 {
    let addr = addr.to_string();
    block_on_thread(async move {
        let mut c = client(&[addr]).await.expect("client");
        c.status()
            .await
            .expect("status")
            .header()
            .expect("header")
            .cluster_id()
    })
}

/// A Raft connection's bytes: the kind byte, then one length-prefixed frame.
fn raft_conn(cluster: u64, from: u64, messages: &[Message]) -> Vec<u8> {
    let frame = Frame {
        cluster_id: cluster,
        from,
        messages: messages.iter().map(to_wire).collect(),
    };
    let body = frame.encode_to_vec();
    let mut out = vec![1u8];
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Writes `bytes` to a peer port and waits briefly for the member to act
/// on them (or close the connection).
fn send(port: u16, bytes: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to peer port");
    s.write_all(bytes).expect("write");
    s.set_read_timeout(Some(Duration::from_millis(300))).ok();
    let mut sink = [0u8; 64];
    let _ = s.read(&mut sink);
}

fn msg(from: u64, to: u64, term: u64, body: Body) -> Message {
    Message {
        group: 1,
        from,
        to,
        term,
        body,
    }
}

/// `concord_peer_messages_refused_total{reason}` on a member.
fn refused(addr: &str, reason: &str) -> u64 {
    metric(
        addr,
        &format!("concord_peer_messages_refused_total{{reason=\"{reason}\"}} "),
    )
}

/// Role or leader changes a member has seen.
fn leader_changes(addr: &str) -> u64 {
    metric(addr, "concord_leader_changes_seen_total ")
}

/// The value of the metric line starting with `want` (0 if absent).
fn metric(addr: &str, want: &str) -> u64 {
    let (_, body) = http_get(addr, "/metrics").expect("metrics");
    body.lines()
        .find_map(|l| l.strip_prefix(want))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn put_and_read_back(addr: &str, key: &str, value: &str) {
    let (addr, key, value) = (addr.to_string(), key.to_string(), value.to_string());
    block_on_thread(async move {
        let mut c = client(std::slice::from_ref(&addr)).await.expect("client");
        c.put(key.as_str(), value.as_str(), None)
            .await
            .expect("put through the member");
        // Serializable: served from this member's own store, so frozen data
        // (a stalled driver) would show here.
        let got = c
            .get(key.as_str(), Some(GetOptions::new().with_serializable()))
            .await
            .expect("serializable get");
        assert_eq!(got.kvs()[0].value(), value.as_bytes(), "{addr}");
    });
}

fn hashes(addrs: &[String]) -> Vec<u32> {
    let addrs = addrs.to_vec();
    block_on_thread(async move {
        let mut out = Vec::new();
        for a in addrs {
            let mut c = client(&[a]).await.expect("client");
            out.push(c.hash_kv(0).await.expect("hashkv").hash());
        }
        out
    })
}

#[test]
fn forged_peer_frames_are_refused_and_members_keep_serving() {
    let mut c = Cluster::start(3);
    let l = c.leader(START_TIMEOUT);
    let f = (l + 1) % 3;
    let other = (l + 2) % 3;
    let addrs = c.addrs();
    for i in 0..20 {
        put_and_read_back(&addrs[l], &format!("before/{i}"), "x");
    }
    let cid = cluster_id(&addrs[f]);
    let st = c.nodes[f].status().expect("follower status");
    let (lid, fid, term) = (st.leader, st.id, st.term);
    let oid = c.nodes[other].status().expect("status").id;
    let (fport, lport) = (c.nodes[f].peer_port, c.nodes[l].peer_port);
    let hb = |from, to| msg(from, to, term, Body::Heartbeat { commit: 0, ctx: 0 });

    // (reason expected, target member index, connection bytes)
    let e = |t: u64, i: u64| Entry::normal(t, i, Bytes::from_static(b"forged"));
    let snapshot = Body::Snapshot {
        meta: SnapshotMeta {
            index: 1 << 30,
            term,
            conf_state: ConfState {
                voters: vec![lid, fid, oid],
                learners: vec![oid],
                ..Default::default()
            },
        },
        offset: 0,
        total: 4,
        data: Bytes::from_static(b"snap"),
    };
    let append = |entries: Vec<Entry>| {
        let body = Body::Append {
            index: 1,
            log_term: 1,
            entries,
            commit: 1 << 40,
        };
        msg(lid, fid, term, body)
    };
    let cases: Vec<(&str, usize, Vec<u8>)> = vec![
        // The report's frame: a made-up sender, one heartbeat, this term.
        ("not_member", f, raft_conn(cid, 0xbad, &[hb(0xbad, fid)])),
        // A member's own id as the sender.
        ("not_member", f, raft_conn(cid, fid, &[hb(fid, fid)])),
        ("other_cluster", f, raft_conn(cid ^ 1, lid, &[hb(lid, fid)])),
        // A real member that is not the leader claims to lead this term.
        ("second_leader", f, raft_conn(cid, oid, &[hb(oid, fid)])),
        (
            "bad_term",
            f,
            raft_conn(cid, lid, &[msg(lid, fid, 0, Body::TimeoutNow)]),
        ),
        // In the leader's name: entries with a gap, then with falling terms.
        (
            "bad_entries",
            f,
            raft_conn(cid, lid, &[append(vec![e(term, 2), e(term, 9)])]),
        ),
        (
            "bad_entries",
            f,
            raft_conn(cid, lid, &[append(vec![e(term, 2), e(1, 3)])]),
        ),
        (
            "bad_snapshot",
            f,
            raft_conn(cid, lid, &[msg(lid, fid, term, snapshot)]),
        ),
        // To the leader: an acknowledgement of entries it does not have.
        (
            "ack_beyond_log",
            l,
            raft_conn(
                cid,
                fid,
                &[msg(
                    fid,
                    lid,
                    term,
                    Body::AppendResponse {
                        index: 1 << 40,
                        reject: None,
                    },
                )],
            ),
        ),
        ("misaddressed", f, raft_conn(cid, lid, &[hb(lid, oid)])),
    ];
    let changes_before: Vec<u64> = addrs.iter().map(|a| leader_changes(a)).collect();
    for (reason, target, bytes) in &cases {
        let before = refused(&addrs[*target], reason);
        send(c.nodes[*target].peer_port, bytes);
        let counted = wait_until(Duration::from_secs(5), || {
            (refused(&addrs[*target], reason) > before).then_some(())
        });
        assert!(counted.is_some(), "{reason} not counted");
    }
    // Garbage: a frame that is not protobuf, and a length over the limit.
    let mut junk = vec![1u8];
    junk.extend_from_slice(&8u32.to_be_bytes());
    junk.extend_from_slice(&[0xff; 8]);
    send(fport, &junk);
    let mut huge = vec![1u8];
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    send(lport, &huge);

    // Every member still runs, answers /livez, serves writes and fresh
    // reads, and the leader and term did not change.
    for (i, a) in addrs.iter().enumerate() {
        assert!(c.nodes[i].running(), "member {i} exited");
        let (code, _) = http_get(a, "/livez").expect("livez");
        assert_eq!(code, 200);
        put_and_read_back(a, &format!("after/{i}"), "y");
    }
    let now = c.nodes[f].status().expect("status");
    assert_eq!((now.leader, now.term), (lid, term), "leadership disturbed");
    // Not even for a moment: a forged connection in the leader's name
    // closing must not read as the leader's process dying.
    let changes_after: Vec<u64> = addrs.iter().map(|a| leader_changes(a)).collect();
    assert_eq!(changes_after, changes_before, "a member lost its leader");
    // Data intact: what was written is there, and every member agrees.
    block_on_thread({
        let a = addrs[f].clone();
        async move {
            let mut cl = client(&[a]).await.expect("client");
            let r = cl
                .get(
                    "before/",
                    Some(GetOptions::new().with_prefix().with_serializable()),
                )
                .await
                .expect("get");
            assert_eq!(r.count(), 20);
        }
    });
    let agreed = wait_until(Duration::from_secs(5), || {
        let h = hashes(&addrs);
        h.windows(2).all(|w| w[0] == w[1]).then_some(h)
    });
    assert!(agreed.is_some(), "members' data differs");
}
