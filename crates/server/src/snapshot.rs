//! The Raft snapshot image: the member table and the MVCC store image.
//!
//! Layout: magic `CSNP`, version byte 1, 4-byte big-endian length of the
//! member table JSON, the JSON, then the MVCC image (which carries its own
//! checksum). Decoding refuses anything else.
//!
//! The server's other snapshot code sits under this module: the Raft
//! snapshots written in the background ([`snapshotter`]) and the bbolt
//! file `etcdctl snapshot save` receives ([`bolt`]).

pub(crate) mod bolt;
mod bolt_auth;
pub(crate) mod snapshotter;

use crate::members::MemberTable;

const MAGIC: &[u8; 4] = b"CSNP";
const VERSION: u8 = 1;

/// The start of a snapshot image: everything before the MVCC image.
pub fn head(members: &MemberTable) -> Vec<u8> {
    let table = members.encode();
    let mut out = Vec::with_capacity(9 + table.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&(table.len() as u32).to_be_bytes());
    out.extend_from_slice(&table);
    out
}

/// Encodes a snapshot image.
#[cfg(test)]
pub fn encode(members: &MemberTable, mvcc: &[u8]) -> Vec<u8> {
    let mut out = head(members);
    out.extend_from_slice(mvcc);
    out
}

/// The member table at the start of an image, from its first bytes
/// (`read(offset, len)` reads the image).
pub fn read_table(
    read: impl Fn(u64, u64) -> Result<Vec<u8>, String>,
) -> Result<MemberTable, String> {
    let start = read(0, 9)?;
    if start.len() < 9 || &start[..4] != MAGIC || start[4] != VERSION {
        return Err("snapshot image: bad magic or version".into());
    }
    let len = u32::from_be_bytes(start[5..9].try_into().expect("4 bytes")) as u64;
    let table = read(9, len)?;
    if table.len() as u64 != len {
        return Err("snapshot image: truncated member table".into());
    }
    MemberTable::decode(&table)
}

/// Splits a snapshot image into the member table and the MVCC image.
pub fn decode(buf: &[u8]) -> Result<(MemberTable, &[u8]), String> {
    if buf.len() < 9 || &buf[..4] != MAGIC {
        return Err("snapshot image: bad magic".into());
    }
    if buf[4] != VERSION {
        return Err(format!("snapshot image: unknown version {}", buf[4]));
    }
    let len = u32::from_be_bytes(buf[5..9].try_into().expect("4 bytes")) as usize;
    let table = buf
        .get(9..9 + len)
        .ok_or("snapshot image: truncated member table")?;
    Ok((MemberTable::decode(table)?, &buf[9 + len..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_refusals() {
        let t = MemberTable::bootstrap(&[("a".into(), vec!["http://h:1".into()])], "t");
        let img = encode(&t, b"mvcc");
        let (t2, m) = decode(&img).unwrap();
        assert_eq!((t2, m), (t.clone(), &b"mvcc"[..]));
        // The table alone, from the image's first bytes.
        let read = |o: u64, n: u64| Ok(img[o as usize..(o + n) as usize].to_vec());
        assert_eq!(read_table(read).unwrap(), t);
        assert!(decode(b"XXXX\x01\0\0\0\0").is_err());
        assert!(decode(&img[..12]).is_err());
        let mut bad = img.clone();
        bad[4] = 9;
        assert!(decode(&bad).is_err());
    }
}
