//! The libp2p Kademlia protocol (`/ipfs/kad/1.0.0`) on top of the `bavard-routing` core: message
//! conversion, the inbound server, outbound requests and the lookup driver.

pub(crate) mod client;
mod dht;
pub(crate) mod lookup;
pub mod protocol;
mod providers;
pub mod records;
pub(crate) mod server;

pub use protocol::{KAD_PROTOCOL, KadPeer, ProtocolError, Request, Response, WireRecord};
