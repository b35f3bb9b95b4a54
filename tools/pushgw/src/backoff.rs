//! Exponential backoff for webhook retries, reconnects and the standby's tries: the base
//! (500 ms) doubled after each failure up to the maximum (`--retry-max-ms`).
//!
//! No jitter: there is one gateway per server (a standby or two at most), so there is no
//! herd to spread out, and a fixed schedule is what the operator reads in the docs and
//! the logs.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first wait.
    pub base: Duration,
    /// No wait is longer.
    pub max: Duration,
}

#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    /// Failures since the last success.
    failures: u32,
}

impl Backoff {
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, failures: 0 }
    }

    /// Counts a failure; returns the attempt that failed (from 1) and how long to wait
    /// before the next.
    pub fn failed(&mut self) -> (u32, Duration) {
        // 2^20 times any sane base already passes any sane maximum; stop shifting there.
        let wait = self.policy.base.saturating_mul(1 << self.failures.min(20)).min(self.policy.max);
        self.failures = self.failures.saturating_add(1);
        (self.failures, wait)
    }

    /// After a success the next failure waits the base again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_from_the_base_up_to_the_maximum() {
        let policy = RetryPolicy { base: Duration::from_millis(500), max: Duration::from_millis(60_000) };
        let mut backoff = Backoff::new(policy);
        let waits: Vec<u64> = (0..10).map(|_| backoff.failed().1.as_millis() as u64).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000, 60000]);
        for _ in 0..100 {
            backoff.failed();
        }
        assert_eq!(backoff.failed(), (111, Duration::from_secs(60)));
        backoff.reset();
        assert_eq!(backoff.failed(), (1, Duration::from_millis(500)));
    }

    #[test]
    fn a_maximum_below_the_base_caps_the_first_wait_too() {
        let mut backoff =
            Backoff::new(RetryPolicy { base: Duration::from_millis(500), max: Duration::from_millis(100) });
        assert_eq!(backoff.failed().1, Duration::from_millis(100));
    }
}
