//! The checker: a history of operations in, a [`Verdict`] out. Pure: no clock, no I/O.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// What an operation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// A put of `value`.
    Write,
    /// A delete.
    Delete,
    /// A get; `value` is what it returned (`None`: not found).
    Read,
}

/// How an operation ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Acknowledged.
    Ok,
    /// Refused: the store said it did not happen (it may still have reached a replica).
    Fail,
    /// The client cannot tell (a timeout, a dropped connection).
    Unknown,
}

/// One client operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The client that ran it.
    pub client: usize,
    /// The key.
    pub key: String,
    /// Write, delete or read.
    pub kind: OpKind,
    /// How it ended.
    pub outcome: Outcome,
    /// The value written, or the value read.
    pub value: Option<String>,
    /// The version the store returned (writes, deletes and successful reads). For a write or
    /// delete whose outcome is unknown, the version it tried to write when the caller knows it
    /// (a simulator does): the checker then holds it to that version instead of assuming it
    /// could be any.
    pub version: Option<u64>,
    /// When it was invoked, ms since the start of the run.
    pub invoked_ms: u64,
    /// When it completed, ms since the start of the run.
    pub completed_ms: u64,
}

/// The state of a key after the cluster healed, read at quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalRead {
    /// The key.
    pub key: String,
    /// The value, `None` when absent or deleted.
    pub value: Option<String>,
    /// Its version, when there is a value.
    pub version: Option<u64>,
}

/// What the checker found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Acknowledged writes checked.
    pub acknowledged_writes: usize,
    /// Reads checked.
    pub reads_checked: usize,
    /// Acknowledged writes whose value is gone although nothing newer superseded it.
    pub lost_writes: Vec<Op>,
    /// Reads (including final ones) that returned a value no write wrote.
    pub phantom_reads: Vec<String>,
}

impl Verdict {
    /// True when nothing was lost and nothing was invented.
    pub fn is_valid(&self) -> bool {
        self.lost_writes.is_empty() && self.phantom_reads.is_empty()
    }
}

/// Checks a history against the final state of every key it touched.
pub fn check(history: &[Op], finals: &[FinalRead]) -> Verdict {
    let mut verdict = Verdict::default();
    let mut writes_by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        if matches!(op.kind, OpKind::Write | OpKind::Delete) {
            writes_by_key.entry(&op.key).or_default().push(op);
        }
    }
    let written = |key: &str, value: &str| {
        writes_by_key.get(key).is_some_and(|ws| {
            ws.iter()
                .any(|w| w.kind == OpKind::Write && w.value.as_deref() == Some(value))
        })
    };
    for op in history
        .iter()
        .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok)
    {
        verdict.reads_checked += 1;
        if let Some(v) = &op.value
            && !written(&op.key, v)
        {
            verdict
                .phantom_reads
                .push(format!("client {} read {:?} from {}", op.client, v, op.key));
        }
    }
    let finals: HashMap<&str, &FinalRead> = finals.iter().map(|f| (f.key.as_str(), f)).collect();
    for (key, writes) in &writes_by_key {
        let final_state = finals.get(key);
        // The highest version any delete may have reached; an unknown one without a version
        // could be anything.
        let delete_floor = writes
            .iter()
            .filter(|w| w.kind == OpKind::Delete && w.outcome != Outcome::Fail)
            .map(|w| w.version.unwrap_or(u64::MAX))
            .max();
        for w in writes.iter().filter(|w| w.outcome == Outcome::Ok) {
            verdict.acknowledged_writes += 1;
            let Some(vw) = w.version else { continue };
            let kept = match final_state {
                Some(FinalRead {
                    value: Some(_),
                    version: Some(vf),
                    ..
                }) => *vf >= vw,
                // Absent at the end: fine only if a delete at least as new may have happened.
                _ => w.kind == OpKind::Delete || delete_floor.is_some_and(|d| d >= vw),
            };
            if !kept {
                verdict.lost_writes.push((*w).clone());
            }
        }
        if let Some(FinalRead { value: Some(v), .. }) = final_state
            && !written(key, v)
        {
            verdict
                .phantom_reads
                .push(format!("final read of {key} returned {v:?}"));
        }
    }
    verdict
}

/// Reads that missed a write acknowledged before they started: for every successful read among
/// the ops `counted` selects (a caller passes the quorum reads and quorum writes, for which
/// R + W > N promises it), the newest version of its key acknowledged (by a counted write or
/// delete) before the read was invoked must be what it returned, or older than it. A read that
/// returned nothing is stale only if that newest acknowledged operation was a write and no
/// delete (acknowledged or not) may have superseded it.
pub fn stale_reads(history: &[Op], counted: impl Fn(&Op) -> bool) -> Vec<String> {
    let mut by_key: HashMap<&str, Vec<&Op>> = HashMap::new();
    for op in history {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut stale = Vec::new();
    for ops in by_key.values() {
        for r in ops
            .iter()
            .filter(|o| o.kind == OpKind::Read && o.outcome == Outcome::Ok && counted(o))
        {
            let newest = ops
                .iter()
                .filter(|w| {
                    w.kind != OpKind::Read
                        && w.outcome == Outcome::Ok
                        && w.completed_ms < r.invoked_ms
                        && counted(w)
                })
                .filter_map(|w| w.version.map(|v| (v, w.kind)))
                .max_by_key(|(v, _)| *v);
            let Some((vw, kind)) = newest else { continue };
            let is_stale = match (r.version, kind) {
                (Some(vr), _) => vr < vw,
                (None, OpKind::Write) => !ops.iter().any(|d| {
                    d.kind == OpKind::Delete
                        && d.outcome != Outcome::Fail
                        && d.invoked_ms < r.completed_ms
                        && d.version.is_none_or(|vd| vd >= vw)
                }),
                (None, _) => false,
            };
            if is_stale {
                stale.push(format!(
                    "client {} read {} at {} ms and got version {:?}, older than {vw} acknowledged before",
                    r.client, r.key, r.invoked_ms, r.version
                ));
            }
        }
    }
    stale.sort();
    stale
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, outcome: Outcome, value: Option<&str>, version: Option<u64>) -> Op {
        Op {
            client: 0,
            key: "k".into(),
            kind,
            outcome,
            value: value.map(str::to_string),
            version,
            invoked_ms: 0,
            completed_ms: 1,
        }
    }

    fn final_state(value: Option<&str>, version: Option<u64>) -> Vec<FinalRead> {
        vec![FinalRead {
            key: "k".into(),
            value: value.map(str::to_string),
            version,
        }]
    }

    #[test]
    fn a_superseded_write_is_not_lost() {
        let h = vec![
            op(OpKind::Write, Outcome::Ok, Some("a"), Some(1)),
            op(OpKind::Write, Outcome::Ok, Some("b"), Some(2)),
        ];
        let v = check(&h, &final_state(Some("b"), Some(2)));
        assert!(v.is_valid(), "{v:?}");
        assert_eq!(v.acknowledged_writes, 2);
    }

    #[test]
    fn an_acknowledged_write_older_state_is_a_lost_write() {
        let h = vec![
            op(OpKind::Write, Outcome::Ok, Some("a"), Some(1)),
            op(OpKind::Write, Outcome::Ok, Some("b"), Some(2)),
        ];
        let v = check(&h, &final_state(Some("a"), Some(1)));
        assert_eq!(v.lost_writes.len(), 1);
        assert_eq!(v.lost_writes[0].value.as_deref(), Some("b"));
    }

    #[test]
    fn a_vanished_write_without_delete_is_lost_and_with_a_newer_delete_is_not() {
        let w = op(OpKind::Write, Outcome::Ok, Some("a"), Some(5));
        assert_eq!(
            check(std::slice::from_ref(&w), &final_state(None, None))
                .lost_writes
                .len(),
            1
        );
        let d = op(OpKind::Delete, Outcome::Ok, None, Some(6));
        assert!(check(&[w.clone(), d], &final_state(None, None)).is_valid());
        let old_delete = op(OpKind::Delete, Outcome::Ok, None, Some(4));
        assert_eq!(
            check(&[w, old_delete], &final_state(None, None))
                .lost_writes
                .len(),
            1
        );
    }

    #[test]
    fn reads_of_values_never_written_are_phantoms_but_failed_writes_count_as_written() {
        let h = vec![
            op(OpKind::Write, Outcome::Fail, Some("maybe"), None),
            op(OpKind::Read, Outcome::Ok, Some("maybe"), Some(3)),
            op(OpKind::Read, Outcome::Ok, Some("ghost"), Some(9)),
        ];
        let v = check(&h, &final_state(Some("maybe"), Some(3)));
        assert_eq!(v.phantom_reads.len(), 1);
        assert!(v.phantom_reads[0].contains("ghost"));
    }

    #[test]
    fn an_unknown_delete_excuses_only_the_writes_its_version_supersedes() {
        let w = op(OpKind::Write, Outcome::Ok, Some("a"), Some(5));
        let gone = final_state(None, None);
        // Its version unknown, it may have superseded anything.
        let anything = op(OpKind::Delete, Outcome::Unknown, None, None);
        assert!(check(&[w.clone(), anything], &gone).is_valid());
        // Known (a simulator knows what its coordinator tried), it is held to it.
        let newer = op(OpKind::Delete, Outcome::Unknown, None, Some(6));
        assert!(check(&[w.clone(), newer], &gone).is_valid());
        let older = op(OpKind::Delete, Outcome::Unknown, None, Some(4));
        assert_eq!(check(&[w, older], &gone).lost_writes.len(), 1);
    }

    #[test]
    fn unacknowledged_writes_may_vanish() {
        let h = vec![op(OpKind::Write, Outcome::Unknown, Some("a"), None)];
        assert!(check(&h, &final_state(None, None)).is_valid());
    }

    fn timed(mut op: Op, invoked_ms: u64, completed_ms: u64) -> Op {
        op.invoked_ms = invoked_ms;
        op.completed_ms = completed_ms;
        op
    }

    #[test]
    fn a_read_older_than_a_write_acknowledged_before_it_started_is_stale() {
        let w = timed(op(OpKind::Write, Outcome::Ok, Some("b"), Some(7)), 0, 10);
        let fresh = timed(op(OpKind::Read, Outcome::Ok, Some("b"), Some(7)), 20, 30);
        let old = timed(op(OpKind::Read, Outcome::Ok, Some("a"), Some(3)), 20, 30);
        let missing = timed(op(OpKind::Read, Outcome::Ok, None, None), 20, 30);
        assert!(stale_reads(&[w.clone(), fresh], |_| true).is_empty());
        assert_eq!(stale_reads(&[w.clone(), old.clone()], |_| true).len(), 1);
        assert_eq!(
            stale_reads(&[w.clone(), missing.clone()], |_| true).len(),
            1
        );
        // Only the ops the caller counts (say, quorum ones) are held to it.
        assert!(stale_reads(&[w.clone(), old], |o| o.kind != OpKind::Read).is_empty());
        // A delete that may have happened explains a missing value.
        let maybe_deleted = timed(op(OpKind::Delete, Outcome::Unknown, None, None), 12, 40);
        assert!(stale_reads(&[w, missing, maybe_deleted], |_| true).is_empty());
    }

    #[test]
    fn concurrent_writes_and_deletes_do_not_make_reads_stale() {
        // The write completes after the read started: the read may or may not see it.
        let w = timed(op(OpKind::Write, Outcome::Ok, Some("b"), Some(7)), 0, 25);
        let r = timed(op(OpKind::Read, Outcome::Ok, None, None), 20, 30);
        assert!(stale_reads(&[w.clone(), r], |_| true).is_empty());
        // A delete acknowledged before: reading nothing is right.
        let d = timed(op(OpKind::Delete, Outcome::Ok, None, Some(9)), 26, 27);
        let r = timed(op(OpKind::Read, Outcome::Ok, None, None), 28, 30);
        assert!(stale_reads(&[w, d, r], |_| true).is_empty());
    }
}
