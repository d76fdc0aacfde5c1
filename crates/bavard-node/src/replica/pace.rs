//! Pacing of background transfers (anti-entropy, hint delivery): a token bucket in bytes whose
//! rate drops while the node serves clients.
//!
//! Catch-up after an outage moves as much data as the network and the disk allow, but client
//! requests share both (and the CPU): [`Pace::take`] makes background transfers wait once they
//! exceed their rate, with at most [`BURST`] of it in one go (a returning replica's partners all
//! start a round with it at once: a second's worth each would arrive together). The rate is
//! `replication.sync_max_bytes_per_sec` on a node that serves no client, and
//! `replication.sync_busy_bytes_per_sec` while it does — a coordinator's write or read, or a
//! replica request for a single record (what a coordinator sends; anti-entropy and hint
//! batches carry many) within the last `replication.sync_busy_window_secs`. An idle cluster
//! thus catches up at full speed, and a busy one keeps its client latency while the restarted
//! replica trickles in. 0 turns either rate off (unlimited).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// The longest stretch of the rate spent at once: the bucket holds this much of a second's
/// budget, and starts empty.
pub(crate) const BURST: Duration = Duration::from_millis(100);

/// A shared byte budget per second, lower while clients are served.
#[derive(Debug)]
pub(crate) struct Pace {
    idle_rate: f64,
    busy_rate: f64,
    busy_window: Duration,
    /// When the pace was made: the origin of `last_foreground`.
    origin: Instant,
    /// Nanoseconds from `origin` to the last foreground request, plus one (0: none yet).
    last_foreground: AtomicU64,
    /// Tokens (bytes) and when they were last refilled.
    state: Mutex<(f64, Instant)>,
}

impl Pace {
    /// Rates in bytes per second, 0 meaning unlimited; the busy rate applies for `busy_window`
    /// after each [`Pace::foreground`].
    pub(crate) fn new(
        idle_bytes_per_sec: u64,
        busy_bytes_per_sec: u64,
        busy_window: Duration,
    ) -> Self {
        let now = Instant::now();
        Self {
            idle_rate: idle_bytes_per_sec as f64,
            busy_rate: busy_bytes_per_sec as f64,
            busy_window,
            origin: now,
            last_foreground: AtomicU64::new(0),
            state: Mutex::new((0.0, now)),
        }
    }

    /// Notes a client's request: background transfers slow to the busy rate for a while.
    pub(crate) fn foreground(&self) {
        let nanos = Instant::now().duration_since(self.origin).as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX - 1) + 1;
        self.last_foreground.store(nanos, Ordering::Relaxed);
    }

    /// Whether a client was served within the busy window.
    pub(crate) fn is_busy(&self) -> bool {
        match self.last_foreground.load(Ordering::Relaxed) {
            0 => false,
            at => {
                let at = self.origin + Duration::from_nanos(at - 1);
                Instant::now().saturating_duration_since(at) < self.busy_window
            }
        }
    }

    /// The rate in force now (0: unlimited).
    fn rate(&self) -> f64 {
        if self.is_busy() {
            self.busy_rate
        } else {
            self.idle_rate
        }
    }

    /// Spends `bytes` of the budget, waiting first if the budget is overdrawn.
    pub(crate) async fn take(&self, bytes: usize) {
        let rate = self.rate();
        if rate <= 0.0 {
            return;
        }
        let wait = {
            let mut state = self.state.lock().expect("pace lock");
            let now = Instant::now();
            let (tokens, since) = *state;
            // Refill, up to a burst's worth at the rate in force.
            let burst = rate * BURST.as_secs_f64();
            let tokens =
                (tokens + now.duration_since(since).as_secs_f64() * rate).min(burst) - bytes as f64;
            *state = (tokens, now);
            (tokens < 0.0).then(|| Duration::from_secs_f64(-tokens / rate))
        };
        if let Some(wait) = wait {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(1);

    /// Whether `d` is `ms` milliseconds, give or take one.
    fn about(d: Duration, ms: u64) -> bool {
        d >= Duration::from_millis(ms.saturating_sub(1)) && d <= Duration::from_millis(ms + 1)
    }

    #[tokio::test(start_paused = true)]
    async fn an_overdrawn_budget_waits_for_the_refill() {
        let pace = Pace::new(1000, 100, WINDOW);
        let start = Instant::now();
        // The bucket starts empty: 500 bytes at 1000/s is half a second.
        pace.take(500).await;
        assert!(about(start.elapsed(), 500), "{:?}", start.elapsed());
        // After a long idle stretch only a burst (100 ms, 100 bytes) is free.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let start = Instant::now();
        pace.take(100).await;
        assert_eq!(start.elapsed(), Duration::ZERO, "a burst is free");
        pace.take(300).await;
        assert!(about(start.elapsed(), 300), "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn zero_means_unlimited() {
        let pace = Pace::new(0, 0, WINDOW);
        let start = Instant::now();
        pace.take(usize::MAX).await;
        pace.foreground();
        pace.take(usize::MAX).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn serving_clients_slows_background_transfers_until_the_window_passes() {
        let pace = Pace::new(1000, 100, WINDOW);
        assert!(!pace.is_busy());
        pace.foreground();
        assert!(pace.is_busy());
        // 100 bytes at the busy rate of 100/s take a second.
        let start = Instant::now();
        pace.take(100).await;
        assert!(about(start.elapsed(), 1000), "{:?}", start.elapsed());
        // A second after the last client request the idle rate is back: 100 bytes (its burst)
        // are free after a pause, 400 more take 0.4 s.
        assert!(!pace.is_busy());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        pace.take(500).await;
        assert!(about(start.elapsed(), 400), "{:?}", start.elapsed());
    }
}
