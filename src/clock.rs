//! Wall-clock time as stored and sent: milliseconds since the Unix epoch; and a monotonic
//! count of milliseconds for what must not jump when the wall clock is set (timeouts,
//! whether a cluster node was heard lately).

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Now, in ms since the epoch; a clock set before 1970 reads as 0 rather than failing.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Milliseconds since this process first asked: never goes back, never jumps with the wall
/// clock (an NTP step or a resumed VM must not make every cluster node look silent).
pub fn mono_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}
