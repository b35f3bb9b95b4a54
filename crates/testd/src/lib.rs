//! The real `confabd` as a child process, for tests: started on an ephemeral port with a
//! temporary data directory and the test settings, its address read from its log, stopped
//! with SIGTERM or killed when dropped; and its administration subcommands.
//!
//! The server's own tests run the binary cargo built for them (`CARGO_BIN_EXE_confabd`).
//! The tools depend on the wire contract only, so cargo does not build the server for
//! their tests; [`confabd`] asks it to. Nothing here links the server.
//!
//! For the cluster tests: [`NatsServer`], the bus, and [`Cluster`], three nodes on it.

#![forbid(unsafe_code)]

pub mod cluster;
pub mod nats;
pub mod ports;

pub use cluster::Cluster;
pub use nats::NatsServer;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant};

/// What the server's `Config::for_tests` sets, as flags: the cheapest password hash,
/// small commit-log segments, and registration limits out of the way (tests register many
/// users from 127.0.0.1).
pub const TEST_FLAGS: &[&str] = &[
    "--hash-memory-kib",
    "8",
    "--hash-iterations",
    "1",
    "--log-segment-mib",
    "1",
    "--register-rate",
    "1000000",
    "--register-rate-total",
    "1000000",
];

/// The password hash flags alone: the administration subcommands take only these.
pub const HASH_FLAGS: &[&str] = &["--hash-memory-kib", "8", "--hash-iterations", "1"];

/// How long confabd may take to listen (it replays its commit log first).
pub const START_WAIT: Duration = Duration::from_secs(60);

/// How long confabd may take to stop after SIGTERM (it flushes what its clients are owed,
/// within its shutdown grace, and checkpoints the store).
pub const STOP_WAIT: Duration = Duration::from_secs(60);

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    /// The daemon's log lines, as they come.
    pub log: mpsc::Receiver<String>,
    /// The lines it logged before it listened (recovery reports).
    pub startup: Vec<String>,
}

impl Daemon {
    /// Starts `binary` on `data_dir`, listening on `listen` (port 0 for any), with
    /// [`TEST_FLAGS`] and then `flags`; returns once it listens.
    pub fn start(binary: &Path, data_dir: &Path, listen: SocketAddr, flags: &[&str]) -> Daemon {
        let mut command = Command::new(binary);
        command.arg("--listen").arg(listen.to_string()).arg("--data-dir").arg(data_dir).args(TEST_FLAGS).args(flags);
        Daemon::spawn(command)
    }

    /// Runs `command` (a confabd invocation with whatever the test needs) and returns once
    /// it listens: the log line "confabd listening on ADDR" is the proof that it accepts
    /// connections, and the only place the port it was given appears.
    pub fn spawn(command: Command) -> Daemon {
        Daemon::try_spawn(command).unwrap_or_else(|startup| {
            panic!("confabd did not listen within {START_WAIT:?}; it logged:\n{}", startup.join("\n"))
        })
    }

    /// [`Daemon::spawn`] for a caller that can do something about a daemon that does not
    /// listen (exits, or is still silent after [`START_WAIT`] and is killed): the lines it
    /// logged are the error.
    pub fn try_spawn(mut command: Command) -> Result<Daemon, Vec<String>> {
        let mut child =
            command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("confabd starts");
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
            let Ok(line) = log.recv_timeout(START_WAIT) else {
                let _ = child.kill();
                let _ = child.wait();
                return Err(startup);
            };
            if let Some(rest) = line.split("listening on ").nth(1) {
                let addr = rest.split_whitespace().next().expect("an address after 'listening on'");
                break addr.parse().expect("a socket address");
            }
            startup.push(line);
        };
        Ok(Daemon { child, addr, log, startup })
    }

    /// Stops the daemon as an operator would (SIGTERM) and checks that it exits cleanly,
    /// within [`STOP_WAIT`]: a daemon that does not is a failure (and is killed when the
    /// panic drops it), not a test that never ends.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + STOP_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("confabd can be waited for") {
                break status;
            }
            assert!(Instant::now() < deadline, "confabd (pid {pid}) did not stop within {STOP_WAIT:?} of SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "confabd exited with {status} after SIGTERM");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Daemon {
    /// A test that fails half-way must not leave its daemon running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs an administration subcommand of `binary` on `data_dir` with `stdin` as its input
/// (the cheap password hash set); the caller judges the outcome.
pub fn subcommand(binary: &Path, data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(binary)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .args(HASH_FLAGS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("confabd runs");
    child.stdin.take().expect("piped stdin").write_all(stdin.as_bytes()).expect("stdin accepts");
    child.wait_with_output().expect("confabd finishes")
}

/// Creates administrator `name` with `password` on `data_dir`, which no daemon may hold
/// open (the subcommands refuse while one runs): `confabd user add`, then `user admin`.
pub fn add_admin(binary: &Path, data_dir: &Path, name: &str, password: &str) {
    for (args, stdin) in
        [(&["user", "add", name][..], format!("{password}\n")), (&["user", "admin", name][..], String::new())]
    {
        let output = subcommand(binary, data_dir, args, &stdin);
        assert!(
            output.status.success(),
            "confabd {} failed ({}):\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// The confabd binary beside the running test's own build, built by cargo once per test
/// process.
///
/// It is built even when a binary is there already: a package that does not depend on the
/// server would otherwise run whatever confabd an earlier build left, however old. When it
/// is fresh, the build is a quick no-op. A binary that cannot be built fails the test.
pub fn confabd() -> &'static Path {
    static CONFABD: OnceLock<PathBuf> = OnceLock::new();
    CONFABD.get_or_init(build_confabd)
}

fn build_confabd() -> PathBuf {
    // The test executable is TARGET/PROFILE/deps/NAME; confabd goes to TARGET/PROFILE.
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("the test executable is in PROFILE/deps");
    let target_dir = profile_dir.parent().expect("the profile directory is in a target directory");
    let profile = match profile_dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") => "dev",
        Some(name) => name,
        None => panic!("no profile name in {}", profile_dir.display()),
    };
    // This crate is WORKSPACE/crates/testd.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // Cargo sets CARGO for the tests it runs; the bare name serves a test started by hand.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args(["build", "--bin", "confabd", "--profile", profile])
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} to build confabd: {e}", cargo.to_string_lossy()));
    assert!(
        output.status.success(),
        "building confabd failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let confabd = profile_dir.join("confabd");
    assert!(confabd.is_file(), "cargo built confabd, but it is not at {}", confabd.display());
    confabd
}
