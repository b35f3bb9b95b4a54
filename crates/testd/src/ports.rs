//! Free TCP ports on 127.0.0.1 for servers that must be told their port before they start
//! and must get the same one back after a restart: nats-server, and cluster nodes, whose
//! list of addresses every node is given at start.
//!
//! A port is free when binding it succeeds; it is released at once, so a clash remains
//! possible until the server binds it, and the callers retry on one. The ports are taken
//! below the kernel's ephemeral range when there is room there: the kernel hands ports of
//! that range to every `connect` and every bind to port 0 (the other tests' servers and
//! clients), so a port of the range that is free now may be some socket's local port a
//! second later, when a killed server is restarted on it. Below the range, only a program
//! that asks for that very port can take it.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hasher};
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

/// The lowest port handed out when ports below the ephemeral range are used: above the
/// well-known and most registered services' ports.
const LOWEST: u16 = 10_000;

/// Fewer free candidates than this below the ephemeral range, and ports come from binding
/// port 0 instead.
const ENOUGH_BELOW: u16 = 2_000;

/// Ports this process handed out, never handed out twice: tests running in parallel must
/// not choose the same port between its release and its use.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `count` distinct ports free on 127.0.0.1 now, none handed out before by this process.
pub fn free_ports(count: usize) -> Vec<u16> {
    let below = ephemeral_low().filter(|low| low.saturating_sub(LOWEST) >= ENOUGH_BELOW);
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Held until all are chosen, so that binding port 0 cannot give the same port twice.
    let mut held = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    let mut attempts = 0u32;
    while ports.len() < count {
        attempts += 1;
        assert!(attempts < 10_000, "no free port on 127.0.0.1 after {attempts} attempts");
        let candidate = match below {
            Some(low) => random_below(low),
            None => 0,
        };
        let Ok(listener) = TcpListener::bind((Ipv4Addr::LOCALHOST, candidate)) else { continue };
        let Ok(port) = listener.local_addr().map(|addr| addr.port()) else { continue };
        if handed_out.insert(port) {
            ports.push(port);
            held.push(listener);
        }
    }
    ports
}

/// One free port (see [`free_ports`]).
pub fn free_port() -> u16 {
    free_ports(1)[0]
}

/// The first port of the kernel's ephemeral range (Linux; `None` elsewhere).
fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    range.split_whitespace().next()?.parse().ok()
}

/// A port in `LOWEST..low`, as random as std allows: `RandomState` is seeded from the OS.
fn random_below(low: u16) -> u16 {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let span = u64::from(low - LOWEST);
    LOWEST + u16::try_from(hasher.finish() % span).expect("below a u16 span")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_distinct_and_free() {
        let ports = free_ports(50);
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        for port in ports {
            assert_ne!(port, 0);
            TcpListener::bind((Ipv4Addr::LOCALHOST, port)).expect("a port handed out is free");
        }
    }

    #[test]
    fn ports_are_never_handed_out_twice() {
        let first: HashSet<u16> = free_ports(20).into_iter().collect();
        let second: HashSet<u16> = free_ports(20).into_iter().collect();
        assert!(first.is_disjoint(&second));
    }
}
