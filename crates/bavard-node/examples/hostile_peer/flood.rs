//! A request flood from one peer against one victim: `streams` streams at once, each sending
//! requests back to back and reopened whenever the victim closes it, until a deadline.
//!
//! - On `/bavard/kv/1` (which the victim serves only to admitted members): anti-entropy tree
//!   requests over every leaf, entry listings of many leaves, and fetches.
//! - On `/ipfs/kad/1.0.0` (open to anyone): ADD_PROVIDER (cycling over a fixed set of keys, so
//!   the victim's provider table reaches a steady size) and GET_PROVIDERS.
//!
//! Shared by the `hostile_peer` example (a separate process, for `cargo xtask scenario soak`) and
//! the in-process test `tests/flood.rs`.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bavard_node::streams::Control;
use bavard_proto::{kad as kpb, store as spb};
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, StreamProtocol};
use tokio::time::{Instant, timeout};

/// Which protocols the flood uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `/bavard/kv/1` anti-entropy and fetch requests (needs an admitted peer).
    Replica,
    /// `/ipfs/kad/1.0.0` ADD_PROVIDER and GET_PROVIDERS.
    Kademlia,
    /// Half the streams each.
    Both,
}

/// What the flood did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Requests written.
    pub requests: u64,
    /// Answers read (ADD_PROVIDER has none).
    pub answers: u64,
    /// Error answers among them (refusals, limits).
    pub refusals: u64,
    /// Streams opened.
    pub streams_opened: u64,
    /// Stream opens that failed or timed out (the victim's per-peer limit, a reset).
    pub opens_failed: u64,
    /// Streams the victim closed or reset while in use.
    pub streams_closed: u64,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    answers: AtomicU64,
    refusals: AtomicU64,
    streams_opened: AtomicU64,
    opens_failed: AtomicU64,
    streams_closed: AtomicU64,
}

const KV: StreamProtocol = StreamProtocol::new("/bavard/kv/1");
const KAD: StreamProtocol = StreamProtocol::new("/ipfs/kad/1.0.0");
/// How long one open, write or answer may take before the stream counts as lost.
const STEP: Duration = Duration::from_secs(5);
/// Distinct keys ADD_PROVIDER cycles through.
const PROVIDER_KEYS: u64 = 512;

/// Floods `victim` from `me` through `control` with `streams` streams for `duration`.
pub async fn flood(
    control: Control,
    me: PeerId,
    victim: PeerId,
    target: Target,
    streams: usize,
    duration: Duration,
) -> Stats {
    let counters = Arc::new(Counters::default());
    let deadline = Instant::now() + duration;
    let tasks: Vec<_> = (0..streams)
        .map(|i| {
            let protocol = match target {
                Target::Replica => KV,
                Target::Kademlia => KAD,
                Target::Both if i % 2 == 0 => KV,
                Target::Both => KAD,
            };
            tokio::spawn(one_stream(
                control.clone(),
                me,
                victim,
                protocol,
                i as u64,
                deadline,
                counters.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Stats {
        requests: get(&counters.requests),
        answers: get(&counters.answers),
        refusals: get(&counters.refusals),
        streams_opened: get(&counters.streams_opened),
        opens_failed: get(&counters.opens_failed),
        streams_closed: get(&counters.streams_closed),
    }
}

async fn one_stream(
    control: Control,
    me: PeerId,
    victim: PeerId,
    protocol: StreamProtocol,
    slot: u64,
    deadline: Instant,
    c: Arc<Counters>,
) {
    let mut n = slot * 1_000_000;
    while Instant::now() < deadline {
        let mut stream =
            match timeout(STEP, control.clone().open_stream(victim, protocol.clone())).await {
                Ok(Ok(s)) => s,
                _ => {
                    c.opens_failed.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
        c.streams_opened.fetch_add(1, Ordering::Relaxed);
        while Instant::now() < deadline {
            n += 1;
            let ok = if protocol == KV {
                kv_request(&mut stream, n, &c).await
            } else {
                kad_request(&mut stream, me, n, &c).await
            };
            if !ok {
                c.streams_closed.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        let _ = timeout(STEP, stream.close()).await;
    }
}

/// One replica-protocol request and its answer; false when the stream is gone.
async fn kv_request(stream: &mut libp2p::Stream, n: u64, c: &Counters) -> bool {
    use spb::request::Kind;
    let kind = match n % 3 {
        // A tree request over every leaf: the most the victim's tree can be asked.
        0 => Kind::Tree(spb::TreeRequest {
            leaves: vec![0xff; bavard_replica::LEAF_SET_BYTES],
            hashes: (0..256).map(|h| h * 7919 + n).collect(),
        }),
        // A listing of many leaves from the start.
        1 => Kind::Entries(spb::EntriesRequest {
            leaves: (0..64).map(|l| ((n * 64 + l) % 65_536) as u32).collect(),
            after: Vec::new(),
        }),
        _ => Kind::Fetch(spb::FetchRequest {
            keys: (0..64)
                .map(|k| format!("k{}", (n + k) % 1000).into_bytes())
                .collect(),
        }),
    };
    let req = spb::Request { kind: Some(kind) };
    if timeout(STEP, bavard_node::wire::write_message(stream, &req))
        .await
        .map_or(true, |r| r.is_err())
    {
        return false;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    let read = bavard_node::wire::read_message::<spb::Response, _>(stream, 4 << 20);
    match timeout(STEP, read).await {
        Ok(Ok(Some(resp))) => {
            c.answers.fetch_add(1, Ordering::Relaxed);
            if matches!(resp.kind, Some(spb::response::Kind::Error(_)) | None) {
                c.refusals.fetch_add(1, Ordering::Relaxed);
            }
            true
        }
        _ => false,
    }
}

/// One ADD_PROVIDER (no answer) or GET_PROVIDERS (answered); false when the stream is gone.
async fn kad_request(stream: &mut libp2p::Stream, me: PeerId, n: u64, c: &Counters) -> bool {
    use kpb::message::MessageType as T;
    let key = format!("flood-{}", n % PROVIDER_KEYS).into_bytes();
    let add = n.is_multiple_of(2);
    let msg = kpb::Message {
        r#type: if add { T::AddProvider } else { T::GetProviders } as i32,
        key,
        provider_peers: if add {
            vec![kpb::message::Peer {
                id: me.to_bytes(),
                addrs: Vec::new(),
                connection: 0,
            }]
        } else {
            Vec::new()
        },
        ..Default::default()
    };
    if timeout(STEP, bavard_node::wire::write_message(stream, &msg))
        .await
        .map_or(true, |r| r.is_err())
    {
        return false;
    }
    c.requests.fetch_add(1, Ordering::Relaxed);
    if add {
        return true;
    }
    let read = bavard_node::wire::read_message::<kpb::Message, _>(stream, 1 << 20);
    match timeout(STEP, read).await {
        Ok(Ok(Some(_))) => {
            c.answers.fetch_add(1, Ordering::Relaxed);
            true
        }
        _ => false,
    }
}
