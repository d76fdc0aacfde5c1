//! Keeps the node's hybrid logical clock ahead of every version it issued, across restarts.
//!
//! Writes are ordered by version (HLC timestamp + writer, last writer wins). A node that restarts
//! with its wall clock set back (an NTP step, a VM restored from a snapshot, a replaced CMOS
//! battery) would otherwise stamp its next writes *below* the ones it acknowledged before the
//! restart, and those older writes would silently win over the newer ones.
//!
//! The node therefore keeps a *lease* on the clock in `DATA_DIR/hlc.lease`: an upper bound on
//! the physical part of every timestamp it has issued. Before issuing a timestamp at or past the
//! lease, it extends the lease to `timestamp + LEASE_MS` and makes that durable (write, fsync,
//! rename), so the file is rewritten at most once per `LEASE_MS` of writes. On start the clock
//! begins at the lease, so new timestamps are above every old one whatever the wall clock says.
//!
//! `LEASE_MS` stays below the replicas' drift bound (`hlc::DEFAULT_MAX_DRIFT_MS`, 500 ms): right
//! after a restart with a correct wall clock, the node's first timestamps are at most that far
//! ahead and replicas still accept them. If the wall clock went back further than that, replicas
//! refuse the node's writes (a typed error) until its clock catches up, which is the safe
//! outcome; the node logs how far behind it is at start.
//!
//! Spanner and CockroachDB bound their clocks in a similar way (a persisted upper bound that the
//! clock must not go below after a restart).

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// How far ahead of an issued timestamp the lease is extended, in ms.
pub(crate) const LEASE_MS: u64 = 400;

const LEASE_FILE: &str = "hlc.lease";

/// The persisted upper bound on issued timestamps (physical ms).
#[derive(Debug)]
pub(crate) struct ClockLease {
    /// `None` for an in-memory node: nothing survives a restart, so nothing to protect.
    path: Option<PathBuf>,
    until_ms: u64,
}

impl ClockLease {
    /// Opens the lease in `data_dir` (none for an in-memory node) and returns it with the bound
    /// it held (0 when there was no lease yet).
    ///
    /// # Errors
    ///
    /// A lease file that exists but cannot be read or is not 8 bytes: starting anyway could
    /// reorder writes, so the operator has to look (deleting the file accepts the risk).
    pub(crate) fn open(data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let Some(dir) = data_dir else {
            return Ok(Self {
                path: None,
                until_ms: 0,
            });
        };
        let path = dir.join(LEASE_FILE);
        let until_ms = match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    anyhow::anyhow!(
                        "clock lease {} is corrupt ({} bytes, expected 8); delete it to start \
                         anyway, accepting that writes made before the restart may win over \
                         later ones if the wall clock went back",
                        path.display(),
                        bytes.len()
                    )
                })?;
                u64::from_be_bytes(bytes)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => {
                return Err(e).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        Ok(Self {
            path: Some(path),
            until_ms,
        })
    }

    /// The bound: every timestamp issued so far has a physical part below it.
    pub(crate) fn until_ms(&self) -> u64 {
        self.until_ms
    }

    /// Makes sure a timestamp with physical part `physical_ms` is covered, extending the lease
    /// durably first when it is not. Call before the timestamp is used.
    ///
    /// # Errors
    ///
    /// The lease could not be written: the timestamp must not be used.
    pub(crate) fn cover(&mut self, physical_ms: u64) -> anyhow::Result<()> {
        if physical_ms < self.until_ms {
            return Ok(());
        }
        let until = physical_ms.saturating_add(LEASE_MS);
        if let Some(path) = &self.path {
            crate::util::write_atomically(path, &until.to_be_bytes())?;
        }
        self.until_ms = until;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_extended_only_when_a_timestamp_reaches_it_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut lease = ClockLease::open(Some(dir.path())).unwrap();
        assert_eq!(lease.until_ms(), 0);
        lease.cover(1_000).unwrap();
        assert_eq!(lease.until_ms(), 1_000 + LEASE_MS);
        let file = dir.path().join(LEASE_FILE);
        let written = std::fs::metadata(&file).unwrap().modified().unwrap();
        // Inside the lease: nothing is written.
        std::fs::remove_file(&file).unwrap();
        lease.cover(1_000 + LEASE_MS - 1).unwrap();
        assert!(!file.exists(), "no write inside the lease");
        lease.cover(1_000 + LEASE_MS).unwrap();
        assert!(std::fs::metadata(&file).unwrap().modified().unwrap() >= written);
        let reopened = ClockLease::open(Some(dir.path())).unwrap();
        assert_eq!(reopened.until_ms(), 1_000 + 2 * LEASE_MS);
    }

    #[test]
    fn a_corrupt_lease_refuses_to_start_and_an_in_memory_node_has_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEASE_FILE), b"bad").unwrap();
        let err = ClockLease::open(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("corrupt"), "{err}");
        let mut memory = ClockLease::open(None).unwrap();
        memory.cover(5).unwrap();
        assert_eq!(memory.until_ms(), 5 + LEASE_MS);
    }
}
