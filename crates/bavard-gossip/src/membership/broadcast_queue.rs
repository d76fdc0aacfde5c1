//! The queue of membership updates waiting to be piggybacked (SWIM §4.1 "infection-style
//! dissemination", memberlist's `TransmitLimitedQueue`).
//!
//! Each update is sent up to `retransmit_mult · ceil(log10(N + 1))` times, which reaches every
//! member with high probability; the least transmitted (then the newest) go first, so fresh news
//! spreads before old news is repeated. A newer update about a member replaces the queued one.
//! The queue is bounded: when full, the most transmitted update is dropped.
//!
//! Updates about the local node itself (a refutation above all: `Alive` with a higher
//! incarnation) are urgent and go before everything else, whatever is waiting: a refutation
//! stuck behind a backlog of join announcements lets the suspicion run out (Lifeguard, §4.2,
//! relies on the refutation spreading at once). Refutations relayed for others (an `Alive` that
//! clears a suspicion) come next, before the rest: at thousands of members on a lossy network
//! the false suspicions alone fill every packet, and a refutation that waits behind them is one
//! that some member never hears before its suspicion timer runs out. Neither SWIM nor
//! memberlist orders a relayed refutation ahead; both cap the cluster size at which a given loss
//! rate is tolerated lower for it.

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

use super::message::Update;

#[derive(Debug, Clone)]
struct Entry<P> {
    update: Update<P>,
    transmits: u32,
    id: u64,
    /// 0 for urgent updates, 1 for relayed refutations, 2 for the others.
    rank: u8,
}

/// Sending priority: urgent first, then the least transmitted, then the newest.
type Key<P> = (u8, u32, Reverse<u64>, P);

/// Bounded, transmit-limited queue of updates, one per member.
#[derive(Debug, Clone)]
pub(crate) struct BroadcastQueue<P> {
    entries: HashMap<P, Entry<P>>,
    /// (rank, transmits, newest first, member): iteration order is the sending priority.
    order: BTreeSet<Key<P>>,
    next_id: u64,
    max_len: usize,
}

impl<P: Clone + Eq + Hash + Ord> BroadcastQueue<P> {
    pub(crate) fn new(max_len: usize) -> Self {
        Self {
            entries: HashMap::new(),
            order: BTreeSet::new(),
            next_id: 0,
            max_len: max_len.max(1),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queues `update`, replacing any queued update about the same member.
    pub(crate) fn push(&mut self, update: Update<P>) {
        self.insert(update, 2);
    }

    /// Queues `update` ahead of every update but the urgent ones: another member's refutation.
    pub(crate) fn push_refutation(&mut self, update: Update<P>) {
        self.insert(update, 1);
    }

    /// Queues `update` ahead of every non-urgent one (updates about the local node).
    pub(crate) fn push_urgent(&mut self, update: Update<P>) {
        self.insert(update, 0);
    }

    fn insert(&mut self, update: Update<P>, rank: u8) {
        let member = update.member.clone();
        if let Some(old) = self.entries.remove(&member) {
            self.order
                .remove(&(old.rank, old.transmits, Reverse(old.id), member.clone()));
        }
        let id = self.next_id;
        self.next_id += 1;
        self.order.insert((rank, 0, Reverse(id), member.clone()));
        self.entries.insert(
            member,
            Entry {
                update,
                transmits: 0,
                id,
                rank,
            },
        );
        while self.entries.len() > self.max_len {
            let Some(last) = self.order.pop_last() else {
                break;
            };
            self.entries.remove(&last.3);
        }
    }

    /// Takes up to `max_count` updates whose estimated sizes fit in `byte_budget`, counting one
    /// transmission for each and dropping those that reached `transmit_limit`.
    pub(crate) fn fetch(
        &mut self,
        max_count: usize,
        byte_budget: usize,
        transmit_limit: u32,
    ) -> Vec<Update<P>> {
        // Once a packet is nearly full, give up after a few updates that do not fit instead of
        // walking the whole queue for each message: with N members queued that walk made each
        // fetch O(N), and the simulator of 1,000 nodes spent half its time here.
        const MAX_SKIPPED: usize = 16;
        let mut picked = Vec::new();
        let mut used = 0;
        let mut skipped = 0;
        for key in &self.order {
            if picked.len() >= max_count || byte_budget.saturating_sub(used) < 64 {
                break;
            }
            let entry = &self.entries[&key.3];
            let len = entry.update.encoded_len() + 2;
            if used + len > byte_budget {
                skipped += 1;
                if skipped >= MAX_SKIPPED {
                    break;
                }
                continue;
            }
            used += len;
            picked.push(key.clone());
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.order.remove(&key);
            let entry = self.entries.get_mut(&key.3).expect("ordered entries exist");
            entry.transmits += 1;
            out.push(entry.update.clone());
            if entry.transmits >= transmit_limit {
                self.entries.remove(&key.3);
            } else {
                self.order
                    .insert((entry.rank, entry.transmits, key.2, key.3));
            }
        }
        out
    }
}

/// `retransmit_mult · ceil(log10(n + 1))`, at least 1.
pub(crate) fn retransmit_limit(retransmit_mult: u32, n: usize) -> u32 {
    let scale = ((n as f64) + 1.0).log10().ceil() as u32;
    (retransmit_mult * scale).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::MemberState;

    fn alive(member: u64, incarnation: u64) -> Update<u64> {
        Update {
            member,
            incarnation,
            state: MemberState::Alive,
            meta: vec![],
            signature: vec![],
            from: member,
        }
    }

    #[test]
    fn fresh_updates_go_before_retransmissions_and_expire_after_the_limit() {
        let mut q = BroadcastQueue::new(16);
        q.push(alive(1, 0));
        assert_eq!(q.fetch(1, 1400, 2), vec![alive(1, 0)]);
        q.push(alive(2, 0));
        assert_eq!(q.fetch(1, 1400, 2), vec![alive(2, 0)]);
        assert_eq!(q.fetch(2, 1400, 2).len(), 2);
        assert!(q.is_empty(), "both reached the limit of 2 transmissions");
    }

    #[test]
    fn urgent_updates_go_first_even_behind_a_backlog_of_fresh_ones() {
        let mut q = BroadcastQueue::new(64);
        q.push_urgent(alive(0, 3));
        for m in 1..40 {
            q.push(alive(m, 0));
        }
        assert_eq!(q.fetch(1, 1400, 4), vec![alive(0, 3)]);
        assert_eq!(
            q.fetch(1, 1400, 4),
            vec![alive(0, 3)],
            "still ahead after one transmission"
        );
        q.push(alive(0, 4));
        assert_eq!(q.len(), 40, "replaced, not duplicated");
        assert_eq!(q.fetch(1, 1400, 4), vec![alive(0, 4)], "newest fresh one");
    }

    #[test]
    fn relayed_refutations_go_after_urgent_updates_and_before_the_rest() {
        let mut q = BroadcastQueue::new(64);
        for m in 1..40 {
            q.push(alive(m, 0));
        }
        q.push_refutation(alive(50, 2));
        q.push_urgent(alive(0, 3));
        assert_eq!(q.fetch(2, 1400, 4), vec![alive(0, 3), alive(50, 2)]);
        assert_eq!(
            q.fetch(2, 1400, 4),
            vec![alive(0, 3), alive(50, 2)],
            "both still ahead after one transmission"
        );
    }

    #[test]
    fn a_newer_update_about_a_member_replaces_the_queued_one() {
        let mut q = BroadcastQueue::new(16);
        q.push(alive(1, 0));
        q.push(alive(1, 1));
        assert_eq!(q.len(), 1);
        assert_eq!(q.fetch(8, 1400, 4), vec![alive(1, 1)]);
    }

    #[test]
    fn fetch_respects_count_and_byte_budget_and_queue_is_bounded() {
        let mut q = BroadcastQueue::new(10);
        for m in 0..20 {
            q.push(alive(m, 0));
        }
        assert_eq!(q.len(), 10);
        assert_eq!(q.fetch(3, 1400, 4).len(), 3);
        let one = alive(0, 0).encoded_len() + 2;
        assert_eq!(q.fetch(10, 2 * one + 70, 4).len(), 2);
    }

    #[test]
    fn retransmit_limit_grows_with_log_of_cluster_size() {
        assert_eq!(retransmit_limit(4, 1), 4);
        assert_eq!(retransmit_limit(4, 9), 4);
        assert_eq!(retransmit_limit(4, 10), 8);
        assert_eq!(retransmit_limit(4, 1000), 16);
    }
}
