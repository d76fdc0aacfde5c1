//! Configuration of the routing table and of lookups, with the defaults of libp2p-kad and the
//! IPFS DHT (see `ANCHORS.md`): k = 20, α = 3, 10 s per request, 60 s per lookup, refresh every
//! 10 minutes.

use std::time::Duration;

use thiserror::Error;

/// A configuration value that cannot work. Returned by the constructors; nothing was built.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `k` (bucket size, or lookup result size) must be at least 1.
    #[error("k must be at least 1 (got 0)")]
    ZeroK,
    /// `alpha` (lookup parallelism) must be at least 1.
    #[error("alpha must be at least 1 (got 0)")]
    ZeroAlpha,
    /// `disjoint_paths` must be at least 1 (1 means "disjoint paths off").
    #[error("disjoint_paths must be at least 1 (got 0)")]
    ZeroPaths,
    /// `Termination::Beta(0)` would stop before anything answered.
    #[error("termination Beta(n) needs n >= 1 (got 0)")]
    ZeroBeta,
    /// `max_candidates` must be at least `k`, or the lookup could not even hold its result.
    #[error("max_candidates ({max_candidates}) must be at least k ({k})")]
    CandidatesBelowK {
        /// The configured cap.
        max_candidates: usize,
        /// The configured k.
        k: usize,
    },
}

/// Parameters of a [`RoutingTable`](crate::RoutingTable).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableConfig {
    /// Maximum number of entries per bucket (Kademlia's k). Default 20.
    pub k: usize,
    /// Maximum number of candidates remembered per full bucket, most recent kept. They are
    /// promoted when an entry of the bucket is evicted. Default 20 (= k); 0 disables the cache, and
    /// a full bucket then rejects newcomers outright.
    pub replacement_cache: usize,
    /// A bucket not looked up for this long is due for refresh. Default 10 minutes.
    pub refresh_interval: Duration,
    /// The driver times pings itself and reports the result with `ping_result`. If it never
    /// reports (a lost result), the table forgets the pending ping after this long, so the bucket
    /// can ask for a new one. Default 10 s (the request timeout).
    pub ping_timeout: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        Self {
            k: 20,
            replacement_cache: 20,
            refresh_interval: Duration::from_secs(600),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

impl TableConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.k == 0 {
            return Err(ConfigError::ZeroK);
        }
        Ok(())
    }
}

/// When an iterative lookup stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Termination {
    /// Kademlia's rule: stop when the k closest known peers have all answered (or no candidate is
    /// left). With α in flight this costs at least ⌈k/α⌉ round trips.
    Classic,
    /// The IPFS rule, with a finishing burst: α requests in flight until the `n` closest known
    /// peers have answered; from then on, the remaining unqueried peers among the k closest are
    /// all queried in parallel (up to k in flight), and the lookup ends when the k closest known
    /// have answered. Same result set as `Classic`, in about 2–3 fewer round trips.
    Beta(usize),
}

/// Parameters of a [`Lookup`](crate::Lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LookupConfig {
    /// Requests in flight per path while converging. Default 3 (rust-libp2p; the spec says 10).
    pub alpha: usize,
    /// Number of closest peers the lookup returns. Default 20.
    pub k: usize,
    /// A request not answered within this is a failure. Default 10 s.
    pub request_timeout: Duration,
    /// The whole lookup ends after this long, whatever its state. Default 60 s.
    pub deadline: Duration,
    /// Number of disjoint paths (S/Kademlia). 1 = off (default).
    pub disjoint_paths: usize,
    /// The stopping rule. Default `Beta(3)`.
    pub termination: Termination,
    /// Bound on the candidates remembered per path (memory is `O(max_candidates × paths)` whatever
    /// the peers answer). Default `4 × k` = 80: the far ones can never make the result.
    pub max_candidates: usize,
}

impl Default for LookupConfig {
    fn default() -> Self {
        Self {
            alpha: 3,
            k: 20,
            request_timeout: Duration::from_secs(10),
            deadline: Duration::from_secs(60),
            disjoint_paths: 1,
            termination: Termination::Beta(3),
            max_candidates: 80,
        }
    }
}

impl LookupConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.k == 0 {
            return Err(ConfigError::ZeroK);
        }
        if self.alpha == 0 {
            return Err(ConfigError::ZeroAlpha);
        }
        if self.disjoint_paths == 0 {
            return Err(ConfigError::ZeroPaths);
        }
        if self.termination == Termination::Beta(0) {
            return Err(ConfigError::ZeroBeta);
        }
        if self.max_candidates < self.k {
            return Err(ConfigError::CandidatesBelowK {
                max_candidates: self.max_candidates,
                k: self.k,
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_match_the_anchors() {
        let t = TableConfig::default();
        assert_eq!(t.validate(), Ok(()));
        assert_eq!(t.k, 20);
        assert_eq!(t.refresh_interval, Duration::from_secs(600));
        let l = LookupConfig::default();
        assert_eq!(l.validate(), Ok(()));
        assert_eq!((l.alpha, l.k, l.disjoint_paths), (3, 20, 1));
        assert_eq!(l.termination, Termination::Beta(3));
    }

    #[test]
    fn zero_values_are_rejected_with_a_named_error() {
        let t = TableConfig {
            k: 0,
            ..TableConfig::default()
        };
        assert_eq!(t.validate(), Err(ConfigError::ZeroK));
        let d = LookupConfig::default();
        let cases = [
            (LookupConfig { k: 0, ..d.clone() }, ConfigError::ZeroK),
            (
                LookupConfig {
                    alpha: 0,
                    ..d.clone()
                },
                ConfigError::ZeroAlpha,
            ),
            (
                LookupConfig {
                    disjoint_paths: 0,
                    ..d.clone()
                },
                ConfigError::ZeroPaths,
            ),
            (
                LookupConfig {
                    termination: Termination::Beta(0),
                    ..d.clone()
                },
                ConfigError::ZeroBeta,
            ),
            (
                LookupConfig {
                    max_candidates: 5,
                    ..d.clone()
                },
                ConfigError::CandidatesBelowK {
                    max_candidates: 5,
                    k: 20,
                },
            ),
        ];
        for (config, err) in cases {
            assert_eq!(config.validate(), Err(err.clone()));
            assert!(!err.to_string().is_empty());
        }
    }
}
