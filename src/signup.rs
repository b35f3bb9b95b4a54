//! How fast accounts may be created: a token bucket per address (an IPv6 /64) refilled
//! over an hour, and one for everyone refilled over a minute. Each registration costs a
//! password hash (tens of milliseconds of a hashing thread) and a database entry, so a
//! flood of them must neither starve logins nor fill the disk.
//!
//! Memory is bounded: a bucket that has refilled is the same as no bucket and is pruned;
//! if the table is still full, new addresses are held only by the overall bucket.

use crate::throttle::address_key;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Per-address buckets kept at most.
const MAX_ADDRESSES: usize = 100_000;

/// A token bucket: `per_period` tokens over `period`, at most `per_period` saved up.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Clone, Copy, Debug)]
struct Rate {
    per_period: u32,
    period: Duration,
}

impl Rate {
    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        let per_second = f64::from(self.per_period) / self.period.as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(f64::from(self.per_period));
        bucket.last = now;
    }

    /// The wait until the bucket holds a whole token.
    fn wait(&self, bucket: &Bucket) -> Duration {
        let per_second = f64::from(self.per_period) / self.period.as_secs_f64();
        Duration::from_secs_f64(((1.0 - bucket.tokens).max(0.0) / per_second).max(0.001))
    }

    fn full(&self, now: Instant) -> Bucket {
        Bucket { tokens: f64::from(self.per_period), last: now }
    }
}

struct Buckets {
    total: Bucket,
    per_address: HashMap<IpAddr, Bucket>,
}

/// The registration limits, shared by every worker.
#[derive(Clone)]
pub struct SignupLimit {
    buckets: Arc<Mutex<Buckets>>,
    address_rate: Rate,
    total_rate: Rate,
}

impl SignupLimit {
    /// `per_address` registrations an hour from one address, `total` a minute from all.
    pub fn new(per_address: u32, total: u32, now: Instant) -> Self {
        let address_rate = Rate { per_period: per_address.max(1), period: Duration::from_secs(3600) };
        let total_rate = Rate { per_period: total.max(1), period: Duration::from_secs(60) };
        let buckets = Buckets { total: total_rate.full(now), per_address: HashMap::new() };
        SignupLimit { buckets: Arc::new(Mutex::new(buckets)), address_rate, total_rate }
    }

    /// Takes one registration from `addr`'s allowance and the overall one; Err is how long
    /// to wait before one would be allowed (nothing is taken then).
    pub fn take(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.lock();
        let Buckets { total, per_address } = &mut *buckets;
        self.total_rate.refill(total, now);
        let key = address_key(addr);
        if !per_address.contains_key(&key) && per_address.len() >= MAX_ADDRESSES {
            let rate = self.address_rate;
            per_address.retain(|_, b| {
                rate.refill(b, now);
                b.tokens < f64::from(rate.per_period)
            });
        }
        let mut fresh = self.address_rate.full(now);
        let bucket = match per_address.len() < MAX_ADDRESSES || per_address.contains_key(&key) {
            true => per_address.entry(key).or_insert(fresh),
            false => &mut fresh,
        };
        self.address_rate.refill(bucket, now);
        let address_wait = (bucket.tokens < 1.0).then(|| self.address_rate.wait(bucket));
        let total_wait = (total.tokens < 1.0).then(|| self.total_rate.wait(total));
        match address_wait.max(total_wait) {
            Some(wait) => Err(wait),
            None => {
                bucket.tokens -= 1.0;
                total.tokens -= 1.0;
                Ok(())
            }
        }
    }

    /// Gives back what [`SignupLimit::take`] took, for a registration that was refused
    /// for another reason before it cost anything (a full hashing queue).
    pub fn give_back(&self, addr: IpAddr) {
        let mut buckets = self.lock();
        buckets.total.tokens = (buckets.total.tokens + 1.0).min(f64::from(self.total_rate.per_period));
        let cap = f64::from(self.address_rate.per_period);
        if let Some(bucket) = buckets.per_address.get_mut(&address_key(addr)) {
            bucket.tokens = (bucket.tokens + 1.0).min(cap);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Buckets> {
        // Plain numbers: a panic elsewhere cannot leave them inconsistent.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(n: u8) -> IpAddr {
        [10, 0, 0, n].into()
    }

    #[test]
    fn each_address_gets_its_allowance_then_waits() {
        let now = Instant::now();
        let limit = SignupLimit::new(3, 1000, now);
        assert!((0..3).all(|_| limit.take(addr(1), now).is_ok()));
        let wait = limit.take(addr(1), now).unwrap_err();
        // 3 an hour: one every 20 minutes.
        assert_eq!(wait.as_secs(), 1200);
        assert!(limit.take(addr(2), now).is_ok(), "another address is not held back");
        assert!(limit.take(addr(1), now + Duration::from_secs(1200)).is_ok());
    }

    #[test]
    fn everyone_together_is_limited_too() {
        let now = Instant::now();
        let limit = SignupLimit::new(100, 2, now);
        assert!(limit.take(addr(1), now).is_ok());
        assert!(limit.take(addr(2), now).is_ok());
        let wait = limit.take(addr(3), now).unwrap_err();
        assert_eq!(wait.as_secs(), 30);
        limit.give_back(addr(2));
        assert!(limit.take(addr(3), now).is_ok());
    }

    #[test]
    fn the_table_is_bounded() {
        let now = Instant::now();
        let limit = SignupLimit::new(1, 1_000_000, now);
        for i in 0..(MAX_ADDRESSES as u32 + 10) {
            let addr = IpAddr::from(i.to_be_bytes());
            limit.take(addr, now).unwrap();
        }
        assert!(limit.lock().per_address.len() <= MAX_ADDRESSES);
    }
}
