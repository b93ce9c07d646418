//! The on-disk constants and fixed-size records of the bbolt file format.
//!
//! Everything is little-endian and packed exactly as bbolt's Go structs are
//! laid out on the 64-bit platforms etcd runs on:
//!
//! - page header (16 bytes): `id u64, flags u16, count u16, overflow u32`;
//!   a node spanning `overflow + 1` contiguous pages carries one header, on
//!   its first page;
//! - meta (64 bytes, right after the header of pages 0 and 1): `magic u32,
//!   version u32, page_size u32, flags u32, root {pgid u64, sequence u64},
//!   freelist u64, pgid u64, txid u64, checksum u64`, the checksum being
//!   FNV-1a 64 over the 56 bytes before it;
//! - leaf element (16 bytes): `flags u32, pos u32, ksize u32, vsize u32`,
//!   `pos` counted from the element's own first byte to its key, the value
//!   following the key directly;
//! - branch element (16 bytes): `pos u32, ksize u32, pgid u64`;
//! - bucket header (16 bytes, the value of a bucket's entry in its parent):
//!   `root pgid u64, sequence u64`; `root == 0` means the bucket is inline
//!   and a leaf page (header + elements, no padding) follows the header.

use crate::BoltError;

/// The page size Concord writes (bbolt's default on the platforms etcd runs on).
pub const PAGE_SIZE: usize = 4096;
/// Size of a page header.
pub const PAGE_HEADER_SIZE: usize = 16;
/// Size of one leaf or branch element header.
pub const ELEMENT_SIZE: usize = 16;
/// Size of a bucket header (root pgid + sequence).
pub const BUCKET_HEADER_SIZE: usize = 16;
/// Magic number identifying a bbolt meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
/// The bbolt data file format version.
pub const VERSION: u32 = 2;
/// Page flag: branch page.
pub const BRANCH_PAGE: u16 = 0x01;
/// Page flag: leaf page.
pub const LEAF_PAGE: u16 = 0x02;
/// Page flag: meta page.
pub const META_PAGE: u16 = 0x04;
/// Page flag: freelist page.
pub const FREELIST_PAGE: u16 = 0x10;
/// Leaf element flag: the value is a bucket header (a sub-bucket).
pub const BUCKET_LEAF_FLAG: u32 = 0x01;
/// bbolt refuses keys longer than this.
pub const MAX_KEY_SIZE: usize = 32768;
/// bbolt refuses values longer than this.
pub const MAX_VALUE_SIZE: usize = (1 << 31) - 2;
/// bbolt keeps a bucket inline in its parent while its leaf is at most this big.
pub const MAX_INLINE_BUCKET_SIZE: usize = PAGE_SIZE / 4;
/// Size of the meta record (checksum included).
pub const META_SIZE: usize = 64;
/// Offset of the checksum inside the meta record.
const META_CHECKSUM_OFFSET: usize = 56;
/// bbolt's "no freelist page" marker for `Meta::freelist`.
pub const NO_FREELIST: u64 = u64::MAX;

/// FNV-1a 64-bit, the hash bbolt checksums meta pages with.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// A decoded page header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// The page's own id (its offset in the file divided by the page size).
    pub id: u64,
    /// Page type flags.
    pub flags: u16,
    /// Number of elements on the page.
    pub count: u16,
    /// Number of extra contiguous pages the node spills into.
    pub overflow: u32,
}

impl PageHeader {
    /// Encodes the header into the first 16 bytes of `buf`.
    pub fn encode(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.id.to_le_bytes());
        buf[8..10].copy_from_slice(&self.flags.to_le_bytes());
        buf[10..12].copy_from_slice(&self.count.to_le_bytes());
        buf[12..16].copy_from_slice(&self.overflow.to_le_bytes());
    }

    /// Decodes the header from the first 16 bytes of `buf`.
    pub fn decode(buf: &[u8]) -> Result<Self, BoltError> {
        if buf.len() < PAGE_HEADER_SIZE {
            return Err(BoltError::Corrupt("truncated page header".into()));
        }
        Ok(Self {
            id: le_u64(buf, 0),
            flags: u16::from_le_bytes([buf[8], buf[9]]),
            count: u16::from_le_bytes([buf[10], buf[11]]),
            overflow: le_u32(buf, 12),
        })
    }
}

/// A bbolt meta record: where the tree and freelist are, and how big the file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    /// Page size the file was written with.
    pub page_size: u32,
    /// Database flags (always 0).
    pub flags: u32,
    /// Root page of the root bucket (which holds the top-level buckets).
    pub root: u64,
    /// The root bucket's sequence number.
    pub sequence: u64,
    /// Page id of the freelist, or [`NO_FREELIST`].
    pub freelist: u64,
    /// High-water mark: number of pages in use (the file holds at least this many).
    pub pgid: u64,
    /// Transaction id; of two valid metas the one with the higher txid wins.
    pub txid: u64,
}

impl Meta {
    /// Encodes the meta record with its checksum (64 bytes).
    pub fn encode(&self) -> [u8; META_SIZE] {
        let mut buf = [0u8; META_SIZE];
        buf[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        buf[4..8].copy_from_slice(&VERSION.to_le_bytes());
        buf[8..12].copy_from_slice(&self.page_size.to_le_bytes());
        buf[12..16].copy_from_slice(&self.flags.to_le_bytes());
        buf[16..24].copy_from_slice(&self.root.to_le_bytes());
        buf[24..32].copy_from_slice(&self.sequence.to_le_bytes());
        buf[32..40].copy_from_slice(&self.freelist.to_le_bytes());
        buf[40..48].copy_from_slice(&self.pgid.to_le_bytes());
        buf[48..56].copy_from_slice(&self.txid.to_le_bytes());
        let sum = fnv1a64(&buf[..META_CHECKSUM_OFFSET]);
        buf[META_CHECKSUM_OFFSET..].copy_from_slice(&sum.to_le_bytes());
        buf
    }

    /// Decodes and validates (magic, version, checksum) a meta record.
    pub fn decode(buf: &[u8]) -> Result<Self, BoltError> {
        if buf.len() < META_SIZE {
            return Err(BoltError::InvalidMeta("truncated".into()));
        }
        let magic = le_u32(buf, 0);
        if magic != MAGIC {
            return Err(BoltError::InvalidMeta(format!("bad magic {magic:#x}")));
        }
        let version = le_u32(buf, 4);
        if version != VERSION {
            return Err(BoltError::InvalidMeta(format!(
                "unsupported version {version}"
            )));
        }
        let stored = le_u64(buf, META_CHECKSUM_OFFSET);
        let computed = fnv1a64(&buf[..META_CHECKSUM_OFFSET]);
        if stored != computed {
            return Err(BoltError::InvalidMeta(format!(
                "checksum mismatch: stored {stored:#x}, computed {computed:#x}"
            )));
        }
        Ok(Self {
            page_size: le_u32(buf, 8),
            flags: le_u32(buf, 12),
            root: le_u64(buf, 16),
            sequence: le_u64(buf, 24),
            freelist: le_u64(buf, 32),
            pgid: le_u64(buf, 40),
            txid: le_u64(buf, 48),
        })
    }
}

/// Reads a little-endian u32 at `off` (caller checked the bounds).
pub fn le_u32(buf: &[u8], off: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[off..off + 4]);
    u32::from_le_bytes(b)
}

/// Reads a little-endian u64 at `off` (caller checked the bounds).
pub fn le_u64(buf: &[u8], off: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[off..off + 8]);
    u64::from_le_bytes(b)
}

/// Encodes a bucket header (the value stored under a bucket's name).
pub fn bucket_header(root: u64, sequence: u64) -> [u8; BUCKET_HEADER_SIZE] {
    let mut buf = [0u8; BUCKET_HEADER_SIZE];
    buf[0..8].copy_from_slice(&root.to_le_bytes());
    buf[8..16].copy_from_slice(&sequence.to_le_bytes());
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_known_vectors() {
        // Reference values of FNV-1a 64.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn meta_round_trip_and_checksum() {
        let m = Meta {
            page_size: 4096,
            flags: 0,
            root: 3,
            sequence: 0,
            freelist: 2,
            pgid: 4,
            txid: 1,
        };
        let mut buf = m.encode();
        assert_eq!(Meta::decode(&buf).unwrap(), m);
        buf[20] ^= 1;
        assert!(matches!(Meta::decode(&buf), Err(BoltError::InvalidMeta(_))));
    }
}
