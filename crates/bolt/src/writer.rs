//! Writing a whole bbolt file in one pass.
//!
//! File layout (page ids):
//!
//! | page            | contents                                                        |
//! |-----------------|-----------------------------------------------------------------|
//! | 0, 1            | meta pages, identical but for their txid (0 and 1)              |
//! | 2               | the freelist, empty (every page is in use)                      |
//! | 3 ..            | each non-inline bucket's tree, buckets in name order            |
//! | .. pgid - 1     | the root bucket's tree, whose leaves map names to bucket headers |
//!
//! Everything is planned (node boundaries and page ids) before the first
//! byte is written, because the meta pages at the front must name the root
//! page and the high-water mark; after that each page is written exactly
//! once, in id order, so the output can be a socket or a pipe. The file is
//! exactly `pgid * PAGE_SIZE` bytes, which is what bbolt reports as its size.

use std::io::Write;

use crate::format::{
    bucket_header, Meta, PageHeader, BUCKET_LEAF_FLAG, FREELIST_PAGE, MAX_INLINE_BUCKET_SIZE,
    MAX_KEY_SIZE, MAX_VALUE_SIZE, META_PAGE, META_SIZE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use crate::tree::{encode_leaf, Elem, Tree};
use crate::{BoltError, Bucket};

/// Page id of the (always empty) freelist page.
const FREELIST_PGID: u64 = 2;
/// First page id available to bucket trees.
pub(crate) const FIRST_DATA_PGID: u64 = 3;

/// How one bucket is stored.
#[derive(Debug)]
struct BucketPlan<'a> {
    elems: Vec<Elem<'a>>,
    /// `None` when the bucket is inline in the root bucket's leaf.
    tree: Option<Tree>,
}

/// The complete plan of a file: buckets in name order, their entries in the
/// root bucket, and the total page count.
#[derive(Debug)]
struct Plan<'a> {
    buckets: Vec<BucketPlan<'a>>,
    names: Vec<&'a [u8]>,
    /// The value stored under each bucket's name in the root bucket.
    headers: Vec<Vec<u8>>,
    next_pgid: u64,
}

/// Checks what bbolt itself would refuse, so a file we write never holds
/// something bbolt could not have written.
fn validate(buckets: &[Bucket]) -> Result<Vec<&Bucket>, BoltError> {
    let mut sorted: Vec<&Bucket> = buckets.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    for pair in sorted.windows(2) {
        if pair[0].name == pair[1].name {
            return Err(BoltError::DuplicateBucket(show(&pair[0].name)));
        }
    }
    for b in &sorted {
        if b.name.is_empty() {
            return Err(BoltError::EmptyName);
        }
        if b.name.len() > MAX_KEY_SIZE {
            return Err(BoltError::KeyTooLarge {
                bucket: show(&b.name),
                len: b.name.len(),
            });
        }
        for (index, (key, value)) in b.items.iter().enumerate() {
            if key.is_empty() {
                return Err(BoltError::EmptyKey {
                    bucket: show(&b.name),
                    index,
                });
            }
            if key.len() > MAX_KEY_SIZE {
                return Err(BoltError::KeyTooLarge {
                    bucket: show(&b.name),
                    len: key.len(),
                });
            }
            if value.len() > MAX_VALUE_SIZE {
                return Err(BoltError::ValueTooLarge {
                    bucket: show(&b.name),
                    len: value.len(),
                });
            }
            if index > 0 && b.items[index - 1].0 >= *key {
                return Err(BoltError::UnsortedKeys {
                    bucket: show(&b.name),
                    index,
                });
            }
        }
    }
    Ok(sorted)
}

/// Renders a bucket name for error messages.
fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

impl<'a> Plan<'a> {
    fn new(buckets: &'a [Bucket], first_pgid: u64) -> Result<Self, BoltError> {
        let sorted = validate(buckets)?;
        let mut next_pgid = first_pgid;
        let mut plans = Vec::with_capacity(sorted.len());
        let mut headers = Vec::with_capacity(sorted.len());
        for b in &sorted {
            let elems: Vec<Elem<'a>> = b
                .items
                .iter()
                .map(|(k, v)| Elem {
                    key: k,
                    value: v,
                    flags: 0,
                })
                .collect();
            let leaf_size = PAGE_HEADER_SIZE + elems.iter().map(Elem::leaf_size).sum::<usize>();
            // Like bbolt, small buckets (empty ones included) live inline in
            // their parent's leaf: root pgid 0, then the leaf page itself.
            if leaf_size <= MAX_INLINE_BUCKET_SIZE {
                let mut value = bucket_header(0, 0).to_vec();
                encode_leaf(&elems, 0, &mut value);
                headers.push(value);
                plans.push(BucketPlan { elems, tree: None });
            } else {
                let tree = Tree::plan(&elems, next_pgid);
                next_pgid += tree.pages();
                headers.push(bucket_header(tree.root(), 0).to_vec());
                plans.push(BucketPlan {
                    elems,
                    tree: Some(tree),
                });
            }
        }
        Ok(Plan {
            buckets: plans,
            names: sorted.iter().map(|b| b.name.as_slice()).collect(),
            headers,
            next_pgid,
        })
    }

    /// The root bucket's entries: every bucket name (and those of
    /// `extra`, written elsewhere), flagged as a bucket, in name order.
    fn root_elems<'b>(&'b self, extra: &'b [(Vec<u8>, Vec<u8>)]) -> Vec<Elem<'b>> {
        let mut elems: Vec<Elem<'b>> = self
            .names
            .iter()
            .zip(&self.headers)
            .map(|(name, header)| Elem {
                key: name,
                value: header,
                flags: BUCKET_LEAF_FLAG,
            })
            .chain(extra.iter().map(|(name, header)| Elem {
                key: name,
                value: header,
                flags: BUCKET_LEAF_FLAG,
            }))
            .collect();
        elems.sort_by(|a, b| a.key.cmp(b.key));
        elems
    }
}

/// The three pages at the front of a file: two meta pages naming the root
/// bucket's page and the high-water mark `pgid`, and the empty freelist.
pub(crate) fn front_pages(root: u64, pgid: u64) -> Vec<u8> {
    let mut out = vec![0u8; 3 * PAGE_SIZE];
    for txid in 0..2 {
        let meta = Meta {
            page_size: PAGE_SIZE as u32,
            flags: 0,
            root,
            sequence: 0,
            freelist: FREELIST_PGID,
            pgid,
            txid,
        };
        let page = &mut out[txid as usize * PAGE_SIZE..(txid as usize + 1) * PAGE_SIZE];
        PageHeader {
            id: txid,
            flags: META_PAGE,
            count: 0,
            overflow: 0,
        }
        .encode(page);
        page[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + META_SIZE].copy_from_slice(&meta.encode());
    }
    PageHeader {
        id: FREELIST_PGID,
        flags: FREELIST_PAGE,
        count: 0,
        overflow: 0,
    }
    .encode(&mut out[2 * PAGE_SIZE..]);
    out
}

/// Writes `buckets` from page `first_pgid` on, then the root bucket that
/// lists them and `extra` (buckets written already: name, header).
/// Returns the root bucket's page and the next free page id.
pub(crate) fn write_buckets_from<W: Write>(
    buckets: &[Bucket],
    extra: &[(Vec<u8>, Vec<u8>)],
    first_pgid: u64,
    out: &mut W,
) -> Result<(u64, u64), BoltError> {
    let plan = Plan::new(buckets, first_pgid)?;
    let root_elems = plan.root_elems(extra);
    if root_elems.windows(2).any(|w| w[0].key == w[1].key) {
        return Err(BoltError::DuplicateBucket(show(
            root_elems
                .windows(2)
                .find(|w| w[0].key == w[1].key)
                .map_or(&[][..], |w| w[0].key),
        )));
    }
    let root = Tree::plan(&root_elems, plan.next_pgid);
    for b in &plan.buckets {
        if let Some(tree) = &b.tree {
            tree.write(&b.elems, out)?;
        }
    }
    root.write(&root_elems, out)?;
    Ok((root.root(), plan.next_pgid + root.pages()))
}

/// Writes a bbolt database file holding `buckets` to `out`; returns the
/// number of bytes written (always a multiple of the page size).
///
/// Bucket names must be unique and non-empty (any order: they are stored
/// sorted, as bbolt does); each bucket's items must be sorted by key with no
/// duplicates and no empty key. Nothing is written when validation fails.
pub fn write_db<W: Write>(buckets: &[Bucket], out: &mut W) -> Result<u64, BoltError> {
    let plan = Plan::new(buckets, FIRST_DATA_PGID)?;
    let root = Tree::plan(&plan.root_elems(&[]), plan.next_pgid);
    let pgid = plan.next_pgid + root.pages();
    out.write_all(&front_pages(root.root(), pgid))?;
    let (_, end) = write_buckets_from(buckets, &[], FIRST_DATA_PGID, out)?;
    debug_assert_eq!(end, pgid, "plan and output disagree");
    Ok(pgid * PAGE_SIZE as u64)
}

/// The exact number of bytes [`write_db`] would write for `buckets`, without
/// writing them (e.g. to announce a snapshot's size before streaming it).
pub fn encoded_len(buckets: &[Bucket]) -> Result<u64, BoltError> {
    let plan = Plan::new(buckets, FIRST_DATA_PGID)?;
    let root = Tree::plan(&plan.root_elems(&[]), plan.next_pgid);
    Ok((plan.next_pgid + root.pages()) * PAGE_SIZE as u64)
}
