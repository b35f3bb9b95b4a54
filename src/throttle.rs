//! Failed-login throttling, per account and per source address, so a password cannot be
//! guessed at network speed and a guesser cannot make the server hash for it.
//!
//! The first `free` failures cost nothing; after that each attempt must wait `base`,
//! doubling with every further failure up to `max`. A success clears the account's count
//! (not the address's: an attacker's own account must not reset its address). A key is
//! forgotten once it has been quiet for twice the longest wait.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries kept before quiet ones are pruned.
const PRUNE_ABOVE: usize = 100_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Account(String),
    Address(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

#[derive(Clone)]
pub struct LoginThrottle {
    failures: Arc<Mutex<HashMap<Key, Failures>>>,
    free: u32,
    base: Duration,
    max: Duration,
}

impl LoginThrottle {
    pub fn new(free: u32, base: Duration, max: Duration) -> Self {
        LoginThrottle { failures: Arc::default(), free, base, max }
    }

    /// How long the caller must still wait before trying this account from this address;
    /// None when it may try now.
    pub fn wait(&self, account: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let keys = [Key::Account(account.to_string()), Key::Address(addr)];
        keys.iter().filter_map(|key| failures.get(key).and_then(|f| self.remaining(f, now))).max()
    }

    pub fn failed(&self, account: &str, addr: IpAddr, now: Instant) {
        let mut failures = self.lock();
        if failures.len() > PRUNE_ABOVE {
            let forget = self.max * 2;
            failures.retain(|_, f| now.saturating_duration_since(f.last) < forget);
        }
        for key in [Key::Account(account.to_string()), Key::Address(addr)] {
            let entry = failures.entry(key).or_insert(Failures { count: 0, last: now });
            if now.saturating_duration_since(entry.last) >= self.max * 2 {
                entry.count = 0;
            }
            entry.count += 1;
            entry.last = now;
        }
    }

    pub fn succeeded(&self, account: &str) {
        self.lock().remove(&Key::Account(account.to_string()));
    }

    fn remaining(&self, f: &Failures, now: Instant) -> Option<Duration> {
        if f.count < self.free {
            return None;
        }
        let doublings = (f.count - self.free).min(30);
        let wait = self.base.saturating_mul(1 << doublings).min(self.max);
        let until = f.last + wait;
        (now < until).then(|| until - now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // Counters are plain integers; a panic elsewhere cannot leave them inconsistent.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice";

    fn addr(n: u8) -> IpAddr {
        [127, 0, 0, n].into()
    }

    #[test]
    fn free_attempts_then_a_doubling_wait() {
        let t = LoginThrottle::new(3, Duration::from_secs(1), Duration::from_secs(8));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.wait(ALICE, addr(1), now), None);
            t.failed(ALICE, addr(1), now);
        }
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(1)));
        // Another address is still held back by the account's count, and vice versa.
        assert_eq!(t.wait(ALICE, addr(2), now), Some(Duration::from_secs(1)));
        assert_eq!(t.wait("bob", addr(1), now), Some(Duration::from_secs(1)));
        t.failed(ALICE, addr(1), now);
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            t.failed(ALICE, addr(1), now);
        }
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(8)), "capped");
        assert_eq!(t.wait(ALICE, addr(1), now + Duration::from_secs(8)), None);
    }

    #[test]
    fn success_clears_the_account_but_not_the_address() {
        let t = LoginThrottle::new(1, Duration::from_secs(5), Duration::from_secs(60));
        let now = Instant::now();
        t.failed(ALICE, addr(1), now);
        t.succeeded(ALICE);
        assert_eq!(t.wait(ALICE, addr(2), now), None);
        assert!(t.wait(ALICE, addr(1), now).is_some());
    }
}
