//! Per-message loss: each message meets a fate fixed by a hash, not by the order of the run.
//!
//! A message from `from` to `to` is lost when `hash(seed, stream, from, to, key)`, read as a
//! number in `[0, 1)`, is below the loss rate. The harness names each message with a `key`: by
//! default its send number (the n-th message sent in the run), or a name the experiment gives it
//! ([`SimNode::loss_key`](crate::harness::SimNode::loss_key)) when identical messages must meet
//! identical fates, e.g. two strategies compared on one network. Being stateless, the decision
//! draws nothing from any random stream: adding a message does not change the fate of others.

use crate::NodeId;
use crate::rng::{hash_words, unit_from_hash};

/// A loss rate and the seed its decisions derive from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    rate: f64,
    seed: u64,
    stream: u64,
}

impl Loss {
    /// No message is ever lost.
    pub const NONE: Loss = Loss {
        rate: 0.0,
        seed: 0,
        stream: 0,
    };

    /// Each message is lost with probability `rate` (checked by the caller to be in `[0, 1)`, see
    /// [`crate::SimError::LossOutOfRange`]), decided from `seed`.
    pub fn new(rate: f64, seed: u64) -> Self {
        Self {
            rate,
            seed,
            stream: 0,
        }
    }

    /// The same rate and seed, hashed with another `stream` word: two runs on one seed but
    /// different streams lose independent messages.
    pub fn with_stream(self, stream: u64) -> Self {
        Self { stream, ..self }
    }

    /// The same seed and stream at another rate.
    pub fn with_rate(self, rate: f64) -> Self {
        Self { rate, ..self }
    }

    /// The probability that one message is lost.
    pub fn rate(&self) -> f64 {
        self.rate
    }

    /// Whether the message `key` from `from` to `to` is lost.
    pub fn is_lost(&self, from: NodeId, to: NodeId, key: u64) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let words = [self.seed, self.stream, u64::from(from), u64::from(to), key];
        unit_from_hash(hash_words(&words)) < self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_rate_is_respected_and_each_message_has_a_fixed_fate() {
        let loss = Loss::new(0.2, 42);
        let lost = (0..10_000u64).filter(|&i| loss.is_lost(0, 1, i)).count();
        assert!((1_800..2_200).contains(&lost), "{lost}");
        for i in 0..100u64 {
            assert_eq!(loss.is_lost(1, 0, i), loss.is_lost(1, 0, i));
        }
        assert!((0..1000u64).all(|i| !Loss::NONE.is_lost(0, 1, i)));
        assert!((0..1000u64).all(|i| !loss.with_rate(0.0).is_lost(0, 1, i)));
    }

    #[test]
    fn another_stream_loses_other_messages() {
        let a = Loss::new(0.5, 7);
        let b = a.with_stream(1);
        let differ = (0..1000u64)
            .filter(|&i| a.is_lost(0, 1, i) != b.is_lost(0, 1, i))
            .count();
        assert!((400..600).contains(&differ), "{differ}");
    }
}
