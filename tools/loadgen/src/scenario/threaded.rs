//! The frame `direct` and `fanout` (group, room) share: T event-loop threads and a main
//! thread that waits for their setup, gives one start signal, samples CPU, shows progress
//! and ends the drain; the warm-up / measured / drain schedule; and the open loop's pacing.
//! The scenarios differ only in what a thread's [`Load`] does with its connections.

use super::round3;
use crate::clock::{now_ns, secs};
use crate::engine::{Engine, Handler};
use crate::error::Error;
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::stats::Recorder;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::time::Duration;

/// What every thread must agree on about time.
pub struct Timing {
    pub warmup_ns: u64,
    pub duration_ns: u64,
    pub drain_ns: u64,
    pub setup_deadline: u64,
    /// How long after `setup_deadline` the main thread still waits for the threads' setup
    /// (a thread's own deadline is twice this, so the main thread gives up first).
    pub setup_grace_ns: u64,
}

/// What threads and the main thread share: the start signal and running totals.
#[derive(Default)]
pub struct Shared {
    setup_done: AtomicUsize,
    setup_failed: AtomicUsize,
    /// Zero until every thread is set up; then when sending starts.
    start_ns: AtomicU64,
    abort: AtomicBool,
    stop: AtomicBool,
    pub sent: AtomicU64,
    /// Sends answered, by a receipt or an error.
    pub answered: AtomicU64,
    pub receipted: AtomicU64,
    pub delivered: AtomicU64,
    /// Deliveries owed by the answered sends, where that is not one per receipt (fanout).
    pub expected: AtomicU64,
}

impl Shared {
    /// A thread's setup is over: `failed` of its connections (or all, on an error) failed.
    pub fn setup_over<T>(&self, setup: Result<T, Error>, failed: impl FnOnce(&T) -> usize) -> Result<T, Error> {
        let failed = setup.as_ref().map_or(1, failed);
        self.setup_failed.fetch_add(failed, Relaxed);
        // Release, with the Acquire of `supervise` and the start signal's pair: what a
        // thread wrote during its setup (the clients' nodes) is seen by every thread
        // once sending starts.
        self.setup_done.fetch_add(1, Release);
        setup
    }

    /// Adds a thread's counts since its last publish (sent, answered, receipted, delivered,
    /// expected; as many as it keeps) and zeroes them.
    fn publish(&self, deltas: &mut [u64]) {
        let counters = [&self.sent, &self.answered, &self.receipted, &self.delivered, &self.expected];
        for (delta, counter) in deltas.iter_mut().zip(counters) {
            if *delta > 0 {
                counter.fetch_add(*delta, Relaxed);
                *delta = 0;
            }
        }
    }
}

/// A thread's scenario-specific side of the loop.
pub trait Load: Handler {
    /// How long the next poll may wait.
    fn timeout(&self, now: u64) -> Duration;
    /// The start signal (`start`, 0 before it), the end of sending, what is due.
    fn tick(&mut self, eng: &mut Engine, start: u64, now: u64);
    /// Counts since the last publish, in [`Shared::publish`]'s order.
    fn deltas(&mut self) -> &mut [u64];
}

/// Drives one thread's engine from the start signal until the main thread says stop (or a
/// hard deadline of its own passes, whatever the main thread does). With `ping_idle_ns`,
/// quiet connections are pinged once a second so the server's heartbeat does not close them.
pub fn drive<L: Load>(
    eng: &mut Engine,
    h: &mut L,
    shared: &Shared,
    timing: &Timing,
    ping_idle_ns: Option<u64>,
) -> Result<(), Error> {
    let mut next_ping = 0;
    loop {
        if shared.abort.load(Relaxed) {
            break;
        }
        let start = shared.start_ns.load(Acquire);
        let now = now_ns();
        if start == 0 && now > timing.setup_deadline + 2 * timing.setup_grace_ns {
            break;
        }
        eng.turn(Some(h.timeout(now)), h).map_err(Error::Poll)?;
        let now = now_ns();
        h.tick(eng, start, now);
        if let Some(idle_ns) = ping_idle_ns.filter(|_| now >= next_ping) {
            eng.ping_idle(idle_ns, now);
            next_ping = now + 1_000_000_000;
        }
        eng.flush(h);
        shared.publish(h.deltas());
        if shared.stop.load(Relaxed) {
            break;
        }
        if start != 0 && now > start + timing.warmup_ns + timing.duration_ns + timing.drain_ns + 2_000_000_000 {
            break;
        }
    }
    Ok(())
}

/// Runs `body(t, input)` on a thread per input while the main thread runs `supervise`;
/// the threads' results in input order, and the supervisor's.
pub fn run_threads<I, T, S>(
    inputs: Vec<I>,
    body: impl Fn(usize, I) -> Result<T, Error> + Sync,
    supervise: impl FnOnce() -> S,
) -> (Vec<Result<T, Error>>, S)
where
    I: Send,
    T: Send,
{
    std::thread::scope(|scope| {
        let body = &body;
        let handles: Vec<_> = inputs
            .into_iter()
            .enumerate()
            .map(|(t, input)| {
                std::thread::Builder::new().name(format!("loadgen-{t}")).spawn_scoped(scope, move || body(t, input))
            })
            .collect();
        let schedule = supervise();
        let outs: Vec<_> = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(Error::Usage("a load thread panicked".into()))),
                Err(e) => Err(Error::Poll(e)),
            })
            .collect();
        (outs, schedule)
    })
}

#[derive(Clone, Copy)]
pub struct Schedule {
    pub start: u64,
    pub measure: u64,
    pub end: u64,
    pub stopped: u64,
    pub setup_seconds: f64,
}

impl Schedule {
    /// The phases by start time (for the per-second table), and relative to the start
    /// without an empty warm-up (for the plot).
    #[allow(clippy::type_complexity)]
    pub fn phases(&self) -> ([(&'static str, u64); 3], Vec<(&'static str, f64)>) {
        let phases_ns = [("warm-up", self.start), ("measured", self.measure), ("drain", self.end)];
        let phases = phases_ns
            .iter()
            .filter(|(name, t)| *name != "warm-up" || *t < self.measure)
            .map(|(name, t)| (*name, secs(t - self.start)))
            .collect();
        (phases_ns, phases)
    }

    /// The details every threaded scenario reports, with the open loop's when it ran one.
    pub fn details(&self, open_loop: Option<&Pacer>) -> serde_json::Value {
        let mut details = serde_json::json!({
            "mode": if open_loop.is_some() { "open loop" } else { "closed loop" },
            "setup_seconds": round3(self.setup_seconds),
            "drain_seconds": round3(secs(self.stopped.saturating_sub(self.end))),
        });
        if let Some(pacer) = open_loop {
            details["open_loop_max_lag_ms"] = serde_json::json!(round3(pacer.max_lag_ns as f64 / 1e6));
            details["open_loop_skipped"] = serde_json::json!(pacer.skipped);
        }
        details
    }
}

/// The main thread: waits for every thread's setup, gives the start signal, samples CPU,
/// shows progress (`status`), and ends the drain once everything sent is answered and
/// `delivered` reaches the owed count (`owed`). None if setup failed or took too long.
pub fn supervise(
    timing: &Timing,
    shared: &Shared,
    threads: usize,
    monitor: &mut Monitor,
    owed: impl Fn(&Shared) -> u64,
    status: impl Fn(&Shared) -> String,
) -> Option<Schedule> {
    let setup_started = now_ns();
    while shared.setup_done.load(Acquire) < threads {
        if now_ns() > timing.setup_deadline + timing.setup_grace_ns {
            shared.abort.store(true, Relaxed);
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if shared.setup_failed.load(Relaxed) > 0 {
        shared.abort.store(true, Relaxed);
        return None;
    }
    let start = now_ns() + 10_000_000;
    let measure = start + timing.warmup_ns;
    let end = measure + timing.duration_ns;
    let setup_seconds = secs(start - setup_started);
    shared.start_ns.store(start, Release);
    monitor.start(start);
    let mut marked = 0;
    let mut progress = Progress::new((end - start) / 1_000_000, "ms");
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = now_ns();
        monitor.tick(now);
        if marked == 0 && now >= measure {
            monitor.mark(now);
            marked = 1;
        }
        if marked == 1 && now >= end {
            monitor.mark(now);
            marked = 2;
        }
        let (sent, answered, delivered) =
            (shared.sent.load(Relaxed), shared.answered.load(Relaxed), shared.delivered.load(Relaxed));
        let owed = owed(shared);
        let phase = if now < measure {
            "warm-up"
        } else if now < end {
            "measuring"
        } else {
            "draining"
        };
        progress
            .update(now.saturating_sub(start).min(end - start) / 1_000_000, || format!("{phase}: {}", status(shared)));
        let all_in = sent == answered && delivered >= owed;
        if now >= end && (all_in || now >= end + timing.drain_ns) {
            shared.stop.store(true, Relaxed);
            progress.finish();
            return Some(Schedule { start, measure, end, stopped: now, setup_seconds });
        }
    }
}

/// A thread's side of the schedule: when it started and stops sending, and the open
/// loop's budget, spread over its senders in turn.
#[derive(Default)]
pub struct Pacer {
    pub start: u64,
    pub end: u64,
    pub sending: bool,
    /// Sends per second for this thread (open loop).
    pub rate: Option<f64>,
    window: u32,
    open_sent: u64,
    rr: usize,
    pub max_lag_ns: u64,
    pub skipped: u64,
}

impl Pacer {
    /// `window` sends per sender outstanding in the closed loop, or `rate` per second open.
    pub fn new(rate: Option<f64>, window: u32) -> Self {
        Pacer { rate, window, ..Pacer::default() }
    }

    pub fn timeout(&self, now: u64) -> Duration {
        match (self.rate, self.sending) {
            (Some(rate), true) => {
                let next = self.start + ((self.open_sent + 1) as f64 / rate * 1e9) as u64;
                Duration::from_nanos(next.saturating_sub(now).min(10_000_000))
            }
            _ if self.start == 0 => Duration::from_millis(2),
            _ => Duration::from_millis(10),
        }
    }

    /// The senders (of `0..n`) to send one message each now: at the start, the closed
    /// loop's whole window; afterwards, the open loop's due ones.
    pub fn senders_due(
        &mut self,
        eng: &Engine,
        timing: &Timing,
        rec: &mut Recorder,
        start: u64,
        now: u64,
        n: usize,
    ) -> Vec<usize> {
        let mut senders = Vec::new();
        if self.follow(timing, rec, start, now) && self.rate.is_none() {
            senders.extend((0..n).flat_map(|l| std::iter::repeat_n(l, self.window as usize)));
        }
        senders.extend(self.due(eng, n, now));
        senders
    }

    /// Takes the start signal (`start`, 0 before it) and stops sending at the end of the
    /// measured window; true when sending has just begun.
    fn follow(&mut self, timing: &Timing, rec: &mut Recorder, start: u64, now: u64) -> bool {
        let began = self.start == 0 && start != 0 && now >= start;
        if began {
            self.start = start;
            let measure = start + timing.warmup_ns;
            self.end = measure + timing.duration_ns;
            rec.set_window(start, (measure, self.end));
            self.sending = true;
        }
        if self.sending && now >= self.end {
            self.sending = false;
        }
        began
    }

    /// Whether a freed window slot should be used for a new send (closed loop only).
    pub fn refill(&self) -> bool {
        self.sending && self.rate.is_none() && now_ns() < self.end
    }

    /// The open loop's senders due now, each one ready, in turn over `0..n`.
    fn due(&mut self, eng: &Engine, n: usize, now: u64) -> Vec<usize> {
        let (Some(rate), true) = (self.rate, self.sending) else {
            return Vec::new();
        };
        let due = ((now - self.start) as f64 * rate / 1e9) as u64;
        if due <= self.open_sent {
            return Vec::new();
        }
        let intended = self.start + (self.open_sent as f64 / rate * 1e9) as u64;
        self.max_lag_ns = self.max_lag_ns.max(now.saturating_sub(intended));
        // More than a second behind: skip ahead rather than burst (and say so).
        let limit = rate.max(1.0) as u64;
        if due - self.open_sent > limit {
            self.skipped += due - self.open_sent - limit;
            self.open_sent = due - limit;
        }
        let mut senders = Vec::new();
        while self.open_sent < due {
            let mut tries = 0;
            while !eng.is_ready(self.rr) && tries < n {
                self.rr = (self.rr + 1) % n;
                tries += 1;
            }
            if tries == n {
                break;
            }
            senders.push(self.rr);
            self.rr = (self.rr + 1) % n;
            self.open_sent += 1;
        }
        senders
    }
}
