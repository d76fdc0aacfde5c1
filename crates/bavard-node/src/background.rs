//! Low-priority threads for the replica's background CPU work: anti-entropy steps (hashing
//! ranges of the store, reading leaves, building batches) and the answers to partners' sync
//! requests. On one machine that also serves clients, these compete for the same cores as the
//! request paths; run at a lower scheduling priority (`[replication] background_priority`),
//! they take the CPU the requests leave idle, so a catch-up after an outage does not lengthen
//! the client tail (issue 17), and still progresses at the speed of an idle machine.
//!
//! - `normal`: the threads run like any other (the blocking pool's behaviour before).
//! - `low` (default): nice 10, about a tenth of a normal thread's share when the cores are
//!   contended; never starved.
//! - `idle`: Linux `SCHED_IDLE`: the threads run only on an otherwise idle core. Best for the
//!   tail; a node saturated by clients then catches up only when the load pauses.
//!
//! A priority the system refuses is logged once and the threads run at normal priority.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};

/// The scheduling priority of the background threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackgroundPriority {
    /// Like every other thread.
    Normal,
    /// Nice 10.
    #[default]
    Low,
    /// `SCHED_IDLE` (Linux): only on an idle core.
    Idle,
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The background work ended without an answer: the pool is gone (shutdown) or the job
/// panicked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("background work did not finish (the node is stopping, or the work panicked)")]
pub(crate) struct Lost;

/// A pool of low-priority threads; cloning shares it. The threads end when the last clone is
/// dropped.
#[derive(Debug, Clone)]
pub(crate) struct Background {
    jobs: mpsc::Sender<Job>,
}

impl Background {
    /// Starts `threads` threads (at least 1) at `priority`.
    pub(crate) fn start(threads: usize, priority: BackgroundPriority) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads.max(1) {
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("bavard-bg-{i}"))
                .spawn(move || {
                    lower_priority(priority);
                    loop {
                        let job = match queue.lock() {
                            Ok(q) => q.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                })?;
        }
        Ok(Self { jobs })
    }

    /// Runs `f` on a background thread and waits for its result.
    pub(crate) async fn run<R, F>(&self, f: F) -> Result<R, Lost>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // A panic ends this job (the caller sees `Lost`), not the thread.
            if let Ok(r) = std::panic::catch_unwind(AssertUnwindSafe(f)) {
                let _ = done.send(r);
            }
        });
        self.jobs.send(job).map_err(|_| Lost)?;
        result.await.map_err(|_| Lost)
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(priority: BackgroundPriority) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let (value, policy) = match priority {
        BackgroundPriority::Normal => return,
        // The crate maps its 0..=99 scale onto nice 19..=-20: 22 is nice 10 (checked by the
        // tests, which read the thread's nice value back).
        BackgroundPriority::Low => (
            ThreadPriority::Crossplatform(
                ThreadPriorityValue::try_from(22u8).expect("22 is within 0..=99"),
            ),
            NormalThreadSchedulePolicy::Other,
        ),
        BackgroundPriority::Idle => (ThreadPriority::Min, NormalThreadSchedulePolicy::Idle),
    };
    if let Err(e) = set_thread_priority_and_policy(
        thread_native_id(),
        value,
        ThreadSchedulePolicy::Normal(policy),
    ) {
        warn_once(priority, &format!("{e:?}"));
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(priority: BackgroundPriority) {
    if priority != BackgroundPriority::Normal {
        warn_once(priority, "only supported on Linux");
    }
}

fn warn_once(priority: BackgroundPriority, why: &str) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "cannot lower the background threads' priority to {priority:?} ({why}); they run \
             at normal priority"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_and_returns_its_result_at_every_priority() {
        for p in [
            BackgroundPriority::Normal,
            BackgroundPriority::Low,
            BackgroundPriority::Idle,
        ] {
            let pool = Background::start(2, p).unwrap();
            let name = pool
                .run(|| std::thread::current().name().map(str::to_string))
                .await
                .unwrap();
            assert!(name.unwrap().starts_with("bavard-bg-"));
            let sums = futures::future::join_all((0..8u64).map(|i| {
                let pool = pool.clone();
                async move { pool.run(move || (0..=i).sum::<u64>()).await.unwrap() }
            }))
            .await;
            assert_eq!(sums, vec![0, 1, 3, 6, 10, 15, 21, 28]);
        }
    }

    /// The calling thread's nice value and scheduling policy (Linux: `/proc/thread-self/stat`
    /// field 19, and the policy from the scheduler).
    #[cfg(target_os = "linux")]
    fn nice_and_policy() -> (i64, thread_priority::ThreadSchedulePolicy) {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // Fields after the command name (which may hold spaces) start at field 3.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let nice = rest.split(' ').nth(16).unwrap().parse().unwrap();
        (nice, thread_priority::thread_schedule_policy().unwrap())
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn threads_run_at_the_configured_priority() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let low = Background::start(1, BackgroundPriority::Low).unwrap();
        let (nice, policy) = low.run(nice_and_policy).await.unwrap();
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other)
        );
        assert_eq!(nice, 10);
        let idle = Background::start(1, BackgroundPriority::Idle).unwrap();
        let (_, policy) = idle.run(nice_and_policy).await.unwrap();
        assert_eq!(
            policy,
            ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle)
        );
        let normal = Background::start(1, BackgroundPriority::Normal).unwrap();
        let (nice, _) = normal.run(nice_and_policy).await.unwrap();
        assert_eq!(nice, nice_and_policy().0, "as the thread that started it");
    }

    #[tokio::test]
    async fn a_panicking_job_is_lost_and_the_pool_keeps_working() {
        let pool = Background::start(1, BackgroundPriority::Low).unwrap();
        let lost = pool.run(|| -> u32 { panic!("boom") }).await;
        assert_eq!(lost, Err(Lost));
        assert_eq!(pool.run(|| 7).await, Ok(7));
    }

    #[test]
    fn node_settings_refuse_bad_background_values() {
        let mut c = crate::config::NodeConfig::default();
        c.validate().unwrap();
        for threads in [0, 65] {
            c.replication.background_threads = threads;
            let err = c.validate().unwrap_err().to_string();
            assert!(err.contains("background_threads"), "{err}");
        }
        let parsed: Result<crate::config::NodeConfig, _> =
            toml::from_str("[replication]\nbackground_priority = \"realtime\"\n");
        assert!(parsed.is_err(), "an unknown priority is refused");
        let parsed: crate::config::NodeConfig =
            toml::from_str("[replication]\nbackground_priority = \"idle\"\n").unwrap();
        assert_eq!(
            parsed.replication.background_priority,
            BackgroundPriority::Idle
        );
    }

    #[test]
    fn priorities_read_from_lowercase_names() {
        #[derive(Deserialize)]
        struct C {
            p: BackgroundPriority,
        }
        let c: C = toml::from_str("p = \"idle\"").unwrap();
        assert_eq!(c.p, BackgroundPriority::Idle);
        assert!(toml::from_str::<C>("p = \"urgent\"").is_err());
        assert_eq!(BackgroundPriority::default(), BackgroundPriority::Low);
    }
}
