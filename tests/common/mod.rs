//! The test harness: a real server on 127.0.0.1:0 with its own temporary data directory,
//! helpers to open logged-in clients, the one way to make a data directory ([`DataDir`])
//! and the one way to wait for an effect no frame proves ([`eventually`]).

#![allow(dead_code)]

pub mod daemon;

use confab::client::Client;
use confab::protocol::{Reply, Request, Seq};
use confab::store::{AppRecord, Store};
use confab::{Config, Server};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const PASSWORD: &str = "correct horse battery";

pub struct TestServer {
    server: Option<Server>,
    _data: DataDir,
    config: Config,
    pub addr: SocketAddr,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(|_| {})
    }

    /// Starts with the test defaults, adjusted by `tweak`.
    pub fn with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data = DataDir::new();
        let mut config = Config::for_tests(data.path());
        tweak(&mut config);
        let server = Server::start(config.clone()).expect("server starts");
        let addr = server.local_addr();
        TestServer { server: Some(server), _data: data, config, addr }
    }

    /// Starts with these apps hosted besides `default` (apps are read at start, so they are
    /// written to the data directory first, as `confabd app add` does).
    pub fn with_apps(apps: &[(&str, AppRecord)], tweak: impl FnOnce(&mut Config)) -> TestServer {
        let data = DataDir::new();
        {
            let store = Store::open(data.path()).expect("the store opens");
            for (name, limits) in apps {
                confab::admin::add_app(&store, name, *limits).expect("the app is added");
            }
        }
        let mut config = Config::for_tests(data.path());
        tweak(&mut config);
        let server = Server::start(config.clone()).expect("server starts");
        let addr = server.local_addr();
        TestServer { server: Some(server), _data: data, config, addr }
    }

    /// A client of `app`, past the HelloApp handshake.
    pub fn client_in(&self, app: &str) -> Client {
        Client::connect_to_app(self.addr, "tests", app).expect("connect").0
    }

    /// A logged-in client of `name` in `app` (registered before).
    pub fn login_in(&self, app: &str, name: &str) -> Client {
        let mut client = self.client_in(app);
        client.login(name, PASSWORD).expect("login");
        client
    }

    /// Registers users of `app` without keeping their connections.
    pub fn register_in(&self, app: &str, names: &[&str]) {
        let mut client = self.client_in(app);
        for name in names {
            client.register(name, PASSWORD).expect("register");
        }
    }

    /// Registers `name` in `app` and returns its logged-in client.
    pub fn user_in(&self, app: &str, name: &str) -> Client {
        let mut client = self.client_in(app);
        client.register(name, PASSWORD).expect("register");
        client.login(name, PASSWORD).expect("login");
        client
    }

    /// A client logged in as `name` (registered before) from the named `device`, with the
    /// `DeviceLoggedIn` reply.
    pub fn login_device(&self, name: &str, device: &str) -> (Client, Reply) {
        let mut client = self.client();
        let reply = login_device(&mut client, name, device);
        (client, reply)
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

    /// Opens `shop` with the registered users `staff` as its staff, as `confabd shop add`
    /// and `shop staff-add` do: on the stopped server, which then starts again.
    pub fn open_shop(&mut self, shop: &str, staff: &[&str]) {
        self.stop();
        {
            let store = open_store(self.data_dir());
            let shop = in_default(shop);
            confab::admin::add_shop(&store, &shop).expect("the shop is added");
            for name in staff {
                confab::admin::add_staff(&store, &shop, &in_default(name), 100).expect("the staff member is added");
            }
        }
        self.restart();
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
pub fn inbox_of(reply: &Reply) -> (Seq, Seq) {
    match reply {
        Reply::LoggedIn { acked, last_seq, .. } => (*acked, *last_seq),
        other => panic!("not a LoggedIn reply: {other:?}"),
    }
}

/// Logs `client` in as `name` (password [`PASSWORD`]) from the named `device`; returns the
/// `DeviceLoggedIn` reply.
pub fn login_device(client: &mut Client, name: &str, device: &str) -> Reply {
    let request = Request::LoginDevice { username: name.into(), password: PASSWORD.into(), device: device.into() };
    match client.request(request).expect("login from a device") {
        reply @ Reply::DeviceLoggedIn { .. } => reply,
        other => panic!("not a DeviceLoggedIn reply: {other:?}"),
    }
}

/// The (acked, last_seq) of a DeviceLoggedIn reply.
pub fn device_inbox_of(reply: &Reply) -> (Seq, Seq) {
    match reply {
        Reply::DeviceLoggedIn { acked, last_seq, .. } => (*acked, *last_seq),
        other => panic!("not a DeviceLoggedIn reply: {other:?}"),
    }
}

/// The resume token of a LoggedIn or DeviceLoggedIn reply.
pub fn token_of(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::LoggedIn { resume_token, .. } | Reply::DeviceLoggedIn { resume_token, .. } => resume_token.clone(),
        other => panic!("not a login reply: {other:?}"),
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

/// A data directory of the test's own, inside a temporary directory removed (with
/// everything in it) when this is dropped. The directory itself is not made: the server,
/// `confabd` or [`Store::open`] creates it, as on a first start.
pub struct DataDir {
    _temp: TempDir,
    path: PathBuf,
}

impl DataDir {
    pub fn new() -> DataDir {
        let temp = tempfile::tempdir().expect("a temporary directory");
        let path = temp.path().join("data");
        DataDir { _temp: temp, path }
    }

    /// A copy of the data directory `from`, to damage or to start from.
    pub fn copy_of(from: &Path) -> DataDir {
        let copy = DataDir::new();
        copy_dir(from, copy.path());
        copy
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The store on this directory, opened below the server (see [`open_store`]).
    pub fn store(&self) -> Store {
        open_store(&self.path)
    }
}

/// The store on a data directory, opened as the admin commands open it, to write what
/// an earlier version, a crash or a bad disk could have left. No server may be running
/// on it: sled's lock refuses a second opener.
pub fn open_store(data: &Path) -> Store {
    Store::open(data).unwrap_or_else(|e| panic!("the store on {} opens (no server running on it): {e}", data.display()))
}

/// How long a test waits for an effect the server brings about by itself (a close
/// noticed, a journal migrated) before calling it missing. Generous: a loaded machine is
/// slow, and only a failing test waits this long.
pub const SETTLE: Duration = Duration::from_secs(10);

/// What [`eventually`] waits on: a `bool` that holds, or an `Option` that is `Some`.
pub trait Outcome {
    type Value;
    fn found(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn found(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn found(self) -> Option<T> {
        self
    }
}

/// Calls `check` every few milliseconds until it returns true (or `Some`), and returns
/// what it found; panics naming `what` once `timeout` has passed without it. Only for
/// effects that no frame proves: where a reply or a push proves it, wait for that.
pub fn eventually<R: Outcome>(what: &str, timeout: Duration, mut check: impl FnMut() -> R) -> R::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().found() {
            return value;
        }
        assert!(Instant::now() < deadline, "waited {timeout:?} for {what}, in vain");
        // Short, so the test goes on soon after the change, without spinning a core.
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A user or service name of the app `default`, as the store and the admin functions take
/// it (every client in these tests says plain Hello, so it is in that app).
pub fn in_default(name: &str) -> String {
    confab::apps::qualify(confab::apps::DEFAULT_APP, name)
}
