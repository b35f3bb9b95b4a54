//! A real `nats-server` as a child process, for the cluster tests: the message bus confabd
//! nodes share, on 127.0.0.1 and a free port, killed with SIGKILL (when the test says so,
//! and when dropped) and restarted on the same port, where the nodes reconnect by
//! themselves.
//!
//! nats-server 2.9 (Debian's package) needs `-a 127.0.0.1` to stay on loopback (it binds
//! every address otherwise) and `-p PORT`; nothing else: no cluster port, no monitoring
//! port, no JetStream. Go listeners set SO_REUSEADDR, so a restart binds the port again at
//! once, even with the killed server's connections still closing.

use crate::ports::free_port;
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What a test says when nats-server cannot be found.
const NOT_INSTALLED: &str =
    "nats-server is not installed: run scripts/test, which installs it, or apt-get install nats-server";

/// How long nats-server may take to accept connections (it starts in milliseconds; a
/// loaded machine is slow, and only a failing start waits this long).
pub const NATS_START_WAIT: Duration = Duration::from_secs(20);

/// Ports tried before giving up when each is found taken between choosing it and binding.
const PORT_ATTEMPTS: u32 = 20;

/// A running (or killed, until [`NatsServer::restart`]) nats-server on 127.0.0.1.
pub struct NatsServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
}

/// Why a start failed.
enum StartError {
    /// The port was taken (by another program, between choosing and binding it).
    PortTaken,
    /// Anything else, with what the server logged.
    Failed(String),
}

impl NatsServer {
    /// Starts nats-server on a free port of 127.0.0.1 and returns once it accepts
    /// connections. Panics if it is not installed or does not start.
    pub fn start() -> NatsServer {
        let binary = nats_server_binary();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            match spawn(&binary, port) {
                Ok(child) => return NatsServer { binary, port, child: Some(child) },
                Err(StartError::PortTaken) => continue,
                Err(StartError::Failed(log)) => panic!("nats-server did not start on port {port}:\n{log}"),
            }
        }
        panic!("nats-server found its port taken {PORT_ATTEMPTS} times in a row");
    }

    /// The URL confabd's `--cluster` takes: `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Whether it runs (it was not killed, and did not die).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills it with SIGKILL, as a crash would, and waits until it is gone: its clients'
    /// connections break with no goodbye. Does nothing if it is not running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An error means it has exited already; wait reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (killing it first if it runs) and returns once it
    /// accepts connections. A port taken meanwhile is retried for a while, then panics:
    /// the nodes know only this URL.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + NATS_START_WAIT;
        loop {
            match spawn(&self.binary, self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(StartError::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(StartError::PortTaken) => {
                    panic!("nats-server cannot restart: port {} stayed taken for {NATS_START_WAIT:?}", self.port)
                }
                Err(StartError::Failed(log)) => panic!("nats-server did not restart on port {}:\n{log}", self.port),
            }
        }
    }
}

impl Drop for NatsServer {
    /// A test that fails half-way must not leave its nats-server running.
    fn drop(&mut self) {
        self.kill();
    }
}

/// The nats-server binary: on PATH, or in the sbin directories where Debian puts it and a
/// normal user's PATH does not look. Panics with how to install it when it is nowhere.
pub fn nats_server_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").map(|path| std::env::split_paths(&path).collect::<Vec<_>>());
    let sbin = ["/usr/sbin", "/usr/local/sbin"].map(PathBuf::from);
    nats_server_in(on_path.into_iter().flatten().chain(sbin))
}

/// The first `nats-server` file in `dirs`; panics with how to install it when none has one.
fn nats_server_in(dirs: impl IntoIterator<Item = PathBuf>) -> PathBuf {
    dirs.into_iter()
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{NOT_INSTALLED}"))
}

/// Runs nats-server on `port` and waits for it to say it is ready, then for the port to
/// accept a connection. Its log (stderr) is drained for as long as it runs, so it never
/// blocks on a full pipe.
fn spawn(binary: &Path, port: u16) -> Result<Child, StartError> {
    let mut child = Command::new(binary)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StartError::Failed(format!("cannot run {}: {e}", binary.display())))?;
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, log) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Once started, nobody listens; the lines are drained all the same.
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + NATS_START_WAIT;
    let mut seen = Vec::new();
    let failed = |child: &mut Child, seen: &[String]| {
        let _ = child.kill();
        let _ = child.wait();
        let text = seen.join("\n");
        if text.contains("address already in use") {
            StartError::PortTaken
        } else {
            StartError::Failed(text)
        }
    };
    // "Server is ready" is the proof that this server (not another program that took the
    // port) listens; the log ends when the process does.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("Server is ready");
                seen.push(line);
                if ready {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(failed(&mut child, &seen)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                seen.push(format!("(not ready within {NATS_START_WAIT:?})"));
                return Err(failed(&mut child, &seen));
            }
        }
    }
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    while TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err() {
        if Instant::now() >= deadline {
            seen.push(format!("(said it was ready, but {addr} refused connections for {NATS_START_WAIT:?})"));
            return Err(failed(&mut child, &seen));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(child)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// The first bytes of a NATS connection: the server's INFO line.
    fn greets(addr: SocketAddr) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else { return false };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let mut info = [0u8; 4];
        stream.read_exact(&mut info).is_ok() && &info == b"INFO"
    }

    #[test]
    fn starts_on_loopback_is_killed_and_restarts_on_the_same_port() {
        let mut nats = NatsServer::start();
        assert_eq!(nats.url(), format!("nats://127.0.0.1:{}", nats.port()));
        assert!(greets(nats.addr()));
        // A client still connected when the server dies leaves the port's connection
        // closing; the restart must bind it all the same.
        let held = TcpStream::connect(nats.addr()).expect("connect");

        nats.kill();
        assert!(!nats.is_running());
        assert!(TcpStream::connect(nats.addr()).is_err(), "nothing listens once it is killed");

        let port = nats.port();
        nats.restart();
        assert_eq!(nats.port(), port);
        assert!(nats.is_running());
        assert!(greets(nats.addr()));
        drop(held);
    }

    #[test]
    #[should_panic(expected = "nats-server is not installed: run scripts/test, which installs it")]
    fn a_missing_nats_server_fails_saying_how_to_install_it() {
        nats_server_in([PathBuf::from(env!("CARGO_MANIFEST_DIR"))]);
    }

    #[test]
    fn dropping_it_kills_it() {
        let nats = NatsServer::start();
        let addr = nats.addr();
        drop(nats);
        assert!(TcpStream::connect(addr).is_err());
    }
}
