//! The bavard node: libp2p assembly of the Kademlia routing core, the record store and the gossip
//! protocols, exposed as an async [`Node`] handle, an HTTP API and the `bavard` binary.
//!
//! # Example
//!
//! ```no_run
//! # async fn example() -> anyhow::Result<()> {
//! use bavard_node::{Node, NodeConfig, api::{GetOptions, PutOptions}};
//!
//! let mut config = NodeConfig::default();
//! config.data_dir = "/tmp/bavard-a".into();
//! config.listen = vec!["/ip4/127.0.0.1/tcp/0".parse()?];
//! config.api = None;
//! let node = Node::start(config).await?;
//! node.put(b"hello".to_vec(), b"world".to_vec(), PutOptions::default()).await?;
//! let value = node.get(b"hello", GetOptions::default()).await?;
//! assert_eq!(value.map(|v| v.value), Some(b"world".to_vec()));
//! node.shutdown().await;
//! # Ok(()) }
//! ```

pub mod addresses;
pub mod admission;
pub mod api;
pub mod background;
pub mod blobs;
pub mod client;
mod clock;
mod closable;
pub mod config;
mod context;
pub mod diversity;
pub mod fault;
pub mod gossip;
pub mod http;
mod http_errors;
pub mod identity;
mod inbound;
mod jobs;
pub mod kad;
pub mod keys;
mod members;
pub mod metrics;
mod node;
pub mod openapi;
mod rate;
mod recovery;
pub mod replica;
mod request;
mod storage;
pub mod streams;
pub mod swarm;
pub mod ui;
pub mod util;
pub mod wire;

pub use config::NodeConfig;
pub use node::Node;
