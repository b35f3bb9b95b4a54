//! The test harness: a real server on 127.0.0.1:0 with its own temporary data directory,
//! and helpers to open logged-in clients.

#![allow(dead_code)]

pub mod daemon;

use confab::client::Client;
use confab::protocol::Reply;
use confab::{Config, Server};
use std::net::SocketAddr;
use std::path::Path;
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    server: Option<Server>,
    dir: TempDir,
    config: Config,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// Starts with the test defaults, adjusted by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let mut config = Config::for_tests(dir.path().join("data"));
        tweak(&mut config);
        let server = Server::start(config.clone()).expect("server starts");
        let addr = server.local_addr();
        TestServer { server: Some(server), dir, config, addr }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("server is running")
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Stops the server cleanly and starts a new one on the same data directory.
    pub fn restart(&mut self) {
        self.stop();
        let server = Server::start(self.config.clone()).expect("server restarts");
        self.addr = server.local_addr();
        self.server = Some(server);
    }

    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().expect("clean shutdown");
        }
    }

    /// A connected client past the Hello handshake.
    pub fn client(&self) -> Client {
        Client::connect(self.addr, "tests").expect("connect").0
    }

    /// Registers `name` (if `register`) and returns a logged-in client.
    pub fn login(&self, name: &str) -> Client {
        let mut client = self.client();
        client.login(name, PASSWORD).expect("login");
        client
    }

    /// Registers and logs in a new user.
    pub fn user(&self, name: &str) -> Client {
        let mut client = self.client();
        client.register(name, PASSWORD).expect("register");
        client.login(name, PASSWORD).expect("login");
        client
    }

    /// Registers users without keeping their connections.
    pub fn register(&self, names: &[&str]) {
        let mut client = self.client();
        for name in names {
            client.register(name, PASSWORD).expect("register");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The (acked, last_seq) of a LoggedIn reply.
pub fn inbox_of(reply: &Reply) -> (u64, u64) {
    match reply {
        Reply::LoggedIn { acked, last_seq, .. } => (*acked, *last_seq),
        other => panic!("not a LoggedIn reply: {other:?}"),
    }
}

/// Copies a directory tree (a data directory to damage or restart from).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create the copy");
    for entry in std::fs::read_dir(from).expect("read the directory") {
        let entry = entry.expect("a directory entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy a file");
        }
    }
}
