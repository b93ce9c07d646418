//! A snapshot whose image the application keeps (a file, in the server):
//! the core sends InstallSnapshot chunks with empty data and the image's
//! length as their total, the application fills each chunk, and a lagging
//! follower installs exactly the image.

use bytes::Bytes;
use concord_raft::testkit::{Cluster, Filter};
use concord_raft::{Body, Config, NodeId};

fn cfg(id: NodeId) -> Config {
    let mut c = Config::new(id, 1);
    c.snapshot_chunk_size = 7;
    c
}

#[test]
fn chunks_of_an_external_image_are_filled_by_the_application() {
    let mut c = Cluster::new();
    c.bootstrap(&[1, 2, 3], cfg);
    c.stabilize(&[]);
    c.node(1).campaign();
    c.stabilize(&[]);
    c.partition(&[vec![1, 2], vec![3]]);
    for i in 0..5 {
        c.node(1).propose(Bytes::from(format!("e{i}"))).unwrap();
        c.stabilize(&[1, 2]);
    }
    let applied = c.members[&1].storage.applied;
    // The image lives with the application; the core knows its length.
    let image = c.members[&1].storage.state_image();
    let meta = c
        .node(1)
        .compact_external(applied, image.len() as u64)
        .unwrap();
    c.members
        .get_mut(&1)
        .unwrap()
        .storage
        .compact(concord_raft::Snapshot {
            meta,
            data: image.clone(),
        });
    // What the partition held back is lost: node 3 needs the snapshot.
    c.queue.retain(|m| m.to != 3);
    c.heal();
    let mut chunks = 0;
    let mut restarted = false;
    for _ in 0..400 {
        c.tick(1, 1);
        for id in [1, 2, 3] {
            while c.handle_ready(id) {}
        }
        // Once, the application cannot read the image: it drops the
        // chunk and says so; the transfer starts over from offset 0.
        let second = c
            .queue
            .iter()
            .position(|m| matches!(m.body, Body::Snapshot { offset: 7, .. }));
        if let (Some(i), false) = (second, restarted) {
            c.queue.remove(i);
            c.node(1).report_snapshot_unavailable(3);
            restarted = true;
        }
        for m in c.queue.iter_mut() {
            if let Body::Snapshot {
                offset,
                total,
                data,
                ..
            } = &mut m.body
            {
                assert!(data.is_empty(), "the core never holds the image");
                assert_eq!(*total, image.len() as u64);
                let end = (*offset + 7).min(*total) as usize;
                *data = image.slice(*offset as usize..end);
                chunks += 1;
            }
        }
        c.deliver(Filter::default());
        if c.members[&3].storage.applied >= applied {
            break;
        }
    }
    assert!(restarted);
    assert!(chunks > image.len() / 7, "sent in chunks: {chunks}");
    assert_eq!(c.members[&3].storage.snapshot.as_ref().unwrap().data, image);
    c.node(1).propose(Bytes::from_static(b"after")).unwrap();
    c.stabilize(&[]);
    c.assert_state_machines_agree();
}
