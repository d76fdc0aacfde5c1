//! A structured fuzzing harness on stable Rust, for the decoder tests of every crate
//! (`tests/fuzz_*.rs`): proptest drives arbitrary bytes and **structure-aware mutations of
//! valid messages** (encode a valid message, then flip bits, overwrite, insert, delete, truncate,
//! duplicate, or plant a huge length prefix), with a bounded, seeded number of cases.
//!
//! cargo-fuzz needs a nightly toolchain; these targets run under `cargo test` on stable, so CI
//! runs them with a small case count on every build. For a long run, raise the count (and vary
//! the seed):
//!
//! ```text
//! BAVARD_FUZZ_CASES=1000000 BAVARD_FUZZ_SEED=7 cargo test --release -p bavard-node --test fuzz_wire
//! ```
//!
//! - `BAVARD_FUZZ_CASES`: cases per target (default [`DEFAULT_CASES`]);
//! - `BAVARD_FUZZ_SEED`: the RNG seed (default [`DEFAULT_SEED`]): every run replays exactly.
//!
//! A failure is shrunk to a small input and printed; nothing is written to disk.

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngSeed};

/// Cases per target when `BAVARD_FUZZ_CASES` is not set: small enough that every target of the
/// workspace together stays well under a minute in a debug build on two cores.
pub const DEFAULT_CASES: u32 = 256;
/// The seed when `BAVARD_FUZZ_SEED` is not set.
pub const DEFAULT_SEED: u64 = 0x6261_7661_7264;

/// The number of cases per target: `BAVARD_FUZZ_CASES`, else [`DEFAULT_CASES`].
pub fn cases() -> u32 {
    std::env::var("BAVARD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

/// The proptest configuration of a fuzz target: [`cases`] cases (times `weight`, for targets
/// cheaper or dearer than the rest, at least 1), a fixed seed, no failure files, bounded
/// shrinking.
pub fn config(weight: f64) -> Config {
    let seed = std::env::var("BAVARD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    Config {
        cases: ((f64::from(cases()) * weight) as u32).max(1),
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 2_000,
        max_global_rejects: 1_000_000,
        ..Config::default()
    }
}

/// One edit of a byte string. Positions are taken modulo the length at the time of the edit,
/// so any mutation applies to any input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutation {
    /// Flip one bit.
    FlipBit(usize, u8),
    /// Overwrite one byte.
    Set(usize, u8),
    /// Overwrite one byte with a boundary value (0x00, 0x7f, 0x80, 0xff).
    Boundary(usize, u8),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Delete up to `n` bytes.
    Delete(usize, usize),
    /// Keep only the first `n` bytes (modulo the length plus one).
    Truncate(usize),
    /// Repeat a slice right after itself.
    Duplicate(usize, usize),
    /// Insert a varint announcing a huge length (what a hostile length prefix looks like).
    HugeVarint(usize, u64),
}

/// A strategy of one [`Mutation`].
pub fn mutation() -> impl Strategy<Value = Mutation> {
    let pos = any::<usize>();
    prop_oneof![
        4 => (pos, 0u8..8).prop_map(|(p, b)| Mutation::FlipBit(p, b)),
        3 => (pos, any::<u8>()).prop_map(|(p, v)| Mutation::Set(p, v)),
        2 => (pos, 0u8..4).prop_map(|(p, v)| Mutation::Boundary(p, v)),
        2 => (pos, prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Mutation::Insert(p, b)),
        2 => (pos, 1usize..16).prop_map(|(p, n)| Mutation::Delete(p, n)),
        2 => pos.prop_map(Mutation::Truncate),
        1 => (pos, 1usize..32).prop_map(|(p, n)| Mutation::Duplicate(p, n)),
        1 => (pos, prop_oneof![Just(u64::MAX), Just(1 << 32), Just(1 << 31), 1u64 << 20..1 << 40])
            .prop_map(|(p, v)| Mutation::HugeVarint(p, v)),
    ]
}

/// Applies `m` to `bytes`.
pub fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
    let len = bytes.len();
    match m {
        Mutation::FlipBit(p, bit) if len > 0 => bytes[at(*p, len)] ^= 1 << bit,
        Mutation::Set(p, v) if len > 0 => bytes[at(*p, len)] = *v,
        Mutation::Boundary(p, v) if len > 0 => {
            bytes[at(*p, len)] = [0x00, 0x7f, 0x80, 0xff][usize::from(*v % 4)];
        }
        Mutation::Insert(p, b) => {
            let i = at(*p, len + 1);
            bytes.splice(i..i, b.iter().copied());
        }
        Mutation::Delete(p, n) if len > 0 => {
            let i = at(*p, len);
            bytes.drain(i..(i + n).min(len));
        }
        Mutation::Truncate(n) => bytes.truncate(at(*n, len + 1)),
        Mutation::Duplicate(p, n) if len > 0 => {
            let i = at(*p, len);
            let slice: Vec<u8> = bytes[i..(i + n).min(len)].to_vec();
            let end = i + slice.len();
            bytes.splice(end..end, slice);
        }
        Mutation::HugeVarint(p, v) => {
            let mut varint = Vec::new();
            let mut v = *v;
            while v >= 0x80 {
                varint.push((v as u8 & 0x7f) | 0x80);
                v >>= 7;
            }
            varint.push(v as u8);
            let i = at(*p, len + 1);
            bytes.splice(i..i, varint);
        }
        _ => {}
    }
}

/// `valid` after 1 to 4 random [`Mutation`]s.
pub fn mutants(valid: impl Strategy<Value = Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (valid, prop::collection::vec(mutation(), 1..5)).prop_map(|(mut bytes, ms)| {
        for m in &ms {
            apply(&mut bytes, m);
        }
        bytes
    })
}

/// Arbitrary bytes (up to `max_len`).
pub fn noise(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max_len)
}

/// What a decoder target is fed: arbitrary bytes (a quarter of the cases), valid encodings
/// unchanged (a quarter: they must decode and round-trip) and mutants of valid encodings (the
/// rest).
pub fn inputs(
    valid: impl Strategy<Value = Vec<u8>> + 'static,
    max_noise: usize,
) -> impl Strategy<Value = Input> {
    let valid = valid.boxed();
    prop_oneof![
        1 => noise(max_noise).prop_map(Input::Noise),
        1 => valid.clone().prop_map(Input::Valid),
        2 => mutants(valid).prop_map(Input::Mutant),
    ]
}

/// One input of a decoder target (see [`inputs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Arbitrary bytes.
    Noise(Vec<u8>),
    /// A valid encoding, unchanged: it must decode.
    Valid(Vec<u8>),
    /// A valid encoding, mutated.
    Mutant(Vec<u8>),
}

impl Input {
    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Input::Noise(b) | Input::Valid(b) | Input::Mutant(b) => b,
        }
    }

    /// Whether the input is a valid encoding that must decode.
    pub fn must_decode(&self) -> bool {
        matches!(self, Input::Valid(_))
    }
}

/// Arbitrary bytes of a length in `len`, biased toward short strings.
pub fn blob(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_to_any_input_even_empty_ones() {
        for m in [
            Mutation::FlipBit(5, 7),
            Mutation::Set(9, 1),
            Mutation::Boundary(3, 2),
            Mutation::Insert(100, vec![1, 2]),
            Mutation::Delete(2, 10),
            Mutation::Truncate(7),
            Mutation::Duplicate(1, 3),
            Mutation::HugeVarint(4, u64::MAX),
        ] {
            let mut empty = Vec::new();
            apply(&mut empty, &m);
            let mut some = vec![1, 2, 3, 4];
            apply(&mut some, &m);
            assert!(some != [1, 2, 3, 4] || matches!(m, Mutation::Truncate(_)));
        }
        let mut v = vec![0; 3];
        apply(&mut v, &Mutation::HugeVarint(0, u64::MAX));
        assert_eq!(v.len(), 3 + 10, "a u64::MAX varint takes ten bytes");
        let mut v = vec![1, 2, 3];
        apply(&mut v, &Mutation::Truncate(1));
        assert_eq!(v, [1]);
    }
}
