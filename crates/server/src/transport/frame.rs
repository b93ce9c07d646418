//! Peer frames on the wire: a 4-byte big-endian length, then a protobuf
//! `Frame` (cluster id, sender, a batch of Raft messages).
//!
//! Both ends keep the same bound: a receiver refuses a frame over
//! [`MAX_FRAME_BYTES`] from its length alone, and a sender never builds one
//! that large. It cuts batches into frames of at most [`FRAME_BYTES`]
//! (and [`MAX_MESSAGES_PER_FRAME`] messages), and drops, with an error, a
//! single message too large for any frame (none is: appends, proposals,
//! snapshot chunks and checkpoints are each bounded well below it), rather
//! than send what the peer would refuse, closing the connection, on every
//! retry.

use bytes::{Buf, Bytes, BytesMut};
use concord_proto::concordpeer::{Frame, RaftMessage};
use concord_proto::peer::to_wire;
use concord_raft::Message;
use prost::Message as _;

/// Largest frame accepted from a peer.
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of messages a sender puts in one frame.
pub const FRAME_BYTES: usize = 8 * 1024 * 1024;
/// Most messages in one frame.
pub const MAX_MESSAGES_PER_FRAME: usize = 4096;
/// Most bytes reserved at once for a frame being received: the buffer
/// grows with what arrives, not with what a length prefix announces.
const RESERVE_STEP: usize = 1024 * 1024;

/// Appends one frame (4-byte big-endian length, then the protobuf `Frame`).
pub(crate) fn encode_frame(
    buf: &mut Vec<u8>,
    cluster_id: u64,
    me: u64,
    messages: Vec<RaftMessage>,
) {
    let frame = Frame {
        cluster_id,
        from: me,
        messages,
    };
    buf.extend_from_slice(&(frame.encoded_len() as u32).to_be_bytes());
    frame.encode(buf).expect("vec has room");
}

/// Cuts `msgs` into frames' worth of wire messages (at most
/// [`FRAME_BYTES`] and [`MAX_MESSAGES_PER_FRAME`] each). A message too
/// large for any frame is dropped and counted in the second value.
pub(crate) fn batches(msgs: impl IntoIterator<Item = Message>) -> (Vec<Vec<RaftMessage>>, usize) {
    let mut out: Vec<Vec<RaftMessage>> = Vec::new();
    let (mut bytes, mut dropped) = (0, 0);
    for m in msgs {
        let w = to_wire(&m);
        // The field tag and length prefix: at most 11 bytes.
        let size = w.encoded_len() + 11;
        if size > MAX_FRAME_BYTES - 64 {
            tracing::error!(
                to = m.to,
                kind = m.body.name(),
                size,
                "peer message too large for a frame; dropped"
            );
            dropped += 1;
            continue;
        }
        let full = out.last().is_none_or(|b| {
            b.len() >= MAX_MESSAGES_PER_FRAME || (bytes + size > FRAME_BYTES && !b.is_empty())
        });
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        out.last_mut().expect("just pushed").push(w);
    }
    (out, dropped)
}

/// Splits one whole frame off the front of `buf`, if one is there.
pub(crate) fn take_frame(buf: &mut BytesMut) -> Result<Option<Frame>, String> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes(buf[..4].try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(format!("frame of {len} bytes is over the limit"));
    }
    if buf.len() < 4 + len {
        buf.reserve((4 + len - buf.len()).min(RESERVE_STEP));
        return Ok(None);
    }
    buf.advance(4);
    let body: Bytes = buf.split_to(len).freeze();
    Frame::decode(body).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use concord_raft::{Body, Entry};

    fn append(to: u64, bytes: usize) -> Message {
        Message {
            group: 1,
            from: 1,
            to,
            term: 2,
            body: Body::Append {
                index: 1,
                log_term: 1,
                entries: vec![Entry::normal(2, 2, Bytes::from(vec![7u8; bytes]))],
                commit: 1,
            },
        }
    }

    #[test]
    fn batches_stay_under_the_frame_bound_and_keep_order() {
        let msgs: Vec<Message> = (0..40).map(|i| append(i, 1 << 20)).collect();
        let (frames, dropped) = batches(msgs);
        assert_eq!(dropped, 0);
        assert!(frames.len() >= 5, "{} frames", frames.len());
        let mut seen = Vec::new();
        for f in &frames {
            let mut buf = Vec::new();
            encode_frame(&mut buf, 9, 1, f.clone());
            assert!(buf.len() <= FRAME_BYTES + (1 << 20) + 64, "{}", buf.len());
            seen.extend(f.iter().map(|m| m.to));
        }
        assert_eq!(seen, (0..40).collect::<Vec<_>>());
        let many: Vec<Message> = (0..10_000).map(|i| append(i, 1)).collect();
        let (frames, _) = batches(many);
        assert!(frames.iter().all(|f| f.len() <= MAX_MESSAGES_PER_FRAME));
        assert_eq!(frames.iter().map(Vec::len).sum::<usize>(), 10_000);
    }

    #[test]
    fn a_message_no_frame_can_hold_is_dropped_not_sent() {
        let (frames, dropped) = batches([append(1, 10), append(2, MAX_FRAME_BYTES), append(3, 10)]);
        assert_eq!(dropped, 1);
        let to: Vec<u64> = frames.iter().flatten().map(|m| m.to).collect();
        assert_eq!(to, [1, 3]);
    }

    #[test]
    fn a_length_prefix_does_not_reserve_what_it_announces() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&(60u32 << 20).to_be_bytes());
        buf.extend_from_slice(&[0; 10]);
        assert!(take_frame(&mut buf).unwrap().is_none());
        assert!(
            buf.capacity() <= 4 + 10 + RESERVE_STEP + 64,
            "{}",
            buf.capacity()
        );
    }
}
