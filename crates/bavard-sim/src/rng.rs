//! Seeding: every random choice of a run derives from its one `u64` seed, so a run replays
//! exactly.
//!
//! Independent decisions draw from separate ChaCha8 *streams* of the same seed (one for the
//! network layout, one for joins, one for the workload…), so adding a draw in one place does not
//! shift every other random choice of the run. Per-message decisions that must be identical
//! whatever the order of events (message loss) use a stateless hash of the seed and the message
//! instead of a stream.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The stream numbers used by the simulator, one per independent source of randomness.
pub mod stream {
    /// Node positions of the latency model.
    pub const LATENCY: u64 = 1;
    /// Join order, refresh keys, fast-join table filling.
    pub const JOIN: u64 = 2;
    /// Lookup origins and targets.
    pub const WORKLOAD: u64 = 3;
    /// Which nodes churn (and the store experiment's fault schedule).
    pub const CHURN: u64 = 4;
    /// Clock offsets.
    pub const SKEW: u64 = 5;
    /// Which nodes turn adversarial in the lookup experiment.
    pub const ADVERSARY: u64 = 6;
    /// The first stream of the store experiment's clients: client `c` draws from `CLIENTS + c`.
    pub const CLIENTS: u64 = 1 << 20;
    /// The first stream of the per-node cores: node `i` draws from `NODES + i`.
    pub const NODES: u64 = 1 << 32;
}

/// A ChaCha8 generator for `(seed, stream)`: the same pair always yields the same sequence.
pub fn seeded(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// SplitMix64's finaliser: a fast bijective mix of 64 bits (Steele, Lea & Flood 2014).
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A stateless hash of several words, for per-message decisions.
pub fn hash_words(words: &[u64]) -> u64 {
    words
        .iter()
        .fold(0x243f_6a88_85a3_08d3, |acc, &w| splitmix64(acc ^ w))
}

/// A uniform number in `[0, 1)` from a hash.
pub fn unit_from_hash(h: u64) -> f64 {
    // 53 high bits: exactly representable in an f64.
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn same_seed_and_stream_replay_the_same_sequence() {
        let a: Vec<u64> = (0..8)
            .map(|_| 0)
            .scan(seeded(7, 1), |r, _: u64| Some(r.random()))
            .collect();
        let b: Vec<u64> = (0..8)
            .map(|_| 0)
            .scan(seeded(7, 1), |r, _: u64| Some(r.random()))
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn different_streams_of_one_seed_differ() {
        let x: u64 = seeded(7, 1).random();
        let y: u64 = seeded(7, 2).random();
        assert_ne!(x, y);
    }

    #[test]
    fn unit_from_hash_stays_in_the_unit_interval_and_is_roughly_uniform() {
        let n = 10_000;
        let below_half = (0..n)
            .map(|i| unit_from_hash(hash_words(&[9, i])))
            .inspect(|u| assert!((0.0..1.0).contains(u)))
            .filter(|&u| u < 0.5)
            .count();
        assert!((4_700..5_300).contains(&below_half), "{below_half}");
    }
}
