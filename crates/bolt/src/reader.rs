//! Reading a bbolt file back, with the integrity checks of bbolt's `tx.Check`
//! (which `etcdctl snapshot status` runs before trusting a file).
//!
//! Checked: meta magic, version and checksum (the valid meta with the higher
//! txid wins, as in bbolt); page ids below the high-water mark and inside the
//! file; every page header naming its own id; every page referenced at most
//! once; only branch and leaf pages inside trees; keys strictly increasing
//! across each bucket; each branch key no greater than its subtree's first
//! key; and every page either reachable or on the freelist (when the file
//! has a freelist page at all).

use crate::format::{
    le_u32, le_u64, Meta, PageHeader, BRANCH_PAGE, BUCKET_HEADER_SIZE, BUCKET_LEAF_FLAG,
    ELEMENT_SIZE, FREELIST_PAGE, LEAF_PAGE, META_PAGE, NO_FREELIST, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::{BoltError, Bucket};

/// Deeper trees than this mean a reference cycle, not a real file.
const MAX_DEPTH: usize = 64;

/// A leaf entry as found in a page: key, value and element flags.
type Entry<'a> = (&'a [u8], &'a [u8], u32);

/// Decodes and validates meta page `index` (0 or 1).
///
/// Meta 1 sits one page size into the file; the page size is taken from meta
/// 0 when that one is valid and is bbolt's default otherwise.
pub fn read_meta(bytes: &[u8], index: u64) -> Result<Meta, BoltError> {
    let page_size = match index {
        0 => 0,
        1 => read_meta(bytes, 0).map_or(PAGE_SIZE, |m| m.page_size as usize),
        _ => return Err(BoltError::InvalidMeta(format!("no meta page {index}"))),
    };
    let page = bytes
        .get(page_size..)
        .ok_or_else(|| BoltError::InvalidMeta("file too small".into()))?;
    let header =
        PageHeader::decode(page).map_err(|_| BoltError::InvalidMeta("file too small".into()))?;
    if header.flags & META_PAGE == 0 || header.id != index {
        return Err(BoltError::InvalidMeta(format!(
            "page {index} is not meta page {index}"
        )));
    }
    let meta = Meta::decode(&page[PAGE_HEADER_SIZE..])?;
    if !meta.page_size.is_power_of_two() || meta.page_size < 1024 {
        return Err(BoltError::InvalidMeta(format!(
            "bad page size {}",
            meta.page_size
        )));
    }
    Ok(meta)
}

/// The meta bbolt would use: of the two valid ones, the higher txid.
pub fn active_meta(bytes: &[u8]) -> Result<Meta, BoltError> {
    match (read_meta(bytes, 0), read_meta(bytes, 1)) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(m), Err(_)) | (Err(_), Ok(m)) => Ok(m),
        (Err(e0), Err(e1)) => Err(BoltError::NoValidMeta {
            meta0: e0.to_string(),
            meta1: e1.to_string(),
        }),
    }
}

/// Reads a bbolt file: picks the meta, verifies the file's integrity and
/// returns its top-level buckets in name order (their items in key order).
/// Nested buckets are not supported (etcd does not use them).
pub fn read_db(bytes: &[u8]) -> Result<Vec<Bucket>, BoltError> {
    let meta = active_meta(bytes)?;
    let page_size = meta.page_size as usize;
    let needed = usize::try_from(meta.pgid)
        .ok()
        .and_then(|p| p.checked_mul(page_size))
        .ok_or_else(|| corrupt(format!("absurd high-water mark {}", meta.pgid)))?;
    if bytes.len() < needed {
        return Err(corrupt(format!(
            "file is {} bytes but the meta claims {} pages of {page_size}",
            bytes.len(),
            meta.pgid
        )));
    }
    let mut walker = Walker {
        bytes,
        page_size,
        reachable: vec![false; meta.pgid as usize],
    };
    walker.mark(0, 0)?;
    walker.mark(1, 0)?;
    // Without a synced freelist (etcd opens bbolt with NoFreelistSync),
    // bbolt treats every page the trees do not reach as free.
    let freed = match meta.freelist {
        NO_FREELIST => None,
        id => Some(walker.freelist(id)?),
    };

    let mut names = Vec::new();
    walker.walk(meta.root, 0, &mut names)?;
    check_order(&names, "root bucket")?;
    let mut buckets = Vec::with_capacity(names.len());
    for (name, value, flags) in names {
        let shown = String::from_utf8_lossy(name).into_owned();
        if flags & BUCKET_LEAF_FLAG == 0 {
            return Err(corrupt(format!(
                "root bucket entry {shown:?} is not a bucket"
            )));
        }
        if value.len() < BUCKET_HEADER_SIZE {
            return Err(corrupt(format!("bucket {shown:?}: short bucket header")));
        }
        let mut items = Vec::new();
        match le_u64(value, 0) {
            // Inline bucket: its leaf page follows the header inside the value.
            0 => {
                let page = &value[BUCKET_HEADER_SIZE..];
                let header = PageHeader::decode(page)?;
                if header.flags & LEAF_PAGE == 0 {
                    return Err(corrupt(format!(
                        "bucket {shown:?}: inline page is not a leaf"
                    )));
                }
                leaf_entries(page, header.count, &mut items)?;
            }
            root => walker.walk(root, 0, &mut items)?,
        }
        check_order(&items, &shown)?;
        if items.iter().any(|(_, _, f)| f & BUCKET_LEAF_FLAG != 0) {
            return Err(BoltError::NestedBucket(shown));
        }
        buckets.push(Bucket {
            name: name.to_vec(),
            items: items
                .into_iter()
                .map(|(k, v, _)| (k.to_vec(), v.to_vec()))
                .collect(),
        });
    }

    let Some(freed) = freed else {
        return Ok(buckets);
    };
    let mut is_free = vec![false; walker.reachable.len()];
    for id in freed {
        match is_free.get_mut(id as usize) {
            Some(f) => *f = true,
            None => {
                return Err(corrupt(format!(
                    "freelist names page {id} beyond the high-water mark"
                )))
            }
        }
    }
    for (id, (&reached, &free)) in walker.reachable.iter().zip(&is_free).enumerate() {
        if reached && free {
            return Err(corrupt(format!("page {id}: reachable freed")));
        }
        if !reached && !free {
            return Err(corrupt(format!("page {id}: unreachable unfreed")));
        }
    }
    Ok(buckets)
}

fn corrupt(msg: String) -> BoltError {
    BoltError::Corrupt(msg)
}

/// Keys of one bucket must strictly increase (bbolt's cursor relies on it).
fn check_order(entries: &[Entry<'_>], what: &str) -> Result<(), BoltError> {
    for (i, pair) in entries.windows(2).enumerate() {
        if pair[0].0 >= pair[1].0 {
            return Err(corrupt(format!(
                "{what}: keys out of order at index {}",
                i + 1
            )));
        }
    }
    Ok(())
}

/// Walks page trees, recording which pages it has seen.
#[derive(Debug)]
struct Walker<'a> {
    bytes: &'a [u8],
    page_size: usize,
    /// Indexed by page id, up to the high-water mark.
    reachable: Vec<bool>,
}

impl<'a> Walker<'a> {
    /// Marks `id ..= id + overflow` as used; a page used twice is corruption.
    fn mark(&mut self, id: u64, overflow: u32) -> Result<(), BoltError> {
        for p in id..=id + u64::from(overflow) {
            match self.reachable.get_mut(p as usize) {
                None => return Err(corrupt(format!("page {p}: beyond the high-water mark"))),
                Some(true) => return Err(corrupt(format!("page {p}: multiple references"))),
                Some(seen) => *seen = true,
            }
        }
        Ok(())
    }

    /// Returns the header and bytes (overflow pages included) of the node at `id`.
    fn node(&mut self, id: u64) -> Result<(PageHeader, &'a [u8]), BoltError> {
        let start = (id as usize)
            .checked_mul(self.page_size)
            .filter(|_| (id as usize) < self.reachable.len())
            .ok_or_else(|| corrupt(format!("page {id}: beyond the high-water mark")))?;
        let header = PageHeader::decode(&self.bytes[start..])?;
        if header.id != id {
            return Err(corrupt(format!(
                "page {id}: header says page {}",
                header.id
            )));
        }
        self.mark(id, header.overflow)?;
        let end = start + (header.overflow as usize + 1) * self.page_size;
        Ok((header, &self.bytes[start..end]))
    }

    /// Reads the freelist page: the ids it lists as free.
    fn freelist(&mut self, id: u64) -> Result<Vec<u64>, BoltError> {
        let (header, page) = self.node(id)?;
        if header.flags & FREELIST_PAGE == 0 {
            return Err(corrupt(format!("page {id}: expected a freelist page")));
        }
        // A count of 0xFFFF means the real count is in the first u64.
        let (count, start) = if header.count == u16::MAX {
            (
                le_u64(page, PAGE_HEADER_SIZE) as usize,
                PAGE_HEADER_SIZE + 8,
            )
        } else {
            (header.count as usize, PAGE_HEADER_SIZE)
        };
        if count > (page.len() - start) / 8 {
            return Err(corrupt(format!(
                "page {id}: freelist count {count} overflows the page"
            )));
        }
        let ids: Vec<u64> = (0..count).map(|i| le_u64(page, start + i * 8)).collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        if sorted.windows(2).any(|w| w[0] == w[1]) {
            return Err(corrupt("freelist lists a page twice".into()));
        }
        Ok(ids)
    }

    /// Appends every leaf entry of the subtree at `id` to `out`, in order.
    fn walk(&mut self, id: u64, depth: usize, out: &mut Vec<Entry<'a>>) -> Result<(), BoltError> {
        if depth > MAX_DEPTH {
            return Err(corrupt(format!("page {id}: tree deeper than {MAX_DEPTH}")));
        }
        let (header, page) = self.node(id)?;
        if header.flags & LEAF_PAGE != 0 {
            return leaf_entries(page, header.count, out);
        }
        if header.flags & BRANCH_PAGE == 0 {
            return Err(corrupt(format!(
                "page {id}: invalid type {:#x}",
                header.flags
            )));
        }
        for i in 0..header.count as usize {
            let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
            let elem = page
                .get(at..at + ELEMENT_SIZE)
                .ok_or_else(|| corrupt(format!("page {id}: element {i} outside the page")))?;
            let (pos, ksize) = (le_u32(elem, 0) as usize, le_u32(elem, 4) as usize);
            let key = slice(page, at + pos, ksize, id)?;
            let before = out.len();
            self.walk(le_u64(elem, 8), depth + 1, out)?;
            if let Some(first) = out.get(before) {
                if first.0 < key {
                    return Err(corrupt(format!(
                        "page {id}: branch key above its child's keys"
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Appends the `count` entries of a leaf page (`page` starts at its header).
fn leaf_entries<'a>(page: &'a [u8], count: u16, out: &mut Vec<Entry<'a>>) -> Result<(), BoltError> {
    let id = le_u64(page, 0);
    for i in 0..count as usize {
        let at = PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        let elem = page
            .get(at..at + ELEMENT_SIZE)
            .ok_or_else(|| corrupt(format!("page {id}: element {i} outside the page")))?;
        let flags = le_u32(elem, 0);
        let pos = le_u32(elem, 4) as usize;
        let (ksize, vsize) = (le_u32(elem, 8) as usize, le_u32(elem, 12) as usize);
        let key = slice(page, at + pos, ksize, id)?;
        let value = slice(page, at + pos + ksize, vsize, id)?;
        out.push((key, value, flags));
    }
    Ok(())
}

/// `page[start .. start + len]`, or a corruption error naming the page.
fn slice(page: &[u8], start: usize, len: usize, id: u64) -> Result<&[u8], BoltError> {
    start
        .checked_add(len)
        .and_then(|end| page.get(start..end))
        .ok_or_else(|| corrupt(format!("page {id}: key or value outside the page")))
}
