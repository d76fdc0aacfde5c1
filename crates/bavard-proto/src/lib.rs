//! Wire types for bavard's protocols and the length-prefixed framing they travel in.
//!
//! # What this crate holds
//!
//! - [`kad`]: the libp2p Kademlia DHT messages (`/ipfs/kad/1.0.0`), prost structs generated
//!   from `proto/kad.proto` with field numbers and enum values exactly as the libp2p spec
//!   and rust-libp2p, so bavard and stock libp2p nodes form one DHT.
//! - [`gossip`]: bavard's own SWIM membership and HyParView/Plumtree broadcast messages
//!   (`/bavard/gossip/1`), generated from `proto/gossip.proto`.
//! - [`blobs`]: content-addressed blob transfers (`/bavard/blobs/1`), generated from
//!   `proto/blobs.proto`; `bavard-blobs` converts them to its domain types.
//! - [`framing`]: the unsigned-varint length prefix every message is sent with, an
//!   incremental [`FrameDecoder`] that enforces a maximum message size before buffering a
//!   body, and one-shot helpers.
//! - [`varint`]: the unsigned LEB128 varint itself (multiformats `unsigned-varint`).
//!
//! This crate does no I/O and depends on neither tokio nor futures: the node wraps the
//! decoder around its streams.
//!
//! # Generated code
//!
//! The prost types under `src/generated/` are produced by `cargo xtask codegen` from the
//! `.proto` files in the workspace's `proto/` directory and checked in, so building this
//! crate needs no `protoc`, no protox and no build script. Do not edit them: change the
//! `.proto` and rerun `cargo xtask codegen`. A test in the xtask crate fails when the
//! checked-in code is stale (`cargo xtask codegen --check` runs the same comparison).
//!
//! # Framing
//!
//! A frame is `varint(len) ‖ payload`, where `payload` is `len` bytes of protobuf, as the
//! libp2p Kademlia spec prescribes. The prefix is an unsigned LEB128 varint of at most
//! [`varint::MAX_LEN`] (10) bytes; longer prefixes, prefixes that overflow `u64`, and
//! non-minimal encodings (e.g. `0x80 0x00` for 0) are rejected, as the multiformats spec and
//! rust-libp2p's `unsigned-varint` do.
//!
//! # Limits
//!
//! Everything decoded here comes from untrusted peers, so every path is bounded:
//!
//! - A frame whose announced length exceeds the decoder's `max_size` is rejected as soon as
//!   the prefix is complete, *before* any of its body is buffered, so a hostile prefix costs
//!   at most 10 bytes. The default is [`DEFAULT_MAX_MESSAGE_SIZE`] (128 KiB; see its docs
//!   for why it differs from rust-libp2p's 16 KiB and go-libp2p's 4 MiB).
//! - Malformed protobuf is a typed [`FrameError::Malformed`], never a panic; unknown enum
//!   values decode to their raw `i32`.
//! - No input makes the decoder panic (property-tested, and fuzzed by
//!   `crates/bavard-proto/fuzz`, run with `cargo fuzz run decode` from this crate's
//!   directory).

pub mod admission;
pub mod blobs;
pub mod framing;
pub mod gossip;
pub mod kad;
pub mod store;
pub mod varint;

pub use framing::{
    DEFAULT_MAX_MESSAGE_SIZE, FrameDecoder, FrameError, decode_message, decode_one, encode_frame,
};
