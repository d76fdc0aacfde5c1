//! A provider's delivery rate, measured from verified blocks over busy time.

use std::time::{Duration, Instant};

/// Samples shorter than this are merged with the next: blocks often arrive in bursts (a
/// whole TCP window at once), and a burst measured alone would look like a huge rate.
const MIN_SAMPLE: Duration = Duration::from_millis(100);

/// The weight of a new sample in the moving average: recent enough to follow a provider
/// that slows down within a few seconds, smooth enough to ignore one slow block.
const ALPHA: f64 = 0.3;

/// An exponentially weighted moving average of bytes per second, counted only while the
/// provider has requests in flight (time spent idle is not its fault).
#[derive(Debug, Clone, Default)]
pub(crate) struct Throughput {
    rate: Option<f64>,
    /// Busy time of the current sample before `busy_since`.
    busy: Duration,
    /// When the provider last became busy, while it is.
    busy_since: Option<Instant>,
    /// Bytes received in the current sample.
    pending: u64,
}

impl Throughput {
    /// The provider became busy (a request sent while none was in flight).
    pub(crate) fn start(&mut self, now: Instant) {
        if self.busy_since.is_none() {
            self.busy_since = Some(now);
        }
    }

    /// The provider became idle (its last request finished or was cancelled).
    pub(crate) fn stop(&mut self, now: Instant) {
        if let Some(since) = self.busy_since.take() {
            self.busy += now.saturating_duration_since(since);
        }
    }

    /// `bytes` were delivered at `now`.
    pub(crate) fn record(&mut self, bytes: u64, now: Instant) {
        self.pending += bytes;
        let Some(since) = self.busy_since else {
            // A late block while idle: no busy time to divide by; it joins the next sample.
            return;
        };
        let elapsed = self.busy + now.saturating_duration_since(since);
        if elapsed < MIN_SAMPLE {
            return;
        }
        let sample = self.pending as f64 / elapsed.as_secs_f64();
        self.rate = Some(match self.rate {
            None => sample,
            Some(rate) => rate + ALPHA * (sample - rate),
        });
        self.busy = Duration::ZERO;
        self.busy_since = Some(now);
        self.pending = 0;
    }

    /// Bytes per second, once measured.
    pub(crate) fn rate(&self) -> Option<f64> {
        self.rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_follows_deliveries_and_ignores_bursts_and_idle_time() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Throughput::default();
        t.start(t0);
        // A burst right after the start is no sample yet.
        t.record(1000, t0 + ms(1));
        assert_eq!(t.rate(), None);
        t.record(99_000, t0 + ms(1000));
        assert_eq!(t.rate(), Some(100_000.0));
        // Short busy spells separated by idle time add up to one sample: 60 ms busy, an
        // hour idle, 40 ms busy, 10 kB in all: 100 kB/s, as before.
        t.stop(t0 + ms(1000));
        t.start(t0 + ms(2000));
        t.record(6_000, t0 + ms(2060));
        t.stop(t0 + ms(2060));
        let later = t0 + Duration::from_secs(3600);
        t.start(later);
        t.record(4_000, later + ms(40));
        assert_eq!(t.rate(), Some(100_000.0));
        // Slower deliveries pull it down gradually.
        t.record(10_000, later + ms(1040));
        let rate = t.rate().unwrap();
        assert!(rate < 100_000.0 && rate > 50_000.0, "{rate}");
    }
}
