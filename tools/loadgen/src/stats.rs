//! What a run records: latency histograms, per-second buckets and counters, one
//! [`Recorder`] per event-loop thread (no sharing on the hot path), merged at the end.
//!
//! Two clocks of interest: a message's *send* time decides whether its latency belongs to
//! the measured window (so a message sent at the end of the window and delivered during
//! the drain still counts), while throughput counts *events* (deliveries, receipts) that
//! happened inside the window.

use hdrhistogram::Histogram;
use serde::Serialize;
use std::collections::BTreeMap;

/// Latencies are recorded in nanoseconds up to a minute, at 3 significant digits.
const MAX_NS: u64 = 60_000_000_000;
/// Per-second buckets only feed the plot: 2 digits keep 30 s of buckets small.
const BUCKET_SIGFIG: u8 = 2;

fn histogram(sigfig: u8) -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, sigfig).expect("static histogram bounds are valid")
}

/// Which per-second latency line a sample feeds.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The scenario's main latency: delivery, connection setup or login.
    Main,
    /// Send-to-receipt.
    Receipt,
    /// Only the run's histogram, no per-second line.
    Off,
}

#[derive(Default)]
struct Bucket {
    sent: u64,
    receipted: u64,
    delivered: u64,
    completed: u64,
    main: Option<Histogram<u64>>,
    receipt: Option<Histogram<u64>>,
    /// The percentiles of `main` and `receipt` once [`Recorder::compact_before`] dropped them.
    main_frozen: Option<Frozen>,
    receipt_frozen: Option<Frozen>,
    frozen: bool,
}

/// One second's latency line without its histogram (which costs tens of KiB): a long run
/// keeps only these for its past seconds.
#[derive(Clone, Copy, Debug)]
struct Frozen {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

impl Frozen {
    fn of(h: &Histogram<u64>) -> Self {
        Frozen {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    fn line(h: &Option<Histogram<u64>>, frozen: Option<Frozen>) -> Option<Frozen> {
        h.as_ref().map(Frozen::of).or(frozen)
    }
}

#[derive(Clone, Copy, Default, Debug, Serialize)]
pub struct Counts {
    pub sent: u64,
    pub receipted: u64,
    pub delivered: u64,
    /// Logins, connection setups: whatever the scenario counts as done.
    pub completed: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.sent += other.sent;
        self.receipted += other.receipted;
        self.delivered += other.delivered;
        self.completed += other.completed;
    }
}

pub struct Recorder {
    /// Bucket 0 starts here.
    origin_ns: u64,
    /// The measured window, `[from, to)`.
    window: (u64, u64),
    latencies: BTreeMap<&'static str, Histogram<u64>>,
    buckets: Vec<Bucket>,
    /// Buckets below this index are frozen.
    compacted: usize,
    /// Every event of the run.
    pub total: Counts,
    /// Events inside the measured window.
    pub measured: Counts,
    pub duplicated: u64,
    /// Load-generator messages from an earlier run, still in an inbox.
    pub stale: u64,
    pub errors: BTreeMap<String, u64>,
}

impl Recorder {
    pub fn new(origin_ns: u64, window: (u64, u64)) -> Self {
        Recorder {
            origin_ns,
            window,
            latencies: BTreeMap::new(),
            buckets: Vec::new(),
            compacted: 0,
            total: Counts::default(),
            measured: Counts::default(),
            duplicated: 0,
            stale: 0,
            errors: BTreeMap::new(),
        }
    }

    pub fn set_window(&mut self, origin_ns: u64, window: (u64, u64)) {
        self.origin_ns = origin_ns;
        self.window = window;
    }

    fn in_window(&self, t: u64) -> bool {
        t >= self.window.0 && t < self.window.1
    }

    fn bucket(&mut self, t: u64) -> &mut Bucket {
        let i = (t.saturating_sub(self.origin_ns) / 1_000_000_000) as usize;
        if i >= self.buckets.len() {
            self.buckets.resize_with(i + 1, Bucket::default);
        }
        &mut self.buckets[i]
    }

    pub fn error(&mut self, kind: &str) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
    }

    pub fn add_errors(&mut self, errors: &BTreeMap<String, u64>) {
        for (kind, n) in errors {
            *self.errors.entry(kind.clone()).or_default() += n;
        }
    }

    pub fn sent(&mut self, now: u64) {
        self.total.sent += 1;
        if self.in_window(now) {
            self.measured.sent += 1;
        }
        self.bucket(now).sent += 1;
    }

    pub fn receipted(&mut self, now: u64) {
        self.total.receipted += 1;
        if self.in_window(now) {
            self.measured.receipted += 1;
        }
        self.bucket(now).receipted += 1;
    }

    pub fn delivered(&mut self, now: u64) {
        self.total.delivered += 1;
        if self.in_window(now) {
            self.measured.delivered += 1;
        }
        self.bucket(now).delivered += 1;
    }

    pub fn completed(&mut self, now: u64) {
        self.total.completed += 1;
        if self.in_window(now) {
            self.measured.completed += 1;
        }
        self.bucket(now).completed += 1;
    }

    /// Records `now - start` under `name` if `start` lies in the measured window, and in
    /// the per-second line of `now` in any case.
    pub fn latency(&mut self, name: &'static str, line: Line, start: u64, now: u64) {
        let value = now.saturating_sub(start).clamp(1, MAX_NS);
        if self.in_window(start) {
            // Clamped into the histogram's range, so recording cannot fail.
            let _ = self.latencies.entry(name).or_insert_with(|| histogram(3)).record(value);
        }
        let bucket = self.bucket(now);
        if bucket.frozen {
            return;
        }
        let slot = match line {
            Line::Main => &mut bucket.main,
            Line::Receipt => &mut bucket.receipt,
            Line::Off => return,
        };
        let _ = slot.get_or_insert_with(|| histogram(BUCKET_SIGFIG)).record(value);
    }

    /// Replaces the per-second histograms of the seconds that ended before `t` by their
    /// percentiles, so a run of hours keeps a few bytes per second instead of tens of KiB.
    /// Latencies recorded later in a frozen second still count in the run's histograms.
    pub fn compact_before(&mut self, t: u64) {
        let upto = ((t.saturating_sub(self.origin_ns) / 1_000_000_000) as usize).min(self.buckets.len());
        for b in &mut self.buckets[self.compacted.min(upto)..upto] {
            b.main_frozen = b.main.take().as_ref().map(Frozen::of);
            b.receipt_frozen = b.receipt.take().as_ref().map(Frozen::of);
            b.frozen = true;
        }
        self.compacted = self.compacted.max(upto);
    }

    pub fn merge(&mut self, other: Recorder) {
        for (name, h) in other.latencies {
            match self.latencies.get_mut(name) {
                // Same bounds on both sides: adding cannot fail.
                Some(mine) => {
                    let _ = mine.add(&h);
                }
                None => {
                    self.latencies.insert(name, h);
                }
            }
        }
        // Buckets are relative to each recorder's origin; all share one in practice.
        let shift = (other.origin_ns.saturating_sub(self.origin_ns) / 1_000_000_000) as usize;
        for (i, b) in other.buckets.into_iter().enumerate() {
            let i = i + shift;
            if i >= self.buckets.len() {
                self.buckets.resize_with(i + 1, Bucket::default);
            }
            let mine = &mut self.buckets[i];
            mine.sent += b.sent;
            mine.receipted += b.receipted;
            mine.delivered += b.delivered;
            mine.completed += b.completed;
            mine.main_frozen = mine.main_frozen.or(b.main_frozen);
            mine.receipt_frozen = mine.receipt_frozen.or(b.receipt_frozen);
            for (slot, theirs) in [(&mut mine.main, b.main), (&mut mine.receipt, b.receipt)] {
                if let Some(theirs) = theirs {
                    match slot {
                        Some(h) => {
                            let _ = h.add(&theirs);
                        }
                        None => *slot = Some(theirs),
                    }
                }
            }
        }
        self.total.add(&other.total);
        self.measured.add(&other.measured);
        self.duplicated += other.duplicated;
        self.stale += other.stale;
        self.add_errors(&other.errors);
    }

    pub fn percentiles(&self) -> BTreeMap<String, Percentiles> {
        self.latencies.iter().map(|(name, h)| (name.to_string(), Percentiles::of(h))).collect()
    }

    /// The per-second table, labelled with the phase each second starts in.
    pub fn seconds(&self, phases: &[(&'static str, u64)], cpu: &[CpuSecond]) -> Vec<Second> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let start = self.origin_ns + i as u64 * 1_000_000_000;
                let phase = phases
                    .iter()
                    .rev()
                    .find(|(_, from)| *from <= start)
                    .or(phases.first())
                    .map_or("", |(name, _)| name);
                let cpu = cpu.get(i).copied().unwrap_or_default();
                let main = Frozen::line(&b.main, b.main_frozen);
                let receipt = Frozen::line(&b.receipt, b.receipt_frozen);
                Second {
                    t: i as u64,
                    phase,
                    sent: b.sent,
                    receipted: b.receipted,
                    delivered: b.delivered,
                    completed: b.completed,
                    p50_ms: main.map(|f| ms(f.p50)),
                    p99_ms: main.map(|f| ms(f.p99)),
                    p999_ms: main.map(|f| ms(f.p999)),
                    max_ms: main.map(|f| ms(f.max)),
                    receipt_p50_ms: receipt.map(|f| ms(f.p50)),
                    receipt_p99_ms: receipt.map(|f| ms(f.p99)),
                    loadgen_cpu_percent: cpu.loadgen,
                    server_cpu_percent: cpu.server,
                    server_rss_kib: cpu.server_rss_kib,
                }
            })
            .collect()
    }
}

pub fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

#[derive(Clone, Debug, Serialize)]
pub struct Percentiles {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            mean: (h.mean() / 1e6 * 1000.0).round() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p99_9: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// CPU and memory over one second, from /proc.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct CpuSecond {
    pub loadgen: Option<f64>,
    pub server: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Second {
    /// Seconds since the start of the run (the first send or connect).
    pub t: u64,
    pub phase: &'static str,
    pub sent: u64,
    pub receipted: u64,
    pub delivered: u64,
    pub completed: u64,
    /// The main latency (delivery, setup or login) of events in this second.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub p999_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub receipt_p50_ms: Option<f64>,
    pub receipt_p99_ms: Option<f64>,
    pub loadgen_cpu_percent: Option<f64>,
    pub server_cpu_percent: Option<f64>,
    pub server_rss_kib: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_decides_latency_and_counts() {
        let s = 1_000_000_000;
        let mut r = Recorder::new(0, (2 * s, 4 * s));
        r.latency("delivery", Line::Main, s, s + 1000); // warm-up: not in the histogram
        r.latency("delivery", Line::Main, 3 * s, 3 * s + 2_000_000);
        r.delivered(s);
        r.delivered(3 * s);
        assert_eq!(r.total.delivered, 2);
        assert_eq!(r.measured.delivered, 1);
        let p = r.percentiles();
        assert_eq!(p["delivery"].count, 1);
        assert!((p["delivery"].p50 - 2.0).abs() < 0.01);
        let seconds = r.seconds(&[("warmup", 0), ("measure", 2 * s)], &[]);
        assert_eq!(seconds.len(), 4);
        assert_eq!(seconds[3].phase, "measure");
        assert_eq!(seconds[1].delivered, 1);
    }

    #[test]
    fn compaction_keeps_the_percentiles() {
        let s = 1_000_000_000;
        let mut r = Recorder::new(0, (0, u64::MAX));
        for i in 1..=100 {
            r.latency("delivery", Line::Main, 0, i * 1_000_000);
        }
        r.latency("delivery", Line::Main, s, s + 5_000_000);
        let before = r.seconds(&[], &[]);
        r.compact_before(s);
        assert!(r.buckets[0].main.is_none() && r.buckets[1].main.is_some());
        let after = r.seconds(&[], &[]);
        assert_eq!(before[0].p99_ms, after[0].p99_ms);
        assert_eq!(before[0].max_ms, after[0].max_ms);
        assert!(after[1].p50_ms.is_some_and(|p| (p - 5.0).abs() < 0.1));
        // A late sample of a frozen second counts in the run, not in that second's line.
        r.latency("delivery", Line::Main, 0, 999_000_000);
        assert_eq!(r.seconds(&[], &[])[0].max_ms, before[0].max_ms);
        assert_eq!(r.percentiles()["delivery"].count, 102);
    }

    #[test]
    fn merge_adds_everything() {
        let mut a = Recorder::new(0, (0, u64::MAX));
        let mut b = Recorder::new(0, (0, u64::MAX));
        a.latency("receipt", Line::Receipt, 0, 5_000);
        b.latency("receipt", Line::Receipt, 0, 7_000);
        b.sent(10);
        b.error("x");
        a.merge(b);
        assert_eq!(a.percentiles()["receipt"].count, 2);
        assert_eq!(a.total.sent, 1);
        assert_eq!(a.errors["x"], 1);
    }
}
