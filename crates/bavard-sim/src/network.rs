//! The simulated network: link latency, message loss and node liveness (churn).
//!
//! Loss is decided per message by a stateless hash of the run's seed and a message tag chosen
//! by the caller (e.g. lookup number, sender, receiver, direction), so the same message meets
//! the same fate whatever else happens in the run; two strategies run on the same network thus
//! lose the same messages whenever they send the same ones.

use std::time::Duration;

use crate::NodeId;
use crate::latency::LatencyModel;
use crate::rng::{hash_words, unit_from_hash};

/// Latency, loss and liveness of `n` nodes identified `0..n`.
#[derive(Debug, Clone)]
pub struct Network {
    latency: LatencyModel,
    loss: f64,
    loss_seed: u64,
    alive: Vec<bool>,
    live: u32,
}

impl Network {
    /// A network where every node is alive. `loss` is the probability that one message is
    /// dropped (checked by the caller, see [`crate::SimError`]).
    pub fn new(latency: LatencyModel, loss: f64, loss_seed: u64) -> Self {
        let n = latency.len();
        Self {
            latency,
            loss,
            loss_seed,
            alive: vec![true; n],
            live: u32::try_from(n).expect("node ids are u32"),
        }
    }

    /// The number of nodes, dead or alive.
    pub fn len(&self) -> usize {
        self.alive.len()
    }

    /// Whether the network has no node.
    pub fn is_empty(&self) -> bool {
        self.alive.is_empty()
    }

    /// The latency model.
    pub fn latency(&self) -> &LatencyModel {
        &self.latency
    }

    /// The one-way latency from `a` to `b`.
    pub fn one_way(&self, a: NodeId, b: NodeId) -> Duration {
        self.latency.one_way(a, b)
    }

    /// The message loss probability.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Whether the message tagged `tag` is dropped.
    pub fn is_lost(&self, tag: &[u64]) -> bool {
        if self.loss <= 0.0 {
            return false;
        }
        let mut words = Vec::with_capacity(tag.len() + 1);
        words.push(self.loss_seed);
        words.extend_from_slice(tag);
        unit_from_hash(hash_words(&words)) < self.loss
    }

    /// Whether `node` is alive (a dead node receives nothing and answers nothing).
    pub fn is_alive(&self, node: NodeId) -> bool {
        self.alive[node as usize]
    }

    /// The number of live nodes.
    pub fn live_count(&self) -> u32 {
        self.live
    }

    /// Kills `node`. Returns whether it was alive.
    pub fn kill(&mut self, node: NodeId) -> bool {
        let was = std::mem::replace(&mut self.alive[node as usize], false);
        if was {
            self.live -= 1;
        }
        was
    }

    /// Revives `node` (with its state as it was). Returns whether it was dead.
    pub fn revive(&mut self, node: NodeId) -> bool {
        let was_dead = !std::mem::replace(&mut self.alive[node as usize], true);
        if was_dead {
            self.live += 1;
        }
        was_dead
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::LatencyConfig;
    use crate::rng::seeded;

    fn network(n: u32, loss: f64) -> Network {
        let m = LatencyModel::random(n, LatencyConfig::default(), &mut seeded(3, 1));
        Network::new(m, loss, 42)
    }

    #[test]
    fn kill_and_revive_track_liveness_and_the_live_count() {
        let mut net = network(4, 0.0);
        assert_eq!(net.live_count(), 4);
        assert!(net.kill(2));
        assert!(!net.kill(2));
        assert!(!net.is_alive(2));
        assert_eq!(net.live_count(), 3);
        assert!(net.revive(2));
        assert!(!net.revive(2));
        assert_eq!(net.live_count(), 4);
    }

    #[test]
    fn loss_rate_is_respected_and_each_message_has_a_fixed_fate() {
        let net = network(2, 0.2);
        let lost = (0..10_000u64).filter(|&i| net.is_lost(&[i, 0, 1])).count();
        assert!((1_800..2_200).contains(&lost), "{lost}");
        for i in 0..100u64 {
            assert_eq!(net.is_lost(&[i, 1, 0]), net.is_lost(&[i, 1, 0]));
        }
        let lossless = network(2, 0.0);
        assert!((0..1000u64).all(|i| !lossless.is_lost(&[i])));
    }
}
