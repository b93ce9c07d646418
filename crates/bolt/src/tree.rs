//! Laying out one bucket's sorted items as a B+tree of pages.
//!
//! The tree is built bottom-up from items that are already sorted: leaves are
//! packed greedily left to right, then each branch level indexes the level
//! below until a single root remains. Invariants the result keeps (the ones
//! bbolt's cursor and `tx.Check` rely on):
//!
//! - keys within a node, and across the leaves left to right, strictly increase;
//! - a branch element's key is the first key of the subtree it points to;
//! - every node's page count is `ceil(node size / PAGE_SIZE)`, so a node
//!   never needs more than the pages reserved for it, and a node only
//!   overflows when it holds a single element (leaf) or two (branch) that do
//!   not fit in one page;
//! - page ids are handed out in the order the nodes are written (leaves
//!   first, then each branch level), so the file can be streamed.

use std::io::Write;
use std::ops::Range;

use crate::format::{
    PageHeader, BRANCH_PAGE, ELEMENT_SIZE, LEAF_PAGE, PAGE_HEADER_SIZE, PAGE_SIZE,
};

/// One leaf entry to place in a tree.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Elem<'a> {
    /// The key (non-empty).
    pub key: &'a [u8],
    /// The value (a bucket header, possibly with an inline page, for buckets).
    pub value: &'a [u8],
    /// Leaf element flags (`BUCKET_LEAF_FLAG` for buckets).
    pub flags: u32,
}

impl Elem<'_> {
    /// Bytes this element takes in a leaf page.
    pub(crate) fn leaf_size(&self) -> usize {
        ELEMENT_SIZE + self.key.len() + self.value.len()
    }
}

/// One node of a planned tree.
#[derive(Debug, Clone)]
struct Node {
    /// Leaf: the range of elements; branch: the range of nodes one level below.
    children: Range<usize>,
    /// Index of the first element of this subtree (its key is the node's key).
    first: usize,
    /// First page id of the node.
    pgid: u64,
    /// Number of contiguous pages (overflow + 1).
    pages: u64,
}

/// A planned tree: node boundaries and page ids, but no bytes yet.
#[derive(Debug)]
pub(crate) struct Tree {
    /// `levels[0]` are the leaves; the last level holds the single root.
    levels: Vec<Vec<Node>>,
    /// Total pages used by all nodes.
    pages: u64,
}

/// Splits elements of the given sizes into nodes, greedily filling pages.
/// A node always takes at least `min` elements (when there are that many
/// left), so a branch level with `min == 2` is always smaller than the level
/// below it and the build terminates even with huge keys.
pub(crate) fn pack(sizes: &[usize], min: usize) -> Vec<(Range<usize>, u64)> {
    let mut nodes = Vec::new();
    let mut start = 0;
    let mut size = PAGE_HEADER_SIZE;
    for (i, &s) in sizes.iter().enumerate() {
        if i - start >= min && size + s > PAGE_SIZE {
            nodes.push((start..i, pages_for(size)));
            start = i;
            size = PAGE_HEADER_SIZE;
        }
        size += s;
    }
    nodes.push((start..sizes.len(), pages_for(size)));
    nodes
}

/// Pages needed for a node of `size` bytes.
pub(crate) fn pages_for(size: usize) -> u64 {
    size.div_ceil(PAGE_SIZE) as u64
}

impl Tree {
    /// Plans the tree for `elems` (sorted, unique keys), numbering its pages
    /// from `first_pgid`. Empty input yields a single empty leaf.
    pub fn plan(elems: &[Elem<'_>], first_pgid: u64) -> Tree {
        let mut next = first_pgid;
        let mut assign = |packed: Vec<(Range<usize>, u64)>, firsts: &dyn Fn(usize) -> usize| {
            packed
                .into_iter()
                .map(|(children, pages)| {
                    let node = Node {
                        first: firsts(children.start),
                        children,
                        pgid: next,
                        pages,
                    };
                    next += pages;
                    node
                })
                .collect::<Vec<_>>()
        };
        let sizes: Vec<usize> = elems.iter().map(Elem::leaf_size).collect();
        let leaves = assign(pack(&sizes, 1), &|i| i);
        let mut levels = vec![leaves];
        while let Some(below) = levels.last().filter(|l| l.len() > 1) {
            let sizes: Vec<usize> = below
                .iter()
                .map(|n| ELEMENT_SIZE + elems[n.first].key.len())
                .collect();
            let firsts: Vec<usize> = below.iter().map(|n| n.first).collect();
            let level = assign(pack(&sizes, 2), &|i| firsts[i]);
            levels.push(level);
        }
        Tree {
            levels,
            pages: next - first_pgid,
        }
    }

    /// Page id of the root node.
    pub fn root(&self) -> u64 {
        self.levels
            .last()
            .and_then(|l| l.first())
            .map_or(0, |n| n.pgid)
    }

    /// Total number of pages the tree occupies.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Writes every node, in page id order, to `out`; returns bytes written.
    pub fn write<W: Write>(&self, elems: &[Elem<'_>], out: &mut W) -> std::io::Result<u64> {
        let mut buf = Vec::new();
        let mut written = 0;
        for (depth, level) in self.levels.iter().enumerate() {
            for node in level {
                buf.clear();
                if depth == 0 {
                    encode_leaf(&elems[node.children.clone()], node.pgid, &mut buf);
                } else {
                    let below = &self.levels[depth - 1][node.children.clone()];
                    encode_branch(below, elems, node.pgid, &mut buf);
                }
                let full = usize::try_from(node.pages).expect("page count fits usize") * PAGE_SIZE;
                debug_assert!(buf.len() <= full, "node larger than its planned pages");
                buf.resize(full, 0);
                out.write_all(&buf)?;
                written += full as u64;
            }
        }
        Ok(written)
    }
}

/// Page header for a node of `bytes` bytes (overflow derived from the size).
fn header(id: u64, flags: u16, count: usize, bytes: usize) -> PageHeader {
    PageHeader {
        id,
        flags,
        count: u16::try_from(count).expect("node element count fits u16"),
        overflow: u32::try_from(pages_for(bytes).max(1) - 1).expect("overflow fits u32"),
    }
}

/// Appends a leaf node (header, element headers, then keys and values) to
/// `buf`, unpadded. Also used for inline buckets, whose page id is 0.
pub(crate) fn encode_leaf(elems: &[Elem<'_>], id: u64, buf: &mut Vec<u8>) {
    let base = buf.len();
    let size = PAGE_HEADER_SIZE + elems.iter().map(Elem::leaf_size).sum::<usize>();
    buf.resize(base + PAGE_HEADER_SIZE + elems.len() * ELEMENT_SIZE, 0);
    header(id, LEAF_PAGE, elems.len(), size).encode(&mut buf[base..]);
    for (i, e) in elems.iter().enumerate() {
        let at = base + PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        // `pos` is relative to the element header itself, as in bbolt.
        let pos = u32::try_from(buf.len() - at).expect("leaf offset fits u32");
        let ksize = u32::try_from(e.key.len()).expect("key size fits u32");
        let vsize = u32::try_from(e.value.len()).expect("value size fits u32");
        buf[at..at + 4].copy_from_slice(&e.flags.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
        buf[at + 8..at + 12].copy_from_slice(&ksize.to_le_bytes());
        buf[at + 12..at + 16].copy_from_slice(&vsize.to_le_bytes());
        buf.extend_from_slice(e.key);
        buf.extend_from_slice(e.value);
    }
    debug_assert_eq!(buf.len() - base, size);
}

/// Appends a branch node pointing at `children` to `buf`, unpadded.
fn encode_branch(children: &[Node], elems: &[Elem<'_>], id: u64, buf: &mut Vec<u8>) {
    let keyed: Vec<(&[u8], u64)> = children
        .iter()
        .map(|c| (elems[c.first].key, c.pgid))
        .collect();
    encode_branch_keys(&keyed, id, buf);
}

/// Appends a branch node to `buf`, unpadded: each child is its first key
/// and its page id.
pub(crate) fn encode_branch_keys(children: &[(&[u8], u64)], id: u64, buf: &mut Vec<u8>) {
    let base = buf.len();
    let size = PAGE_HEADER_SIZE
        + children
            .iter()
            .map(|(k, _)| ELEMENT_SIZE + k.len())
            .sum::<usize>();
    buf.resize(base + PAGE_HEADER_SIZE + children.len() * ELEMENT_SIZE, 0);
    header(id, BRANCH_PAGE, children.len(), size).encode(&mut buf[base..]);
    for (i, (key, pgid)) in children.iter().enumerate() {
        let at = base + PAGE_HEADER_SIZE + i * ELEMENT_SIZE;
        let pos = u32::try_from(buf.len() - at).expect("branch offset fits u32");
        let ksize = u32::try_from(key.len()).expect("key size fits u32");
        buf[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        buf[at + 4..at + 8].copy_from_slice(&ksize.to_le_bytes());
        buf[at + 8..at + 16].copy_from_slice(&pgid.to_le_bytes());
        buf.extend_from_slice(key);
    }
    debug_assert_eq!(buf.len() - base, size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_respects_page_size_and_minimum() {
        // 300 elements of 100 bytes: 40 per page (16 + 40*100 = 4016 <= 4096).
        let nodes = pack(&[100; 300], 1);
        assert_eq!(nodes.len(), 8);
        assert!(nodes.iter().all(|(r, p)| r.len() <= 40 && *p == 1));
        // A huge element overflows alone.
        let nodes = pack(&[10, 20_000, 10], 1);
        assert_eq!(nodes, vec![(0..1, 1), (1..2, 5), (2..3, 1)]);
        // Branch packing never makes single-element nodes while two remain.
        let nodes = pack(&[3000, 3000, 3000, 3000], 2);
        assert_eq!(nodes, vec![(0..2, 2), (2..4, 2)]);
    }

    #[test]
    fn plan_assigns_pages_in_write_order() {
        let keys: Vec<Vec<u8>> = (0u32..2000).map(|i| i.to_be_bytes().to_vec()).collect();
        let value = [7u8; 100];
        let elems: Vec<Elem<'_>> = keys
            .iter()
            .map(|k| Elem {
                key: k,
                value: &value,
                flags: 0,
            })
            .collect();
        let tree = Tree::plan(&elems, 3);
        assert!(tree.levels.len() >= 2);
        let mut out = Vec::new();
        let n = tree.write(&elems, &mut out).unwrap();
        assert_eq!(n, tree.pages() * PAGE_SIZE as u64);
        assert_eq!(out.len() as u64, n);
        // The root is the last page written.
        assert_eq!(tree.root(), 3 + tree.pages() - 1);
    }
}
