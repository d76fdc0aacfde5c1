//! Group commit: concurrent writes share one durable commit, client writes first.
//!
//! Every local write goes through one committer thread. It takes what is waiting and writes it
//! with one [`RecordStore::put_batch`] (one fsync on redb); only then does each writer get its
//! outcome. No write is acknowledged before its commit, and under load the fsync cost is shared.
//!
//! Writes come in two classes. **Foreground** writes are a client's (a coordinator's own share,
//! a replica store of one record): every one waiting joins the next batch, up to `max_batch`.
//! **Background** writes (anti-entropy pulls and pushes, hint delivery) fill what room is left,
//! at most `max_background` records per batch, so a catch-up of thousands of keys can neither
//! starve client writes nor make one commit long enough to show in their tail (issue 13).
//! A batch that fails as a whole (one record over a limit makes `put_batch` refuse everything)
//! is retried record by record, so one bad record cannot fail its neighbours.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use bavard_store::{PutOutcome, Record, RecordStore, StoreError};
use tokio::sync::oneshot;

use crate::metrics::{Stage, Stages};

/// Which queue a write waits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Priority {
    /// A client is waiting for it.
    Foreground,
    /// Repair traffic: anti-entropy, hint delivery.
    Background,
}

struct Job {
    record: Record,
    reply: oneshot::Sender<Result<PutOutcome, StoreError>>,
    queued: Instant,
    priority: Priority,
}

#[derive(Default)]
struct Queues {
    foreground: VecDeque<Job>,
    background: VecDeque<Job>,
    closed: bool,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

/// The handle writers use; cheap to clone. The thread stops when the last handle is dropped.
#[derive(Clone)]
pub struct Committer {
    shared: Arc<Shared>,
    _handle: Arc<Handle>,
}

/// Closes the queues when the last [`Committer`] goes, which ends the thread.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.queues.lock().expect("commit queues").closed = true;
        self.0.ready.notify_all();
    }
}

fn stopped() -> StoreError {
    StoreError::storage("commit", std::io::Error::other("the committer has stopped"))
}

fn dropped() -> StoreError {
    StoreError::storage(
        "commit",
        std::io::Error::other("the committer dropped the write"),
    )
}

impl Committer {
    /// Starts the committer thread over `store`: batches of at most `max_batch` records, of
    /// which at most `max_background` background ones; stage times go to `stages`.
    pub fn start(
        store: Arc<dyn RecordStore>,
        max_batch: usize,
        max_background: usize,
        stages: Stages,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        });
        let thread = shared.clone();
        let max_batch = max_batch.max(1);
        let max_background = max_background.clamp(1, max_batch);
        std::thread::Builder::new()
            .name("bavard-commit".into())
            .spawn(move || run(store, &thread, max_batch, max_background, &stages))?;
        Ok(Self {
            _handle: Arc::new(Handle(shared.clone())),
            shared,
        })
    }

    fn enqueue(
        &self,
        records: Vec<Record>,
        priority: Priority,
    ) -> Vec<Option<oneshot::Receiver<Result<PutOutcome, StoreError>>>> {
        let mut queues = self.shared.queues.lock().expect("commit queues");
        let now = Instant::now();
        let out = records
            .into_iter()
            .map(|record| {
                if queues.closed {
                    return None;
                }
                let (reply, rx) = oneshot::channel();
                let job = Job {
                    record,
                    reply,
                    queued: now,
                    priority,
                };
                match priority {
                    Priority::Foreground => queues.foreground.push_back(job),
                    Priority::Background => queues.background.push_back(job),
                }
                Some(rx)
            })
            .collect();
        drop(queues);
        self.shared.ready.notify_one();
        out
    }

    /// Writes `record` durably as a foreground write; resolves once it is committed (or
    /// refused).
    pub async fn put(&self, record: Record) -> Result<PutOutcome, StoreError> {
        match self
            .enqueue(vec![record], Priority::Foreground)
            .pop()
            .flatten()
        {
            Some(rx) => rx.await.unwrap_or_else(|_| Err(dropped())),
            None => Err(stopped()),
        }
    }

    /// Writes every record durably, queued together so they share commits; one outcome per
    /// record, in order.
    pub(crate) async fn put_many(
        &self,
        records: Vec<Record>,
        priority: Priority,
    ) -> Vec<Result<PutOutcome, StoreError>> {
        let waiting = self.enqueue(records, priority);
        let mut out = Vec::with_capacity(waiting.len());
        for rx in waiting {
            out.push(match rx {
                Some(rx) => rx.await.unwrap_or_else(|_| Err(dropped())),
                None => Err(stopped()),
            });
        }
        out
    }
}

/// The next batch: every foreground write waiting (up to `max_batch`), then background ones in
/// the room left, at most `max_background`. `None` once closed and drained.
fn next_batch(shared: &Shared, max_batch: usize, max_background: usize) -> Option<Vec<Job>> {
    let mut queues = shared.queues.lock().expect("commit queues");
    while queues.foreground.is_empty() && queues.background.is_empty() {
        if queues.closed {
            return None;
        }
        queues = shared.ready.wait(queues).expect("commit queues");
    }
    let fg = queues.foreground.len().min(max_batch);
    let mut jobs: Vec<Job> = queues.foreground.drain(..fg).collect();
    let bg = queues
        .background
        .len()
        .min(max_background)
        .min(max_batch - jobs.len());
    jobs.extend(queues.background.drain(..bg));
    Some(jobs)
}

fn run(
    store: Arc<dyn RecordStore>,
    shared: &Shared,
    max_batch: usize,
    max_background: usize,
    stages: &Stages,
) {
    while let Some(jobs) = next_batch(shared, max_batch, max_background) {
        let started = Instant::now();
        for job in &jobs {
            let stage = match job.priority {
                Priority::Foreground => Stage::commit_queue,
                Priority::Background => Stage::commit_queue_background,
            };
            stages.observe(stage, started.saturating_duration_since(job.queued));
        }
        let now = crate::util::unix_ms();
        let records: Vec<Record> = jobs.iter().map(|j| j.record.clone()).collect();
        match store.put_batch(records, now) {
            Ok(outcomes) if outcomes.len() == jobs.len() => {
                stages.since(Stage::commit, started);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(outcome));
                }
            }
            _ => {
                for job in jobs {
                    let _ = job.reply.send(store.put(job.record, now));
                }
                stages.since(Stage::commit, started);
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
        let c = Committer::start(store.clone(), 64, 16, Stages::default()).unwrap();
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
            .put_many(
                vec![
                    Record::new(b"m1".to_vec(), b"v".to_vec(), Version::default()),
                    Record::new(b"m2".to_vec(), vec![0u8; 1 << 20], Version::default()),
                    Record::new(b"m3".to_vec(), b"v".to_vec(), Version::default()),
                ],
                Priority::Background,
            )
            .await;
        assert!(outcomes[0].is_ok() && outcomes[1].is_err() && outcomes[2].is_ok());
        assert_eq!(store.len().unwrap(), 52);
    }

    #[tokio::test]
    async fn client_and_repair_writes_wait_in_stages_of_their_own() {
        let store: Arc<dyn RecordStore> =
            Arc::new(MemoryStore::new(StoreConfig::new(b"me".to_vec())));
        let stages = Stages::default();
        let c = Committer::start(store, 64, 16, stages.clone()).unwrap();
        let record =
            |k: &str| Record::new(k.as_bytes().to_vec(), b"v".to_vec(), Version::default());
        c.put(record("client")).await.unwrap();
        for outcome in c
            .put_many(
                vec![record("repair1"), record("repair2")],
                Priority::Background,
            )
            .await
        {
            outcome.unwrap();
        }
        assert_eq!(stages.count(Stage::commit_queue), 1);
        assert_eq!(stages.count(Stage::commit_queue_background), 2);
        assert!(stages.count(Stage::commit) >= 1);
    }

    #[test]
    fn client_writes_go_first_and_background_ones_fill_a_bounded_share() {
        let shared = Shared {
            queues: Mutex::new(Queues::default()),
            ready: Condvar::new(),
        };
        let job = |k: &str| Job {
            record: Record::new(k.as_bytes().to_vec(), b"v".to_vec(), Version::default()),
            reply: oneshot::channel().0,
            queued: Instant::now(),
            priority: if k.starts_with("fg") {
                Priority::Foreground
            } else {
                Priority::Background
            },
        };
        {
            let mut q = shared.queues.lock().unwrap();
            for i in 0..10 {
                q.background.push_back(job(&format!("bg{i}")));
            }
            for i in 0..3 {
                q.foreground.push_back(job(&format!("fg{i}")));
            }
        }
        let keys = |jobs: Vec<Job>| -> Vec<String> {
            jobs.iter()
                .map(|j| String::from_utf8(j.record.key.clone()).unwrap())
                .collect()
        };
        // Every client write, then at most 4 background ones, within a batch of 6.
        let first = keys(next_batch(&shared, 6, 4).unwrap());
        assert_eq!(first, ["fg0", "fg1", "fg2", "bg0", "bg1", "bg2"]);
        let second = keys(next_batch(&shared, 6, 4).unwrap());
        assert_eq!(
            second,
            ["bg3", "bg4", "bg5", "bg6"],
            "the background share is bounded"
        );
        shared
            .queues
            .lock()
            .unwrap()
            .foreground
            .push_back(job("fg3"));
        let third = keys(next_batch(&shared, 6, 4).unwrap());
        assert_eq!(third, ["fg3", "bg7", "bg8", "bg9"]);
        shared.queues.lock().unwrap().closed = true;
        assert!(next_batch(&shared, 6, 4).is_none(), "closed and drained");
    }
}
