//! The lookup driver: runs the `bavard-routing` lookup state machine over real requests.
//!
//! The state machine decides whom to ask and when to stop; this driver sends the requests
//! concurrently, feeds responses and failures back, and sleeps until the next deadline the state
//! machine reports. GET_VALUE and GET_PROVIDERS lookups also collect what the peers return, and a
//! GET_VALUE lookup finishes early once enough replicas returned the record.

use std::time::Instant;

use bavard_routing::{Key, Lookup, LookupAction, LookupConfig, Termination};
use bavard_store::{Record, Version};
use futures::StreamExt as _;
use futures::stream::FuturesUnordered;
use libp2p::PeerId;

use super::client::Kad;
use crate::api::NodeError;
use crate::config::secs;
use crate::context::peer_key;
use crate::kad::{KadPeer, Request, Response, WireRecord};
use crate::util::unix_ms;
use rand::Rng as _;
use rand::rngs::StdRng;

/// What a lookup asks each peer.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LookupKind {
    /// FIND_NODE: only the closest peers matter.
    FindNode,
    /// GET_VALUE: stop once `want` peers returned the record.
    GetValue { want: usize },
    /// GET_PROVIDERS: collect providers along the way.
    GetProviders,
}

/// What a finished lookup found.
#[derive(Debug, Default)]
pub(crate) struct LookupOutcome {
    /// The closest peers that answered, nearest first.
    pub(crate) closest: Vec<PeerId>,
    /// Records returned by GET_VALUE.
    pub(crate) records: Vec<Record>,
    /// Providers returned by GET_PROVIDERS.
    pub(crate) providers: Vec<KadPeer>,
}

/// A record as sent on the wire, with its remaining lifetime.
pub(crate) fn to_wire(record: &Record, now_ms: u64) -> WireRecord {
    let ttl_secs = record
        .expires_at_ms
        .map(|e| (e.saturating_sub(now_ms) / 1000).min(u64::from(u32::MAX)) as u32)
        .unwrap_or(0);
    let publisher = record
        .publisher
        .as_ref()
        .and_then(|p| PeerId::from_bytes(p).ok());
    WireRecord {
        key: record.key.clone(),
        value: record.data().map(<[u8]>::to_vec).unwrap_or_default(),
        publisher,
        ttl_secs,
    }
}

/// A record from the wire, with `version`, expiring after its TTL (or `default_ttl`).
pub(crate) fn record_from_wire(
    wire: &WireRecord,
    version: Version,
    now_ms: u64,
    default_ttl: std::time::Duration,
) -> Record {
    let ttl_ms = if wire.ttl_secs > 0 {
        u64::from(wire.ttl_secs) * 1000
    } else {
        default_ttl.as_millis() as u64
    };
    let mut r = Record::new(wire.key.clone(), wire.value.clone(), version)
        .with_expiry(now_ms.saturating_add(ttl_ms));
    if let Some(p) = wire.publisher {
        r = r.with_publisher(p.to_bytes());
    }
    r
}

impl Kad {
    /// Runs an iterative lookup for `key` (hashed with SHA-256, as libp2p does).
    pub(crate) async fn lookup(
        &self,
        key: &[u8],
        kind: LookupKind,
    ) -> Result<LookupOutcome, NodeError> {
        if self.ctx.is_shutting_down() {
            return Err(NodeError::ShuttingDown);
        }
        let cfg = &self.ctx.config.kad;
        let target = Key::hash(key);
        let mut seeds: Vec<(PeerId, Key)> = self
            .ctx
            .table
            .lock()
            .expect("table lock")
            .closest(&target, cfg.k)
            .into_iter()
            .map(|e| (e.peer, e.key))
            .collect();
        // The closest alive members too: in a converged cluster they are the true closest nodes,
        // so the lookup ends after one round of requests.
        for seed in self
            .ctx
            .members
            .closest_alive(&self.ctx.peer_id, &target, cfg.k)
        {
            if !seeds.iter().any(|(p, _)| *p == seed.0) {
                seeds.push(seed);
            }
        }
        let started = Instant::now();
        // Under IP-diversity pressure (someone is filling our table from few subnets), look up
        // along disjoint paths: an attacker must then sit on all of them (S/Kademlia).
        let disjoint_paths = if self
            .ctx
            .pressure
            .under_pressure(started, secs(cfg.refresh_interval_secs))
        {
            cfg.disjoint_paths.max(cfg.disjoint_paths_under_pressure)
        } else {
            cfg.disjoint_paths
        };
        let mut groups = crate::diversity::GroupCounter::new(cfg.max_peers_per_ip_group);
        let config = LookupConfig {
            alpha: cfg.alpha,
            k: cfg.k,
            request_timeout: cfg.request_timeout(),
            deadline: cfg.lookup_timeout(),
            disjoint_paths,
            termination: Termination::Beta(cfg.beta),
            burst_quorum: cfg.burst_quorum,
            // Requests travel on streams, not datagrams: `KadClient::request` already retries a
            // broken stream and times out a stalled peer, which then counts as failed.
            attempts: 1,
            ..LookupConfig::default()
        };
        let mut lookup = Lookup::new(started, target, seeds, config)
            .map_err(|e| NodeError::BadRequest(format!("invalid lookup settings: {e}")))?;
        let request = match kind {
            LookupKind::FindNode => Request::FindNode { key: key.to_vec() },
            LookupKind::GetValue { .. } => Request::GetValue { key: key.to_vec() },
            LookupKind::GetProviders => Request::GetProviders { key: key.to_vec() },
        };
        let mut outcome = LookupOutcome::default();
        let mut in_flight = FuturesUnordered::new();
        let default_ttl = secs(cfg.record_ttl_secs);
        loop {
            let mut wait_until = None;
            loop {
                match lookup.poll(Instant::now()) {
                    LookupAction::Send { peer } => {
                        let kad = self.clone();
                        let req = request.clone();
                        in_flight.push(async move { (peer, kad.request(peer, req).await) });
                    }
                    LookupAction::Wait { until } => {
                        wait_until = Some(until);
                        break;
                    }
                    LookupAction::Done => break,
                }
            }
            let Some(until) = wait_until else { break };
            let sleep = tokio::time::sleep_until(tokio::time::Instant::from_std(until));
            tokio::select! {
                Some((peer, result)) = in_flight.next(), if !in_flight.is_empty() => {
                    let now = Instant::now();
                    match result {
                        Ok(Some(resp)) => {
                            let (closer, found) = match resp {
                                Response::FindNode { closer } => (closer, None),
                                Response::GetValue { closer, record } => (closer, record),
                                Response::GetProviders { closer, providers } => {
                                    outcome.providers.extend(providers);
                                    (closer, None)
                                }
                                Response::PutValue { .. } | Response::Ping => (Vec::new(), None),
                            };
                            if let Some(wire) = found
                                && wire.key == key
                            {
                                // Stock libp2p nodes carry no version: theirs sorts below every
                                // bavard version so it never overrides one.
                                let version = Version::default();
                                outcome.records.push(record_from_wire(&wire, version, unix_ms(), default_ttl));
                            }
                            // At most `max_peers_per_ip_group` candidates of one subnet per
                            // lookup (cluster members exempt): a pocket of Sybils on one /24
                            // cannot take over the walk.
                            let closer: Vec<(PeerId, Key)> = closer
                                .into_iter()
                                .filter(|p| p.id != self.ctx.peer_id)
                                .filter(|p| {
                                    self.ctx.admission.is_admitted(&p.id)
                                        || groups.admit(p.id, crate::diversity::group_of(&p.addrs))
                                })
                                .map(|p| (p.id, peer_key(&p.id)))
                                .collect();
                            lookup.on_success(now, &peer, closer);
                            if let LookupKind::GetValue { want } = kind
                                && outcome.records.len() >= want
                            {
                                lookup.finish();
                            }
                        }
                        Ok(None) | Err(_) => lookup.on_failure(now, &peer),
                    }
                }
                _ = sleep => {}
            }
        }
        let result = lookup.result();
        self.ctx
            .metrics
            .lookup_duration
            .observe(started.elapsed().as_secs_f64());
        self.ctx
            .metrics
            .lookup_hops
            .observe(f64::from(result.stats.hops));
        self.ctx
            .table
            .lock()
            .expect("table lock")
            .mark_looked_up(Instant::now(), &target);
        outcome.closest = result.peers.into_iter().map(|(p, _)| p).collect();
        Ok(outcome)
    }

    /// A FIND_NODE walk into bucket `index` of our routing table.
    ///
    /// The wire carries pre-image keys that the receiver hashes, so we search for a random
    /// pre-image whose hash falls in the bucket (as libp2p-kad does for refreshes); a bucket
    /// that needs more than `2^16` tries (only reachable in networks of ~65k nodes and more) is
    /// walked with the closest miss instead.
    pub(crate) async fn lookup_bucket(&self, index: u8, rng: &mut StdRng) -> Result<(), NodeError> {
        let mut best: Option<([u8; 32], u8)> = None;
        for _ in 0..(1u32 << 16) {
            let pre: [u8; 32] = rng.random();
            let Some(i) = Key::hash(&pre).distance(&self.ctx.local_key).bucket_index() else {
                continue;
            };
            if i == index {
                best = Some((pre, i));
                break;
            }
            if best.is_none_or(|(_, b)| i.abs_diff(index) < b.abs_diff(index)) {
                best = Some((pre, i));
            }
        }
        let Some((pre, _)) = best else { return Ok(()) };
        self.lookup(&pre, LookupKind::FindNode).await.map(|_| ())
    }
}
