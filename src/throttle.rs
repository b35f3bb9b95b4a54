//! Failed-login throttling, so a password cannot be guessed at network speed, a guesser
//! cannot make the server hash for it, and a guesser cannot lock the owner out either.
//!
//! Failures are counted three ways, and each count has free attempts after which every
//! further attempt waits `base`, doubling with each failure up to `max`:
//! - per (account, address): the owner mistyping, or one address guessing one account;
//! - per address, whatever the account: one address guessing many accounts;
//! - per account, whatever the address: many addresses guessing one account. This brake
//!   applies only to addresses that have failures of their own. An address with none (the
//!   owner at home, on the phone) is never held back by other people's guesses: it is the
//!   per-device lockout OWASP recommends instead of locking the account. A guesser spread
//!   over many addresses gets one guess per fresh address, then each of its addresses
//!   waits on the account's count: its rate is bounded by how fast it finds new addresses.
//!
//! A success clears the pair's and the account's counts (not the address's: an attacker's
//! own account must not reset its address). A count is forgotten once it has been quiet
//! for twice the longest wait. IPv6 addresses are counted per /64, the block one host
//! usually holds, so an attacker cannot step through addresses of its own block.
//!
//! A valid resume token is not a guess and is never throttled (see `worker::accounts`).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries kept before quiet ones are pruned...
const PRUNE_ABOVE: usize = 100_000;
/// ...and at most, even when none is quiet: beyond, the oldest half is forgotten (so
/// memory stays bounded whatever the number of addresses and names an attacker uses).
const MAX_ENTRIES: usize = 400_000;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Pair(String, IpAddr),
    Address(IpAddr),
    Account(String),
}

/// Failures of one key: how many, and when the last one was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failures {
    pub count: u32,
    pub last: Instant,
}

/// The free attempts of each count, and the waits after them.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub pair_free: u32,
    pub address_free: u32,
    pub account_free: u32,
    pub base: Duration,
    pub max: Duration,
}

/// The live counts concerning one attempt (None: no failures, or forgotten ones).
#[derive(Clone, Copy, Debug, Default)]
pub struct Counts {
    pub pair: Option<Failures>,
    pub address: Option<Failures>,
    pub account: Option<Failures>,
}

impl Policy {
    /// How long an attempt with these counts must still wait; None when it may go now.
    pub fn wait(&self, counts: &Counts, now: Instant) -> Option<Duration> {
        let pair = self.remaining(counts.pair, self.pair_free, now);
        let address = self.remaining(counts.address, self.address_free, now);
        // The account's brake holds back only addresses that have failed themselves.
        let failed_here = counts.pair.is_some() || counts.address.is_some();
        let account = if failed_here { self.remaining(counts.account, self.account_free, now) } else { None };
        [pair, address, account].into_iter().flatten().max()
    }

    fn remaining(&self, failures: Option<Failures>, free: u32, now: Instant) -> Option<Duration> {
        let f = failures?;
        if f.count < free {
            return None;
        }
        let doublings = (f.count - free).min(30);
        let wait = self.base.saturating_mul(1 << doublings).min(self.max);
        let until = f.last + wait;
        (now < until).then(|| until - now)
    }

    /// Counts quiet this long start again from zero.
    fn forget_after(&self) -> Duration {
        self.max * 2
    }
}

/// The address a count is kept for: IPv4 as is, IPv6 by its /64.
pub fn address_key(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

#[derive(Clone)]
pub struct LoginThrottle {
    failures: Arc<Mutex<HashMap<Key, Failures>>>,
    policy: Policy,
}

impl LoginThrottle {
    pub fn new(policy: Policy) -> Self {
        LoginThrottle { failures: Arc::default(), policy }
    }

    /// How long the caller must still wait before trying this account from this address;
    /// None when it may try now.
    pub fn wait(&self, account: &str, addr: IpAddr, now: Instant) -> Option<Duration> {
        let failures = self.lock();
        let live = |key: Key| {
            failures
                .get(&key)
                .copied()
                .filter(|f| now.saturating_duration_since(f.last) < self.policy.forget_after() && f.count > 0)
        };
        let addr = address_key(addr);
        let counts = Counts {
            pair: live(Key::Pair(account.to_string(), addr)),
            address: live(Key::Address(addr)),
            account: live(Key::Account(account.to_string())),
        };
        self.policy.wait(&counts, now)
    }

    pub fn failed(&self, account: &str, addr: IpAddr, now: Instant) {
        let mut failures = self.lock();
        let forget = self.policy.forget_after();
        if failures.len() > PRUNE_ABOVE {
            failures.retain(|_, f| now.saturating_duration_since(f.last) < forget);
            if failures.len() > MAX_ENTRIES {
                forget_oldest_half(&mut failures);
            }
        }
        let addr = address_key(addr);
        for key in [Key::Pair(account.to_string(), addr), Key::Address(addr), Key::Account(account.to_string())] {
            let entry = failures.entry(key).or_insert(Failures { count: 0, last: now });
            if now.saturating_duration_since(entry.last) >= forget {
                entry.count = 0;
            }
            entry.count = entry.count.saturating_add(1);
            entry.last = now;
        }
    }

    pub fn succeeded(&self, account: &str, addr: IpAddr) {
        let mut failures = self.lock();
        failures.remove(&Key::Pair(account.to_string(), address_key(addr)));
        failures.remove(&Key::Account(account.to_string()));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        // Counters are plain integers; a panic elsewhere cannot leave them inconsistent.
        self.failures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn forget_oldest_half(failures: &mut HashMap<Key, Failures>) {
    let mut times: Vec<Instant> = failures.values().map(|f| f.last).collect();
    let middle = times.len() / 2;
    let (_, cutoff, _) = times.select_nth_unstable(middle);
    let cutoff = *cutoff;
    failures.retain(|_, f| f.last > cutoff);
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "alice";

    fn addr(n: u8) -> IpAddr {
        [127, 0, 0, n].into()
    }

    fn policy(pair: u32, address: u32, account: u32) -> Policy {
        Policy {
            pair_free: pair,
            address_free: address,
            account_free: account,
            base: Duration::from_secs(1),
            max: Duration::from_secs(8),
        }
    }

    #[test]
    fn the_policy_alone() {
        let p = policy(3, 5, 4);
        let now = Instant::now();
        let failed = |count| Some(Failures { count, last: now });
        let none = Counts::default();
        assert_eq!(p.wait(&none, now), None);
        // The account far past its free attempts holds back no clean address...
        let clean = Counts { account: failed(100), ..none };
        assert_eq!(p.wait(&clean, now), None);
        // ...but an address with one failure of its own waits the account's wait (capped).
        let dirty = Counts { address: failed(1), account: failed(100), ..none };
        assert_eq!(p.wait(&dirty, now), Some(Duration::from_secs(8)));
        // The longest of the waits that apply wins; each counts from its last failure.
        let pair = Counts { pair: failed(4), address: failed(4), account: failed(4) };
        assert_eq!(p.wait(&pair, now), Some(Duration::from_secs(2)));
        assert_eq!(p.wait(&pair, now + Duration::from_secs(1)), Some(Duration::from_secs(1)));
    }

    #[test]
    fn free_attempts_then_a_doubling_wait() {
        let t = LoginThrottle::new(policy(3, 100, 100));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.wait(ALICE, addr(1), now), None);
            t.failed(ALICE, addr(1), now);
        }
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(1)));
        t.failed(ALICE, addr(1), now);
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(2)));
        for _ in 0..10 {
            t.failed(ALICE, addr(1), now);
        }
        assert_eq!(t.wait(ALICE, addr(1), now), Some(Duration::from_secs(8)), "capped");
        assert_eq!(t.wait(ALICE, addr(1), now + Duration::from_secs(8)), None);
    }

    #[test]
    fn guesses_from_elsewhere_never_hold_back_a_clean_address() {
        let t = LoginThrottle::new(policy(3, 5, 4));
        let now = Instant::now();
        // Eleven guesses from three addresses the owner never uses.
        for i in 0..11u8 {
            t.failed(ALICE, addr(10 + i % 3), now);
        }
        assert_eq!(t.wait(ALICE, addr(1), now), None, "the owner's address has no failures");
        // The guessers wait: their pairs are past the free attempts, and the account's
        // count holds back every address that failed.
        assert!(t.wait(ALICE, addr(10), now).is_some());
        // A guesser's fresh address gets one guess, then the account's brake applies.
        assert_eq!(t.wait(ALICE, addr(50), now), None);
        t.failed(ALICE, addr(50), now);
        assert!(t.wait(ALICE, addr(50), now).is_some(), "one failure and the account's count");
    }

    #[test]
    fn an_address_guessing_many_accounts_waits_for_all() {
        let t = LoginThrottle::new(policy(3, 5, 100));
        let now = Instant::now();
        for name in ["a1", "a2", "a3", "a4", "a5"] {
            t.failed(name, addr(9), now);
        }
        assert!(t.wait("bob", addr(9), now).is_some());
        assert_eq!(t.wait("bob", addr(1), now), None);
    }

    #[test]
    fn success_clears_the_pair_and_account_but_not_the_address() {
        let t = LoginThrottle::new(policy(1, 2, 100));
        let now = Instant::now();
        t.failed(ALICE, addr(1), now);
        assert!(t.wait(ALICE, addr(1), now).is_some());
        t.succeeded(ALICE, addr(1));
        assert_eq!(t.wait(ALICE, addr(1), now), None);
        t.failed("bob", addr(1), now);
        assert!(t.wait("carol", addr(1), now).is_some(), "the address has two failures");
    }

    #[test]
    fn quiet_counts_are_forgotten() {
        let t = LoginThrottle::new(policy(1, 1, 1));
        let now = Instant::now();
        t.failed(ALICE, addr(1), now);
        assert!(t.wait(ALICE, addr(1), now).is_some());
        assert_eq!(t.wait(ALICE, addr(1), now + Duration::from_secs(16)), None);
    }

    #[test]
    fn ipv6_is_counted_per_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::7".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(address_key(a), address_key(b));
        assert_ne!(address_key(a), address_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(address_key(mapped), IpAddr::from([10, 0, 0, 1]));
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut failures = HashMap::new();
        let start = Instant::now();
        for i in 0..10u32 {
            let last = start + Duration::from_millis(u64::from(i));
            failures.insert(Key::Account(i.to_string()), Failures { count: 1, last });
        }
        forget_oldest_half(&mut failures);
        assert_eq!(failures.len(), 4);
        assert!(failures.contains_key(&Key::Account("9".into())));
    }
}
