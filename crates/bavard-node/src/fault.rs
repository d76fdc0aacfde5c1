//! A test-only fault layer: delay, jitter and loss on this node's outgoing protocol traffic.
//!
//! The machines bavard's testbeds run on have no `tc netem`, so latency and loss between nodes are
//! injected here, per peer: every outgoing Kademlia and replica-protocol request waits
//! `delay ± jitter` before it is sent and is lost (it fails as a timeout would) with probability
//! `drop_rate`; outgoing gossip frames are dropped with the same probability (they are not
//! delayed, so their order per peer is kept).
//!
//! It is off unless the config has a `[fault_injection]` section with `enabled = true`, and the
//! node logs a warning at start when it is on: it must never be enabled by accident in
//! production.
//!
//! ```toml
//! [fault_injection]
//! enabled = true
//! delay_ms = 40
//! jitter_ms = 10
//! drop_rate = 0.05
//! [fault_injection.peers."12D3KooW..."]   # overrides for one peer
//! drop_rate = 0.5
//! ```

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use libp2p::PeerId;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

/// The `[fault_injection]` config section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultConfig {
    /// Nothing happens unless this is true.
    pub enabled: bool,
    /// Added to every outgoing request, in ms.
    pub delay_ms: u64,
    /// The delay varies uniformly by up to this much either way, in ms.
    pub jitter_ms: u64,
    /// Probability that an outgoing request or gossip frame is lost, in `[0, 1]`.
    pub drop_rate: f64,
    /// Per-peer overrides, keyed by peer id.
    pub peers: HashMap<String, PeerFault>,
    /// Serve corrupt blob blocks (one bit flipped in each): a hostile provider, for the
    /// tests that show a fetch drops it at its first bad block.
    pub corrupt_blob_blocks: bool,
}

/// Overrides for one peer; unset fields take the section's values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerFault {
    /// Delay in ms.
    pub delay_ms: Option<u64>,
    /// Jitter in ms.
    pub jitter_ms: Option<u64>,
    /// Loss probability.
    pub drop_rate: Option<f64>,
}

impl FaultConfig {
    /// Checks rates and peer ids.
    pub fn validate(&self) -> anyhow::Result<()> {
        let rates =
            std::iter::once(self.drop_rate).chain(self.peers.values().filter_map(|p| p.drop_rate));
        for r in rates {
            if !(0.0..=1.0).contains(&r) {
                anyhow::bail!("fault_injection drop_rate {r} is outside [0, 1]");
            }
        }
        for id in self.peers.keys() {
            id.parse::<PeerId>()
                .map_err(|_| anyhow::anyhow!("fault_injection.peers: {id:?} is not a peer id"))?;
        }
        Ok(())
    }
}

/// The running fault layer.
pub(crate) struct FaultLayer {
    delay: Duration,
    jitter: Duration,
    drop_rate: f64,
    peers: HashMap<PeerId, PeerFault>,
    corrupt_blob_blocks: bool,
    rng: Mutex<StdRng>,
}

/// The fault layer lost this message.
#[derive(Debug)]
pub(crate) struct Dropped;

impl FaultLayer {
    /// The layer for `config`, or `None` when fault injection is off.
    pub(crate) fn new(config: &FaultConfig) -> Option<Self> {
        if !config.enabled {
            return None;
        }
        tracing::warn!(
            delay_ms = config.delay_ms,
            jitter_ms = config.jitter_ms,
            drop_rate = config.drop_rate,
            peers = config.peers.len(),
            corrupt_blob_blocks = config.corrupt_blob_blocks,
            "FAULT INJECTION IS ON: outgoing traffic is delayed and dropped on purpose (test only)"
        );
        Some(Self {
            delay: Duration::from_millis(config.delay_ms),
            jitter: Duration::from_millis(config.jitter_ms),
            drop_rate: config.drop_rate,
            peers: config
                .peers
                .iter()
                .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
                .collect(),
            corrupt_blob_blocks: config.corrupt_blob_blocks,
            rng: Mutex::new(StdRng::from_os_rng()),
        })
    }

    fn params(&self, peer: &PeerId) -> (Duration, Duration, f64) {
        match self.peers.get(peer) {
            Some(p) => (
                p.delay_ms.map_or(self.delay, Duration::from_millis),
                p.jitter_ms.map_or(self.jitter, Duration::from_millis),
                p.drop_rate.unwrap_or(self.drop_rate),
            ),
            None => (self.delay, self.jitter, self.drop_rate),
        }
    }

    /// Whether served blob blocks are corrupted on purpose.
    pub(crate) fn corrupts_blobs(&self) -> bool {
        self.corrupt_blob_blocks
    }

    /// Whether a message to `peer` is lost.
    pub(crate) fn drops(&self, peer: &PeerId) -> bool {
        let (_, _, rate) = self.params(peer);
        rate > 0.0
            && self
                .rng
                .lock()
                .expect("fault rng")
                .random_bool(rate.min(1.0))
    }

    /// Waits the configured delay for a request to `peer`, then loses it or lets it through.
    pub(crate) async fn outbound(&self, peer: &PeerId) -> Result<(), Dropped> {
        let (delay, jitter, _) = self.params(peer);
        let wait = if jitter.is_zero() {
            delay
        } else {
            let j = jitter.as_micros() as i64;
            let offset = self.rng.lock().expect("fault rng").random_range(-j..=j);
            Duration::from_micros((delay.as_micros() as i64 + offset).max(0) as u64)
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if self.drops(peer) {
            Err(Dropped)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_bad_settings_are_refused() {
        assert!(FaultLayer::new(&FaultConfig::default()).is_none());
        let bad = FaultConfig {
            drop_rate: 1.5,
            ..FaultConfig::default()
        };
        assert!(bad.validate().is_err());
        let mut bad_peer = FaultConfig::default();
        bad_peer.peers.insert("nope".into(), PeerFault::default());
        assert!(bad_peer.validate().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_are_delayed_and_a_full_drop_rate_loses_everything() {
        let peer = PeerId::random();
        let mut cfg = FaultConfig {
            enabled: true,
            delay_ms: 100,
            jitter_ms: 0,
            drop_rate: 0.0,
            ..FaultConfig::default()
        };
        let layer = FaultLayer::new(&cfg).unwrap();
        let start = tokio::time::Instant::now();
        layer.outbound(&peer).await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(100));
        cfg.peers.insert(
            peer.to_string(),
            PeerFault {
                drop_rate: Some(1.0),
                ..PeerFault::default()
            },
        );
        let layer = FaultLayer::new(&cfg).unwrap();
        assert!(layer.outbound(&peer).await.is_err());
        assert!(layer.drops(&peer));
        assert!(!layer.drops(&PeerId::random()));
    }
}
