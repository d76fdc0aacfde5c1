//! `/bavard/admit/1`: certificates shown, join tokens redeemed, revocation lists spread (see the
//! module docs of [`super`]). Anyone may open a stream — a node must be able to join — but only
//! a `Hello` and a `Join` are answered for strangers; one request per stream.

use std::time::Duration;

use bavard_proto::admission as pb;
use futures::AsyncWriteExt as _;
use libp2p::{PeerId, Stream, StreamProtocol};

use super::JoinToken;
use crate::context::{Context, Slots};
use crate::inbound::Limit;
use crate::request::open_stream;

/// The protocol.
pub(crate) const ADMIT_PROTOCOL: StreamProtocol = StreamProtocol::new(pb::PROTOCOL_NAME);

/// Largest admission message (a revocation list of many peers is the largest).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// Time allowed for one exchange.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(5);
/// Inbound admission streams one peer may hold at once.
const MAX_STREAMS_PER_PEER: usize = 4;

/// Serves `/bavard/admit/1` until the node shuts down.
pub(crate) async fn run(ctx: Context) {
    let limit = Limit {
        slots: Slots::default(),
        max_per_peer: MAX_STREAMS_PER_PEER,
        reject_reason: "too_many_admission_streams",
    };
    let server = ctx.clone();
    crate::inbound::accept(ctx, ADMIT_PROTOCOL, limit, move |peer, stream| {
        let ctx = server.clone();
        async move {
            let _ = tokio::time::timeout(EXCHANGE_TIMEOUT, serve(&ctx, peer, stream)).await;
        }
    })
    .await;
}

fn hello(ctx: &Context) -> pb::Hello {
    pb::Hello {
        certificate: ctx.admission.own_certificate(),
        revocations_version: ctx.admission.revocations_version(),
    }
}

async fn serve(ctx: &Context, peer: PeerId, mut stream: Stream) {
    let req: pb::Request = match crate::wire::read_message(&mut stream, MAX_MESSAGE).await {
        Ok(Some(r)) => r,
        Ok(None) => return,
        Err(e) => {
            ctx.metrics.reject("bad_frame");
            ctx.warn_once(peer, &e.to_string());
            return;
        }
    };
    let kind = match req.kind {
        Some(pb::request::Kind::Hello(h)) => {
            learn(ctx, peer, &h.certificate);
            pb::response::Kind::Hello(hello(ctx))
        }
        Some(pb::request::Kind::Join(j)) => match ctx.admission.redeem(&j.secret, peer) {
            Ok((cert, revocations)) => {
                tracing::info!(%peer, "admitted a new member with a join token");
                pb::response::Kind::Joined(pb::Joined {
                    certificate: cert.encode(),
                    revocations,
                })
            }
            Err(e) => {
                ctx.metrics.reject("join_refused");
                tracing::warn!(%peer, "join refused: {e}");
                pb::response::Kind::Error(e)
            }
        },
        Some(pb::request::Kind::Revocations(r)) => {
            if !r.list.is_empty() {
                apply_revocations(ctx, peer, &r.list);
            }
            pb::response::Kind::Revocations(pb::Revocations {
                list: ctx.admission.revocations(),
            })
        }
        None => {
            ctx.metrics.reject("bad_admission_request");
            pb::response::Kind::Error("empty request".into())
        }
    };
    let _ = crate::wire::write_message(&mut stream, &pb::Response { kind: Some(kind) }).await;
    let _ = stream.close().await;
}

/// Checks the certificate `peer` showed, counting a refusal.
fn learn(ctx: &Context, peer: PeerId, certificate: &[u8]) {
    if certificate.is_empty() {
        return;
    }
    if let Err(e) = ctx.admission.check(&peer, certificate) {
        ctx.metrics.reject("bad_certificate");
        ctx.admission.refuse(peer);
        tracing::debug!(%peer, "certificate refused: {e}");
    }
}

fn apply_revocations(ctx: &Context, peer: PeerId, list: &[u8]) {
    match ctx.admission.apply_revocations(list) {
        Ok(true) => tracing::info!(%peer, "adopted a new revocation list"),
        Ok(false) => {}
        Err(e) => {
            ctx.metrics.reject("bad_revocation_list");
            tracing::debug!(%peer, "revocation list refused: {e}");
        }
    }
}

/// One request and its answer.
async fn exchange(
    ctx: &Context,
    peer: PeerId,
    kind: pb::request::Kind,
) -> anyhow::Result<pb::response::Kind> {
    let run = async {
        let mut stream = open_stream(&ctx.control, peer, ADMIT_PROTOCOL).await?;
        crate::wire::write_message(&mut stream, &pb::Request { kind: Some(kind) }).await?;
        let resp: pb::Response = crate::wire::read_message(&mut stream, MAX_MESSAGE)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the stream closed before the answer"))?;
        let _ = stream.close().await;
        resp.kind.ok_or_else(|| anyhow::anyhow!("empty answer"))
    };
    tokio::time::timeout(EXCHANGE_TIMEOUT, run)
        .await
        .map_err(|_| anyhow::anyhow!("no answer within {EXCHANGE_TIMEOUT:?}"))?
}

/// Shows `peer` this node's certificate and checks its; adopts its revocation list if newer.
pub(crate) async fn hello_with(ctx: &Context, peer: PeerId) -> anyhow::Result<()> {
    match exchange(ctx, peer, pb::request::Kind::Hello(hello(ctx))).await? {
        pb::response::Kind::Hello(h) => {
            learn(ctx, peer, &h.certificate);
            if h.revocations_version > ctx.admission.revocations_version()
                && let pb::response::Kind::Revocations(r) = exchange(
                    ctx,
                    peer,
                    pb::request::Kind::Revocations(pb::Revocations { list: Vec::new() }),
                )
                .await?
            {
                apply_revocations(ctx, peer, &r.list);
            }
            Ok(())
        }
        pb::response::Kind::Error(e) => anyhow::bail!("{e}"),
        _ => anyhow::bail!("unexpected answer to a hello"),
    }
}

/// Whether `peer` is admitted, asking it for its certificate when this node does not know it
/// yet (and it was not refused recently).
pub(crate) async fn ensure_admitted(ctx: &Context, peer: PeerId) -> bool {
    if ctx.admission.is_admitted(&peer) {
        return true;
    }
    if ctx.admission.recently_refused(&peer) {
        return false;
    }
    if let Err(e) = hello_with(ctx, peer).await {
        tracing::debug!(%peer, "no certificate from the peer: {e:#}");
    }
    let admitted = ctx.admission.is_admitted(&peer);
    if !admitted {
        ctx.admission.refuse(peer);
    }
    admitted
}

/// Admits the stream only if `peer` is a member: counts and logs a refusal.
pub(crate) async fn admit_stream(ctx: &Context, peer: PeerId, protocol: &str) -> bool {
    if ensure_admitted(ctx, peer).await {
        return true;
    }
    ctx.metrics.reject("not_admitted");
    ctx.warn_once(
        peer,
        &format!("a {protocol} stream from a peer that is not a cluster member"),
    );
    false
}

/// Redeems a join token with the authority's node; returns the cluster id.
pub(crate) async fn join(ctx: &Context, token: &JoinToken) -> anyhow::Result<String> {
    for addr in &token.addrs {
        ctx.learn_addr(token.admin, addr.clone());
    }
    let answer = exchange(
        ctx,
        token.admin,
        pb::request::Kind::Join(pb::Join {
            secret: token.secret.to_vec(),
        }),
    )
    .await?;
    match answer {
        pb::response::Kind::Joined(j) => ctx.admission.finish_join(&j.certificate, &j.revocations),
        pb::response::Kind::Error(e) => {
            anyhow::bail!("the cluster's authority refused the token: {e}")
        }
        _ => anyhow::bail!("unexpected answer to a join"),
    }
}

/// Sends the current revocation list to `peers` (best effort).
pub(crate) async fn push_revocations(ctx: &Context, peers: Vec<PeerId>) {
    let list = ctx.admission.revocations();
    let sends = peers.into_iter().filter(|p| *p != ctx.peer_id).map(|peer| {
        let list = list.clone();
        async move {
            if let Err(e) = exchange(
                ctx,
                peer,
                pb::request::Kind::Revocations(pb::Revocations { list }),
            )
            .await
            {
                tracing::debug!(%peer, "revocation push failed: {e:#}");
            }
        }
    });
    futures::future::join_all(sends).await;
}
