//! Content-addressed blobs for bavard: verified, swarmed downloads from the providers the
//! DHT finds (the trackerless-BitTorrent half that provider records alone do not give).
//!
//! This crate is the sans-IO and storage core; `bavard-node` drives it over libp2p streams
//! (`/bavard/blobs/1`) and the HTTP API. It has no tokio or libp2p dependency, reads no clock
//! (every `now` is a parameter) and draws no randomness of its own (the scheduler takes a
//! seeded RNG). The store does blocking file IO.
//!
//! # What is in it
//!
//! - [`hash`]: a blob's name, [`BlobHash`]: the plain BLAKE3 hash of its bytes, with its
//!   multihash (`0x1e`) and raw CIDv1 (`0x55`) forms, ready for issue 19.
//! - [`ranges`]: 16 KiB [blocks](BLOCK_SIZE), the unit of verification and transfer, and
//!   [`BlockRanges`].
//! - [`encoding`]: BLAKE3 verified streaming with bao-tree: the outboard (the hash tree)
//!   computed from a reader, a [`RangeEncoder`](encoding::RangeEncoder) that sends any
//!   block ranges with their proofs, a push-fed [`RangeDecoder`](encoding::RangeDecoder)
//!   that verifies block by block and stops at the first bad one, and size proofs. Its docs
//!   explain the scheme and **why BLAKE3/bao-tree rather than BitTorrent v2's SHA-256 tree**.
//! - [`store`]: `DATA_DIR/blobs`: streaming add, partial blobs whose verified blocks survive
//!   a crash (fsync'd checkpoints), readers that serve only verified blocks, pinning, a
//!   quota with LRU eviction, damaged files quarantined.
//! - [`swarm`]: [`Fetch`](swarm::Fetch), the scheduler of one download: which blocks to ask
//!   which provider for, rate-proportional pipelining, endgame, dropping bad or stalled
//!   providers.
//! - [`protocol`]: the `/bavard/blobs/1` messages with their limits, [`respond`](protocol::respond)
//!   for the serving side and [`Download`](protocol::Download) for the fetching side.
//!
//! # How the node drives it
//!
//! **Adding** (`POST /v1/blobs`, `bavard add`): stream the body into a
//! [`Spooler`](store::Spooler) (reserved with [`Store::spooler`](store::Store::spooler)) on a
//! blocking task without the store's lock, commit it with
//! [`Store::commit_spooled`](store::Store::commit_spooled), then announce the hash as a
//! provider record (the DHT key is the hash's bytes). Cap the body at the store's
//! `max_blob_size`: it is spooled to disk before the quota is checked.
//!
//! **Serving** (inbound `/bavard/blobs/1` stream): decode the [`Request`](protocol::Request)
//! from one frame (a `FrameDecoder` with [`Limits::max_message_len`](protocol::Limits)),
//! call [`respond`](protocol::respond) under the store's lock, release it, and write the
//! answer's frames from a blocking task; on [`EncodeError::Corrupt`](encoding::EncodeError)
//! close the stream and call [`Store::forget_blocks`](store::Store::forget_blocks). After a
//! store call, drain [`Store::poll_evicted`](store::Store::poll_evicted) and stop announcing
//! those hashes.
//!
//! **Fetching** (`GET /v1/blobs/{hash}` when not local, `bavard fetch`):
//!
//! 1. Find providers through the DHT. Ask one for the size
//!    ([`Request::Size`](protocol::Request)); [`check_size_answer`](protocol::check_size_answer)
//!    proves it; [`Store::begin_fetch`](store::Store::begin_fetch) allocates the blob (or finds
//!    the blocks an interrupted fetch left) and stores the proof's block.
//! 2. Create a [`Fetch`](swarm::Fetch) with the size and the verified blocks; add providers as
//!    the DHT finds them (optionally ask each [`Request::Have`](protocol::Request) first, for
//!    providers still downloading); set a priority range for what the HTTP reader waits for.
//! 3. Loop: drain [`Fetch::poll_action`](swarm::Fetch::poll_action). For each `Request`,
//!    open a stream, send a [`Request::Get`](protocol::Request), feed every response to a
//!    [`Download`](protocol::Download); for each verified block,
//!    [`Store::write_block`](store::Store::write_block) then
//!    [`Fetch::handle_block`](swarm::Fetch::handle_block); on an error, pass its
//!    [`verdict`](protocol::DownloadError::verdict) to the matching `Fetch` input. `Cancel`:
//!    reset that stream. `DropProvider`: close its streams (count it in the metrics).
//!    `NeedProviders`: query the DHT again. Arm a timer at
//!    [`Fetch::poll_timeout`](swarm::Fetch::poll_timeout) and call
//!    [`Fetch::handle_timeout`](swarm::Fetch::handle_timeout) when it fires. `Complete`:
//!    announce the blob as a provider (seeding).
//! 4. Meanwhile the blob's verified blocks can already be served (step "Serving" sees the
//!    partial blob) and read by the HTTP response through a
//!    [`BlobReader`](store::BlobReader) reopened as blocks arrive. Status
//!    (`GET /v1/blobs/{hash}/status`) comes from [`Store::info`](store::Store::info) and
//!    [`Fetch::providers`](swarm::Fetch::providers). On stop, call
//!    [`Store::sync`](store::Store::sync).
//!
//! The example runs the whole loop in memory, with one provider:
//!
//! ```
//! use std::time::{Instant, SystemTime};
//! use bavard_blobs::protocol::{self, Answer, Download, Limits, Request, Response};
//! use bavard_blobs::store::{FetchStart, Store, StoreConfig};
//! use bavard_blobs::swarm::{Action, Availability, Fetch, FetchConfig};
//! use rand::SeedableRng;
//!
//! let (now, wall, limits) = (Instant::now(), SystemTime::now(), Limits::default());
//! let (a, b) = (tempfile::tempdir()?, tempfile::tempdir()?);
//! let mut seeder = Store::open(a.path(), StoreConfig::default())?;
//! let mut leecher = Store::open(b.path(), StoreConfig::default())?;
//! let hash = seeder.add_bytes(&vec![42u8; 300_000], true, wall)?.hash;
//!
//! // The size, proven, and the blob allocated.
//! let Answer::One(size) = protocol::respond(&mut seeder, &Request::Size { hash }, &limits, wall)
//! else { unreachable!() };
//! let proof = protocol::check_size_answer(hash, size)?;
//! let FetchStart::Partial { verified } = leecher.begin_fetch(&proof, wall)? else { unreachable!() };
//!
//! let rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
//! let mut fetch = Fetch::new(proof.size(), &verified, FetchConfig::default(), rng);
//! fetch.add_provider("seeder", Availability::All, now);
//! while let Some(action) = fetch.poll_action() {
//!     let Action::Request { id, provider, blocks } = action else { continue };
//!     let ranges = bavard_blobs::BlockRanges::from_range(blocks);
//!     let request = Request::Get { hash, ranges: ranges.clone() };
//!     let Answer::Stream { header, frames } = protocol::respond(&mut seeder, &request, &limits, wall)
//!     else { unreachable!() };
//!     let mut download = Download::new(hash, proof.size(), &ranges)?;
//!     download.handle(header)?;
//!     for frame in frames {
//!         download.handle(frame?)?;
//!         while let Some(block) = download.next_block() {
//!             let block = block?;
//!             leecher.write_block(&block)?;
//!             fetch.handle_block(&provider, id, block.block(), now);
//!         }
//!     }
//!     download.finish()?;
//! }
//! assert!(fetch.is_complete());
//! assert!(leecher.info(hash).unwrap().complete);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod bitfield;
pub mod encoding;
pub mod hash;
pub mod protocol;
pub mod ranges;
pub mod store;
pub mod swarm;

pub use hash::BlobHash;
pub use ranges::{BLOCK_SIZE, BlockRanges};
