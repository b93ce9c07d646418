//! Seeded randomness for election timeouts: the workspace's one
//! splitmix64 (`concord-rng`), whose stream never changes for a seed.

pub use concord_rng::SplitMix64;
