//! The compare-and-set metrics.

use bavard_replica::paxos::{Completion, Outcome};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels of `bavard_cas_rounds_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `committed`, `condition_failed`, `read`, `not_applied` or `unknown`.
    pub outcome: &'static str,
}

/// What the compare-and-set path counts (registered by [`crate::metrics::Metrics`]).
#[derive(Clone)]
pub struct CasMetrics {
    /// Linearizable operations (conditional and serial writes, serial reads) coordinated here,
    /// by outcome.
    pub rounds: Family<OutcomeLabels, Counter>,
    /// Prepare rounds they started (more than one per operation under contention).
    pub attempts: Counter,
    /// Attempts followed by another because of other proposers.
    pub contention_retries: Counter,
    /// Round trips to the replicas per operation (an uncontended CAS: 2; a serial read: 1).
    pub round_trips: Histogram,
}

impl Default for CasMetrics {
    fn default() -> Self {
        Self {
            rounds: Family::default(),
            attempts: Counter::default(),
            contention_retries: Counter::default(),
            round_trips: Histogram::new([
                1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
            ]),
        }
    }
}

impl CasMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cas_rounds",
            "Linearizable operations (compare-and-set, serial reads and writes) by outcome",
            self.rounds.clone(),
        );
        registry.register(
            "cas_attempts",
            "Paxos prepare rounds started by linearizable operations",
            self.attempts.clone(),
        );
        registry.register(
            "cas_contention_retries",
            "Paxos attempts retried because of other proposers",
            self.contention_retries.clone(),
        );
        registry.register(
            "cas_round_trips",
            "Round trips to the replicas per linearizable operation",
            self.round_trips.clone(),
        );
    }

    /// Counts one finished operation.
    pub fn observe(&self, done: &Completion) {
        let outcome = match done.outcome {
            Outcome::Committed { .. } => "committed",
            Outcome::ConditionFailed { .. } => "condition_failed",
            Outcome::Read { .. } => "read",
            Outcome::NotApplied { .. } => "not_applied",
            Outcome::Unknown { .. } => "unknown",
        };
        self.rounds.get_or_create(&OutcomeLabels { outcome }).inc();
        self.attempts.inc_by(u64::from(done.attempts));
        self.contention_retries
            .inc_by(u64::from(done.contention_retries));
        self.round_trips.observe(f64::from(done.round_trips));
    }
}
