//! Record storage for bavard: value and provider records behind a fallible trait.
//!
//! The crate has no tokio or libp2p dependency: peer ids and addresses are bytes, and time is a
//! `now_ms: u64` parameter (unix milliseconds, wall clock), never read inside.
//!
//! - [`RecordStore`]: the trait a node programs against (object safe, `Send + Sync`, fallible,
//!   `&self`), with two backends: [`MemoryStore`] and the persistent [`RedbStore`].
//! - [`Record`] (a [`Value`] or a tombstone, with a [`Version`]) and [`ProviderRecord`].
//! - [`Hlc`]: a sans-IO hybrid logical clock to stamp versions.
//! - [`digest`]: per-leaf digests of the stored keys and versions, kept up to date by every
//!   write, so anti-entropy finds what two replicas disagree on without a scan.
//! - [`StoreLimits`]: every resource bound, with documented defaults; violations are typed
//!   [`StoreError`]s.
//!
//! # Last-writer-wins
//!
//! Each key is an LWW register: a put applies only if its [`Version`] `(hlc, writer)` is greater
//! than the stored one ([`PutOutcome::Stored`]); an older put is [`PutOutcome::Stale`] and
//! reports the current version; the same version is [`PutOutcome::Unchanged`] (but a later
//! expiry is adopted, so republishing refreshes a record). Deletes are tombstones put with a
//! newer version; [`RecordStore::expire`] purges them after
//! [`StoreConfig::tombstone_grace_ms`] (default 10 days). The merge is commutative and
//! idempotent, so replicas that saw the same puts in any order hold the same records.
//!
//! # Why redb
//!
//! [`RedbStore`] uses [redb](https://docs.rs/redb): pure Rust (no C toolchain, builds in about
//! 20 s, where rocksdb takes about 12 minutes on two cores), a copy-on-write B-tree (ordered
//! scans for anti-entropy paging, MVCC reads that never block the writer), a stable file format,
//! and crash safety with one `fsync` per commit. fjall, an LSM tree, would absorb heavy
//! write batches better, but a DHT node's store is small and read-mostly, and [`put_batch`]
//! (group commit: one fsync per batch) covers bursts such as a replication hand-off.
//!
//! # Durability
//!
//! With [`RedbStore`], a write is durable when it returns `Ok`: the commit has been `fsync`ed
//! and survives `kill -9` and an OS crash (see [`RedbStore`] for the exact guarantee and its
//! limits). A write that returned `Err`, or was interrupted, is applied entirely or not at all.
//! [`MemoryStore`] keeps nothing across restarts.
//!
//! [`put_batch`]: RecordStore::put_batch

mod codec;
mod config;
pub mod digest;
mod error;
pub mod hlc;
mod limits;
mod memory;
mod merge;
mod provider;
mod record;
mod redb_store;
mod store;
mod version;

pub use codec::{DecodeError, FORMAT_V1};
pub use config::{DEFAULT_TOMBSTONE_GRACE_MS, StoreConfig};
pub use digest::{DigestEntry, LEAF_BITS, LEAF_COUNT, LeafDigest};
pub use error::StoreError;
pub use hlc::{ClockError, Hlc, HlcTimestamp};
pub use limits::StoreLimits;
pub use memory::MemoryStore;
pub use provider::ProviderRecord;
pub use record::{Record, Value};
pub use redb_store::RedbStore;
pub use store::{ExpireStats, PaxosRow, PutOutcome, RecordStore, StoreStats};
pub use version::Version;
