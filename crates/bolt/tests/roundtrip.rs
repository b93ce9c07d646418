//! Round trips through `write_db` / `read_db`, and the integrity checks.

use concord_bolt::format::{
    le_u64, PageHeader, BRANCH_PAGE, META_SIZE, PAGE_HEADER_SIZE, PAGE_SIZE,
};
use concord_bolt::{active_meta, encoded_len, read_db, read_meta, write_db, BoltError, Bucket};

/// Deterministic xorshift so the tests need no rand crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Writes `buckets`, checks the size bookkeeping, reads the file back and
/// checks it matches (buckets in name order). Returns the file.
fn round_trip(buckets: &[Bucket]) -> Vec<u8> {
    let mut file = Vec::new();
    let n = write_db(buckets, &mut file).expect("write");
    assert_eq!(n, file.len() as u64);
    assert_eq!(n % PAGE_SIZE as u64, 0);
    assert_eq!(encoded_len(buckets).unwrap(), n);
    let meta = active_meta(&file).unwrap();
    assert_eq!(
        meta.pgid * PAGE_SIZE as u64,
        n,
        "file is exactly the high-water mark"
    );
    let mut expected = buckets.to_vec();
    expected.sort_by(|a, b| a.name.cmp(&b.name));
    let got = read_db(&file).expect("read");
    assert_eq!(got, expected);
    file
}

/// The root page id of top-level bucket `name` (0 when inline).
fn bucket_root(file: &[u8], name: &[u8]) -> u64 {
    let root = active_meta(file).unwrap().root as usize * PAGE_SIZE;
    let header = PageHeader::decode(&file[root..]).unwrap();
    for i in 0..header.count as usize {
        let at = root + PAGE_HEADER_SIZE + i * 16;
        let pos = u32::from_le_bytes(file[at + 4..at + 8].try_into().unwrap()) as usize;
        let ksize = u32::from_le_bytes(file[at + 8..at + 12].try_into().unwrap()) as usize;
        if &file[at + pos..at + pos + ksize] == name {
            return le_u64(file, at + pos + ksize);
        }
    }
    panic!("bucket not in the root leaf");
}

fn page(file: &[u8], id: u64) -> PageHeader {
    PageHeader::decode(&file[id as usize * PAGE_SIZE..]).unwrap()
}

#[test]
fn no_buckets() {
    let file = round_trip(&[]);
    // Two metas, the freelist and the empty root leaf, like a fresh bbolt file.
    assert_eq!(file.len(), 4 * PAGE_SIZE);
}

#[test]
fn empty_buckets() {
    let big = Bucket::new(
        "big",
        (0u32..500)
            .map(|i| (i.to_be_bytes().to_vec(), vec![1; 50]))
            .collect(),
    );
    let file = round_trip(&[
        Bucket::new("members", vec![]),
        big,
        Bucket::new("alarm", vec![]),
        Bucket::new("a", vec![]),
    ]);
    assert_eq!(bucket_root(&file, b"alarm"), 0, "empty buckets are inline");
    assert_ne!(bucket_root(&file, b"big"), 0);
}

#[test]
fn one_key() {
    round_trip(&[Bucket::new("key", vec![(b"k".to_vec(), b"v".to_vec())])]);
    round_trip(&[Bucket::new("key", vec![(b"k".to_vec(), vec![])])]);
}

#[test]
fn small_and_large_buckets_mixed() {
    let small = Bucket::new("small", vec![(b"a".to_vec(), vec![9; 900])]);
    let over = Bucket::new("over", vec![(b"a".to_vec(), vec![9; 1200])]);
    let file = round_trip(&[small, over]);
    assert_eq!(
        bucket_root(&file, b"small"),
        0,
        "fits in PAGE_SIZE / 4: inline"
    );
    assert_ne!(bucket_root(&file, b"over"), 0);
}

#[test]
fn hundred_thousand_keys_make_a_multi_level_tree() {
    let mut rng = Rng(7);
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0..100_000i64)
        .map(|i| {
            (
                concord_bolt::etcd_revision_key(i + 1, 0, false),
                rng.bytes(256),
            )
        })
        .collect();
    let file = round_trip(&[Bucket::new("key", items), Bucket::new("meta", vec![])]);
    let root = bucket_root(&file, b"key");
    let top = page(&file, root);
    assert_eq!(top.flags, BRANCH_PAGE);
    // First child of the root is a branch too: at least three levels.
    let at = root as usize * PAGE_SIZE + PAGE_HEADER_SIZE;
    assert_eq!(page(&file, le_u64(&file, at + 8)).flags, BRANCH_PAGE);
}

#[test]
fn large_value_overflows() {
    let mut rng = Rng(3);
    let items = vec![
        (b"a".to_vec(), rng.bytes(10)),
        (b"b".to_vec(), rng.bytes(20 * 1024)),
        (b"c".to_vec(), rng.bytes(10)),
    ];
    let file = round_trip(&[Bucket::new("big", items)]);
    // Walk the pages in file order, skipping each node's continuation pages.
    let (mut id, mut max_overflow) = (0, 0);
    while id < (file.len() / PAGE_SIZE) as u64 {
        let overflow = page(&file, id).overflow;
        max_overflow = max_overflow.max(overflow);
        id += u64::from(overflow) + 1;
    }
    assert_eq!(max_overflow, 5, "20 KiB + headers span 6 pages");
}

#[test]
fn keys_of_varying_length() {
    let mut rng = Rng(11);
    let mut items: Vec<(Vec<u8>, Vec<u8>)> = (0..3000)
        .map(|_| {
            let len = 1 + (rng.next() % 300) as usize;
            let vlen = (rng.next() % 600) as usize;
            (rng.bytes(len), rng.bytes(vlen))
        })
        .collect();
    // Huge keys force branch nodes that overflow a page.
    for len in [3000, 5000, 9000, 32768] {
        items.push((rng.bytes(len), rng.bytes(10)));
    }
    items.sort();
    items.dedup_by(|a, b| a.0 == b.0);
    round_trip(&[Bucket::new("v", items)]);

    // Only huge keys: every branch level still shrinks.
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0u8..40)
        .map(|i| ([vec![i], vec![b'x'; 20_000]].concat(), vec![i]))
        .collect();
    round_trip(&[Bucket::new("huge", items)]);
}

#[test]
fn many_buckets_spill_the_root_bucket() {
    let buckets: Vec<Bucket> = (0..2000u32)
        .map(|i| {
            Bucket::new(
                format!("bucket-{i:05}"),
                vec![(b"k".to_vec(), i.to_be_bytes().to_vec())],
            )
        })
        .collect();
    let file = round_trip(&buckets);
    assert_eq!(
        page(&file, active_meta(&file).unwrap().root).flags,
        BRANCH_PAGE
    );
}

#[test]
fn corrupt_meta_falls_back_to_the_other() {
    let items = vec![(b"k".to_vec(), b"v".to_vec())];
    let mut file = round_trip(&[Bucket::new("b", items)]);
    assert_eq!(active_meta(&file).unwrap().txid, 1, "the higher txid wins");

    let mut m1_bad = file.clone();
    m1_bad[PAGE_SIZE + PAGE_HEADER_SIZE + 20] ^= 0xff; // meta 1's root pgid
    assert!(matches!(
        read_meta(&m1_bad, 1),
        Err(BoltError::InvalidMeta(_))
    ));
    assert_eq!(active_meta(&m1_bad).unwrap().txid, 0);
    assert_eq!(read_db(&m1_bad).unwrap().len(), 1);

    file[PAGE_HEADER_SIZE + 41] ^= 0x01; // meta 0's high-water mark
    assert!(matches!(
        read_meta(&file, 0),
        Err(BoltError::InvalidMeta(_))
    ));
    assert_eq!(active_meta(&file).unwrap().txid, 1);
    assert_eq!(read_db(&file).unwrap().len(), 1);

    file[PAGE_SIZE + PAGE_HEADER_SIZE + 60] ^= 0x01; // meta 1's checksum
    let err = read_db(&file).unwrap_err();
    assert!(matches!(err, BoltError::NoValidMeta { .. }), "{err}");
}

#[test]
fn damaged_pages_are_detected() {
    let items: Vec<(Vec<u8>, Vec<u8>)> = (0u32..2000)
        .map(|i| (i.to_be_bytes().to_vec(), vec![5; 64]))
        .collect();
    let file = round_trip(&[Bucket::new("b", items)]);
    // A leaf whose header names the wrong page.
    let mut bad = file.clone();
    bad[3 * PAGE_SIZE] ^= 0x01;
    assert!(matches!(read_db(&bad), Err(BoltError::Corrupt(_))));
    // A truncated file.
    assert!(read_db(&file[..file.len() - PAGE_SIZE]).is_err());
    // Bytes past the high-water mark are not part of the database.
    let mut grown = file.clone();
    grown.extend_from_slice(&[0; PAGE_SIZE]);
    assert!(read_db(&grown).is_ok());
    // But a high-water mark covering a page nobody references or frees is
    // corruption (bbolt's check says "unreachable unfreed" too).
    for index in 0..2 {
        let mut meta = read_meta(&grown, index).unwrap();
        meta.pgid += 1;
        let at = index as usize * PAGE_SIZE + PAGE_HEADER_SIZE;
        grown[at..at + META_SIZE].copy_from_slice(&meta.encode());
    }
    let err = read_db(&grown).unwrap_err();
    assert!(err.to_string().contains("unreachable unfreed"), "{err}");
}

#[test]
fn invalid_input_is_refused() {
    let kv = |k: &[u8]| (k.to_vec(), b"v".to_vec());
    let write = |b: &[Bucket]| write_db(b, &mut Vec::new());
    assert!(matches!(
        write(&[Bucket::new("b", vec![kv(b"b"), kv(b"a")])]),
        Err(BoltError::UnsortedKeys { index: 1, .. })
    ));
    assert!(matches!(
        write(&[Bucket::new("b", vec![kv(b"a"), kv(b"a")])]),
        Err(BoltError::UnsortedKeys { index: 1, .. })
    ));
    assert!(matches!(
        write(&[Bucket::new("b", vec![kv(b"")])]),
        Err(BoltError::EmptyKey { .. })
    ));
    assert!(matches!(
        write(&[Bucket::new("b", vec![]), Bucket::new("b", vec![])]),
        Err(BoltError::DuplicateBucket(_))
    ));
    assert!(matches!(
        write(&[Bucket::new("", vec![])]),
        Err(BoltError::EmptyName)
    ));
    assert!(matches!(
        write(&[Bucket::new("b", vec![kv(&[1; 40_000])])]),
        Err(BoltError::KeyTooLarge { .. })
    ));
}
