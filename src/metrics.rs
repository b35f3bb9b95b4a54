//! Live counters for the stats request and the periodic log line. Plain atomics: the loop
//! and the workers bump them without coordinating; the 10-second rates come from a ring of
//! one-second samples the event loop takes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Output bytes owed to clients (in output buffers and on their way from the workers),
    /// as of the loop's last sample.
    pub outbound_bytes: AtomicU64,
    /// Push events waiting for the gateway's ack now; made since start; notifications
    /// dropped since start (the full queue's oldest, notes beyond their bound).
    pub push_queued: AtomicU64,
    pub push_events: AtomicU64,
    pub push_dropped: AtomicU64,
    /// Push events not sent: their recipient came online, or has no device any more.
    pub push_skipped: AtomicU64,
    /// The commit logs' counters (shared with the store).
    pub log: Arc<LogStats>,
    samples: Mutex<VecDeque<Sample>>,
}

/// The counters at one moment, for rates over the window.
#[derive(Clone)]
struct Sample {
    at: Instant,
    received: u64,
    delivered: u64,
    syncs: u64,
    commits: u64,
    changes: u64,
    commit_latency: Vec<u64>,
}

/// The commit log over the last window: what the Stats reply and the log line show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogRates {
    pub syncs_per_sec: u64,
    /// Changes (messages, acks, dedup records) per commit.
    pub changes_per_commit: u64,
    pub commit_p50_us: u64,
    pub commit_p99_us: u64,
    pub commit_max_us: u64,
}

impl Metrics {
    pub fn new(stored_at_start: u64, log: Arc<LogStats>) -> Self {
        Metrics {
            log,
            started: Instant::now(),
            connections: AtomicU64::new(0),
            received: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            stored: AtomicI64::new(stored_at_start as i64),
            outbound_bytes: AtomicU64::new(0),
            push_queued: AtomicU64::new(0),
            push_events: AtomicU64::new(0),
            push_dropped: AtomicU64::new(0),
            push_skipped: AtomicU64::new(0),
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
        let sample = Sample {
            at: now,
            received: Self::get(&self.received),
            delivered: Self::get(&self.delivered),
            syncs: Self::get(&self.log.syncs),
            commits: Self::get(&self.log.commits),
            changes: Self::get(&self.log.changes),
            commit_latency: self.log.commit_latency.snapshot(),
        };
        let mut samples = self.lock();
        samples.push_back(sample);
        while samples.len() > RATE_WINDOW + 1 {
            samples.pop_front();
        }
    }

    /// (received, delivered) per second over the sampled window.
    pub fn rates(&self) -> (u64, u64) {
        let samples = self.lock();
        match (samples.front(), samples.back()) {
            (Some(first), Some(last)) if last.at > first.at => {
                let secs = (last.at - first.at).as_secs_f64();
                (per_sec(first.received, last.received, secs), per_sec(first.delivered, last.delivered, secs))
            }
            _ => (0, 0),
        }
    }

    /// The commit log's syncs per second, batch size and commit latency over the window.
    pub fn log_rates(&self) -> LogRates {
        let samples = self.lock();
        let (Some(first), Some(last)) = (samples.front(), samples.back()) else { return LogRates::default() };
        let secs = (last.at - first.at).as_secs_f64();
        let commits = last.commits - first.commits;
        let window: Vec<u64> =
            last.commit_latency.iter().zip(&first.commit_latency).map(|(l, f)| l.saturating_sub(*f)).collect();
        LogRates {
            syncs_per_sec: if secs > 0.0 { per_sec(first.syncs, last.syncs, secs) } else { 0 },
            changes_per_commit: (last.changes - first.changes).checked_div(commits).unwrap_or(0),
            commit_p50_us: LatencyHistogram::quantile(&window, 0.5),
            commit_p99_us: LatencyHistogram::quantile(&window, 0.99),
            commit_max_us: LatencyHistogram::quantile(&window, 1.0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Sample>> {
        // Samples are plain numbers; a panic elsewhere cannot leave them inconsistent.
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn per_sec(from: u64, to: u64, secs: f64) -> u64 {
    (to.saturating_sub(from) as f64 / secs) as u64
}

/// Counters of every partition's commit log.
#[derive(Default)]
pub struct LogStats {
    /// fdatasync calls on segments that returned.
    pub syncs: AtomicU64,
    /// Batches committed (with or without a sync).
    pub commits: AtomicU64,
    /// Changes in those batches (messages, acks, dedup records).
    pub changes: AtomicU64,
    /// Bytes reserved by live segments.
    pub bytes_on_disk: AtomicI64,
    /// Time from the start of a commit's write to the return of its sync.
    pub commit_latency: LatencyHistogram,
}

impl LogStats {
    pub fn bytes_on_disk(&self) -> u64 {
        self.bytes_on_disk.load(Ordering::Relaxed).max(0) as u64
    }
}

/// Sub-buckets per power of two: percentiles within 19 % of the truth, in a fixed array
/// of counters that any thread bumps without a lock.
const SUB_BUCKETS: usize = 4;
/// Up to 2^26 us (about a minute); longer lands in the last bucket.
const BUCKETS: usize = 27 * SUB_BUCKETS;

/// A latency histogram in microseconds with logarithmic buckets.
pub struct LatencyHistogram {
    counts: Vec<AtomicU64>,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram { counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl LatencyHistogram {
    pub fn record(&self, elapsed: Duration) {
        let us = elapsed.as_micros().min(u128::from(u64::MAX)) as u64;
        self.counts[Self::bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    fn bucket(us: u64) -> usize {
        if us < SUB_BUCKETS as u64 {
            return us as usize;
        }
        let power = 63 - us.leading_zeros() as usize;
        // The two bits below the leading one pick the sub-bucket.
        let sub = ((us >> (power - 2)) & 0b11) as usize;
        ((power - 1) * SUB_BUCKETS + sub).min(BUCKETS - 1)
    }

    /// The upper bound of a bucket, in microseconds.
    fn bound(bucket: usize) -> u64 {
        if bucket < SUB_BUCKETS {
            return bucket as u64;
        }
        let power = bucket / SUB_BUCKETS + 1;
        let sub = (bucket % SUB_BUCKETS) as u64;
        ((SUB_BUCKETS as u64 + sub + 1) << (power - 2)) - 1
    }

    pub fn snapshot(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// The `q` quantile (0..=1) of a snapshot (or a difference of two), as its bucket's
    /// upper bound; 0 when it is empty.
    pub fn quantile(counts: &[u64], q: f64) -> u64 {
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (bucket, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Self::bound(bucket);
            }
        }
        Self::bound(counts.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_bound_their_values() {
        for us in [0u64, 1, 3, 4, 5, 7, 8, 100, 129, 1_000, 65_535, 1 << 20] {
            let b = LatencyHistogram::bucket(us);
            assert!(LatencyHistogram::bound(b) >= us, "{us} in bucket {b}");
            assert!(LatencyHistogram::bound(b) as f64 <= us as f64 * 1.25 + 1.0, "{us} bucket too wide");
            if b > 0 {
                assert!(LatencyHistogram::bound(b - 1) < us, "{us} belongs lower");
            }
        }
        let h = LatencyHistogram::default();
        for us in 1..=100 {
            h.record(Duration::from_micros(us * 10));
        }
        let snap = h.snapshot();
        let p50 = LatencyHistogram::quantile(&snap, 0.5);
        assert!((500..=625).contains(&p50), "p50 {p50}");
        assert!(LatencyHistogram::quantile(&snap, 1.0) >= 1000);
        assert_eq!(LatencyHistogram::quantile(&[0; BUCKETS], 0.5), 0);
    }

    #[test]
    fn rates_average_over_the_samples() {
        let m = Metrics::new(5, Arc::default());
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
