//! Live counters for the stats request and the periodic log line. Plain atomics: the loop
//! and the workers bump them without coordinating; the 10-second rates come from a ring of
//! one-second samples the event loop takes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Seconds the per-second rates average over.
const RATE_WINDOW: usize = 10;

pub struct Metrics {
    started: Instant,
    /// Open connections.
    pub connections: AtomicU64,
    /// Messages accepted from clients and services (stored and transient).
    pub received: AtomicU64,
    /// Messages pushed to connections, counting each recipient.
    pub delivered: AtomicU64,
    /// Stored messages not yet acknowledged by everyone owed them.
    pub stored: AtomicI64,
    /// Output bytes queued in the loop, as of its last sample.
    pub outbound_bytes: AtomicU64,
    samples: Mutex<VecDeque<(Instant, u64, u64)>>,
}

impl Metrics {
    pub fn new(stored_at_start: u64) -> Self {
        Metrics {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            received: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            stored: AtomicI64::new(stored_at_start as i64),
            outbound_bytes: AtomicU64::new(0),
            samples: Mutex::new(VecDeque::with_capacity(RATE_WINDOW + 1)),
        }
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn stored_delta(&self, delta: i64) {
        self.stored.fetch_add(delta, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn stored_now(&self) -> u64 {
        self.stored.load(Ordering::Relaxed).max(0) as u64
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Records the counters now; called about once a second.
    pub fn sample(&self, now: Instant) {
        let mut samples = self.lock();
        samples.push_back((now, Self::get(&self.received), Self::get(&self.delivered)));
        while samples.len() > RATE_WINDOW + 1 {
            samples.pop_front();
        }
    }

    /// (received, delivered) per second over the sampled window.
    pub fn rates(&self) -> (u64, u64) {
        let samples = self.lock();
        match (samples.front(), samples.back()) {
            (Some(first), Some(last)) if last.0 > first.0 => {
                let secs = (last.0 - first.0).as_secs_f64();
                (((last.1 - first.1) as f64 / secs) as u64, ((last.2 - first.2) as f64 / secs) as u64)
            }
            _ => (0, 0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, u64, u64)>> {
        // Samples are plain numbers; a panic elsewhere cannot leave them inconsistent.
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_average_over_the_samples() {
        let m = Metrics::new(5);
        let start = Instant::now();
        m.sample(start);
        Metrics::add(&m.received, 100);
        Metrics::add(&m.delivered, 300);
        m.sample(start + Duration::from_secs(2));
        assert_eq!(m.rates(), (50, 150));
        m.stored_delta(-7);
        assert_eq!(m.stored_now(), 0, "a gauge never reads below zero");
    }
}
