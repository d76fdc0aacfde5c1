//! Counters built from compare-and-set increments (read `n`, then set `n + 1` if the value is
//! still `n`): the final value of each counter against the increments clients were told
//! succeeded. The linearizability checker ([`crate::linearizable`]) judges the order of the
//! operations; this judges what a user of a counter sees at the end:
//!
//! - **lost increments**: a counter whose final value is below the number of increments
//!   acknowledged on it lost one (each committed increment adds exactly one);
//! - **phantom increments**: a counter above its acknowledged increments plus those whose
//!   outcome is unknown (which may or may not have taken effect) counts increments nobody made.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::linearizable::{Call, RegisterOp, Return};

/// A verdict that may be unknown, serialised as `true`, `false` or `"unknown"` (the JSON
/// `linearizable` field of the scenario and simulator reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tristate {
    /// Checked: it holds.
    Yes,
    /// Checked: it does not hold.
    No,
    /// Not decided (the checker's budget ran out).
    Unknown,
}

impl From<Option<bool>> for Tristate {
    fn from(v: Option<bool>) -> Self {
        match v {
            Some(true) => Tristate::Yes,
            Some(false) => Tristate::No,
            None => Tristate::Unknown,
        }
    }
}

impl Serialize for Tristate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Tristate::Yes => s.serialize_bool(true),
            Tristate::No => s.serialize_bool(false),
            Tristate::Unknown => s.serialize_str("unknown"),
        }
    }
}

/// What [`check_counters`] found, all counters together.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CounterVerdict {
    /// The final values, summed.
    pub final_counter: u64,
    /// Increments acknowledged (compare-and-sets answered `ok`).
    pub acknowledged_increments: u64,
    /// Increments whose outcome is unknown.
    pub unknown_increments: u64,
    /// Acknowledged increments missing from their counter.
    pub lost_increments: u64,
    /// Counter value beyond every acknowledged and unknown increment.
    pub phantom_increments: u64,
    /// One line per counter that lost or invented increments.
    pub problems: Vec<String>,
}

impl CounterVerdict {
    /// Whether nothing was lost or invented.
    pub fn is_ok(&self) -> bool {
        self.lost_increments == 0 && self.phantom_increments == 0
    }
}

/// Judges every counter of `finals` (key → final value, `None` for absent: 0) against the
/// compare-and-sets of `history` on it.
pub fn check_counters(
    history: &[RegisterOp<u64>],
    finals: &BTreeMap<String, Option<u64>>,
) -> CounterVerdict {
    let mut acked: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unknown: BTreeMap<&str, u64> = BTreeMap::new();
    for op in history {
        if matches!(op.call, Call::Cas { .. }) {
            match op.ret {
                Return::Ok => *acked.entry(&op.key).or_default() += 1,
                Return::Unknown => *unknown.entry(&op.key).or_default() += 1,
                _ => {}
            }
        }
    }
    let mut v = CounterVerdict {
        acknowledged_increments: acked.values().sum(),
        unknown_increments: unknown.values().sum(),
        ..CounterVerdict::default()
    };
    for (key, value) in finals {
        let value = value.unwrap_or(0);
        v.final_counter += value;
        let a = acked.get(key.as_str()).copied().unwrap_or(0);
        let u = unknown.get(key.as_str()).copied().unwrap_or(0);
        if value < a {
            v.lost_increments += a - value;
            v.problems.push(format!(
                "{key}: counter {value}, {a} increments acknowledged"
            ));
        }
        if value > a + u {
            v.phantom_increments += value - a - u;
            v.problems.push(format!(
                "{key}: counter {value}, only {a} acknowledged and {u} unknown increments"
            ));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cas(key: &str, ret: Return<u64>) -> RegisterOp<u64> {
        RegisterOp {
            client: 0,
            key: key.into(),
            call: Call::Cas {
                expected: None,
                new: Some(1),
            },
            ret,
            invoked: 0,
            completed: 1,
        }
    }

    #[test]
    fn counters_between_acknowledged_and_acknowledged_plus_unknown_pass() {
        let history = [
            cas("a", Return::Ok),
            cas("a", Return::Ok),
            cas("a", Return::Unknown),
            cas("a", Return::Mismatch),
            cas("b", Return::Fail),
        ];
        for final_a in [2, 3] {
            let finals = BTreeMap::from([("a".to_string(), Some(final_a)), ("b".into(), None)]);
            let v = check_counters(&history, &finals);
            assert!(v.is_ok(), "{v:?}");
            assert_eq!((v.acknowledged_increments, v.unknown_increments), (2, 1));
            assert_eq!(v.final_counter, final_a);
        }
    }

    #[test]
    fn a_counter_below_its_acknowledged_increments_lost_one_and_above_them_invented_one() {
        let history = [cas("a", Return::Ok), cas("a", Return::Ok)];
        let v = check_counters(&history, &BTreeMap::from([("a".to_string(), Some(1))]));
        assert_eq!((v.lost_increments, v.phantom_increments), (1, 0));
        assert!(!v.is_ok() && v.problems[0].contains("2 increments acknowledged"));
        let v = check_counters(&history, &BTreeMap::from([("a".to_string(), Some(4))]));
        assert_eq!((v.lost_increments, v.phantom_increments), (0, 2));
        assert_eq!(
            serde_json::to_value(Tristate::from(None)).unwrap(),
            serde_json::json!("unknown")
        );
        assert_eq!(
            serde_json::to_value(Tristate::from(Some(false))).unwrap(),
            serde_json::json!(false)
        );
    }
}
