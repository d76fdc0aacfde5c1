//! Plumtree: epidemic broadcast trees over the HyParView active view of one topic.
//!
//! João Leitão, José Pereira, Luís Rodrigues, "Epidemic Broadcast Trees", SRDS 2007. Each
//! active-view neighbour is either an **eager** peer (a tree edge: full payloads are pushed to
//! it) or a **lazy** peer (only message ids are announced to it, in `IHave`s). New neighbours
//! start eager, so the first broadcast floods the overlay; every duplicate payload is answered
//! with `Prune`, which turns that link lazy, and what remains eager is a spanning tree.
//!
//! The lazy links repair the tree: on an `IHave` for a message not yet delivered, a timer starts
//! (`graft_timeout_1`); if the payload has not arrived when it fires, the node sends `Graft` to
//! the announcer, which makes the link eager again and resends the payload; the next announcer
//! is tried after `graft_timeout_2`. `IHave`s are batched per peer and flushed every
//! `ihave_interval` (or as soon as a batch holds `max_ihave_ids`).
//!
//! Tree optimisation (section 3.8 of the paper): when an `IHave` shows that the announcer is at
//! least `optimization_threshold` hops closer to the publisher than the parent we got the
//! message from, the node grafts the announcer (without asking for the payload) and prunes the
//! parent.
//!
//! Hop counts: the publisher sends `hops = 0`; a node delivers at `hops + 1` and forwards with
//! its own delivery hop count. A node delivers each message at most once: ids are remembered in
//! a bounded, expiring seen-cache; payloads are kept in a bounded cache to answer grafts, with
//! their publisher and its signature, so a graft answer carries the original signature.
//!
//! Only active-view neighbours take part in the tree: the [topic](super::topic) drops Plumtree
//! messages from anyone else, and payloads whose publisher signature does not verify, before
//! they reach this state. So a message id is only remembered once a genuine copy arrived: a
//! forged copy, before or after, neither displaces nor blocks it. (A member that may publish can
//! still publish under an id someone else uses, and whichever copy a node sees first wins there;
//! content-addressed ids checked by the authenticator close that, see
//! [`Broadcast::publish_with_id`](super::Broadcast::publish_with_id).)
//!
//! iroh-gossip's `proto/plumtree.rs` was read for ideas; this is our own implementation.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;
use std::time::Instant;

use super::cache::{CachedPayload, PayloadCache, SeenCache, SeenEntry};
use super::config::PlumtreeConfig;
use super::error::BroadcastError;
use super::message::{IHaveEntry, MessageBody, MessageId};

/// What the broadcast layer asks its owner to do.
#[derive(Debug)]
pub(crate) enum PtOutput<P> {
    Send(P, MessageBody<P>),
    Deliver {
        id: MessageId,
        payload: Vec<u8>,
        publisher: P,
        from: P,
        hops: u16,
    },
}

/// A message announced by lazy peers but not delivered yet.
#[derive(Debug)]
struct Missing<P> {
    /// Announcers not grafted yet, in arrival order.
    announcers: VecDeque<P>,
    /// The announcer with the smallest hop count so far, and that count: if the payload then
    /// comes through a much longer eager path, the tree is optimised as for a late `IHave`.
    best: (P, u16),
}

/// Plumtree state for one topic.
#[derive(Debug)]
pub(crate) struct Plumtree<P> {
    config: PlumtreeConfig,
    eager: BTreeSet<P>,
    lazy: BTreeSet<P>,
    seen: SeenCache<P>,
    payloads: PayloadCache<P>,
    missing: HashMap<MessageId, Missing<P>>,
    /// Graft timers: (deadline, sequence number) → message; stale ones are skipped on expiry.
    graft_timers: BTreeMap<(Instant, u64), MessageId>,
    timer_seq: u64,
    /// `IHave` entries waiting for the next flush, per lazy peer.
    lazy_queue: BTreeMap<P, Vec<IHaveEntry>>,
    next_flush: Option<Instant>,
}

impl<P: Clone + Eq + Hash + Ord + Debug> Plumtree<P> {
    pub(crate) fn new(config: PlumtreeConfig) -> Self {
        Self {
            seen: SeenCache::new(config.message_cache_ttl, config.seen_cache_capacity),
            payloads: PayloadCache::new(
                config.message_cache_ttl,
                config.payload_cache_capacity,
                config.payload_cache_bytes,
            ),
            config,
            eager: BTreeSet::new(),
            lazy: BTreeSet::new(),
            missing: HashMap::new(),
            graft_timers: BTreeMap::new(),
            timer_seq: 0,
            lazy_queue: BTreeMap::new(),
            next_flush: None,
        }
    }

    pub(crate) fn eager(&self) -> &BTreeSet<P> {
        &self.eager
    }

    pub(crate) fn lazy(&self) -> &BTreeSet<P> {
        &self.lazy
    }

    pub(crate) fn seen_len(&self) -> usize {
        self.seen.len()
    }

    /// A new active-view neighbour starts as an eager peer.
    pub(crate) fn neighbor_up(&mut self, peer: P) {
        self.lazy.remove(&peer);
        self.eager.insert(peer);
    }

    /// Announces the most recent cached messages to `peer`, a new neighbour (see
    /// [`PlumtreeConfig::announce_to_new_neighbors`]).
    pub(crate) fn announce_recent(&mut self, now: Instant, peer: P, out: &mut Vec<PtOutput<P>>) {
        self.payloads.expire(now);
        let entries: Vec<IHaveEntry> = self
            .payloads
            .recent(self.config.announce_to_new_neighbors)
            .map(|id| IHaveEntry {
                id,
                hops: self.seen.get(&id).map_or(0, |s| s.hops),
            })
            .collect();
        if !entries.is_empty() {
            self.send_ihave(peer, entries, out);
        }
    }

    /// A neighbour that left the active view leaves both sets.
    pub(crate) fn neighbor_down(&mut self, peer: &P) {
        self.eager.remove(peer);
        self.lazy.remove(peer);
        self.lazy_queue.remove(peer);
    }

    /// Checks a broadcast message before it touches any state.
    pub(crate) fn validate(&self, body: &MessageBody<P>) -> Result<(), BroadcastError> {
        match body {
            MessageBody::Gossip { payload, .. } if payload.len() > self.config.max_message_size => {
                Err(BroadcastError::MessageTooLarge {
                    size: payload.len(),
                    max: self.config.max_message_size,
                })
            }
            MessageBody::Gossip { signature, .. }
                if signature.len() > self.config.max_signature_len =>
            {
                Err(BroadcastError::SignatureTooLarge {
                    size: signature.len(),
                    max: self.config.max_signature_len,
                })
            }
            MessageBody::IHave { entries } if entries.len() > self.config.max_ihave_ids => {
                Err(BroadcastError::TooManyIds {
                    count: entries.len(),
                    max: self.config.max_ihave_ids,
                })
            }
            _ => Ok(()),
        }
    }

    /// Publishes a message of ours (`publisher` is the local id); `sign` is called once the
    /// message passed the checks and returns the publisher's signature of the payload.
    pub(crate) fn broadcast(
        &mut self,
        now: Instant,
        id: MessageId,
        publisher: P,
        payload: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> Vec<u8>,
        out: &mut Vec<PtOutput<P>>,
    ) -> Result<(), BroadcastError> {
        if payload.len() > self.config.max_message_size {
            return Err(BroadcastError::MessageTooLarge {
                size: payload.len(),
                max: self.config.max_message_size,
            });
        }
        self.seen.expire(now);
        if self.seen.contains(&id) {
            return Err(BroadcastError::DuplicateMessageId(id));
        }
        self.seen.insert(
            now,
            id,
            SeenEntry {
                hops: 0,
                parent: None,
            },
        );
        let signature = sign(&payload);
        let message = CachedPayload {
            publisher,
            payload,
            signature,
        };
        self.forward(now, id, 0, &message, None, out);
        self.payloads.insert(now, id, message);
        Ok(())
    }

    /// Handles a broadcast message from `from`, an active-view neighbour, validated by
    /// [`Self::validate`] and, for a payload, with its signature verified; other bodies are
    /// ignored.
    pub(crate) fn handle(
        &mut self,
        now: Instant,
        from: P,
        body: MessageBody<P>,
        out: &mut Vec<PtOutput<P>>,
    ) {
        match body {
            MessageBody::Gossip {
                id,
                hops,
                publisher,
                payload,
                signature,
            } => {
                let message = CachedPayload {
                    publisher,
                    payload,
                    signature,
                };
                self.on_gossip(now, from, id, hops, message, out)
            }
            MessageBody::IHave { entries } => self.on_ihave(now, from, entries, out),
            MessageBody::Graft { id } => self.on_graft(from, id, out),
            MessageBody::Prune => self.on_prune(from),
            _ => {}
        }
    }

    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let graft = self.graft_timers.keys().next().map(|(t, _)| *t);
        match (graft, self.next_flush) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(crate) fn handle_timeout(&mut self, now: Instant, out: &mut Vec<PtOutput<P>>) {
        self.seen.expire(now);
        self.payloads.expire(now);
        if self.next_flush.is_some_and(|t| t <= now) {
            self.next_flush = None;
            let queue = std::mem::take(&mut self.lazy_queue);
            for (peer, entries) in queue {
                self.send_ihave(peer, entries, out);
            }
        }
        while let Some(entry) = self.graft_timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let id = entry.remove();
            self.on_graft_timer(now, id, out);
        }
    }

    fn on_prune(&mut self, from: P) {
        if self.eager.remove(&from) {
            self.lazy.insert(from);
        }
    }

    fn on_gossip(
        &mut self,
        now: Instant,
        from: P,
        id: MessageId,
        hops: u16,
        message: CachedPayload<P>,
        out: &mut Vec<PtOutput<P>>,
    ) {
        self.seen.expire(now);
        if self.seen.contains(&id) {
            // Duplicate: this link is redundant, make it lazy on both sides. The copy is dropped
            // whatever it holds: the first one delivered stays the message (and the payload
            // kept for grafts).
            if self.eager.remove(&from) {
                self.lazy.insert(from.clone());
            }
            out.push(PtOutput::Send(from, MessageBody::Prune));
            return;
        }
        let hops = hops.saturating_add(1);
        let announced = self.missing.remove(&id).map(|m| m.best);
        self.seen.insert(
            now,
            id,
            SeenEntry {
                hops,
                parent: Some(from.clone()),
            },
        );
        self.lazy.remove(&from);
        self.eager.insert(from.clone());
        self.forward(now, id, hops, &message, Some(&from), out);
        let (payload, publisher) = (message.payload.clone(), message.publisher.clone());
        self.payloads.insert(now, id, message);
        // The `IHave` came first but the payload took a much longer path: optimise now (the
        // paper only looks at announcements that arrive after the payload, which on a deep
        // tree are the minority).
        if let Some((announcer, announced_hops)) = announced
            && (self.lazy.contains(&announcer) || self.eager.contains(&announcer))
        {
            self.optimize(id, announcer, announced_hops, out);
        }
        out.push(PtOutput::Deliver {
            id,
            payload,
            publisher,
            from,
            hops,
        });
    }

    fn on_ihave(
        &mut self,
        now: Instant,
        from: P,
        entries: Vec<IHaveEntry>,
        out: &mut Vec<PtOutput<P>>,
    ) {
        self.seen.expire(now);
        for IHaveEntry { id, hops } in entries {
            if self.seen.contains(&id) {
                self.optimize(id, from.clone(), hops, out);
                continue;
            }
            if let Some(missing) = self.missing.get_mut(&id) {
                if hops < missing.best.1 {
                    missing.best = (from.clone(), hops);
                }
                if !missing.announcers.contains(&from)
                    && missing.announcers.len() < self.config.max_announcers
                {
                    missing.announcers.push_back(from.clone());
                }
                continue;
            }
            if self.missing.len() >= self.config.max_missing {
                // The lazy path is best effort: under a flood of announcements, ignore the rest.
                continue;
            }
            self.missing.insert(
                id,
                Missing {
                    announcers: VecDeque::from([from.clone()]),
                    best: (from.clone(), hops),
                },
            );
            self.arm_graft_timer(now + self.config.graft_timeout_1, id);
        }
    }

    /// Tree optimisation (section 3.8): `announcer`, a neighbour, has `id` at `announced_hops`;
    /// if that beats our delivery hop count by `optimization_threshold`, it becomes our eager
    /// parent (told with a `Graft` without id: it has nothing to resend) and the old parent is
    /// pruned.
    fn optimize(
        &mut self,
        id: MessageId,
        announcer: P,
        announced_hops: u16,
        out: &mut Vec<PtOutput<P>>,
    ) {
        let Some(seen) = self.seen.get_mut(&id) else {
            return;
        };
        let via_announcer = announced_hops.saturating_add(1);
        let better = seen.hops >= via_announcer.saturating_add(self.config.optimization_threshold);
        let Some(parent) = seen.parent.clone() else {
            return;
        };
        if !better || parent == announcer {
            return;
        }
        seen.parent = Some(announcer.clone());
        seen.hops = via_announcer;
        out.push(PtOutput::Send(
            announcer.clone(),
            MessageBody::Graft { id: None },
        ));
        self.lazy.remove(&announcer);
        self.eager.insert(announcer);
        out.push(PtOutput::Send(parent.clone(), MessageBody::Prune));
        if self.eager.remove(&parent) {
            self.lazy.insert(parent);
        }
    }

    fn on_graft(&mut self, from: P, id: Option<MessageId>, out: &mut Vec<PtOutput<P>>) {
        self.lazy.remove(&from);
        self.eager.insert(from.clone());
        let Some(id) = id else {
            return;
        };
        let hops = self.seen.get(&id).map_or(0, |s| s.hops);
        if let Some(message) = self.payloads.get(&id) {
            out.push(PtOutput::Send(from, message.to_gossip(id, hops)));
        }
    }

    fn on_graft_timer(&mut self, now: Instant, id: MessageId, out: &mut Vec<PtOutput<P>>) {
        if self.seen.contains(&id) {
            self.missing.remove(&id);
            return;
        }
        let Some(missing) = self.missing.get_mut(&id) else {
            return;
        };
        let Some(announcer) = missing.announcers.pop_front() else {
            self.missing.remove(&id);
            return;
        };
        if self.lazy.remove(&announcer) {
            self.eager.insert(announcer.clone());
        }
        out.push(PtOutput::Send(
            announcer,
            MessageBody::Graft { id: Some(id) },
        ));
        // Next announcer after `graft_timeout_2`; with none left, the entry is dropped then, and
        // a later announcement starts over.
        self.arm_graft_timer(now + self.config.graft_timeout_2, id);
    }

    fn arm_graft_timer(&mut self, at: Instant, id: MessageId) {
        self.timer_seq += 1;
        self.graft_timers.insert((at, self.timer_seq), id);
    }

    /// Eager push to the tree edges, lazy announcement to the others.
    fn forward(
        &mut self,
        now: Instant,
        id: MessageId,
        hops: u16,
        message: &CachedPayload<P>,
        except: Option<&P>,
        out: &mut Vec<PtOutput<P>>,
    ) {
        for peer in self.eager.iter().filter(|p| Some(*p) != except) {
            out.push(PtOutput::Send(peer.clone(), message.to_gossip(id, hops)));
        }
        let lazy: Vec<P> = self
            .lazy
            .iter()
            .filter(|p| Some(*p) != except)
            .cloned()
            .collect();
        for peer in lazy {
            let queue = self.lazy_queue.entry(peer.clone()).or_default();
            queue.push(IHaveEntry { id, hops });
            if queue.len() >= self.config.max_ihave_ids {
                let entries = std::mem::take(queue);
                self.lazy_queue.remove(&peer);
                self.send_ihave(peer, entries, out);
            }
        }
        if !self.lazy_queue.is_empty() && self.next_flush.is_none() {
            self.next_flush = Some(now + self.config.ihave_interval);
        }
    }

    fn send_ihave(&self, peer: P, entries: Vec<IHaveEntry>, out: &mut Vec<PtOutput<P>>) {
        for chunk in entries.chunks(self.config.max_ihave_ids.max(1)) {
            out.push(PtOutput::Send(
                peer.clone(),
                MessageBody::IHave {
                    entries: chunk.to_vec(),
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn id(n: u8) -> MessageId {
        MessageId([n; 32])
    }

    fn sends(out: &[PtOutput<u64>]) -> Vec<(u64, MessageBody<u64>)> {
        out.iter()
            .filter_map(|o| match o {
                PtOutput::Send(p, b) => Some((*p, b.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn duplicate_payload_prunes_the_sender_to_lazy() {
        let now = Instant::now();
        let mut pt = Plumtree::new(PlumtreeConfig::default());
        pt.neighbor_up(1);
        pt.neighbor_up(2);
        let mut out = Vec::new();
        let gossip = MessageBody::Gossip {
            id: id(1),
            hops: 0,
            publisher: 9,
            payload: vec![1],
            signature: vec![],
        };
        pt.handle(now, 1, gossip.clone(), &mut out);
        assert_eq!(
            out.iter()
                .filter(|o| matches!(o, PtOutput::Deliver { .. }))
                .count(),
            1
        );
        out.clear();
        pt.handle(now, 2, gossip, &mut out);
        assert_eq!(sends(&out), vec![(2, MessageBody::Prune)]);
        assert!(pt.lazy().contains(&2));
        assert!(pt.eager().contains(&1));
    }

    #[test]
    fn ihave_for_an_unknown_message_grafts_the_announcer_after_the_timeout() {
        let now = Instant::now();
        let config = PlumtreeConfig::default();
        let mut pt = Plumtree::new(config.clone());
        pt.neighbor_up(1);
        pt.neighbor_up(2);
        pt.handle(now, 1, MessageBody::Prune, &mut Vec::new());
        pt.handle(now, 2, MessageBody::Prune, &mut Vec::new());
        let mut out = Vec::new();
        let ihave = |n| MessageBody::IHave {
            entries: vec![IHaveEntry { id: id(n), hops: 2 }],
        };
        pt.handle(now, 1, ihave(7), &mut out);
        pt.handle(now, 2, ihave(7), &mut out);
        assert!(out.is_empty());
        assert_eq!(pt.poll_timeout(), Some(now + config.graft_timeout_1));
        pt.handle_timeout(now + config.graft_timeout_1, &mut out);
        assert_eq!(
            sends(&out),
            vec![(1, MessageBody::Graft { id: Some(id(7)) })]
        );
        assert!(pt.eager().contains(&1));
        out.clear();
        let later = now + config.graft_timeout_1 + config.graft_timeout_2;
        pt.handle_timeout(later, &mut out);
        assert_eq!(
            sends(&out),
            vec![(2, MessageBody::Graft { id: Some(id(7)) })]
        );
        out.clear();
        pt.handle(
            later,
            2,
            MessageBody::Gossip {
                id: id(7),
                hops: 2,
                publisher: 9,
                payload: vec![7],
                signature: vec![],
            },
            &mut out,
        );
        assert!(
            out.iter()
                .any(|o| matches!(o, PtOutput::Deliver { hops: 3, .. }))
        );
        out.clear();
        pt.handle_timeout(later + Duration::from_secs(1), &mut out);
        assert!(
            sends(&out)
                .iter()
                .all(|(_, b)| !matches!(b, MessageBody::Graft { .. }))
        );
    }

    #[test]
    fn graft_resends_the_cached_payload_and_makes_the_link_eager() {
        let now = Instant::now();
        let mut pt = Plumtree::new(PlumtreeConfig::default());
        pt.neighbor_up(1);
        pt.handle(now, 1, MessageBody::Prune, &mut Vec::new());
        let mut out = Vec::new();
        pt.broadcast(now, id(3), 0, vec![3, 3], |_| vec![0xa5; 4], &mut out)
            .unwrap();
        out.clear();
        pt.handle(now, 1, MessageBody::Graft { id: Some(id(3)) }, &mut out);
        assert_eq!(
            sends(&out),
            vec![(
                1,
                MessageBody::Gossip {
                    id: id(3),
                    hops: 0,
                    publisher: 0,
                    payload: vec![3, 3],
                    signature: vec![0xa5; 4],
                }
            )]
        );
        assert!(pt.eager().contains(&1));
    }

    #[test]
    fn much_shorter_path_announced_by_ihave_replaces_the_parent() {
        let now = Instant::now();
        let mut pt = Plumtree::new(PlumtreeConfig::default());
        pt.neighbor_up(1);
        pt.neighbor_up(2);
        let mut out = Vec::new();
        pt.handle(
            now,
            1,
            MessageBody::Gossip {
                id: id(1),
                hops: 9,
                publisher: 9,
                payload: vec![],
                signature: vec![],
            },
            &mut out,
        );
        out.clear();
        let ihave = MessageBody::IHave {
            entries: vec![IHaveEntry { id: id(1), hops: 2 }],
        };
        pt.handle(now, 2, ihave, &mut out);
        let sent = sends(&out);
        assert!(sent.contains(&(2, MessageBody::Graft { id: None })));
        assert!(sent.contains(&(1, MessageBody::Prune)));
        assert!(pt.eager().contains(&2) && pt.lazy().contains(&1));
    }

    #[test]
    fn short_path_announced_before_a_late_payload_still_replaces_the_parent() {
        let now = Instant::now();
        let mut pt = Plumtree::new(PlumtreeConfig::default());
        for p in [1, 2, 3] {
            pt.neighbor_up(p);
        }
        pt.handle(now, 2, MessageBody::Prune, &mut Vec::new());
        pt.handle(now, 3, MessageBody::Prune, &mut Vec::new());
        let mut out = Vec::new();
        let ihave = |hops| MessageBody::IHave {
            entries: vec![IHaveEntry { id: id(1), hops }],
        };
        // Two announcements arrive first; the shorter one (from 2) is remembered.
        pt.handle(now, 3, ihave(4), &mut out);
        pt.handle(now, 2, ihave(1), &mut out);
        assert!(out.is_empty());
        // Then the payload comes the long way from the eager parent 1.
        pt.handle(
            now,
            1,
            MessageBody::Gossip {
                id: id(1),
                hops: 8,
                publisher: 9,
                payload: vec![],
                signature: vec![],
            },
            &mut out,
        );
        let sent = sends(&out);
        assert!(sent.contains(&(2, MessageBody::Graft { id: None })));
        assert!(sent.contains(&(1, MessageBody::Prune)));
        assert!(!sent.contains(&(3, MessageBody::Graft { id: None })));
        assert!(pt.eager().contains(&2) && pt.lazy().contains(&1));
    }

    #[test]
    fn payload_only_slightly_later_than_an_announcement_keeps_the_parent() {
        let now = Instant::now();
        let config = PlumtreeConfig::default();
        let mut pt = Plumtree::new(config.clone());
        pt.neighbor_up(1);
        pt.neighbor_up(2);
        pt.handle(now, 2, MessageBody::Prune, &mut Vec::new());
        let mut out = Vec::new();
        let announced = 5;
        // Delivery via the parent at exactly one hop less than the threshold requires.
        let parent_hops = announced + config.optimization_threshold - 1;
        pt.handle(
            now,
            2,
            MessageBody::IHave {
                entries: vec![IHaveEntry {
                    id: id(1),
                    hops: announced,
                }],
            },
            &mut out,
        );
        pt.handle(
            now,
            1,
            MessageBody::Gossip {
                id: id(1),
                hops: parent_hops,
                publisher: 9,
                payload: vec![],
                signature: vec![],
            },
            &mut out,
        );
        assert!(
            sends(&out)
                .iter()
                .all(|(_, b)| !matches!(b, MessageBody::Graft { .. } | MessageBody::Prune))
        );
        assert!(pt.eager().contains(&1) && pt.lazy().contains(&2));
    }

    #[test]
    fn oversized_payload_and_oversized_ihave_are_rejected() {
        let pt = Plumtree::<u64>::new(PlumtreeConfig::default());
        let big = MessageBody::Gossip {
            id: id(1),
            hops: 0,
            publisher: 9,
            payload: vec![0; 64 * 1024 + 1],
            signature: vec![],
        };
        assert!(matches!(
            pt.validate(&big),
            Err(BroadcastError::MessageTooLarge { .. })
        ));
        let entries = vec![IHaveEntry { id: id(1), hops: 0 }; 65];
        let ihave = MessageBody::IHave { entries };
        assert_eq!(
            pt.validate(&ihave),
            Err(BroadcastError::TooManyIds { count: 65, max: 64 })
        );
    }
}
