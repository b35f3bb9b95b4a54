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

/// Connections nobody has logged in on: in all, and per address. The per-address cap
/// keeps a few addresses from holding every not-logged-in place (renewing each one as its
/// handshake deadline closes it), which would keep everyone else from connecting at all.
#[derive(Default)]
pub struct Unauthenticated {
    total: usize,
    per_address: PerAddress,
}

impl Unauthenticated {
    /// Counts a newcomer, or says why not.
    pub fn admit(&mut self, addr: IpAddr, max: usize, max_per_address: usize) -> Result<(), &'static str> {
        if self.total >= max {
            return Err("too many connections not logged in");
        }
        if !self.per_address.admit(addr, max_per_address) {
            return Err("too many connections not logged in from your address");
        }
        self.total += 1;
        Ok(())
    }

    /// A connection that logged out counts again, whatever the caps (it is already here).
    pub fn add(&mut self, addr: IpAddr) {
        self.per_address.admit(addr, usize::MAX);
        self.total += 1;
    }

    /// A connection logged in or closed.
    pub fn remove(&mut self, addr: IpAddr) {
        self.per_address.release(addr);
        self.total = self.total.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_logged_in_places_are_capped_in_all_and_per_address() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let mut places = Unauthenticated::default();
        assert!(places.admit(a, 3, 2).is_ok());
        assert!(places.admit(a, 3, 2).is_ok());
        assert!(places.admit(a, 3, 2).is_err(), "two per address");
        assert!(places.admit(b, 3, 2).is_ok());
        assert!(places.admit(b, 3, 2).is_err(), "three in all");
        places.remove(a);
        assert!(places.admit(b, 3, 2).is_ok(), "a login frees a place");
        places.add(a);
        assert!(places.admit(a, 10, 10).is_ok(), "a logout counts again");
    }

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
