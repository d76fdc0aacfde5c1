//! The blob store: `DATA_DIR/blobs`, with verified partial downloads that survive a crash.
//!
//! # Layout
//!
//! ```text
//! blobs/<hash>.data   the bytes (a sparse file of the full size while partial)
//! blobs/<hash>.obao   the outboard: the BLAKE3 tree in pre-order, 64 bytes per parent
//! blobs/<hash>.meta   size, pinned, last access, and the bitfield of verified blocks
//!                     (absent once complete); checksummed, see meta.rs
//! blobs/tmp/          files being written (cleared at open)
//! blobs/corrupt/      entries found damaged at open, kept for the operator to look at
//! ```
//!
//! `<hash>` is the 64-digit hex BLAKE3 hash. The `.meta` file is the commit point: a blob
//! exists when its meta file does, and claims exactly the blocks its bitfield says.
//!
//! # Durability
//!
//! Fetched blocks are written in place into the data and outboard files and marked in an
//! in-memory bitfield. Every [`StoreConfig::checkpoint_bytes`] of newly verified data, at
//! [`Store::sync`] and when the blob completes, the store makes a **checkpoint**: fsync the
//! data and outboard files, *then* replace the meta file atomically (write beside, fsync,
//! rename, fsync the directory). So after a crash the meta file never claims a block whose
//! bytes were not on disk first; what is lost is at most the blocks verified since the last
//! checkpoint, which the fetch downloads again. A resumed fetch asks [`Store::begin_fetch`]
//! (or [`Store::info`]) for the verified blocks and requests only the others.
//!
//! Adding a blob spools the reader into `tmp/` while hashing it (one pass over the input, no
//! buffering in memory), computes the outboard from the spooled file, fsyncs both, renames
//! them into place and then writes the meta file.
//!
//! # What may be read
//!
//! Only verified blocks: [`BlobReader`] refuses any other, and what it sends to peers is
//! hashed again on the way out ([`crate::encoding::RangeEncoder`]), so even a file damaged
//! on disk after it was verified cannot make this node serve bad data. When that happens the
//! node calls [`Store::forget_blocks`] and the blocks are fetched again.
//!
//! # Quota and eviction
//!
//! With [`StoreConfig::quota`] set, the store keeps the sum of its blobs' sizes and outboards
//! (a partial blob counts at its full size: it will get there) under the quota. Making room
//! for a new blob evicts **complete, unpinned** blobs, least recently accessed first (access
//! = added, opened for reading, or pinned); pinned blobs and downloads in progress are never
//! evicted. If evicting every candidate would not make enough room, nothing is evicted and
//! the new blob is refused with [`StoreError::QuotaExceeded`]. Evicted hashes are queued for
//! [`Store::poll_evicted`], so the node can stop announcing them as a provider.
//!
//! Last access is kept in memory and written to the meta file at most every
//! [`ACCESS_PERSIST_INTERVAL`] per blob (and at [`Store::sync`]), so reads do not cost a disk
//! write each; after a crash the LRU order is at worst that much out of date.
//!
//! # Bad input on disk
//!
//! [`Store::open`] never fails because of one bad blob: a meta file that does not parse, or
//! data and outboard files of the wrong length, move the entry to `corrupt/` and are listed
//! in [`Store::open_problems`]; files without a meta file (an add or a delete interrupted by
//! a crash) are removed. Nothing on disk can make the store panic.
//!
//! # Using it from async code
//!
//! The store does blocking file IO and takes `&mut self` for changes: the node keeps it
//! behind a mutex and calls it from blocking tasks. Reads go through a [`BlobReader`], which
//! needs the store only to be opened; adds spool and hash through a [`Spooler`], which needs
//! it only to reserve file names and, at the end, to commit ([`Store::commit_spooled`]), so
//! a long upload never holds the lock. One `Store` per directory.

mod meta;
mod reader;

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bao_tree::BaoTree;

pub use meta::MetaError;
pub use reader::BlobReader;

use self::meta::Meta;
use crate::bitfield::Bitfield;
use crate::encoding::{EncodeError, VerifiedBlock, outboard_len, write_outboard};
use crate::hash::BlobHash;
use crate::ranges::{BAO_BLOCK_SIZE, BLOCK_SIZE, BlockRanges, block_count};

/// How often, at most, a blob's last access time is written to disk by reads alone.
pub const ACCESS_PERSIST_INTERVAL: Duration = Duration::from_secs(600);

/// The store's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The most bytes (data and outboards) the store may hold; `None` for no limit.
    pub quota: Option<u64>,
    /// The largest blob accepted, in bytes (default 1 TiB). Also bounds what a meta file
    /// on disk may make the store allocate.
    pub max_blob_size: u64,
    /// Verified bytes between two checkpoints of a partial blob (default 4 MiB): the most a
    /// crash makes a fetch download again. For blobs so big that their bitfield is more than
    /// 1/512 of this, the interval grows so that rewriting the bitfield stays under 0.2 % of
    /// the data written.
    pub checkpoint_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            quota: None,
            max_blob_size: 1 << 40,
            checkpoint_bytes: 4 << 20,
        }
    }
}

/// A blob as listed by the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its hash.
    pub hash: BlobHash,
    /// Its size in bytes.
    pub size: u64,
    /// How many of its bytes are verified here (`size` when complete).
    pub verified_bytes: u64,
    /// Whether every block is here.
    pub complete: bool,
    /// Whether it is pinned (never evicted).
    pub pinned: bool,
    /// When it was last added, read or pinned.
    pub last_access: SystemTime,
}

/// What [`Store::add_reader`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Added {
    /// The blob's hash.
    pub hash: BlobHash,
    /// Its size.
    pub size: u64,
    /// False if the store already held it complete (then only pinning and access time may
    /// have changed).
    pub new: bool,
}

/// Where a fetch starts, as answered by [`Store::begin_fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchStart {
    /// The blob is complete here: nothing to fetch.
    Complete,
    /// These blocks are verified here (at least the proof's block); fetch the others.
    Partial {
        /// The verified blocks.
        verified: BlockRanges,
    },
}

/// What [`Store::write_block`] did with a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// Written; the blob is still partial.
    Written,
    /// Already verified here (another provider's copy won the race): nothing written.
    Duplicate,
    /// Written, and it was the last missing block: the blob is complete and durable.
    Completed,
}

/// Something [`Store::open`] found wrong on disk and dealt with.
#[derive(Debug)]
pub struct OpenProblem {
    /// The file concerned.
    pub path: PathBuf,
    /// What was done about it.
    pub action: OpenAction,
}

/// What [`Store::open`] did with a bad file.
#[derive(Debug)]
pub enum OpenAction {
    /// The entry was moved to `corrupt/`, for this reason.
    Quarantined(StoreError),
    /// A data or outboard file without a meta file (an interrupted add, fetch start or
    /// delete) was removed.
    RemovedOrphan,
}

/// Why a store operation failed.
///
/// Unless said otherwise, a failed operation changed nothing the store reports: the blob
/// is as it was before the call (an IO error in the middle of a write leaves bytes on disk
/// that no meta file claims, which is harmless).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// No such blob here.
    #[error("blob {0} is not in the store")]
    NotFound(BlobHash),
    /// The blob is here but this block is not verified (or is past its end).
    #[error("blob {hash}: block {block} is not available here")]
    NotAvailable {
        /// The blob.
        hash: BlobHash,
        /// The first block asked for and not verified.
        block: u64,
    },
    /// A block arrived for a blob no fetch was started for ([`Store::begin_fetch`]).
    #[error("blob {0} is not being fetched")]
    NotFetching(BlobHash),
    /// The blob does not fit in the quota even after evicting every unpinned complete blob;
    /// nothing was evicted.
    #[error(
        "{needed} bytes do not fit the {quota}-byte quota: {used} bytes in use, \
         of which only {evictable} could be evicted"
    )]
    QuotaExceeded {
        /// Bytes the new blob needs (data and outboard).
        needed: u64,
        /// Bytes in use.
        used: u64,
        /// Bytes that eviction could free.
        evictable: u64,
        /// The quota.
        quota: u64,
    },
    /// Over [`StoreConfig::max_blob_size`]. An add stopped reading at the limit and kept
    /// nothing.
    #[error("a blob of {size} bytes or more is over the {max}-byte limit")]
    TooLarge {
        /// The size (or the bytes read so far).
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A file or block has the wrong length for the blob.
    #[error("blob {hash}: {what} is {got} bytes, expected {expected}")]
    WrongLength {
        /// The blob.
        hash: BlobHash,
        /// Which file or value.
        what: &'static str,
        /// The length it should have.
        expected: u64,
        /// The length it has.
        got: u64,
    },
    /// A meta file does not parse.
    #[error("{}: {source}", path.display())]
    CorruptMeta {
        /// The meta file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: MetaError,
    },
    /// The bytes read back from the spooled file hash differently from what was read from
    /// the input: the file was changed under us, or the disk is failing. Nothing was added.
    #[error("the content changed while it was being added (spooled {expected}, read back {got})")]
    ChangedDuringAdd {
        /// The hash of the input.
        expected: BlobHash,
        /// The hash of the spooled copy.
        got: BlobHash,
    },
    /// Encoding a response failed (see [`EncodeError::Corrupt`]: forget those blocks).
    #[error(transparent)]
    Encode(EncodeError),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A blob being fetched: its files open for writing and its verified blocks.
#[derive(Debug)]
struct Partial {
    verified: Bitfield,
    data: File,
    outboard: File,
    /// Verified bytes written since the last checkpoint.
    unsynced: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    pinned: bool,
    last_access_ms: u64,
    /// The last access time the meta file has.
    persisted_access_ms: u64,
    /// `None` when complete.
    partial: Option<Partial>,
}

impl Entry {
    /// The bytes this blob counts against the quota.
    fn footprint(&self) -> u64 {
        footprint(self.size)
    }

    fn meta(&self) -> Meta {
        Meta {
            size: self.size,
            pinned: self.pinned,
            last_access_ms: self.last_access_ms,
            verified: self.partial.as_ref().map(|p| p.verified.clone()),
        }
    }

    fn verified(&self) -> BlockRanges {
        match &self.partial {
            Some(p) => p.verified.to_ranges(),
            None => BlockRanges::all(self.size),
        }
    }

    fn verified_bytes(&self) -> u64 {
        let Some(p) = &self.partial else {
            return self.size;
        };
        // Every block is full but the last; count it at its real length.
        let last = block_count(self.size) - 1;
        let full = p.verified.count_ones() - u64::from(p.verified.get(last));
        let tail = if p.verified.get(last) {
            self.size - last * BLOCK_SIZE
        } else {
            0
        };
        full * BLOCK_SIZE + tail
    }
}

fn footprint(size: u64) -> u64 {
    size.saturating_add(outboard_len(size))
}

/// The durable, quota-bounded blob store. See the [module docs](self).
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    config: StoreConfig,
    /// A `BTreeMap` so that listing and eviction ties are in hash order, run after run.
    entries: BTreeMap<BlobHash, Entry>,
    used: u64,
    next_tmp: u64,
    evicted: VecDeque<BlobHash>,
    problems: Vec<OpenProblem>,
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, e.g. `DATA_DIR/blobs`, and evicts what
    /// no longer fits a lowered quota (as much as it can: pinned blobs and partial
    /// downloads over the quota stay, and new blobs are refused until there is room).
    ///
    /// Fails only if the directory cannot be used; bad entries are dealt with and listed in
    /// [`open_problems`](Self::open_problems).
    pub fn open(dir: impl Into<PathBuf>, config: StoreConfig) -> Result<Self, StoreError> {
        let dir = dir.into();
        let tmp = dir.join("tmp");
        fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
        // Whatever is in tmp/ is from an add or a meta write that never committed.
        for entry in fs::read_dir(&tmp).map_err(io_err("listing", &tmp))? {
            let path = entry.map_err(io_err("listing", &tmp))?.path();
            fs::remove_file(&path).map_err(io_err("removing", &path))?;
        }
        let mut store = Store {
            dir,
            config,
            entries: BTreeMap::new(),
            used: 0,
            next_tmp: 0,
            evicted: VecDeque::new(),
            problems: Vec::new(),
        };
        store.load()?;
        store.evict(0, None, Eviction::AsMuchAsHelps)?;
        Ok(store)
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let mut names: Vec<(BlobHash, String)> = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Some((stem, ext)) = name.split_once('.') else {
                continue;
            };
            if let (Ok(hash), "meta" | "data" | "obao") = (stem.parse::<BlobHash>(), ext) {
                names.push((hash, ext.to_owned()));
            }
        }
        names.sort();
        for (hash, _) in names.iter().filter(|(_, ext)| ext == "meta") {
            match self.load_entry(*hash) {
                Ok(entry) => {
                    self.used += entry.footprint();
                    self.entries.insert(*hash, entry);
                }
                Err(error) => self.quarantine(*hash, error)?,
            }
        }
        for (hash, ext) in &names {
            if ext != "meta" && !self.entries.contains_key(hash) {
                let path = self.path(*hash, ext);
                if path.exists() {
                    fs::remove_file(&path).map_err(io_err("removing", &path))?;
                    self.problems.push(OpenProblem {
                        path,
                        action: OpenAction::RemovedOrphan,
                    });
                }
            }
        }
        Ok(())
    }

    fn load_entry(&self, hash: BlobHash) -> Result<Entry, StoreError> {
        let meta_path = self.path(hash, "meta");
        let file = File::open(&meta_path).map_err(io_err("opening", &meta_path))?;
        // Never read more than the longest valid meta file: its length is untrusted.
        let limit = Meta::max_len(self.config.max_blob_size);
        let mut bytes = Vec::new();
        file.take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("reading", &meta_path))?;
        let meta = Meta::decode(&bytes, self.config.max_blob_size).map_err(|source| {
            StoreError::CorruptMeta {
                path: meta_path.clone(),
                source,
            }
        })?;
        let check_len = |ext: &'static str, what: &'static str, expected: u64| {
            let path = self.path(hash, ext);
            let got = fs::metadata(&path)
                .map_err(io_err("checking", &path))?
                .len();
            if got != expected {
                return Err(StoreError::WrongLength {
                    hash,
                    what,
                    expected,
                    got,
                });
            }
            Ok(path)
        };
        let data_path = check_len("data", "the data file", meta.size)?;
        let obao_path = check_len("obao", "the outboard file", outboard_len(meta.size))?;
        let partial = match meta.verified {
            None => None,
            Some(verified) => Some(Partial {
                verified,
                data: open_rw(&data_path)?,
                outboard: open_rw(&obao_path)?,
                unsynced: 0,
            }),
        };
        Ok(Entry {
            size: meta.size,
            pinned: meta.pinned,
            last_access_ms: meta.last_access_ms,
            persisted_access_ms: meta.last_access_ms,
            partial,
        })
    }

    fn quarantine(&mut self, hash: BlobHash, error: StoreError) -> Result<(), StoreError> {
        let corrupt = self.dir.join("corrupt");
        fs::create_dir_all(&corrupt).map_err(io_err("creating", &corrupt))?;
        for ext in ["meta", "data", "obao"] {
            let from = self.path(hash, ext);
            if from.exists() {
                let to = corrupt.join(format!("{hash}.{ext}"));
                fs::rename(&from, &to).map_err(io_err("moving", &from))?;
            }
        }
        self.problems.push(OpenProblem {
            path: self.path(hash, "meta"),
            action: OpenAction::Quarantined(error),
        });
        Ok(())
    }

    /// What [`open`](Self::open) found wrong and dealt with.
    pub fn open_problems(&self) -> &[OpenProblem] {
        &self.problems
    }

    /// The store's settings.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Bytes held (data and outboards; partial blobs at their full size).
    pub fn used_bytes(&self) -> u64 {
        self.used
    }

    fn path(&self, hash: BlobHash, ext: &str) -> PathBuf {
        self.dir.join(format!("{hash}.{ext}"))
    }

    fn tmp_path(&mut self, what: &str) -> PathBuf {
        self.next_tmp += 1;
        self.dir
            .join("tmp")
            .join(format!("{what}-{}", self.next_tmp))
    }

    // ----- adding -----

    /// Adds everything `reader` yields as a blob, streaming (see the module docs), and
    /// returns its hash and size. Adding a blob already complete here costs reading,
    /// hashing and spooling it, and keeps nothing new. With `pinned`, the blob is pinned
    /// (also if it was already here).
    ///
    /// This holds the store for the whole add. A caller that keeps the store behind a lock
    /// does the slow part without it: [`spooler`](Self::spooler), [`Spooler::spool`], then
    /// [`commit_spooled`](Self::commit_spooled).
    pub fn add_reader(
        &mut self,
        reader: impl Read,
        pinned: bool,
        now: SystemTime,
    ) -> Result<Added, StoreError> {
        let spooled = self.spooler().spool(reader)?;
        self.commit_spooled(spooled, pinned, now)
    }

    /// [`add_reader`](Self::add_reader) for bytes in memory.
    pub fn add_bytes(
        &mut self,
        bytes: &[u8],
        pinned: bool,
        now: SystemTime,
    ) -> Result<Added, StoreError> {
        self.add_reader(bytes, pinned, now)
    }

    /// Reserves the temporary files of one add, for [`Spooler::spool`] to fill without the
    /// store. Cheap: no file is touched.
    pub fn spooler(&mut self) -> Spooler {
        Spooler {
            data: self.tmp_path("add.data"),
            obao: self.tmp_path("add.obao"),
            max_blob_size: self.config.max_blob_size,
        }
    }

    /// Adds a blob spooled by [`Spooler::spool`]: makes room for it, moves its files into
    /// place and writes its meta file (the commit point). Fast: no content is read. A blob
    /// already complete here only has its pinning and access time updated; a partial
    /// download of it is superseded by the complete copy.
    pub fn commit_spooled(
        &mut self,
        spooled: Spooled,
        pinned: bool,
        now: SystemTime,
    ) -> Result<Added, StoreError> {
        let (hash, size) = (spooled.hash, spooled.size);
        if let Some(entry) = self.entries.get_mut(&hash)
            && entry.partial.is_none()
        {
            entry.last_access_ms = millis(now);
            if pinned && !entry.pinned {
                entry.pinned = true;
            }
            self.persist_meta(hash)?;
            return Ok(Added {
                hash,
                size,
                new: false,
            });
        }
        let previous = self.entries.get(&hash).map(Entry::footprint).unwrap_or(0);
        self.make_room(footprint(size).saturating_sub(previous), Some(hash))?;
        if self.entries.remove(&hash).is_some() {
            self.used -= previous;
        }
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        fs::rename(&spooled.data, &data_path).map_err(io_err("renaming", &spooled.data))?;
        fs::rename(&spooled.obao, &obao_path).map_err(io_err("renaming", &spooled.obao))?;
        let entry = Entry {
            size,
            pinned,
            last_access_ms: millis(now),
            persisted_access_ms: millis(now),
            partial: None,
        };
        self.write_meta(hash, &entry.meta())?;
        self.used += entry.footprint();
        self.entries.insert(hash, entry);
        Ok(Added {
            hash,
            size,
            new: true,
        })
    }

    // ----- fetching -----

    /// Starts (or resumes) fetching a blob, given the verified proof of its size
    /// ([`crate::encoding::verify_size_proof`]): allocates its files (after making room) and
    /// stores the proof's block. Returns what is already here.
    ///
    /// Resuming: the entry exists from an earlier run and keeps its verified blocks.
    pub fn begin_fetch(
        &mut self,
        proof: &VerifiedBlock,
        now: SystemTime,
    ) -> Result<FetchStart, StoreError> {
        let hash = proof.hash();
        let size = proof.size();
        if size > self.config.max_blob_size {
            return Err(StoreError::TooLarge {
                size,
                max: self.config.max_blob_size,
            });
        }
        match self.entries.get_mut(&hash) {
            Some(entry) if entry.partial.is_none() => {
                entry.last_access_ms = millis(now);
                return Ok(FetchStart::Complete);
            }
            Some(entry) if entry.size != size => {
                return Err(StoreError::WrongLength {
                    hash,
                    what: "the proven size",
                    expected: entry.size,
                    got: size,
                });
            }
            Some(entry) => entry.last_access_ms = millis(now),
            None => self.create_partial(hash, size, now)?,
        }
        match self.write_block(proof)? {
            WriteOutcome::Completed => Ok(FetchStart::Complete),
            WriteOutcome::Written | WriteOutcome::Duplicate => {
                let entry = self.entries.get(&hash).ok_or(StoreError::NotFound(hash))?;
                Ok(FetchStart::Partial {
                    verified: entry.verified(),
                })
            }
        }
    }

    fn create_partial(
        &mut self,
        hash: BlobHash,
        size: u64,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        self.make_room(footprint(size), Some(hash))?;
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let data = create_sized(&data_path, size)?;
        let outboard = create_sized(&obao_path, outboard_len(size))?;
        let entry = Entry {
            size,
            pinned: false,
            last_access_ms: millis(now),
            persisted_access_ms: millis(now),
            partial: Some(Partial {
                verified: Bitfield::new(block_count(size)),
                data,
                outboard,
                unsynced: 0,
            }),
        };
        self.write_meta(hash, &entry.meta())?;
        self.used += entry.footprint();
        self.entries.insert(hash, entry);
        Ok(())
    }

    /// Stores a verified block of a blob being fetched: its bytes and the tree parents that
    /// came with it. Blocks already verified here are skipped. A checkpoint is made when
    /// enough new bytes have accumulated, and when the blob completes.
    ///
    /// An IO error leaves the block unmarked (it will be fetched again).
    pub fn write_block(&mut self, block: &VerifiedBlock) -> Result<WriteOutcome, StoreError> {
        let hash = block.hash();
        let checkpoint_bytes = self.config.checkpoint_bytes;
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFetching(hash))?;
        if entry.size != block.size() {
            return Err(StoreError::WrongLength {
                hash,
                what: "the block's blob size",
                expected: entry.size,
                got: block.size(),
            });
        }
        let Some(partial) = entry.partial.as_mut() else {
            return Ok(WriteOutcome::Duplicate);
        };
        let index = block.block();
        if partial.verified.get(index) {
            return Ok(WriteOutcome::Duplicate);
        }
        let tree = BaoTree::new(entry.size, BAO_BLOCK_SIZE);
        for parent in block.parents() {
            // Parents inside a block are not kept (None): the block is re-hashed whole.
            if let Some(offset) = tree.pre_order_offset(parent.node) {
                partial
                    .outboard
                    .write_all_at(&parent.pair, offset * 64)
                    .map_err(io_err("writing", &obao_path))?;
            }
        }
        partial
            .data
            .write_all_at(block.data(), block.offset())
            .map_err(io_err("writing", &data_path))?;
        partial.verified.set(index);
        // An empty block still counts, so that an all-empty blob completes.
        partial.unsynced += (block.data().len() as u64).max(1);
        if partial.verified.is_full() {
            self.complete(hash)?;
            return Ok(WriteOutcome::Completed);
        }
        let bitfield_len = partial.verified.as_bytes().len() as u64;
        if partial.unsynced >= checkpoint_bytes.max(bitfield_len.saturating_mul(512)) {
            self.persist_meta(hash)?;
        }
        Ok(WriteOutcome::Written)
    }

    fn complete(&mut self, hash: BlobHash) -> Result<(), StoreError> {
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        if let Some(partial) = &entry.partial {
            partial
                .data
                .sync_data()
                .map_err(io_err("syncing", &data_path))?;
            partial
                .outboard
                .sync_data()
                .map_err(io_err("syncing", &obao_path))?;
        }
        let mut meta = entry.meta();
        meta.verified = None;
        self.write_meta(hash, &meta)?;
        if let Some(entry) = self.entries.get_mut(&hash) {
            entry.partial = None;
            entry.persisted_access_ms = entry.last_access_ms;
        }
        Ok(())
    }

    /// Makes everything durable: a checkpoint of every partial blob with unsaved blocks,
    /// and last access times not yet on disk. Call it when a fetch stops and at shutdown.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let dirty: Vec<BlobHash> = self
            .entries
            .iter()
            .filter(|(_, e)| {
                e.partial.as_ref().is_some_and(|p| p.unsynced > 0)
                    || e.last_access_ms != e.persisted_access_ms
            })
            .map(|(h, _)| *h)
            .collect();
        for hash in dirty {
            self.persist_meta(hash)?;
        }
        Ok(())
    }

    /// Forgets blocks found corrupt on disk ([`EncodeError::Corrupt`]): they are no longer
    /// served and a later fetch gets them again. A complete blob becomes partial.
    pub fn forget_blocks(&mut self, hash: BlobHash, blocks: Range<u64>) -> Result<(), StoreError> {
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        if entry.partial.is_none() {
            entry.partial = Some(Partial {
                verified: Bitfield::full(block_count(entry.size)),
                data: open_rw(&data_path)?,
                outboard: open_rw(&obao_path)?,
                unsynced: 0,
            });
        }
        if let Some(partial) = entry.partial.as_mut() {
            for block in blocks {
                partial.verified.clear(block);
            }
            // Make sure the checkpoint below is written even with nothing new verified.
            partial.unsynced = partial.unsynced.max(1);
        }
        self.persist_meta(hash)
    }

    // ----- reading -----

    /// Opens a blob for reading its verified blocks (complete or not), and counts it as
    /// accessed.
    pub fn reader(&mut self, hash: BlobHash, now: SystemTime) -> Result<BlobReader, StoreError> {
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        entry.last_access_ms = entry.last_access_ms.max(millis(now));
        let reader = BlobReader {
            hash,
            size: entry.size,
            verified: entry.verified(),
            data: File::open(&data_path).map_err(io_err("opening", &data_path))?,
            outboard: File::open(&obao_path).map_err(io_err("opening", &obao_path))?,
        };
        let stale = entry
            .last_access_ms
            .saturating_sub(entry.persisted_access_ms);
        if Duration::from_millis(stale) >= ACCESS_PERSIST_INTERVAL {
            self.persist_meta(hash)?;
        }
        Ok(reader)
    }

    /// The blob's size and verified blocks, for a have query (no access recorded).
    pub fn have(&self, hash: BlobHash) -> Option<(u64, BlockRanges)> {
        self.entries.get(&hash).map(|e| (e.size, e.verified()))
    }

    /// What the store knows about one blob.
    pub fn info(&self, hash: BlobHash) -> Option<BlobInfo> {
        self.entries.get(&hash).map(|e| info(hash, e))
    }

    /// Every blob, in hash order.
    pub fn list(&self) -> Vec<BlobInfo> {
        self.entries.iter().map(|(h, e)| info(*h, e)).collect()
    }

    // ----- retention -----

    /// Pins a blob: it is never evicted.
    pub fn pin(&mut self, hash: BlobHash, now: SystemTime) -> Result<(), StoreError> {
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        entry.pinned = true;
        entry.last_access_ms = entry.last_access_ms.max(millis(now));
        self.persist_meta(hash)
    }

    /// Unpins a blob: once complete, it may be evicted when room is needed.
    pub fn unpin(&mut self, hash: BlobHash) -> Result<(), StoreError> {
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        entry.pinned = false;
        self.persist_meta(hash)
    }

    /// Deletes a blob, pinned or not, complete or not.
    pub fn delete(&mut self, hash: BlobHash) -> Result<(), StoreError> {
        let entry = self
            .entries
            .remove(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        self.used -= entry.footprint();
        drop(entry);
        self.remove_files(hash)
    }

    /// The next blob evicted to make room, if any: the node stops announcing it.
    pub fn poll_evicted(&mut self) -> Option<BlobHash> {
        self.evicted.pop_front()
    }

    fn remove_files(&self, hash: BlobHash) -> Result<(), StoreError> {
        // The meta file first: it is the commit point, and data left behind by a crash
        // right after is an orphan that the next open removes.
        for ext in ["meta", "data", "obao"] {
            let path = self.path(hash, ext);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Io {
                        op: "removing",
                        path,
                        source,
                    });
                }
            }
        }
        sync_dir(&self.dir)
    }

    /// Evicts unpinned complete blobs, least recently accessed first, until `needed` more
    /// bytes fit the quota; `protect` is never evicted. All or nothing.
    fn make_room(&mut self, needed: u64, protect: Option<BlobHash>) -> Result<(), StoreError> {
        self.evict(needed, protect, Eviction::AllOrNothing)
    }

    fn evict(
        &mut self,
        needed: u64,
        protect: Option<BlobHash>,
        mode: Eviction,
    ) -> Result<(), StoreError> {
        let Some(quota) = self.config.quota else {
            return Ok(());
        };
        let target = self.used.saturating_add(needed);
        if target <= quota {
            return Ok(());
        }
        let mut candidates: Vec<(u64, BlobHash, u64)> = self
            .entries
            .iter()
            .filter(|(h, e)| !e.pinned && e.partial.is_none() && Some(**h) != protect)
            .map(|(h, e)| (e.last_access_ms, *h, e.footprint()))
            .collect();
        let evictable: u64 = candidates.iter().map(|c| c.2).sum();
        if mode == Eviction::AllOrNothing && target - evictable.min(target) > quota {
            return Err(StoreError::QuotaExceeded {
                needed,
                used: self.used,
                evictable,
                quota,
            });
        }
        candidates.sort();
        for (_, hash, _) in candidates {
            if self.used.saturating_add(needed) <= quota {
                break;
            }
            if let Some(entry) = self.entries.remove(&hash) {
                self.used -= entry.footprint();
                self.remove_files(hash)?;
                self.evicted.push_back(hash);
            }
        }
        Ok(())
    }

    // ----- meta files -----

    /// Writes the entry's meta file; for a partial blob this is a checkpoint (data and
    /// outboard synced first).
    fn persist_meta(&mut self, hash: BlobHash) -> Result<(), StoreError> {
        let data_path = self.path(hash, "data");
        let obao_path = self.path(hash, "obao");
        let entry = self
            .entries
            .get_mut(&hash)
            .ok_or(StoreError::NotFound(hash))?;
        if let Some(partial) = &entry.partial {
            partial
                .data
                .sync_data()
                .map_err(io_err("syncing", &data_path))?;
            partial
                .outboard
                .sync_data()
                .map_err(io_err("syncing", &obao_path))?;
        }
        let meta = entry.meta();
        self.write_meta(hash, &meta)?;
        if let Some(entry) = self.entries.get_mut(&hash) {
            entry.persisted_access_ms = entry.last_access_ms;
            if let Some(partial) = entry.partial.as_mut() {
                partial.unsynced = 0;
            }
        }
        Ok(())
    }

    /// Replaces `<hash>.meta` atomically.
    fn write_meta(&mut self, hash: BlobHash, meta: &Meta) -> Result<(), StoreError> {
        let tmp = self.tmp_path("meta");
        let path = self.path(hash, "meta");
        let mut file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        file.write_all(&meta.encode())
            .map_err(io_err("writing", &tmp))?;
        file.sync_all().map_err(io_err("syncing", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
        sync_dir(&self.dir)
    }
}

/// The temporary files of one add, reserved by [`Store::spooler`]: spools and hashes the
/// content without the store, so that a node keeping the store behind a lock holds it only
/// for [`Store::commit_spooled`].
#[derive(Debug)]
pub struct Spooler {
    data: PathBuf,
    obao: PathBuf,
    max_blob_size: u64,
}

impl Spooler {
    /// Streams `reader` into a temporary file while hashing it (one pass, nothing buffered
    /// in memory), computes the outboard from the spooled file and fsyncs both. Stops with
    /// [`StoreError::TooLarge`] as soon as the content passes the store's
    /// [`max_blob_size`](StoreConfig::max_blob_size). Nothing is left behind on failure.
    pub fn spool(self, reader: impl Read) -> Result<Spooled, StoreError> {
        let mut spooled = Spooled {
            hash: BlobHash::EMPTY,
            size: 0,
            data: self.data,
            obao: self.obao,
        };
        let (hash, size) = spool_into(reader, self.max_blob_size, &spooled.data, &spooled.obao)?;
        spooled.hash = hash;
        spooled.size = size;
        Ok(spooled)
    }
}

/// Content spooled and hashed by [`Spooler::spool`], for [`Store::commit_spooled`]. Dropped
/// without being committed, it removes its files.
#[derive(Debug)]
pub struct Spooled {
    hash: BlobHash,
    size: u64,
    data: PathBuf,
    obao: PathBuf,
}

impl Spooled {
    /// The content's hash.
    pub fn hash(&self) -> BlobHash {
        self.hash
    }

    /// Its size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for Spooled {
    fn drop(&mut self) {
        // Committed files were renamed away: removing them fails harmlessly. Best effort
        // otherwise too: whatever stays in tmp/ is cleared at the next open.
        let _ = fs::remove_file(&self.data);
        let _ = fs::remove_file(&self.obao);
    }
}

/// Spools `reader` into `tmp_data` while hashing it, then writes its outboard to
/// `tmp_obao` and checks that the spooled copy hashes the same. Removes both files on
/// failure.
fn spool_into(
    reader: impl Read,
    max: u64,
    tmp_data: &Path,
    tmp_obao: &Path,
) -> Result<(BlobHash, u64), StoreError> {
    let result = spool_files(reader, max, tmp_data, tmp_obao);
    if result.is_err() {
        let _ = fs::remove_file(tmp_data);
        let _ = fs::remove_file(tmp_obao);
    }
    result
}

fn spool_files(
    mut reader: impl Read,
    max: u64,
    tmp_data: &Path,
    tmp_obao: &Path,
) -> Result<(BlobHash, u64), StoreError> {
    let mut file = File::create(tmp_data).map_err(io_err("creating", tmp_data))?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(StoreError::Io {
                    op: "reading the content for",
                    path: tmp_data.to_path_buf(),
                    source,
                });
            }
        };
        size += n as u64;
        if size > max {
            return Err(StoreError::TooLarge { size, max });
        }
        hasher.update(&buf[..n]);
        file.write_all(&buf[..n])
            .map_err(io_err("writing", tmp_data))?;
    }
    let hash = BlobHash::from(hasher.finalize());
    file.sync_all().map_err(io_err("syncing", tmp_data))?;
    drop(file);
    let mut obao = File::create(tmp_obao).map_err(io_err("creating", tmp_obao))?;
    obao.set_len(outboard_len(size))
        .map_err(io_err("sizing", tmp_obao))?;
    let spooled = File::open(tmp_data).map_err(io_err("opening", tmp_data))?;
    let got = write_outboard(BufReader::new(spooled), size, &mut obao)
        .map_err(io_err("hashing", tmp_data))?;
    if got != hash {
        return Err(StoreError::ChangedDuringAdd {
            expected: hash,
            got,
        });
    }
    obao.sync_all().map_err(io_err("syncing", tmp_obao))?;
    Ok((hash, size))
}

/// How [`Store::evict`] treats a quota it cannot reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eviction {
    /// Evict nothing and refuse: a new blob that would not fit anyway.
    AllOrNothing,
    /// Evict what can be evicted: at open, under a quota lowered below the pinned blobs,
    /// which must not stop the node from starting.
    AsMuchAsHelps,
}

fn info(hash: BlobHash, entry: &Entry) -> BlobInfo {
    BlobInfo {
        hash,
        size: entry.size,
        verified_bytes: entry.verified_bytes(),
        complete: entry.partial.is_none(),
        pinned: entry.pinned,
        last_access: UNIX_EPOCH + Duration::from_millis(entry.last_access_ms),
    }
}

fn open_rw(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_err("opening", path))
}

/// Creates a file of `len` bytes (sparse: nothing is written), synced.
fn create_sized(path: &Path, len: u64) -> Result<File, StoreError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(io_err("creating", path))?;
    file.set_len(len).map_err(io_err("sizing", path))?;
    file.sync_all().map_err(io_err("syncing", path))?;
    Ok(file)
}

/// Makes renames and removals in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("syncing", dir))
}

#[cfg(test)]
mod tests;
