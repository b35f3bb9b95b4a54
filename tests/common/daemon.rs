//! The built confabd binary as a child process, for tests of crashes, signals and the
//! command line.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// The daemon's log lines, as they come.
    pub log: mpsc::Receiver<String>,
    /// The lines it logged before it listened (recovery reports).
    pub startup: Vec<String>,
}

impl Drop for Daemon {
    /// A test that fails half-way must not leave its daemon running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// confabd on an ephemeral port with a cheap password hash, plus `args`.
pub fn spawn_daemon(data_dir: &Path, args: &[&str]) -> Daemon {
    spawn_daemon_with(data_dir, args, None)
}

/// [`spawn_daemon`] with its open-file limit (soft and hard) set to `nofile`.
pub fn spawn_daemon_with_nofile(data_dir: &Path, args: &[&str], nofile: u64) -> Daemon {
    spawn_daemon_with(data_dir, args, Some(nofile))
}

fn spawn_daemon_with(data_dir: &Path, args: &[&str], nofile: Option<u64>) -> Daemon {
    let mut command = Command::new(env!("CARGO_BIN_EXE_confabd"));
    command
        .args(["--listen", "127.0.0.1:0", "--hash-memory-kib", "8", "--hash-iterations", "1"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(nofile) = nofile {
        use std::os::unix::process::CommandExt;
        let limit = libc::rlimit { rlim_cur: nofile as libc::rlim_t, rlim_max: nofile as libc::rlim_t };
        // SAFETY: setrlimit is async-signal-safe and touches only the child being started.
        unsafe {
            command.pre_exec(move || {
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
    }
    let mut child = command.spawn().expect("confabd starts");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, log) = mpsc::channel();
    // Keep draining the log so the daemon never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut startup = Vec::new();
    let addr = loop {
        let line = log
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| panic!("confabd did not start; it logged:\n{}", startup.join("\n")));
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().expect("an address after 'listening on'");
            break addr.parse().expect("a socket address");
        }
        startup.push(line);
    };
    Daemon { child, addr, log, startup }
}

/// confabd as [`spawn_daemon`] starts it (log level info), with these users registered
/// (password [`super::PASSWORD`]).
pub fn daemon_with_users(data_dir: &Path, users: &[&str]) -> Daemon {
    let daemon = spawn_daemon(data_dir, &["--log-level", "info"]);
    let (mut setup, _) = confab::client::Client::connect(daemon.addr, "setup").expect("connect");
    for user in users {
        setup.register(user, super::PASSWORD).expect("register");
    }
    daemon
}

/// Runs a confabd subcommand on `data_dir` with `stdin` as its input.
pub fn confabd(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--hash-memory-kib", "8", "--hash-iterations", "1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("confabd runs");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("stdin accepts");
    child.wait_with_output().expect("confabd finishes")
}
