//! `bavard`: run a node, or talk to one through its HTTP API.

mod cli_blobs;

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use bavard_node::client::{Client, WriteOptions};
use bavard_node::{Node, NodeConfig};
use clap::{Args, Parser, Subcommand};
use libp2p::Multiaddr;

#[derive(Parser)]
#[command(
    name = "bavard",
    version,
    about = "A chatty peer-to-peer node: Kademlia DHT, replicated store and gossip"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args)]
struct ApiArg {
    /// The node's HTTP API (`http://HOST:PORT` or `HOST:PORT`) [default: from --data-dir, else
    /// http://127.0.0.1:5001].
    #[arg(long, env = "BAVARD_API")]
    api: Option<String>,
    /// The node's API token (needed when its API is not on loopback, and for admin calls)
    /// [default: from --data-dir].
    #[arg(long, env = "BAVARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A local node's data directory: its API address (node.json) and token (api.token).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Seconds to wait for the node's answer.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    /// How KEY is written: utf8 (its own bytes), hex, base64url, or cid (a CID names its
    /// multihash). Default: utf8, except that `provide`, `providers` and `dht-*` read a CID as one.
    #[arg(long, value_parser = ["utf8", "hex", "base64url", "cid"])]
    key_encoding: Option<String>,
}

impl ApiArg {
    fn client(&self) -> anyhow::Result<Client> {
        let (mut api, mut token) = (self.api.clone(), self.token.clone());
        if let Some(dir) = &self.data_dir {
            if api.is_none() {
                let path = dir.join("node.json");
                let info: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).with_context(|| {
                        format!("cannot read {} (is the node running?)", path.display())
                    })?)
                    .with_context(|| format!("{} is not a node's node.json", path.display()))?;
                api = Some(
                    info["api"]
                        .as_str()
                        .with_context(|| format!("the node of {} runs no HTTP API", dir.display()))?
                        .to_string(),
                );
            }
            if token.is_none() {
                let path = dir.join(bavard_node::http::TOKEN_FILE);
                token = Some(
                    std::fs::read_to_string(&path)
                        .with_context(|| format!("cannot read the API token {}", path.display()))?
                        .trim()
                        .to_string(),
                );
            }
        }
        let api = api.unwrap_or_else(|| "http://127.0.0.1:5001".into());
        Client::new(&api, Duration::from_secs(self.timeout)).map(|c| {
            c.with_token(token)
                .with_key_encoding(self.key_encoding.clone())
        })
    }
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print a join token for one new node (only the node holding the cluster's authority
    /// issues them), and nothing else.
    Token {
        /// Seconds the token stays valid.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Revoke a member everywhere.
    Revoke {
        /// The member's peer id.
        peer: String,
        #[command(flatten)]
        api: ApiArg,
    },
}

/// The condition of a compare-and-set (`put` and `delete`): exits 1 with the current version
/// when it does not hold.
#[derive(clap::Args)]
struct ConditionArg {
    /// Write only if the key's current version is this one (as `put` prints it): a
    /// linearizable compare-and-set.
    #[arg(long, conflicts_with = "if_absent")]
    if_version: Option<String>,
    /// Write only if the key has no value: a linearizable compare-and-set.
    #[arg(long)]
    if_absent: bool,
}

impl ConditionArg {
    fn options(self, consistency: Option<String>, ttl: Option<u64>) -> WriteOptions {
        WriteOptions {
            consistency,
            ttl,
            if_version: self.if_version,
            if_absent: self.if_absent,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run a node.
    Node(NodeArgs),
    /// Cluster admission: join tokens and revocation (admin calls).
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Store a value under a key.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value.
        value: String,
        /// one, quorum, all or serial (a linearizable write: a compare-and-set without a
        /// condition).
        #[arg(long)]
        consistency: Option<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        ttl: Option<u64>,
        #[command(flatten)]
        condition: ConditionArg,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Print a key's value to stdout (exit 1 with `not found` when absent).
    Get {
        /// The key.
        key: String,
        /// one, quorum, all or serial (a linearizable read: sees every committed
        /// compare-and-set).
        #[arg(long)]
        consistency: Option<String>,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Delete a key (writes a tombstone).
    Delete {
        /// The key.
        key: String,
        /// one, quorum, all or serial.
        #[arg(long)]
        consistency: Option<String>,
        #[command(flatten)]
        condition: ConditionArg,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Announce that this node provides a key (a CID announces its multihash, as IPFS does).
    Provide {
        /// The key or CID.
        key: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// List the providers of a key or CID.
    Providers {
        /// The key or CID (`bafk…`, `Qm…`).
        key: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Connected peers.
    Peers {
        #[command(flatten)]
        api: ApiArg,
    },
    /// Routing-table fill.
    Routing {
        #[command(flatten)]
        api: ApiArg,
    },
    /// Node status.
    Status {
        #[command(flatten)]
        api: ApiArg,
    },
    /// Cluster members as this node sees them.
    Members {
        #[command(flatten)]
        api: ApiArg,
    },
    /// Publish a message on a topic.
    Publish {
        /// The topic.
        topic: String,
        /// The message.
        message: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Print each message published on a topic, one per line, until interrupted.
    Subscribe {
        /// The topic.
        topic: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Put a DHT record (open DHT, apart from the KV store): `/pk/…`, `/signed/…` or opaque.
    DhtPut {
        /// The key.
        key: String,
        /// The value.
        value: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Print a DHT record's value (exit 1 with `not found` when nobody has it).
    DhtGet {
        /// The key.
        key: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Add a file as a content-addressed blob (pinned, announced as provided); prints its
    /// hash.
    Add {
        /// The file.
        file: PathBuf,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Fetch a blob (the node downloads it from its providers when it does not hold it),
    /// showing progress: bytes, rate and providers.
    Fetch {
        /// The blob's hash (64 hex digits, or a base32 CIDv1).
        hash: String,
        /// Write it here [default: stdout].
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[command(flatten)]
        api: ApiArg,
    },
    /// List the blobs a node holds (size, bytes verified, pinned), or one blob's status.
    Blobs {
        /// A blob's hash: show its status (providers and the bytes from each) instead.
        hash: Option<String>,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Unpin a blob: it stays, and may be evicted when the store needs room.
    Unpin {
        /// The blob's hash.
        hash: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Create an ed25519 signing key for signed records; prints its public key.
    Keygen {
        /// Where to write the secret key (mode 0600); refuses to overwrite.
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Sign a value with a key file and put it as a signed mutable record.
    SignPut {
        /// The value.
        value: String,
        /// The signing key (see `bavard keygen`).
        #[arg(long)]
        key_file: PathBuf,
        /// Salt: names one of several records of the same key.
        #[arg(long, default_value = "")]
        salt: String,
        /// Sequence number [default: the current one + 1].
        #[arg(long)]
        seq: Option<u64>,
        /// Only replace the record whose sequence number is this (compare-and-swap).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Print the newest signed record of a public key (hex) and salt.
    SignedGet {
        /// The public key, 64 hex digits.
        public_key: String,
        /// Salt.
        #[arg(long, default_value = "")]
        salt: String,
        #[command(flatten)]
        api: ApiArg,
    },
}

#[derive(Args)]
struct NodeArgs {
    /// Directory for the identity key and records (created if missing).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (repeatable), e.g. /ip4/127.0.0.1/tcp/4001.
    #[arg(long)]
    listen: Vec<Multiaddr>,
    /// Peer to join through (repeatable), ending in /p2p/PEER_ID; /dns4/NAME/… names are
    /// resolved at start and at every bootstrap.
    #[arg(long)]
    bootstrap: Vec<Multiaddr>,
    /// Address other nodes reach this one at (repeatable), announced instead of the listen
    /// addresses: a public address behind NAT or a port mapping, e.g. /ip4/203.0.113.7/tcp/4001.
    #[arg(long)]
    advertise: Vec<Multiaddr>,
    /// HTTP API address, HOST:PORT (default 127.0.0.1:5001).
    #[arg(long)]
    api: Option<SocketAddr>,
    /// TOML file with the same settings and the protocol parameters.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Join the cluster that issued this token (`bavard cluster token`); needed only on the
    /// first start (the data directory then holds the node's certificate). Without a token and
    /// a certificate, the node creates a new cluster.
    #[arg(long)]
    join: Option<String>,
}

fn main() -> ExitCode {
    bavard_node::util::quiet_broken_pipe();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Writes a value's bytes to stdout, or `not found` to stderr with exit code 1.
fn print_value(value: Option<Vec<u8>>) -> anyhow::Result<ExitCode> {
    match value {
        Some(value) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            out.flush()?;
            Ok(ExitCode::SUCCESS)
        }
        None => {
            eprintln!("not found");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// Reads a signing key written by `bavard keygen` (the secret, 64 hex digits).
fn read_signing_key(path: &std::path::Path) -> anyhow::Result<libp2p::identity::ed25519::Keypair> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read the key file {} (create one with `bavard keygen`)",
            path.display()
        )
    })?;
    let mut secret = hex::decode(text.trim())
        .ok()
        .filter(|b| b.len() == 32)
        .with_context(|| {
            format!(
                "{} holds no ed25519 secret key (64 hex digits)",
                path.display()
            )
        })?;
    let secret = libp2p::identity::ed25519::SecretKey::try_from_bytes(&mut secret)
        .with_context(|| format!("{} holds no ed25519 secret key", path.display()))?;
    Ok(libp2p::identity::ed25519::Keypair::from(secret))
}

fn print_json(v: &impl serde::Serialize) -> anyhow::Result<ExitCode> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Node(args) => run_node(args).await,
        Command::Put {
            key,
            value,
            consistency,
            ttl,
            condition,
            api,
        } => print_json(
            &api.client()?
                .put_with(
                    &key,
                    value.into_bytes(),
                    &condition.options(consistency, ttl),
                )
                .await?,
        ),
        Command::Get {
            key,
            consistency,
            api,
        } => print_value(
            api.client()?
                .get(&key, consistency.as_deref())
                .await?
                .map(|(value, _)| value),
        ),
        Command::Delete {
            key,
            consistency,
            condition,
            api,
        } => print_json(
            &api.client()?
                .delete_with(&key, &condition.options(consistency, None))
                .await?,
        ),
        Command::Provide { key, api } => print_json(&api.client()?.provide(&key).await?),
        Command::Providers { key, api } => print_json(&api.client()?.providers(&key).await?),
        Command::Peers { api } => print_json(&api.client()?.peers().await?),
        Command::Routing { api } => print_json(&api.client()?.routing().await?),
        Command::Status { api } => print_json(&api.client()?.status().await?),
        Command::Members { api } => print_json(&api.client()?.members().await?),
        Command::Publish {
            topic,
            message,
            api,
        } => print_json(&api.client()?.publish(&topic, message.into_bytes()).await?),
        Command::Cluster(ClusterCommand::Token { ttl, api }) => {
            println!("{}", api.client()?.cluster_token(Some(ttl)).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cluster(ClusterCommand::Revoke { peer, api }) => {
            print_json(&api.client()?.cluster_revoke(&peer).await?)
        }
        Command::DhtPut { key, value, api } => {
            print_json(&api.client()?.dht_put(&key, value.into_bytes()).await?)
        }
        Command::DhtGet { key, api } => print_value(api.client()?.dht_get(&key).await?),
        Command::Keygen { key_file } => {
            if key_file.exists() {
                anyhow::bail!("{} exists; not overwriting a key", key_file.display());
            }
            let kp = libp2p::identity::ed25519::Keypair::generate();
            bavard_node::util::write_private(
                &key_file,
                hex::encode(kp.secret().as_ref()).as_bytes(),
            )?;
            println!("{}", hex::encode(kp.public().to_bytes()));
            Ok(ExitCode::SUCCESS)
        }
        Command::SignPut {
            value,
            key_file,
            salt,
            seq,
            cas,
            api,
        } => {
            let kp = read_signing_key(&key_file)?;
            let client = api.client()?;
            let seq = match seq {
                Some(s) => s,
                None => client
                    .signed_get(&kp.public().to_bytes(), &salt)
                    .await?
                    .map_or(1, |(_, s)| s + 1),
            };
            let record = bavard_node::kad::records::SignedRecord::sign(
                &kp,
                salt.as_bytes(),
                seq,
                value.into_bytes(),
            );
            print_json(&client.signed_put(&record, cas).await?)
        }
        Command::SignedGet {
            public_key,
            salt,
            api,
        } => {
            let pk: [u8; 32] = hex::decode(&public_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .with_context(|| format!("{public_key:?} is not a public key (64 hex digits)"))?;
            print_value(api.client()?.signed_get(&pk, &salt).await?.map(|(v, _)| v))
        }
        Command::Add { file, api } => {
            cli_blobs::add(&api.client()?, &file).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Fetch { hash, output, api } => {
            cli_blobs::fetch(&api.client()?, &hash, output.as_deref()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Blobs { hash: None, api } => print_json(&api.client()?.blobs().await?),
        Command::Blobs {
            hash: Some(hash),
            api,
        } => print_json(&api.client()?.blob_status(&hash).await?),
        Command::Unpin { hash, api } => print_json(&api.client()?.blob_unpin(&hash).await?),
        Command::Subscribe { topic, api } => {
            api.client()?
                .subscribe(&topic, |payload| {
                    let mut out = std::io::stdout().lock();
                    out.write_all(&payload)?;
                    out.write_all(b"\n")?;
                    out.flush()?;
                    Ok(())
                })
                .await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn run_node(args: NodeArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs sent to a file or journald stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let mut config = match &args.config {
        Some(path) => NodeConfig::from_toml_file(path)?,
        None => NodeConfig::default(),
    };
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if !args.listen.is_empty() {
        config.listen = args.listen;
    }
    if !args.bootstrap.is_empty() {
        config.bootstrap = args.bootstrap;
    }
    if !args.advertise.is_empty() {
        config.advertise = args.advertise;
    }
    if let Some(api) = args.api {
        config.api = Some(api);
    }
    if args.join.is_some() {
        config.cluster.join = args.join;
    }
    config.validate()?;

    let node = Node::start(config.clone())
        .await
        .context("cannot start the node")?;
    let api_addr = match config.api {
        Some(addr) => {
            let access = bavard_node::http::Access::load_or_create(
                &config.data_dir,
                addr,
                &config.http.allowed_hosts,
            )?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind the HTTP API to {addr}"))?;
            let local = listener.local_addr()?;
            let shutdown = node.shutdown_signal();
            let server_node = node.clone();
            tokio::spawn(async move {
                if let Err(e) =
                    bavard_node::http::serve(listener, server_node, access, shutdown).await
                {
                    tracing::error!("HTTP API stopped: {e}");
                }
            });
            Some(local)
        }
        None => None,
    };

    let info = serde_json::json!({
        "peer_id": node.peer_id().to_string(),
        "listen_addrs": node.listen_addrs().iter().map(|a| a.to_string()).collect::<Vec<_>>(),
        "api": api_addr.map(|a| a.to_string()),
        "pid": std::process::id(),
    });
    bavard_node::util::write_atomically(
        &config.data_dir.join("node.json"),
        serde_json::to_string_pretty(&info)?.as_bytes(),
    )?;
    println!("peer id: {}", node.peer_id());
    if let Some(id) = node.cluster_id() {
        println!("cluster: {id}");
    }
    for a in node.listen_addrs() {
        println!("listening on: {a}/p2p/{}", node.peer_id());
    }
    if let Some(a) = api_addr {
        println!("HTTP API: http://{a}");
    }
    std::io::stdout().flush()?;

    wait_for_signal().await;
    tracing::info!("shutting down");
    node.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
