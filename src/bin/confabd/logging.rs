//! The daemon's log: every line to stderr and, with `--log-file`, to a file that is rotated
//! by size and by age, with old files kept (gzipped if asked) as [`LogFiles`] says, and
//! reopened on SIGHUP for external rotation (logrotate).
//!
//! flexi_logger does the file work: rotation happens between two lines, never inside one,
//! and compression and deletion of old files run on its own thread, so the thread that
//! logs (often the event loop) never waits for gzip.

use clap::{ArgAction, Args, ValueEnum};
use confab::config::{LogAge, LogFiles};
use flexi_logger::writers::LogWriter;
use flexi_logger::{Age, Cleanup, Criterion, DeferredNow, FileSpec, Logger, LoggerHandle, Naming};
use log::{error, info, Level, LevelFilter, Record};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What the flags default to: [`LogFiles::default`], where each default has its reason.
fn defaults() -> LogFiles {
    LogFiles::default()
}

/// The size flag is in KiB: fine enough for a test to rotate after a few lines, and an
/// operator's 100 MiB is still a plain number.
const KIB: u64 = 1024;

#[derive(Args, Debug)]
pub struct LogFlags {
    /// Log level: error, warn, info, debug or trace.
    #[arg(long, default_value = "info")]
    pub log_level: LevelFilter,
    /// Also write the log to this file (appended). While it is rotated by size or age,
    /// the file written is NAME_rCURRENT.EXT beside it (this path links to it) and old ones
    /// NAME_r00000.EXT(.gz)...
    #[arg(long)]
    pub log_file: Option<PathBuf>,
    /// Rotate the log file once it passes this many KiB; 0 for no size limit.
    #[arg(long, default_value_t = defaults().max_bytes / KIB)]
    pub log_max_size_kib: u64,
    /// Rotate the log file when the local clock starts a new day or hour; never for no
    /// age limit.
    #[arg(long, value_enum, default_value_t = RotateAge::from(defaults().max_age))]
    pub log_max_age: RotateAge,
    /// Old log files kept; older ones are deleted.
    #[arg(long, default_value_t = defaults().keep)]
    pub log_max_files: usize,
    /// Gzip old log files: true or false.
    #[arg(long, default_value_t = defaults().compress, action = ArgAction::Set)]
    pub log_compress: bool,
}

/// [`LogAge`] as the flag spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RotateAge {
    Never,
    Hour,
    Day,
}

impl From<LogAge> for RotateAge {
    fn from(age: LogAge) -> Self {
        match age {
            LogAge::Never => RotateAge::Never,
            LogAge::Hour => RotateAge::Hour,
            LogAge::Day => RotateAge::Day,
        }
    }
}

impl From<RotateAge> for LogAge {
    fn from(age: RotateAge) -> Self {
        match age {
            RotateAge::Never => LogAge::Never,
            RotateAge::Hour => LogAge::Hour,
            RotateAge::Day => LogAge::Day,
        }
    }
}

impl LogFlags {
    pub fn files(&self) -> LogFiles {
        LogFiles {
            max_bytes: self.log_max_size_kib.saturating_mul(KIB),
            max_age: self.log_max_age.into(),
            keep: self.log_max_files,
            compress: self.log_compress,
        }
    }
}

/// The running logger. Dropping the last clone flushes and stops it, so `main` keeps one
/// until the end.
#[derive(Clone)]
pub struct Log {
    handle: LoggerHandle,
}

impl Log {
    /// Reopens the log file at its path (after logrotate renamed it, on SIGHUP); without a
    /// log file, nothing to do.
    pub fn reopen(&self) {
        match self.handle.reopen_output() {
            Ok(()) => info!("SIGHUP: log file reopened"),
            Err(e) => error!("SIGHUP: cannot reopen the log file: {e}"),
        }
    }

    /// At exit: lets a compression of an old file in progress finish, so no half-written
    /// `.gz` is left behind.
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }
}

/// Installs the logger the flags ask for.
pub fn start(flags: &LogFlags) -> Result<Log, String> {
    // The crate's own complaints go to stderr too; should that be closed, it must not panic.
    let logger = Logger::with(flags.log_level).format(line).panic_if_error_channel_is_broken(false);
    // Said once the logger runs: a file where the link to the current log would go.
    let mut no_link = None;
    let logger = match &flags.log_file {
        None => logger.log_to_writer(Box::new(Stderr)),
        Some(path) => {
            let files = flags.files();
            let path = absolute(path)?;
            let logger = logger.log_to_file_and_writer(file_spec(&path)?, Box::new(Stderr)).append();
            match criterion(&files) {
                Some(criterion) => {
                    let logger = logger.rotate(criterion, Naming::Numbers, cleanup(&files));
                    match link_allowed(&path) {
                        true => logger.create_symlink(path),
                        false => {
                            no_link = Some(path);
                            logger
                        }
                    }
                }
                None => logger,
            }
        }
    };
    let handle = logger.start().map_err(|e| match &flags.log_file {
        Some(path) => format!("cannot open log file {}: {e}", path.display()),
        None => format!("cannot start logging: {e}"),
    })?;
    if let Some(path) = no_link {
        log::warn!(
            "{} is a file (a log written without rotation), so it is not made a link to the current log",
            path.display()
        );
    }
    Ok(Log { handle })
}

/// stderr as a log writer that never fails. A daemon whose stderr is closed (started with
/// a pipe whose reader has gone) must go on serving and writing its log file; the crate's
/// own stderr writer reports the failure, as an error that skips the line's other outputs.
struct Stderr;

impl LogWriter for Stderr {
    fn write(&self, now: &mut DeferredNow, record: &Record) -> io::Result<()> {
        let mut text = Vec::with_capacity(200);
        line(&mut text, now, record)?;
        text.push(b'\n');
        // One write a line, so lines from several threads never interleave.
        let _ = io::stderr().lock().write_all(&text);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// The file's directory, name and extension; a path with no file name is refused here
/// rather than left to the crate, which assumes one.
fn file_spec(path: &Path) -> Result<FileSpec, String> {
    if path.file_name().is_none() {
        return Err(format!("log file {} names no file", path.display()));
    }
    FileSpec::try_from(path).map_err(|e| format!("cannot use log file {}: {e}", path.display()))
}

/// The log file's path made absolute: the link at it names the current file by a path that
/// must not depend on the link's own directory.
fn absolute(path: &Path) -> Result<PathBuf, String> {
    std::path::absolute(path).map_err(|e| format!("log file {}: {e}", path.display()))
}

/// While rotating, the file written is NAME_rCURRENT.EXT, and the path the operator gave
/// becomes a symbolic link to it, so `tail -F PATH` follows the log across rotations. The
/// crate replaces whatever is at the path; a regular file there (the log of a run without
/// rotation) is kept instead, and then there is no link.
fn link_allowed(path: &Path) -> bool {
    match std::fs::symlink_metadata(path) {
        Ok(meta) => meta.file_type().is_symlink(),
        Err(_) => true,
    }
}

/// When to rotate; `None` when neither limit is set (one file that only logrotate rotates).
fn criterion(files: &LogFiles) -> Option<Criterion> {
    let age = match files.max_age {
        LogAge::Never => None,
        LogAge::Hour => Some(Age::Hour),
        LogAge::Day => Some(Age::Day),
    };
    match (age, files.max_bytes) {
        (None, 0) => None,
        (None, bytes) => Some(Criterion::Size(bytes)),
        (Some(age), 0) => Some(Criterion::Age(age)),
        (Some(age), bytes) => Some(Criterion::AgeOrSize(age, bytes)),
    }
}

/// What becomes of old files: `keep` of them, all gzipped or none.
fn cleanup(files: &LogFiles) -> Cleanup {
    if files.compress {
        Cleanup::KeepCompressedFiles(files.keep)
    } else {
        Cleanup::KeepLogFiles(files.keep)
    }
}

/// One line per record, as the daemon always wrote them (time, level, message; the module
/// too for errors, where it helps to find the cause), now with the date, since a file
/// outlives a day.
fn line(w: &mut dyn Write, now: &mut DeferredNow, record: &Record) -> io::Result<()> {
    write!(w, "{} [{}] ", now.format("%Y-%m-%d %H:%M:%S%.3f"), record.level())?;
    if record.level() == Level::Error {
        write!(w, "{}: ", record.target())?;
    }
    write!(w, "{}", record.args())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(max_bytes: u64, max_age: LogAge) -> LogFiles {
        LogFiles { max_bytes, max_age, ..LogFiles::default() }
    }

    /// The log flags alone, as `confabd` flattens them into its own.
    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        log: LogFlags,
    }

    fn parse(args: &[&str]) -> LogFiles {
        use clap::Parser;
        Cli::try_parse_from(std::iter::once("confabd").chain(args.iter().copied())).expect("valid flags").log.files()
    }

    #[test]
    fn no_flags_give_the_default_log_files() {
        assert_eq!(parse(&[]), LogFiles::default());
    }

    #[test]
    fn log_flags_convert() {
        let files = parse(&[
            "--log-max-size-kib",
            "4",
            "--log-max-age",
            "never",
            "--log-max-files",
            "2",
            "--log-compress",
            "false",
        ]);
        assert_eq!(files, LogFiles { max_bytes: 4096, max_age: LogAge::Never, keep: 2, compress: false });
    }

    #[test]
    fn zero_size_and_no_age_mean_no_rotation() {
        assert!(criterion(&files(0, LogAge::Never)).is_none());
        assert!(matches!(criterion(&files(4096, LogAge::Never)), Some(Criterion::Size(4096))));
        assert!(matches!(criterion(&files(0, LogAge::Hour)), Some(Criterion::Age(Age::Hour))));
        assert!(matches!(criterion(&files(4096, LogAge::Day)), Some(Criterion::AgeOrSize(Age::Day, 4096))));
    }

    #[test]
    fn compression_chooses_what_is_kept() {
        let kept = |compress| cleanup(&LogFiles { keep: 3, compress, ..LogFiles::default() });
        assert!(matches!(kept(true), Cleanup::KeepCompressedFiles(3)));
        assert!(matches!(kept(false), Cleanup::KeepLogFiles(3)));
    }

    #[test]
    fn the_link_replaces_a_link_never_a_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confabd.log");
        assert!(link_allowed(&path), "nothing there yet");
        std::os::unix::fs::symlink(dir.path().join("confabd_rCURRENT.log"), &path).unwrap();
        assert!(link_allowed(&path), "an earlier run's link");
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&path, b"an old log\n").unwrap();
        assert!(!link_allowed(&path), "a log written without rotation stays");
    }

    #[test]
    fn a_path_without_a_file_name_is_refused() {
        assert!(file_spec(Path::new("logs/..")).is_err());
        assert!(file_spec(Path::new("logs/confabd.log")).is_ok());
    }

    #[test]
    fn a_line_has_the_time_the_level_and_the_message() {
        let format = |level| {
            let mut out = Vec::new();
            line(
                &mut out,
                &mut DeferredNow::new(),
                &Record::builder().level(level).target("confab::store").args(format_args!("disk full")).build(),
            )
            .expect("a Vec takes any write");
            String::from_utf8(out).expect("the line is text")
        };
        let info = format(Level::Info);
        assert!(info.ends_with(" [INFO] disk full"), "{info}");
        assert!(info.starts_with("20"), "the line starts with the date: {info}");
        let error = format(Level::Error);
        assert!(error.ends_with(" [ERROR] confab::store: disk full"), "{error}");
    }
}
