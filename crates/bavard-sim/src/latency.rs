//! Per-link latency: nodes placed at random on a plane, latency growing with distance.
//!
//! The model of Vivaldi-style network coordinates (Dabek et al., SIGCOMM 2004) in its simplest
//! form: every node gets a uniform random position in the unit square, and the one-way latency
//! of a link is `base + distance × per_unit`. With the defaults (5 ms + 102.5 ms per unit, the
//! square's diagonal being √2) link round-trip times spread from 10 ms to 300 ms, mean ≈ 117 ms,
//! roughly a world-wide overlay. Positions are `f32` pairs: 8 bytes per node.
//!
//! The harness takes any [`Latency`]: the plane model, a constant [`Duration`], or a closure
//! (per-link tables, per-message jitter drawn from a seeded RNG).

use std::time::Duration;

use rand::Rng;

use crate::NodeId;

/// The one-way delay of each message the harness delivers.
///
/// Called once per message that goes on the wire, in the order of sends, so an implementation
/// may draw jitter from a seeded RNG and still replay exactly.
pub trait Latency {
    /// The one-way latency of a message from `from` to `to`.
    fn one_way(&mut self, from: NodeId, to: NodeId) -> Duration;
}

impl Latency for LatencyModel {
    fn one_way(&mut self, from: NodeId, to: NodeId) -> Duration {
        LatencyModel::one_way(self, from, to)
    }
}

/// Every link has the same latency.
impl Latency for Duration {
    fn one_way(&mut self, _: NodeId, _: NodeId) -> Duration {
        *self
    }
}

impl<F: FnMut(NodeId, NodeId) -> Duration> Latency for F {
    fn one_way(&mut self, from: NodeId, to: NodeId) -> Duration {
        self(from, to)
    }
}

/// The parameters of the plane latency model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyConfig {
    /// One-way latency of a link of length zero (processing, last mile). Default 5 ms.
    pub base: Duration,
    /// Extra one-way latency per unit of distance in the unit square. Default 102.5 ms, so the
    /// longest link (√2) has a 300 ms round trip.
    pub per_unit: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(5),
            per_unit: Duration::from_micros(102_500),
        }
    }
}

/// Node positions and the latency they imply.
#[derive(Debug, Clone)]
pub struct LatencyModel {
    config: LatencyConfig,
    positions: Vec<(f32, f32)>,
}

impl LatencyModel {
    /// Places `nodes` nodes uniformly at random in the unit square.
    pub fn random<R: Rng + ?Sized>(nodes: u32, config: LatencyConfig, rng: &mut R) -> Self {
        let positions = (0..nodes)
            .map(|_| (rng.random::<f32>(), rng.random::<f32>()))
            .collect();
        Self { config, positions }
    }

    /// The number of nodes placed.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether no node is placed.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// The one-way latency from `a` to `b` (symmetric). Panics if a node is out of range.
    pub fn one_way(&self, a: NodeId, b: NodeId) -> Duration {
        let (xa, ya) = self.positions[a as usize];
        let (xb, yb) = self.positions[b as usize];
        let (dx, dy) = (f64::from(xa - xb), f64::from(ya - yb));
        let dist = (dx * dx + dy * dy).sqrt();
        self.config.base + self.config.per_unit.mul_f64(dist)
    }

    /// The round-trip time of the link `a`–`b`.
    pub fn rtt(&self, a: NodeId, b: NodeId) -> Duration {
        self.one_way(a, b) * 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::seeded;

    #[test]
    fn latency_is_symmetric_and_rtts_span_the_configured_range() {
        let mut rng = seeded(1, 1);
        let m = LatencyModel::random(300, LatencyConfig::default(), &mut rng);
        let mut min = Duration::MAX;
        let mut max = Duration::ZERO;
        let mut sum = 0.0;
        let mut n = 0.0;
        for a in 0..300 {
            for b in (a + 1)..300 {
                assert_eq!(m.one_way(a, b), m.one_way(b, a));
                let r = m.rtt(a, b);
                min = min.min(r);
                max = max.max(r);
                sum += r.as_secs_f64();
                n += 1.0;
            }
        }
        assert!(
            min >= Duration::from_millis(10) && min < Duration::from_millis(20),
            "{min:?}"
        );
        assert!(
            max <= Duration::from_millis(300) && max > Duration::from_millis(250),
            "{max:?}"
        );
        let mean_ms = sum / n * 1000.0;
        assert!((100.0..135.0).contains(&mean_ms), "{mean_ms}");
    }

    #[test]
    fn a_node_to_itself_costs_the_base_latency() {
        let mut rng = seeded(2, 1);
        let m = LatencyModel::random(3, LatencyConfig::default(), &mut rng);
        assert_eq!(m.one_way(1, 1), Duration::from_millis(5));
        assert_eq!(m.len(), 3);
    }
}
