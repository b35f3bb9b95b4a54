//! What a live fan-out (a room message, a broadcast) costs its sender.
//!
//! One request to a room of N members makes N frames: a sender allowed 2,000 requests a
//! second could otherwise buy gigabytes a second of work and memory with 30 KB messages.
//! So each connection has a budget of fan-out bytes (frame size times recipients), a
//! token bucket refilled at `--fanout-rate` a second. A send that costs more than the
//! bucket holds when full is let through once the bucket is full and leaves it in debt,
//! so a big room still hears big messages, only less often. The budgets are shared by all
//! workers: rooms spread over workers by name, and a sender in rooms on every worker still
//! has one budget.

use crate::route::ConnId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

struct Bucket {
    /// Negative after a send that cost more than a full bucket.
    bytes: f64,
    last: Instant,
}

#[derive(Clone)]
pub struct FanoutBudgets {
    buckets: Arc<Mutex<HashMap<ConnId, Bucket>>>,
    /// Bytes a second.
    rate: f64,
    /// Bytes saved up at most.
    burst: f64,
}

impl FanoutBudgets {
    pub fn new(rate: u64, burst: u64) -> Self {
        FanoutBudgets { buckets: Arc::default(), rate: rate.max(1) as f64, burst: burst.max(1) as f64 }
    }

    /// Takes `cost` bytes from the connection's budget, or says how long until it may.
    pub fn take(&self, conn: ConnId, cost: u64, now: Instant) -> Result<(), Duration> {
        let (rate, burst) = (self.rate, self.burst);
        let mut buckets = self.lock();
        let bucket = buckets.entry(conn).or_insert(Bucket { bytes: burst, last: now });
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.last = now;
        bucket.bytes = (bucket.bytes + elapsed * rate).min(burst);
        let cost = cost as f64;
        // A cost beyond a full bucket waits for a full bucket, then goes into debt.
        let needed = cost.min(burst);
        if bucket.bytes >= needed {
            bucket.bytes -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((needed - bucket.bytes) / rate))
        }
    }

    /// The connection closed.
    pub fn forget(&self, conn: ConnId) {
        self.lock().remove(&conn);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Bucket>> {
        // A bucket is two numbers: a panic elsewhere cannot leave one half-written.
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fan_out_is_paid_for_by_bytes_times_recipients() {
        let start = Instant::now();
        let budgets = FanoutBudgets::new(1000, 2000);
        let conn = ConnId(1);
        assert!(budgets.take(conn, 1500, start).is_ok());
        let wait = budgets.take(conn, 1000, start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(budgets.take(conn, 1000, start + wait).is_ok());
        assert!(budgets.take(ConnId(2), 2000, start).is_ok(), "per connection");
    }

    #[test]
    fn a_send_bigger_than_the_bucket_waits_for_a_full_one_then_leaves_a_debt() {
        let start = Instant::now();
        let budgets = FanoutBudgets::new(1000, 2000);
        let conn = ConnId(1);
        assert!(budgets.take(conn, 5000, start).is_ok(), "a full bucket lets it through");
        // 3000 in debt: a full bucket again takes 5 s.
        let wait = budgets.take(conn, 5000, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(5));
        budgets.forget(conn);
        assert!(budgets.take(conn, 5000, start).is_ok());
    }
}
