//! Logging of refused connections without flooding the log: the first refusal after a
//! quiet second is logged as it happens, the rest are counted and summed up in one line
//! per second. A flood of 19,000 connections costs a handful of lines, not 19,000.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// How often counted refusals are summed up.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct RefusalLog {
    /// Refusals counted since the last line, by reason.
    counted: BTreeMap<&'static str, u64>,
    /// When the last line (single or summary) was logged.
    last_line: Option<Instant>,
}

impl RefusalLog {
    /// Records one refusal; true when the caller should log it itself (the first after a
    /// quiet second). Otherwise it is counted for [`RefusalLog::summary`].
    pub fn note(&mut self, reason: &'static str, now: Instant) -> bool {
        let quiet = self.last_line.is_none_or(|last| now.saturating_duration_since(last) >= SUMMARY_EVERY);
        if quiet && self.counted.is_empty() {
            self.last_line = Some(now);
            return true;
        }
        *self.counted.entry(reason).or_default() += 1;
        false
    }

    /// The line summing up the refusals counted, once `SUMMARY_EVERY` has passed since
    /// the last line; None when there is nothing to say yet.
    pub fn summary(&mut self, now: Instant) -> Option<String> {
        if self.counted.is_empty() {
            return None;
        }
        if self.last_line.is_some_and(|last| now.saturating_duration_since(last) < SUMMARY_EVERY) {
            return None;
        }
        self.last_line = Some(now);
        let total: u64 = self.counted.values().sum();
        let reasons: Vec<String> =
            std::mem::take(&mut self.counted).into_iter().map(|(reason, n)| format!("{reason}: {n}")).collect();
        Some(format!("refused {total} more connections ({})", reasons.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_then_one_summary_a_second() {
        let start = Instant::now();
        let mut log = RefusalLog::default();
        assert!(log.note("server full", start), "the first is logged");
        for _ in 0..1000 {
            assert!(!log.note("server full", start));
        }
        log.note("out of file descriptors", start);
        assert_eq!(log.summary(start), None, "not before a second has passed");
        let later = start + SUMMARY_EVERY;
        assert_eq!(
            log.summary(later).as_deref(),
            Some("refused 1001 more connections (out of file descriptors: 1, server full: 1000)")
        );
        assert_eq!(log.summary(later + SUMMARY_EVERY), None);
        // A refusal right after a summary is counted; after a quiet second, logged again.
        assert!(!log.note("server full", later));
        assert!(log.summary(later + SUMMARY_EVERY).is_some());
        assert!(log.note("server full", later + SUMMARY_EVERY * 3));
    }
}
