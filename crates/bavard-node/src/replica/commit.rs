//! Group commit: concurrent writes share one durable commit.
//!
//! Every local write goes through one committer thread. It takes the first waiting write, drains
//! whatever else is queued (up to `max_batch`), and writes the lot with one
//! [`RecordStore::put_batch`] (one fsync on redb); only then does each writer get its outcome.
//! No write is acknowledged before its commit, and under load the fsync cost is shared.
//! A batch that fails as a whole (one record over a limit makes `put_batch` refuse everything)
//! is retried record by record, so one bad record cannot fail its neighbours.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use bavard_store::{PutOutcome, Record, RecordStore, StoreError};
use tokio::sync::oneshot;

type Job = (Record, oneshot::Sender<Result<PutOutcome, StoreError>>);

/// The handle writers use; cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: std_mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer thread over `store`.
    pub fn start(store: Arc<dyn RecordStore>, max_batch: usize) -> std::io::Result<Self> {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("bavard-commit".into())
            .spawn(move || run(store, rx, max_batch.max(1)))?;
        Ok(Self { tx })
    }

    /// Writes `record` durably; resolves once it is committed (or refused).
    pub async fn put(&self, record: Record) -> Result<PutOutcome, StoreError> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send((record, tx)).is_err() {
            return Err(StoreError::storage(
                "commit",
                std::io::Error::other("the committer has stopped"),
            ));
        }
        rx.await.unwrap_or_else(|_| {
            Err(StoreError::storage(
                "commit",
                std::io::Error::other("the committer dropped the write"),
            ))
        })
    }
}

impl Committer {
    /// Writes every record durably, queued together so they share commits; one outcome per
    /// record, in order.
    pub async fn put_many(&self, records: Vec<Record>) -> Vec<Result<PutOutcome, StoreError>> {
        let mut waiting = Vec::with_capacity(records.len());
        for record in records {
            let (tx, rx) = oneshot::channel();
            if self.tx.send((record, tx)).is_err() {
                waiting.push(None);
            } else {
                waiting.push(Some(rx));
            }
        }
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| {
                    Err(StoreError::storage(
                        "commit",
                        std::io::Error::other("the committer dropped the write"),
                    ))
                }),
                None => Err(StoreError::storage(
                    "commit",
                    std::io::Error::other("the committer has stopped"),
                )),
            });
        }
        out
    }
}

fn run(store: Arc<dyn RecordStore>, rx: std_mpsc::Receiver<Job>, max_batch: usize) {
    // The loop ends when every Committer handle is dropped.
    while let Ok(first) = rx.recv() {
        let mut jobs = vec![first];
        while jobs.len() < max_batch {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let now = crate::util::unix_ms();
        let records: Vec<Record> = jobs.iter().map(|(r, _)| r.clone()).collect();
        match store.put_batch(records, now) {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                for ((_, reply), outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            _ => {
                for (record, reply) in jobs {
                    let _ = reply.send(store.put(record, now));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bavard_store::{MemoryStore, StoreConfig, Version};

    #[tokio::test]
    async fn concurrent_writes_all_commit_and_a_bad_one_fails_alone() {
        let store: Arc<dyn RecordStore> =
            Arc::new(MemoryStore::new(StoreConfig::new(b"me".to_vec())));
        let c = Committer::start(store.clone(), 64).unwrap();
        let mut tasks = Vec::new();
        for i in 0..50u32 {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let v = Version {
                    hlc: 1,
                    writer: b"w".to_vec(),
                };
                c.put(Record::new(format!("k{i}").into_bytes(), b"v".to_vec(), v))
                    .await
            }));
        }
        let big = c.put(Record::new(
            b"big".to_vec(),
            vec![0u8; 1 << 20],
            Version::default(),
        ));
        assert!(big.await.is_err(), "an oversized value is refused");
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), PutOutcome::Stored);
        }
        assert_eq!(store.len().unwrap(), 50);
        let outcomes = c
            .put_many(vec![
                Record::new(b"m1".to_vec(), b"v".to_vec(), Version::default()),
                Record::new(b"m2".to_vec(), vec![0u8; 1 << 20], Version::default()),
                Record::new(b"m3".to_vec(), b"v".to_vec(), Version::default()),
            ])
            .await;
        assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
        assert_eq!(store.len().unwrap(), 52);
    }
}
