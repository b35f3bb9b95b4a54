//! Reconnect pacing: exponential backoff with jitter.
//!
//! Jitter matters because a server restart drops every client at the same instant; without
//! it they would all come back in lockstep and hit the fresh server in waves.

use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    /// Attempts since the last success.
    attempt: u32,
    /// xorshift state; never zero.
    rng: u64,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Backoff { base, max, attempt: 0, rng: seed | 1 }
    }

    /// The next attempt's number (from 1) and how long to wait before it: the base doubled
    /// per failed attempt, capped, then scaled into [50%, 100%] of that.
    pub fn next(&mut self) -> (u32, Duration) {
        let ceiling = self.ceiling(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let fraction = 0.5 + 0.5 * self.random_unit();
        (self.attempt, ceiling.mul_f64(fraction))
    }

    /// Called once a connection is fully up, so the next drop starts again from the base.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    fn ceiling(&self, attempt: u32) -> Duration {
        // 2^16 times any sane base already exceeds any sane cap; stop shifting there.
        let factor = 1u32 << attempt.min(16);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// A number in [0, 1).
    fn random_unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    #[test]
    fn delays_double_within_jitter_and_are_capped() {
        let mut backoff = Backoff::new(BASE, MAX, 42);
        for expected_attempt in 1..=20u32 {
            let (attempt, delay) = backoff.next();
            assert_eq!(attempt, expected_attempt);
            let ceiling = BASE.saturating_mul(1 << (expected_attempt - 1).min(16)).min(MAX);
            assert!(delay <= ceiling, "attempt {attempt}: {delay:?} > {ceiling:?}");
            assert!(delay >= ceiling / 2, "attempt {attempt}: {delay:?} too short");
        }
    }

    #[test]
    fn reset_starts_over_from_the_base() {
        let mut backoff = Backoff::new(BASE, MAX, 7);
        for _ in 0..10 {
            backoff.next();
        }
        backoff.reset();
        let (attempt, delay) = backoff.next();
        assert_eq!(attempt, 1);
        assert!(delay <= BASE);
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        let delays: Vec<Duration> = (1..=8u64).map(|seed| Backoff::new(BASE, MAX, seed * 7919).next().1).collect();
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "{delays:?}");
    }

    #[test]
    fn a_zero_seed_does_not_freeze_the_jitter() {
        // xorshift maps 0 to 0 forever; the constructor must avoid that state.
        let mut backoff = Backoff::new(MAX, MAX, 0);
        let delays: Vec<Duration> = (0..4).map(|_| backoff.next().1).collect();
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "{delays:?}");
    }
}
