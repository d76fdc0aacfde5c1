//! A hostile peer, as a separate process: joins the cluster with a join token (so that it may
//! speak the member protocols), then floods one victim with requests from 32 streams at once
//! (see `flood.rs`) and prints what it did as one JSON object.
//!
//! `cargo xtask scenario soak` runs it; by hand:
//!
//! ```text
//! cargo run --release -p bavard-node --example hostile_peer -- \
//!     --target /ip4/127.0.0.1/tcp/4001/p2p/12D3Koo… --join "$(bavard cluster token)" \
//!     --streams 32 --duration 20 --protocols both
//! ```
//!
//! Without `--join` it is a stranger: only `/ipfs/kad/1.0.0` is served to it.

mod flood;

use std::time::Duration;

use anyhow::{Context as _, bail};
use bavard_node::admission::JoinToken;
use bavard_proto::admission as pb;
use clap::Parser;
use futures::StreamExt as _;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, StreamProtocol};

/// Floods one node with requests from one peer.
#[derive(Debug, Parser)]
struct Args {
    /// The victim's address, ending in /p2p/PEER_ID.
    #[arg(long)]
    target: Multiaddr,
    /// A join token (from `bavard cluster token`): become a member first.
    #[arg(long)]
    join: Option<String>,
    /// Concurrent streams.
    #[arg(long, default_value_t = 32)]
    streams: usize,
    /// Seconds of flood.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// kv (anti-entropy and fetch requests), kad (ADD_PROVIDER / GET_PROVIDERS) or both.
    #[arg(long, default_value = "both")]
    protocols: String,
    /// Seconds to wait, after connecting, before the flood starts.
    #[arg(long, default_value_t = 0.0)]
    delay: f64,
}

const ADMIT: StreamProtocol = StreamProtocol::new("/bavard/admit/1");

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = match args.protocols.as_str() {
        "kv" => flood::Target::Replica,
        "kad" => flood::Target::Kademlia,
        "both" => flood::Target::Both,
        other => bail!("--protocols must be kv, kad or both, not {other:?}"),
    };
    let Some(Protocol::P2p(victim)) = args.target.iter().last() else {
        bail!("--target must end in /p2p/PEER_ID");
    };
    let token = args
        .join
        .as_deref()
        .map(JoinToken::decode)
        .transpose()
        .context("bad --join token")?;

    let key = libp2p::identity::Keypair::generate_ed25519();
    let me = key.public().to_peer_id();
    let mut swarm = bavard_node::swarm::build(
        key,
        bavard_node::addresses::AddressBook::default(),
        Duration::from_secs(60),
        &Default::default(),
        Default::default(),
    )?;
    let control = swarm.behaviour().stream.new_control();
    if let Some(t) = &token {
        for a in &t.addrs {
            let _ = swarm.dial(a.clone().with(Protocol::P2p(t.admin)));
        }
    }
    swarm.dial(args.target.clone())?;
    tokio::spawn(async move {
        loop {
            swarm.select_next_some().await;
        }
    });

    if let Some(t) = &token {
        let cert = join(&control, t).await?;
        answer_hellos(&control, cert)?;
    }
    tokio::time::sleep(Duration::from_secs_f64(args.delay)).await;
    let stats = flood::flood(
        control,
        me,
        victim,
        target,
        args.streams,
        Duration::from_secs_f64(args.duration),
    )
    .await;
    println!(
        "{}",
        serde_json::json!({ "peer_id": me.to_string(), "member": token.is_some(), "stats": stats })
    );
    Ok(())
}

/// Redeems `token` with the cluster's authority: the certificate.
async fn join(
    control: &bavard_node::streams::Control,
    token: &JoinToken,
) -> anyhow::Result<Vec<u8>> {
    let run = async {
        let mut s = control.clone().open_stream(token.admin, ADMIT).await?;
        let req = pb::Request {
            kind: Some(pb::request::Kind::Join(pb::Join {
                secret: token.secret.to_vec(),
            })),
        };
        bavard_node::wire::write_message(&mut s, &req).await?;
        let resp: pb::Response = bavard_node::wire::read_message(&mut s, 1 << 20)
            .await?
            .context("the authority closed the stream")?;
        match resp.kind {
            Some(pb::response::Kind::Joined(j)) => Ok(j.certificate),
            Some(pb::response::Kind::Error(e)) => bail!("the authority refused the token: {e}"),
            other => bail!("unexpected answer to a join: {other:?}"),
        }
    };
    tokio::time::timeout(Duration::from_secs(15), run)
        .await
        .context("no answer to the join within 15 s")?
}

/// Shows the certificate to every node that asks (a `Hello` on `/bavard/admit/1`).
fn answer_hellos(control: &bavard_node::streams::Control, cert: Vec<u8>) -> anyhow::Result<()> {
    let mut incoming = control
        .clone()
        .accept(ADMIT)
        .map_err(|_| anyhow::anyhow!("/bavard/admit/1 already registered"))?;
    tokio::spawn(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            let cert = cert.clone();
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(5), async {
                    let _: Option<pb::Request> =
                        bavard_node::wire::read_message(&mut stream, 1 << 20)
                            .await
                            .ok()
                            .flatten();
                    let hello = pb::Response {
                        kind: Some(pb::response::Kind::Hello(pb::Hello {
                            certificate: cert,
                            revocations_version: 0,
                        })),
                    };
                    let _ = bavard_node::wire::write_message(&mut stream, &hello).await;
                })
                .await;
            });
        }
    });
    Ok(())
}
