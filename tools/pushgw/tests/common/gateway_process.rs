//! The built `confab-pushgw` as a child process, its log read line by line, so a test
//! waits for the line that proves an effect (subscribed, confirmed, standing by).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(15);

pub struct GatewayProcess {
    name: String,
    child: Child,
    lines: mpsc::Receiver<String>,
    /// Every line read so far, for failure messages.
    seen: Vec<String>,
}

impl GatewayProcess {
    /// Starts the gateway as service `service` with the token in `token_file`, logging
    /// every event and ack, and retrying every second at most.
    pub fn start(name: &str, server: SocketAddr, service: &str, token_file: &Path, webhook: &str) -> GatewayProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-pushgw"))
            .arg("--server")
            .arg(server.to_string())
            .args(["--service", service, "--webhook", webhook, "--retry-max-ms", "1000", "--timeout-ms", "5000"])
            .args(["--log-level", "debug"])
            .arg("--token-file")
            .arg(token_file)
            .env_remove("CONFAB_SERVICE_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("confab-pushgw starts");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        GatewayProcess { name: name.to_string(), child, lines, seen: Vec::new() }
    }

    /// The next log line containing `text`, skipping others.
    pub fn wait_for(&mut self, text: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let line = self.next_line(deadline, &format!("{text:?}"));
            if line.contains(text) {
                return line;
            }
        }
    }

    /// Waits until each of `texts` has been in a line, in any order (for lines whose
    /// order the server's answers decide), skipping others.
    pub fn wait_for_each(&mut self, texts: &[&str]) {
        let deadline = Instant::now() + WAIT;
        let mut waiting: Vec<&str> = texts.to_vec();
        while !waiting.is_empty() {
            let line = self.next_line(deadline, &format!("{waiting:?}"));
            waiting.retain(|text| !line.contains(text));
        }
    }

    /// The next line, before `deadline`; a panic naming what was `awaited` if none.
    fn next_line(&mut self, deadline: Instant, awaited: &str) -> String {
        match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("{}: no line with {awaited} within {WAIT:?}; it logged:\n{}", self.name, self.seen.join("\n"))
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("{}: exited before logging {awaited}; it logged:\n{}", self.name, self.seen.join("\n"))
            }
        }
    }

    /// Stops it as an operator would (SIGTERM) and checks that it exits 0, soon.
    pub fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + WAIT;
        loop {
            match self.child.try_wait().expect("wait for the gateway") {
                Some(status) => {
                    assert!(status.success(), "{} exited with {status} after SIGTERM", self.name);
                    return;
                }
                None if Instant::now() > deadline => panic!("{} did not exit within {WAIT:?} of SIGTERM", self.name),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
}

impl Drop for GatewayProcess {
    /// A test that fails half-way must not leave its gateway running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
