//! Seeded randomness: the workspace's one splitmix64 (`concord-rng`), the
//! stream the core uses too.

pub use concord_rng::SplitMix64;
