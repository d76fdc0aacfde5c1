//! One node of the swarm: a provider serving block ranges, and (for a leecher) the real
//! [`Fetch`] scheduler driven over the simulated links.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::convert::Infallible;
use std::ops::Range;
use std::rc::Rc;
use std::time::Instant;

use bavard_blobs::BlockRanges;
use bavard_blobs::ranges::block_bytes;
use bavard_blobs::swarm::{Action, Availability, Fetch, FetchConfig, RequestId};
use rand_chacha::ChaCha8Rng;

use super::links::Links;
use crate::NodeId;
use crate::harness::SimNode;

/// What the nodes send each other: the `/bavard/blobs/1` exchange, one block per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Msg {
    /// Leecher → provider: send these blocks, under this request id.
    Request { id: RequestId, blocks: Range<u64> },
    /// Provider → leecher: one verified block of request `id`.
    Block { id: RequestId, block: u64 },
    /// Leecher → provider: stop serving request `id`.
    Cancel { id: RequestId },
    /// Provider → leecher: I do not hold that range.
    NotAvailable { id: RequestId },
}

/// What a node reports to the experiment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlobEvent {
    /// The fetch verified every block.
    Complete,
    /// The fetch has no provider left (an urgent provider lookup).
    NeedProviders,
}

/// One request being served: the blocks still to send and when the next one is out.
#[derive(Debug)]
struct Flow {
    next: u64,
    end: u64,
    due: Instant,
}

/// A node: holds the blob whole (seeder, or a leecher that completed), part of it (a leecher
/// fetching) or nothing (the rest of the network).
#[derive(Debug)]
pub(crate) struct BlobNode {
    id: NodeId,
    size: u64,
    links: Rc<Links>,
    complete: bool,
    fetch: Option<Fetch<NodeId, ChaCha8Rng>>,
    /// At most this many providers in the fetch at once.
    max_providers: usize,
    /// Requests being served, by (leecher, request).
    flows: BTreeMap<(NodeId, RequestId), Flow>,
    /// The flows by the time their next block is out.
    due: BTreeSet<(Instant, NodeId, RequestId)>,
    outbox: VecDeque<(NodeId, Msg)>,
    events: VecDeque<BlobEvent>,
    /// Bytes this node sent (duplicates included).
    pub(crate) uploaded: u64,
    /// Requests this node's fetch sent, and the blocks they covered.
    pub(crate) requests: u64,
    pub(crate) blocks_requested: u64,
    /// Providers the fetch dropped (stalled, failed).
    pub(crate) dropped: u64,
}

impl BlobNode {
    /// A node of the run; `complete` for a seeder.
    pub(crate) fn new(id: NodeId, size: u64, links: Rc<Links>, complete: bool) -> Self {
        Self {
            id,
            size,
            links,
            complete,
            fetch: None,
            max_providers: 0,
            flows: BTreeMap::new(),
            due: BTreeSet::new(),
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            uploaded: 0,
            requests: 0,
            blocks_requested: 0,
            dropped: 0,
        }
    }

    /// Whether the node holds the whole blob.
    pub(crate) fn is_complete(&self) -> bool {
        self.complete
    }

    /// What the node can serve, as its answer to a have query; `None` if nothing.
    pub(crate) fn availability(&self) -> Option<Availability> {
        if self.complete {
            return Some(Availability::All);
        }
        let verified = self.fetch.as_ref()?.verified();
        (!verified.is_empty()).then_some(Availability::Blocks(verified))
    }

    /// The fetch, once started.
    pub(crate) fn fetch(&self) -> Option<&Fetch<NodeId, ChaCha8Rng>> {
        self.fetch.as_ref()
    }

    /// Starts fetching the blob (a leecher arrives).
    pub(crate) fn start_fetch(
        &mut self,
        config: FetchConfig,
        max_providers: usize,
        rng: ChaCha8Rng,
    ) {
        self.max_providers = max_providers.max(1);
        self.fetch = Some(Fetch::new(self.size, &BlockRanges::new(), config, rng));
    }

    /// The answer of a provider lookup (and of the have queries that follow it): providers
    /// already in the fetch get their availability updated, new ones are added while the
    /// fetch has fewer than its maximum.
    pub(crate) fn add_providers(&mut self, found: Vec<(NodeId, Availability)>, now: Instant) {
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        if self.complete {
            return;
        }
        let active: BTreeSet<NodeId> = fetch
            .providers()
            .filter(|(_, s)| s.active)
            .map(|(p, _)| *p)
            .collect();
        let mut count = active.len();
        for (provider, have) in found {
            if provider == self.id {
                continue;
            }
            if active.contains(&provider) {
                fetch.add_provider(provider, have, now);
            } else if count < self.max_providers && fetch.add_provider(provider, have, now) {
                count += 1;
            }
        }
        self.pump();
    }

    /// Moves the fetch's actions into messages and events.
    fn pump(&mut self) {
        let Some(fetch) = self.fetch.as_mut() else {
            return;
        };
        while let Some(action) = fetch.poll_action() {
            match action {
                Action::Request {
                    id,
                    provider,
                    blocks,
                } => {
                    self.requests += 1;
                    self.blocks_requested += blocks.end - blocks.start;
                    self.outbox
                        .push_back((provider, Msg::Request { id, blocks }));
                }
                Action::Cancel { id, provider } => {
                    self.outbox.push_back((provider, Msg::Cancel { id }));
                }
                Action::DropProvider { .. } => self.dropped += 1,
                Action::NeedProviders => self.events.push_back(BlobEvent::NeedProviders),
                Action::Complete => {
                    self.complete = true;
                    self.events.push_back(BlobEvent::Complete);
                }
            }
        }
    }

    /// Whether this node holds every block of `blocks`.
    fn holds(&self, blocks: &Range<u64>) -> bool {
        if self.complete {
            return true;
        }
        let Some(fetch) = &self.fetch else {
            return false;
        };
        let verified = fetch.verified();
        blocks.clone().all(|b| verified.contains(b))
    }

    fn block_len(&self, block: u64) -> u64 {
        let r = block_bytes(self.size, block);
        r.end - r.start
    }

    /// Starts serving request `id` of `to`.
    fn serve(&mut self, to: NodeId, id: RequestId, blocks: Range<u64>, now: Instant) {
        if blocks.is_empty() || self.flows.contains_key(&(to, id)) {
            return;
        }
        self.links.start(self.id, to);
        let due = now
            + self
                .links
                .transfer_time(self.id, to, self.block_len(blocks.start));
        self.flows.insert(
            (to, id),
            Flow {
                next: blocks.start,
                end: blocks.end,
                due,
            },
        );
        self.due.insert((due, to, id));
    }

    fn stop_serving(&mut self, to: NodeId, id: RequestId) {
        if let Some(flow) = self.flows.remove(&(to, id)) {
            self.due.remove(&(flow.due, to, id));
            self.links.stop(self.id, to);
        }
    }

    /// Sends every block whose time has come.
    fn send_due(&mut self, now: Instant) {
        while let Some(&(due, to, id)) = self.due.first() {
            if due > now {
                break;
            }
            self.due.pop_first();
            let Some(flow) = self.flows.get_mut(&(to, id)) else {
                continue;
            };
            let block = flow.next;
            flow.next += 1;
            let len = {
                let r = block_bytes(self.size, block);
                r.end - r.start
            };
            self.uploaded += len;
            self.outbox.push_back((to, Msg::Block { id, block }));
            if flow.next >= flow.end {
                self.flows.remove(&(to, id));
                self.links.stop(self.id, to);
            } else {
                let next_len = self.block_len(block + 1);
                let next_due = due + self.links.transfer_time(self.id, to, next_len);
                if let Some(flow) = self.flows.get_mut(&(to, id)) {
                    flow.due = next_due;
                }
                self.due.insert((next_due, to, id));
            }
        }
    }
}

impl SimNode for BlobNode {
    type Message = Msg;
    type Event = BlobEvent;
    type Error = Infallible;

    fn handle_message(&mut self, now: Instant, from: NodeId, msg: Msg) -> Result<(), Infallible> {
        match msg {
            Msg::Request { id, blocks } => {
                if self.holds(&blocks) {
                    self.serve(from, id, blocks, now);
                } else {
                    self.outbox.push_back((from, Msg::NotAvailable { id }));
                }
            }
            Msg::Cancel { id } => self.stop_serving(from, id),
            Msg::Block { id, block } => {
                if let Some(fetch) = self.fetch.as_mut() {
                    fetch.handle_block(&from, id, block, now);
                }
            }
            Msg::NotAvailable { id } => {
                if let Some(fetch) = self.fetch.as_mut() {
                    fetch.handle_not_available(id, now);
                }
            }
        }
        self.pump();
        Ok(())
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.send_due(now);
        if let Some(fetch) = self.fetch.as_mut()
            && !self.complete
        {
            fetch.handle_timeout(now);
        }
        self.pump();
    }

    fn poll_transmit(&mut self) -> Option<(NodeId, Msg)> {
        self.outbox.pop_front()
    }

    fn poll_event(&mut self) -> Option<BlobEvent> {
        self.events.pop_front()
    }

    fn poll_timeout(&self) -> Option<Instant> {
        let serve = self.due.first().map(|(t, _, _)| *t);
        let fetch = self
            .fetch
            .as_ref()
            .filter(|_| !self.complete)
            .and_then(|f| f.poll_timeout());
        match (serve, fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn message_len(msg: &Msg) -> usize {
        match msg {
            // The block and its share of the hash tree's parents (a few 64-byte pairs).
            Msg::Block { .. } => bavard_blobs::BLOCK_SIZE as usize + 64,
            _ => 48,
        }
    }

    fn peer_unreachable(&mut self, now: Instant, peer: NodeId) {
        // The connection was refused: the provider is gone (the node forgets it the same way).
        if let Some(fetch) = self.fetch.as_mut()
            && !self.complete
        {
            fetch.remove_provider(&peer, now);
        }
        self.pump();
    }

    fn on_crash(&mut self) {
        // A departing node's uploads stop with it.
        for (to, _) in self.flows.keys() {
            self.links.stop(self.id, *to);
        }
        self.flows.clear();
        self.due.clear();
    }
}
