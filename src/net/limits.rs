//! Per-connection and per-address limits the event loop enforces before any work is
//! handed to a worker: a token bucket on requests, and a count of connections per address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug)]
pub struct RequestBudget {
    tokens: f64,
    last: Instant,
    /// Requests refused since the last one allowed.
    pub refused: u32,
}

impl RequestBudget {
    pub fn new(burst: u32, now: Instant) -> Self {
        RequestBudget { tokens: f64::from(burst), last: now, refused: 0 }
    }

    /// Takes a token if there is one.
    pub fn allow(&mut self, rate: u32, burst: u32, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * f64::from(rate)).min(f64::from(burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused = 0;
            true
        } else {
            self.refused += 1;
            false
        }
    }
}

impl RequestBudget {
    /// How long until a request would be allowed again.
    pub fn wait(&self, rate: u32) -> Duration {
        let missing = (1.0 - self.tokens).max(0.0);
        Duration::from_secs_f64(missing / f64::from(rate.max(1)))
    }
}

/// Open connections per address.
#[derive(Default)]
pub struct PerAddress {
    counts: HashMap<IpAddr, usize>,
}

impl PerAddress {
    /// Counts a new connection unless the address already has `max`.
    pub fn admit(&mut self, addr: IpAddr, max: usize) -> bool {
        let count = self.counts.entry(addr).or_default();
        if *count >= max {
            return false;
        }
        *count += 1;
        true
    }

    pub fn release(&mut self, addr: IpAddr) {
        if let Some(count) = self.counts.get_mut(&addr) {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = RequestBudget::new(3, start);
        assert!((0..3).all(|_| bucket.allow(10, 3, start)));
        assert!(!bucket.allow(10, 3, start));
        assert!(!bucket.allow(10, 3, start));
        assert_eq!(bucket.refused, 2);
        assert_eq!(bucket.wait(10), Duration::from_millis(100));
        // A tenth of a second later one token (rate 10/s) has come back.
        let later = start + Duration::from_millis(100);
        assert!(bucket.allow(10, 3, later));
        assert!(!bucket.allow(10, 3, later));
        assert_eq!(bucket.refused, 1);
    }

    #[test]
    fn addresses_are_counted_and_released() {
        let mut per = PerAddress::default();
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        assert!(per.admit(a, 2) && per.admit(a, 2));
        assert!(!per.admit(a, 2));
        assert!(per.admit(b, 2));
        per.release(a);
        assert!(per.admit(a, 2));
    }
}
