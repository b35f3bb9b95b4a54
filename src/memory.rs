//! Giving freed memory back to the operating system once a burst of traffic is over.
//!
//! Messages are tens of kilobytes at most, below glibc's threshold for mapping an
//! allocation on its own, so they come from the heap; when a burst ends (the staged tables
//! migrate, output buffers drain) the heap keeps the freed pages. Measured: 366 MB resident
//! after 1 GB of 32 KB messages, 226 MB after a `malloc_trim` (docs/BENCHMARKS.md). So once
//! traffic has stopped after some activity, the process trims once. Trimming walks the
//! heap, so it is never done while messages flow.

/// Decides when to trim: at the first quiet look after some traffic.
#[derive(Default)]
pub struct Trimmer {
    last_traffic: u64,
    dirty: bool,
}

impl Trimmer {
    /// Looks at the traffic counter (messages received plus delivered so far); true when
    /// it has stopped moving after it moved, and the heap should be trimmed now.
    pub fn due(&mut self, traffic: u64) -> bool {
        if traffic != self.last_traffic {
            self.last_traffic = traffic;
            self.dirty = true;
            return false;
        }
        std::mem::take(&mut self.dirty)
    }
}

/// Returns the heap's free pages to the operating system (glibc only; elsewhere nothing).
/// The foreign call is in the `confab-trim` crate, so that this crate forbids `unsafe`.
pub fn trim() {
    confab_trim::trim();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_once_when_traffic_stops() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.due(0), "nothing happened yet");
        assert!(!trimmer.due(100), "traffic");
        assert!(!trimmer.due(250), "still traffic");
        assert!(trimmer.due(250), "stopped: trim");
        assert!(!trimmer.due(250), "once");
        assert!(!trimmer.due(260));
        assert!(trimmer.due(260));
    }
}
