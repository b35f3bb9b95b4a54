//! The log file (README, "Log files"): confabd rotates it by size, keeps the configured
//! number of old files (gzipped if asked) without losing a line, and reopens it on SIGHUP
//! after logrotate renamed it.

use crate::common::daemon::{spawn_daemon, Daemon};
use crate::common::{eventually, DataDir, PASSWORD, SETTLE};
use confab::client::Client;
use flate2::read::GzDecoder;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Registrations come fast from one address and one connection in these tests.
const NO_LIMITS: &[&str] = &[
    "--register-rate",
    "1000000",
    "--register-rate-total",
    "1000000",
    "--request-rate",
    "100000",
    "--request-burst",
    "100000",
];

/// Users named so that no name is a prefix of another ("registered default/user007" is a whole line end).
fn users(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("user{i:03}")).collect()
}

fn daemon_logging_to(data: &DataDir, log_file: &Path, flags: &[&str]) -> Daemon {
    let mut args = vec!["--log-level", "info", "--log-file", log_file.to_str().expect("a UTF-8 temp path")];
    args.extend_from_slice(NO_LIMITS);
    args.extend_from_slice(flags);
    spawn_daemon(data.path(), &args)
}

fn register_all(daemon: &Daemon, names: &[String]) {
    let (mut client, _) = Client::connect(daemon.addr, "setup").expect("connect");
    for name in names {
        client.register(name, PASSWORD).expect("register");
    }
}

/// The files in `dir`, by name (not the link to the current one).
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .expect("the log directory lists")
        .map(|entry| entry.expect("an entry"))
        .filter(|entry| !entry.file_type().is_ok_and(|kind| kind.is_symlink()))
        .map(|entry| entry.path())
        .collect();
    files.sort();
    files
}

/// The text of a log file, gunzipped if it is a `.gz`; `None` if it went away meanwhile (a
/// rotation or a compression renamed or removed it), so the caller looks again.
fn text_of(path: &Path) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    if path.extension().is_some_and(|ext| ext == "gz") {
        let mut text = String::new();
        GzDecoder::new(&bytes[..]).read_to_string(&mut text).expect("an old log file is valid gzip");
        Some(text)
    } else {
        Some(String::from_utf8(bytes).expect("the log is text"))
    }
}

/// How many lines of `text` end with "registered default/NAME" (the log names a user with
/// its app), for each of `names`.
fn registrations(text: &str, names: &[String]) -> Vec<usize> {
    names
        .iter()
        .map(|name| {
            let line_end = format!("registered default/{name}");
            text.lines().filter(|line| line.ends_with(&line_end)).count()
        })
        .collect()
}

#[test]
fn a_log_rotated_by_size_loses_no_line() {
    let data = DataDir::new();
    let logs = tempfile::tempdir().expect("a temp dir");
    let daemon = daemon_logging_to(
        &data,
        &logs.path().join("confabd.log"),
        &["--log-max-size-kib", "1", "--log-max-age", "never", "--log-max-files", "1000", "--log-compress", "false"],
    );
    let names = users(100);
    register_all(&daemon, &names);
    // Each registration is logged once, in whichever file was current at the time.
    let (files, counts) = eventually("every registration in the log files", SETTLE, || {
        let files = files_in(logs.path());
        let mut all = String::new();
        for file in &files {
            all.push_str(&text_of(file)?);
        }
        let counts = registrations(&all, &names);
        counts.iter().all(|&count| count > 0).then_some((files, counts))
    });
    assert!(counts.iter().all(|&count| count == 1), "a registration logged twice: {counts:?}");
    // 100 lines of some 60 bytes in files of 1 KiB: the log was cut several times.
    assert!(files.len() >= 4, "the log was not rotated: {files:?}");
    assert!(files.iter().all(|file| file.extension().is_some_and(|ext| ext == "log")), "{files:?}");
    daemon.stop();
}

#[test]
fn a_rotated_log_keeps_the_configured_number_of_gzipped_files() {
    let data = DataDir::new();
    let logs = tempfile::tempdir().expect("a temp dir");
    let daemon = daemon_logging_to(
        &data,
        &logs.path().join("confabd.log"),
        &["--log-max-size-kib", "1", "--log-max-age", "never", "--log-max-files", "2", "--log-compress", "true"],
    );
    let names = users(100);
    register_all(&daemon, &names);
    let last = names.last().expect("some users");
    // Compression and deletion run on their own thread: wait until they are done, and for
    // the last registration's line.
    let all = eventually("two gzipped old files beside the current one", SETTLE, || {
        let (old, current): (Vec<PathBuf>, Vec<PathBuf>) =
            files_in(logs.path()).into_iter().partition(|file| file.extension().is_some_and(|ext| ext == "gz"));
        if current.len() != 1 || old.len() != 2 {
            return None;
        }
        let mut all = String::new();
        for file in old.iter().chain(&current) {
            all.push_str(&text_of(file)?);
        }
        all.contains(&format!("registered default/{last}")).then_some(all)
    });
    // The path given is a link to the file being written, so `tail -F` follows the log.
    let link = logs.path().join("confabd.log");
    let target = fs::read_link(&link).expect("the log file's path is a link");
    assert!(target.ends_with("confabd_rCURRENT.log"), "{}", target.display());
    let current = fs::read(logs.path().join("confabd_rCURRENT.log")).expect("the current file");
    assert_eq!(fs::read(&link).expect("the link reads"), current, "the link reads the current file");
    assert!(all.lines().all(|line| line.contains(" [")), "every line of every file is a log line:\n{all}");
    assert!(all.ends_with('\n'), "no file ends inside a line");
    assert_eq!(registrations(&all, std::slice::from_ref(last)), [1], "the newest lines are kept");
    assert!(!all.contains("listening on"), "the oldest file (with the start) was deleted:\n{all}");
    daemon.stop();
}

#[test]
fn sighup_reopens_the_log_file_that_logrotate_moved_away() {
    let data = DataDir::new();
    let logs = tempfile::tempdir().expect("a temp dir");
    let log_file = logs.path().join("confabd.log");
    let moved = logs.path().join("confabd.log.1");
    // Rotation left to logrotate: confabd writes the file at exactly the given path.
    let daemon = daemon_logging_to(&data, &log_file, &["--log-max-size-kib", "0", "--log-max-age", "never"]);
    eventually("the start in the log file", SETTLE, || {
        fs::read_to_string(&log_file).is_ok_and(|text| text.contains("listening on"))
    });
    fs::rename(&log_file, &moved).expect("rename the log as logrotate does");
    let pid = daemon.pid().to_string();
    let status = Command::new("kill").args(["-HUP", &pid]).status().expect("kill runs");
    assert!(status.success(), "kill -HUP {pid} failed");
    eventually("a fresh log file at the path", SETTLE, || {
        fs::read_to_string(&log_file).is_ok_and(|text| text.contains("log file reopened"))
    });
    register_all(&daemon, &["carol".to_string()]);
    eventually("carol's registration in the fresh file", SETTLE, || {
        fs::read_to_string(&log_file).is_ok_and(|text| text.contains("registered default/carol"))
    });
    let old = fs::read_to_string(&moved).expect("the moved file is still there");
    assert!(old.contains("listening on") && !old.contains("registered default/carol"), "{old}");
    assert!(!fs::read_to_string(&log_file).expect("the fresh file").contains("listening on"));
    // SIGHUP did not stop the daemon: it still shuts down cleanly on SIGTERM.
    daemon.stop();
}
