//! The stop signal: SIGTERM or SIGINT (or a test) asks the gateway to finish.
//!
//! A channel that never carries a message: dropping its one sender disconnects every
//! receiver at once, so a wait on it (a backoff, or a `select!` beside the link's events)
//! ends the moment stop is asked, without polling a flag.

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::Duration;

/// Nothing is ever sent: only the sender's drop means something.
enum Never {}

/// Asks for the stop when dropped, or when [`StopHandle::stop`] is called.
pub struct StopHandle {
    /// Held only to be dropped.
    _sender: Sender<Never>,
}

/// What the gateway waits on; clone it freely.
#[derive(Clone)]
pub struct Stop(Receiver<Never>);

/// A stop signal not yet given.
pub fn stop_signal() -> (StopHandle, Stop) {
    let (tx, rx) = crossbeam_channel::bounded(0);
    (StopHandle { _sender: tx }, Stop(rx))
}

impl StopHandle {
    pub fn stop(self) {
        drop(self);
    }
}

impl Stop {
    pub fn is_stopped(&self) -> bool {
        matches!(self.0.try_recv(), Err(TryRecvError::Disconnected))
    }

    /// Sleeps for `duration` unless stop is asked first; true if it was.
    pub fn wait(&self, duration: Duration) -> bool {
        match self.0.recv_timeout(duration) {
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
            Ok(never) => match never {},
        }
    }

    /// For `select!`: becomes ready (disconnected) when stop is asked.
    pub fn receiver(&self) -> &Receiver<impl Sized> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_wait_ends_early_when_stop_is_asked() {
        let (handle, stop) = stop_signal();
        assert!(!stop.is_stopped());
        assert!(!stop.wait(Duration::from_millis(1)));
        let waiter = stop.clone();
        let started = Instant::now();
        let thread = std::thread::spawn(move || waiter.wait(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        handle.stop();
        assert!(thread.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(stop.is_stopped());
    }
}
