//! The built confabd binary as a child process, for tests of crashes, signals and the
//! command line (the harness itself is `confab-testd`, shared with the tools' tests).

use confab::client::Client;
use confab::protocol::Reply;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, ExitStatus, Output};

pub use confab_testd::Daemon;

/// confabd on an ephemeral port with a cheap password hash, plus `args`.
pub fn spawn_daemon(data_dir: &Path, args: &[&str]) -> Daemon {
    spawn_daemon_with(data_dir, args, None)
}

/// [`spawn_daemon`] with its open-file limit (soft and hard) set to `nofile`.
pub fn spawn_daemon_with_nofile(data_dir: &Path, args: &[&str], nofile: u64) -> Daemon {
    spawn_daemon_with(data_dir, args, Some(nofile))
}

fn spawn_daemon_with(data_dir: &Path, args: &[&str], nofile: Option<u64>) -> Daemon {
    let confabd = env!("CARGO_BIN_EXE_confabd");
    // prlimit (util-linux, on every Debian) sets the limit and then runs confabd in its
    // own place, so the child's pid is confabd's and no unsafe pre-exec hook is needed.
    let mut command = match nofile {
        Some(nofile) => {
            let mut command = Command::new("prlimit");
            command.arg(format!("--nofile={nofile}:{nofile}")).arg("--").arg(confabd);
            command
        }
        None => Command::new(confabd),
    };
    command
        .args(["--listen", "127.0.0.1:0", "--hash-memory-kib", "8", "--hash-iterations", "1"])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args);
    Daemon::spawn(command)
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

/// A client of the daemon at `addr`, logged in as `name` (password [`super::PASSWORD`]).
pub fn logged_in(addr: SocketAddr, name: &str) -> Client {
    let (mut client, _) = Client::connect(addr, name).expect("connect");
    client.login(name, super::PASSWORD).expect("login");
    client
}

/// A client of the daemon at `addr`, logged in as `name` from the named `device`, with the
/// `DeviceLoggedIn` reply.
pub fn logged_in_device(addr: SocketAddr, name: &str, device: &str) -> (Client, Reply) {
    let (mut client, _) = Client::connect(addr, name).expect("connect");
    let reply = super::login_device(&mut client, name, device);
    (client, reply)
}

/// Sends `signal` ("-KILL", "-TERM") to the daemon and waits for it to exit.
pub fn signal(daemon: &mut Daemon, signal: &str) -> ExitStatus {
    let status = Command::new("kill").arg(signal).arg(daemon.child.id().to_string()).status().expect("kill runs");
    assert!(status.success());
    daemon.child.wait().expect("the daemon exits")
}

/// Runs a confabd subcommand on `data_dir` with `stdin` as its input.
pub fn confabd(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    confab_testd::subcommand(Path::new(env!("CARGO_BIN_EXE_confabd")), data_dir, args, stdin)
}
