//! gRPC's message framing over HTTP/2, for the code that speaks it without
//! tonic's codec (the server's KV fast path, the load generator's unary
//! calls, tests that send hand-made frames).

use bytes::{BufMut, Bytes, BytesMut};

/// Length of the frame header: a compressed flag, then a big-endian u32
/// length.
pub const HEADER_LEN: usize = 5;

/// `msg` as one uncompressed gRPC frame.
pub fn encode(msg: &impl prost::Message) -> Bytes {
    let len = msg.encoded_len();
    let mut buf = BytesMut::with_capacity(HEADER_LEN + len);
    buf.put_u8(0);
    buf.put_u32(u32::try_from(len).expect("a message under 4 GiB"));
    msg.encode(&mut buf)
        .expect("the buffer was sized for the message");
    buf.freeze()
}

/// A `grpc-message` value decoded (gRPC percent-encodes it); a `%` not
/// followed by two hex digits stays as it is.
pub fn percent_decode(s: &[u8]) -> String {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let hex = s
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (s[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etcdserverpb::PutRequest;
    use prost::Message as _;

    #[test]
    fn a_frame_is_flag_length_message() {
        let req = PutRequest {
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"value"),
            ..Default::default()
        };
        let frame = encode(&req);
        assert_eq!(frame[0], 0);
        let len = u32::from_be_bytes(frame[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - HEADER_LEN);
        assert_eq!(PutRequest::decode(&frame[HEADER_LEN..]).unwrap(), req);
    }

    #[test]
    fn percent_decoding_keeps_stray_percents() {
        assert_eq!(percent_decode(b"a%20b"), "a b");
        assert_eq!(percent_decode(b"100%"), "100%");
        assert_eq!(percent_decode(b"%zz"), "%zz");
        assert_eq!(percent_decode(b"%E2%9C%93"), "\u{2713}");
    }
}
