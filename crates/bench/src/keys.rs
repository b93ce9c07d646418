//! Keys, values and a small seeded random generator.

use bytes::{BufMut, Bytes, BytesMut};

/// The seeded generator for picking keys: the core's splitmix64.
pub use concord_raft::rng::SplitMix64 as Rng;

/// Decimal digits needed to write `n`.
pub fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

/// Keys of exactly `prefix.len() + key_size` bytes: the prefix, then the key
/// index in `0..key_space`, zero-padded decimal of `key_size` digits.
#[derive(Debug, Clone)]
pub struct KeyGen {
    prefix: Bytes,
    key_size: usize,
    key_space: u64,
}

impl KeyGen {
    /// A generator; `key_space - 1` must fit in `key_size` digits
    /// ([`crate::Args::validate`] checks it).
    pub fn new(prefix: impl Into<Bytes>, key_size: usize, key_space: u64) -> Self {
        assert!(key_space > 0 && digits(key_space - 1) <= key_size);
        KeyGen {
            prefix: prefix.into(),
            key_size,
            key_space,
        }
    }

    /// The number of distinct keys.
    pub fn key_space(&self) -> u64 {
        self.key_space
    }

    /// The key with this index (`index < key_space`).
    pub fn key(&self, index: u64) -> Bytes {
        debug_assert!(index < self.key_space);
        let mut b = BytesMut::with_capacity(self.prefix.len() + self.key_size);
        b.put_slice(&self.prefix);
        b.put_slice(format!("{index:0width$}", width = self.key_size).as_bytes());
        b.freeze()
    }

    /// A uniformly random key of the key space.
    pub fn random(&self, rng: &mut Rng) -> Bytes {
        self.key(rng.below(self.key_space))
    }

    /// A uniformly random key among the first `n` of the key space.
    pub fn random_below(&self, rng: &mut Rng, n: u64) -> Bytes {
        self.key(rng.below(n.clamp(1, self.key_space)))
    }
}

/// A value of `size` printable random bytes.
pub fn value(rng: &mut Rng, size: usize) -> Bytes {
    (0..size)
        .map(|_| b'a' + rng.below(26) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// The range end that covers every key starting with `prefix` (etcd's
/// `GetPrefixRangeEnd`).
pub fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end.into();
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    Bytes::from_static(&[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_counts_decimal_digits() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(99_999), 5);
        assert_eq!(digits(u64::MAX), 20);
    }

    #[test]
    fn keys_have_the_size_and_stay_in_the_key_space() {
        let g = KeyGen::new(Bytes::new(), 8, 1000);
        assert_eq!(&g.key(0)[..], b"00000000");
        assert_eq!(&g.key(999)[..], b"00000999");
        let mut rng = Rng::new(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20_000 {
            let k = g.random(&mut rng);
            assert_eq!(k.len(), 8);
            let n: u64 = std::str::from_utf8(&k).unwrap().parse().unwrap();
            assert!(n < 1000);
            seen.insert(n);
        }
        // Uniform enough to hit every key of a small space.
        assert_eq!(seen.len(), 1000);
        for _ in 0..1000 {
            let n: u64 = std::str::from_utf8(&g.random_below(&mut rng, 10))
                .unwrap()
                .parse()
                .unwrap();
            assert!(n < 10);
        }
    }

    #[test]
    fn prefixed_keys_and_prefix_end() {
        let g = KeyGen::new(Bytes::from_static(b"/w/"), 5, 100_000);
        let k = g.key(42);
        assert_eq!(&k[..], b"/w/00042");
        assert!(k[..] >= b"/w/"[..] && k[..] < prefix_end(b"/w/")[..]);
        assert_eq!(&prefix_end(b"/w/")[..], b"/w0");
        assert_eq!(&prefix_end(b"a\xff")[..], b"b");
        assert_eq!(&prefix_end(b"")[..], b"\0");
    }

    #[test]
    fn values_have_the_size() {
        let mut rng = Rng::new(1);
        assert_eq!(value(&mut rng, 256).len(), 256);
        assert!(value(&mut rng, 0).is_empty());
        assert_ne!(Rng::new(1).next_u64(), Rng::new(2).next_u64());
    }
}
