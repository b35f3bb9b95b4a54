//! Log lines on stderr: `HH:MM:SS.mmm LEVEL message` (UTC). A service manager adds the
//! date and keeps the file; the gateway logs too little to want rotation of its own, and
//! a logging crate for thirty lines is not worth its dependencies.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

struct StderrLogger;

static LOGGER: StderrLogger = StderrLogger;

/// Installs the logger; a second call keeps the first level (tests may call it often).
pub fn init(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Error => "ERROR",
            Level::Warn => "WARN ",
            Level::Info => "INFO ",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        // A closed stderr leaves nobody to tell.
        let _ = writeln!(std::io::stderr().lock(), "{} {level} {}", time_of_day(SystemTime::now()), record.args());
    }

    fn flush(&self) {}
}

/// `HH:MM:SS.mmm` in UTC.
fn time_of_day(now: SystemTime) -> String {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let ms_of_day = since_epoch.as_millis() % (24 * 3600 * 1000);
    let (secs, ms) = (ms_of_day / 1000, ms_of_day % 1000);
    format!("{:02}:{:02}:{:02}.{ms:03}", secs / 3600, secs / 60 % 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_time_of_day_is_utc_with_milliseconds() {
        let t = UNIX_EPOCH + Duration::from_millis(((13 * 60 + 4) * 60 + 5) * 1000 + 67 + 86_400_000 * 3);
        assert_eq!(time_of_day(t), "13:04:05.067");
    }
}
