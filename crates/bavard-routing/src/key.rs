//! 256-bit Kademlia keys and the XOR metric.
//!
//! Kademlia (Maymounkov & Mazières, IPTPS 2002) places nodes and values in one 256-bit key space
//! and measures closeness with `d(a, b) = a XOR b`, read as an unsigned big-endian integer. As in
//! libp2p's `/ipfs/kad/1.0.0`, a key is the SHA-256 of the peer id or record key bytes
//! ([`Key::hash`]). The bucket of a distance is the index of its highest set bit: bucket `i` holds
//! the peers at distance `[2^i, 2^(i+1))`, so bucket 255 covers half the key space.

use std::fmt;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use rand::Rng;
use sha2::{Digest, Sha256};

/// A point of the 256-bit Kademlia key space.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key([u8; 32]);

impl Key {
    /// The key of some bytes (a peer id, a record key): their SHA-256, as libp2p does.
    pub fn hash(bytes: &[u8]) -> Self {
        Self(Sha256::digest(bytes).into())
    }

    /// A key taken as is (already a hash, or a chosen point for tests and refresh).
    pub const fn from_raw(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes of the key, big-endian.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The XOR distance between two keys.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, byte) in d.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }

    /// A uniformly random key.
    pub fn random<R: Rng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes);
        Self(bytes)
    }

    /// A random key whose distance to `self` falls in bucket `index` (its highest set bit is bit
    /// `index`, the lower bits are random). Looking it up refreshes that bucket.
    pub fn random_in_bucket<R: Rng + ?Sized>(&self, index: u8, rng: &mut R) -> Self {
        let mut d = [0u8; 32];
        rng.fill(&mut d);
        let byte = 31 - usize::from(index / 8);
        let bit = index % 8;
        d[..byte].fill(0);
        // Keep the bits below `bit` random, clear those above it, set it.
        let low_mask = (1u8 << bit).wrapping_sub(1);
        d[byte] = (d[byte] & low_mask) | (1u8 << bit);
        let mut key = [0u8; 32];
        for (i, b) in key.iter_mut().enumerate() {
            *b = self.0[i] ^ d[i];
        }
        Self(key)
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key(")?;
        for b in &self.0[..6] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// The XOR distance between two keys, ordered as a 256-bit big-endian unsigned integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Distance([u8; 32]);

impl Distance {
    /// The distance from a key to itself.
    pub const ZERO: Distance = Distance([0; 32]);

    /// A distance taken as is (big-endian bytes).
    pub const fn from_raw(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 big-endian bytes of the distance.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The number of leading zero bits (256 for the zero distance).
    pub fn leading_zeros(&self) -> u32 {
        let mut zeros = 0;
        for b in &self.0 {
            if *b == 0 {
                zeros += 8;
            } else {
                return zeros + b.leading_zeros();
            }
        }
        zeros
    }

    /// The bucket of this distance: the index of its highest set bit (0..=255), `None` for the
    /// zero distance (a key is in no bucket of its own table).
    pub fn bucket_index(&self) -> Option<u8> {
        let lz = self.leading_zeros();
        // lz < 256 here, so 255 - lz fits in a u8.
        (lz < 256).then(|| (255 - lz) as u8)
    }

    /// Whether bit `index` (0 = least significant) is set.
    pub fn bit(&self, index: u8) -> bool {
        let byte = 31 - usize::from(index / 8);
        self.0[byte] & (1 << (index % 8)) != 0
    }
}

/// A point of a Kademlia key space: a fixed-width bit string under the XOR metric.
///
/// [`Key`] (256 bits, the SHA-256 of a peer id, as libp2p has it) is the key space of the
/// protocol, and the default everywhere. The routing table is generic over it so that a caller
/// that owns the key space can keep smaller keys: the simulator keeps `u64` keys (the first 64
/// bits of each node's SHA-256 key) in a million tables. Among keys that differ in their first
/// `BITS` bits, the order by XOR distance to any target, and the bucket of each key, are those
/// of the full keys cut to `BITS` bits, so such a table answers exactly as one of full keys.
pub trait KadKey: Copy + Eq + Debug {
    /// The XOR distance between two keys, ordered as a big-endian unsigned integer.
    type Distance: Copy + Ord + Debug;

    /// The width of the key space in bits (at most 256): a table has that many buckets.
    const BITS: u16;

    /// The XOR distance between two keys.
    fn distance_to(&self, other: &Self) -> Self::Distance;

    /// The bucket of a distance: the index of its highest set bit (`0..BITS`), `None` for the
    /// zero distance.
    fn bucket_of(distance: &Self::Distance) -> Option<u8>;

    /// Whether bit `index` (0 = least significant) of a distance is set.
    fn bit_of(distance: &Self::Distance, index: u8) -> bool;
}

impl KadKey for Key {
    type Distance = Distance;
    const BITS: u16 = 256;

    fn distance_to(&self, other: &Self) -> Distance {
        self.distance(other)
    }

    fn bucket_of(distance: &Distance) -> Option<u8> {
        distance.bucket_index()
    }

    fn bit_of(distance: &Distance, index: u8) -> bool {
        distance.bit(index)
    }
}

/// A 64-bit key space (tests, and simulators that keep the first 64 bits of each key).
impl KadKey for u64 {
    type Distance = u64;
    const BITS: u16 = 64;

    fn distance_to(&self, other: &Self) -> u64 {
        self ^ other
    }

    fn bucket_of(distance: &u64) -> Option<u8> {
        // The highest set bit; below 64, so it fits a u8.
        (*distance != 0).then(|| (63 - distance.leading_zeros()) as u8)
    }

    fn bit_of(distance: &u64, index: u8) -> bool {
        index < 64 && distance >> index & 1 == 1
    }
}

/// A point in time as a routing table records it: [`Instant`] in a node. The table only ever
/// compares two of them and measures the time between them, so a simulator can give it a
/// smaller virtual time (8 bytes instead of 16, in each of millions of entries).
pub trait Timestamp: Copy + Ord + Debug {
    /// How long after `earlier` this is; zero if it is not later.
    fn saturating_duration_since(&self, earlier: Self) -> Duration;
}

impl Timestamp for Instant {
    fn saturating_duration_since(&self, earlier: Self) -> Duration {
        Instant::saturating_duration_since(self, earlier)
    }
}

impl fmt::Debug for Distance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bucket_index() {
            Some(i) => write!(f, "Distance(~2^{i})"),
            None => write!(f, "Distance(0)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn key_with_last_byte(b: u8) -> Key {
        let mut bytes = [0u8; 32];
        bytes[31] = b;
        Key::from_raw(bytes)
    }

    #[test]
    fn hash_is_sha256_of_the_bytes() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        let k = Key::hash(b"abc");
        assert_eq!(&k.as_bytes()[..4], &[0xba, 0x78, 0x16, 0xbf]);
        assert_eq!(&k.as_bytes()[28..], &[0xf2, 0x00, 0x15, 0xad]);
    }

    #[test]
    fn distance_is_xor_and_symmetric_and_zero_to_self() {
        let a = Key::hash(b"a");
        let b = Key::hash(b"b");
        assert_eq!(a.distance(&b), b.distance(&a));
        assert_eq!(a.distance(&a), Distance::ZERO);
        assert_eq!(
            a.distance(&b).as_bytes()[0],
            a.as_bytes()[0] ^ b.as_bytes()[0]
        );
    }

    #[test]
    fn distance_orders_as_a_big_endian_integer() {
        let mut high = [0u8; 32];
        high[0] = 1;
        let mut low = [0xffu8; 32];
        low[0] = 0;
        assert!(Distance::from_raw(high) > Distance::from_raw(low));
        assert!(Distance::ZERO < Distance::from_raw(low));
    }

    #[test]
    fn bucket_index_is_the_highest_set_bit() {
        let zero = key_with_last_byte(0);
        assert_eq!(zero.distance(&zero).bucket_index(), None);
        assert_eq!(
            zero.distance(&key_with_last_byte(1)).bucket_index(),
            Some(0)
        );
        assert_eq!(
            zero.distance(&key_with_last_byte(2)).bucket_index(),
            Some(1)
        );
        assert_eq!(
            zero.distance(&key_with_last_byte(3)).bucket_index(),
            Some(1)
        );
        assert_eq!(
            zero.distance(&key_with_last_byte(0x80)).bucket_index(),
            Some(7)
        );
        let mut top = [0u8; 32];
        top[0] = 0x80;
        assert_eq!(zero.distance(&Key::from_raw(top)).bucket_index(), Some(255));
        top[0] = 0x01;
        assert_eq!(zero.distance(&Key::from_raw(top)).bucket_index(), Some(248));
    }

    #[test]
    fn random_in_bucket_lands_in_the_requested_bucket() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let local = Key::hash(b"local");
        for index in 0..=255u8 {
            for _ in 0..4 {
                let k = local.random_in_bucket(index, &mut rng);
                assert_eq!(local.distance(&k).bucket_index(), Some(index));
            }
        }
    }

    #[test]
    fn u64_keys_order_and_bucket_as_the_first_64_bits_of_full_keys() {
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let cut = |k: &Key| u64::from_be_bytes(k.as_bytes()[..8].try_into().unwrap());
        for _ in 0..200 {
            let (a, b, t) = (
                Key::random(&mut rng),
                Key::random(&mut rng),
                Key::random(&mut rng),
            );
            assert_eq!(
                t.distance(&a).cmp(&t.distance(&b)),
                cut(&t)
                    .distance_to(&cut(&a))
                    .cmp(&cut(&t).distance_to(&cut(&b)))
            );
            let full = a.distance(&b).bucket_index().unwrap();
            let short = u64::bucket_of(&cut(&a).distance_to(&cut(&b))).unwrap();
            assert_eq!(u16::from(full) - 192, u16::from(short));
            for i in [0u8, 5, 63] {
                assert_eq!(
                    u64::bit_of(&cut(&a).distance_to(&cut(&b)), i),
                    a.distance(&b).bit(i + 192)
                );
            }
        }
        assert_eq!(u64::bucket_of(&0), None);
        assert_eq!(u64::bucket_of(&1), Some(0));
        assert_eq!(u64::bucket_of(&u64::MAX), Some(63));
        assert!(!u64::bit_of(&u64::MAX, 64));
    }

    #[test]
    fn bit_reads_the_requested_bit() {
        let zero = key_with_last_byte(0);
        let d = zero.distance(&key_with_last_byte(0b101));
        assert!(d.bit(0) && !d.bit(1) && d.bit(2) && !d.bit(255));
    }
}
