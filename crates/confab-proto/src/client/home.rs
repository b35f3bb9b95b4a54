//! Following a cluster's `Redirect` (protocol.md "Cluster"): a login or register sent to a
//! node that is not the user's home is answered with the home's address; the client
//! connects there, says Hello again and repeats the request. [`RedirectTrail`] is the
//! rule that keeps that from going on forever; [`Client::connect_home`] the loop.

use super::{unexpected, Client, ClientError, ClientResult};
use crate::protocol::{Reply, Request, UserId, DEFAULT_APP};
use std::net::{SocketAddr, ToSocketAddrs};

pub(super) fn trail_text(trail: &[SocketAddr]) -> String {
    trail.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(" -> ")
}

/// The most redirects one request follows. Nodes that agree on the node list redirect at
/// most once (to the home); a second may come while the list is being changed; more is a
/// loop (protocol.md "Cluster").
pub const MAX_REDIRECTS: usize = 3;

/// Whether a server in a cluster may answer `request` with [`Reply::Redirect`]: the
/// requests that name a user before login (protocol.md "Cluster").
pub fn may_redirect(request: &Request) -> bool {
    request.is_login()
}

/// The addresses one request has been sent to, in order, and the rule that ends a loop:
/// no address twice, at most [`MAX_REDIRECTS`] hops after the first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTrail {
    visited: Vec<SocketAddr>,
}

impl RedirectTrail {
    /// A request about to be sent to `first`.
    pub fn new(first: SocketAddr) -> Self {
        RedirectTrail { visited: vec![first] }
    }

    /// Where a `Redirect { address, .. }` sends the request next, or
    /// [`ClientError::RedirectLoop`]. An address that does not resolve is the server's
    /// fault ([`ClientError::Protocol`]); a name resolving to several addresses is taken
    /// at its first.
    pub fn follow(&mut self, address: &str) -> ClientResult<SocketAddr> {
        let next = address
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ClientError::Protocol(format!("redirect to {address:?}, which is not an address")))?;
        let seen = self.visited.contains(&next);
        self.visited.push(next);
        if seen || self.visited.len() > MAX_REDIRECTS + 1 {
            return Err(ClientError::RedirectLoop { trail: self.visited.clone() });
        }
        Ok(next)
    }

    /// Every address so far, the first one first.
    pub fn visited(&self) -> &[SocketAddr] {
        &self.visited
    }
}

/// A redirect that was followed: the node that is home, by the redirecting node's word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub node: u32,
    pub address: SocketAddr,
}

/// A connection on the user's home node, the request answered there.
pub struct Home {
    pub client: Client,
    /// Where `client` is connected (the first address when nothing redirected).
    pub address: SocketAddr,
    /// The home node's Hello reply.
    pub hello: Reply,
    /// Its answer to the request: `Registered`, `LoggedIn`, `DeviceLoggedIn`.
    pub reply: Reply,
    /// The redirects followed, in order; empty when the first node was home.
    pub redirects: Vec<Hop>,
}

impl Client {
    /// Connects to `addr`, says Hello and sends `request` (one of those [`may_redirect`]
    /// names); a `Redirect` answer is followed by connecting to its address, saying Hello
    /// again and sending the same request there, until a node answers otherwise. Error
    /// frames are [`ClientError::Server`] (an `Unavailable`, for a user whose home is down,
    /// carries its [`ClientError::retry_after`]); a redirect loop is
    /// [`ClientError::RedirectLoop`].
    pub fn connect_home(addr: SocketAddr, name: &str, request: Request) -> ClientResult<Home> {
        Client::connect_home_to_app(addr, name, DEFAULT_APP, request)
    }

    /// [`Client::connect_home`] in `app` (a `HelloApp` on every node on the way).
    pub fn connect_home_to_app(addr: SocketAddr, name: &str, app: &str, request: Request) -> ClientResult<Home> {
        let mut trail = RedirectTrail::new(addr);
        let mut address = addr;
        let mut redirects = Vec::new();
        loop {
            let (mut client, hello) = Client::connect_to_app(address, name, app)?;
            match client.request(request.clone())? {
                Reply::Redirect { node, address: next } => {
                    // Nothing was done on this node; its connection has no further use.
                    drop(client);
                    address = trail.follow(&next)?;
                    redirects.push(Hop { node, address });
                }
                reply => return Ok(Home { client, address, hello, reply, redirects }),
            }
        }
    }

    /// Logs in on the user's home node, following redirects from `addr`; returns the
    /// connection there and its LoggedIn reply.
    pub fn login_following(
        addr: SocketAddr,
        name: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<(Client, Reply)> {
        let request = Request::Login { username: username.into(), password: password.into() };
        match Client::connect_home(addr, name, request)? {
            Home { client, reply: reply @ Reply::LoggedIn { .. }, .. } => Ok((client, reply)),
            Home { reply, .. } => Err(unexpected(reply)),
        }
    }

    /// Registers on the user's home node, following redirects from `addr`; returns the
    /// connection there (log in on it: it is the home) and the new user's id.
    pub fn register_following(
        addr: SocketAddr,
        name: &str,
        username: &str,
        password: &str,
    ) -> ClientResult<(Client, UserId)> {
        let request = Request::Register { username: username.into(), password: password.into() };
        match Client::connect_home(addr, name, request)? {
            Home { client, reply: Reply::Registered { user_id }, .. } => Ok((client, user_id)),
            Home { reply, .. } => Err(unexpected(reply)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use crate::protocol::{ClientFrame, ErrorCode, Limits, Seq, ServerFrame, PROTOCOL_VERSION};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc::{self, Receiver};
    use std::time::Duration;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("a literal address")
    }

    #[test]
    fn a_trail_follows_new_addresses_up_to_the_bound() {
        let mut trail = RedirectTrail::new(addr("127.0.0.1:7421"));
        for port in 7422..7422 + MAX_REDIRECTS as u16 {
            let next = trail.follow(&format!("127.0.0.1:{port}")).expect("a new address");
            assert_eq!(next.port(), port);
        }
        match trail.follow("127.0.0.1:7499") {
            Err(ClientError::RedirectLoop { trail }) => assert_eq!(trail.len(), MAX_REDIRECTS + 2),
            other => panic!("expected a loop, got {other:?}"),
        }
    }

    #[test]
    fn a_trail_back_to_an_address_already_visited_is_a_loop() {
        let mut trail = RedirectTrail::new(addr("127.0.0.1:7421"));
        assert_eq!(trail.follow("127.0.0.1:7422").expect("new"), addr("127.0.0.1:7422"));
        match trail.follow("127.0.0.1:7421") {
            Err(e @ ClientError::RedirectLoop { .. }) => {
                assert_eq!(e.to_string(), "redirect loop: 127.0.0.1:7421 -> 127.0.0.1:7422 -> 127.0.0.1:7421")
            }
            other => panic!("expected a loop, got {other:?}"),
        }
    }

    #[test]
    fn a_redirect_to_something_that_is_no_address_is_the_servers_fault() {
        let mut trail = RedirectTrail::new(addr("127.0.0.1:7421"));
        assert!(matches!(trail.follow("no port here"), Err(ClientError::Protocol(_))));
        assert_eq!(trail.visited(), [addr("127.0.0.1:7421")], "nothing was visited");
    }

    #[test]
    fn only_requests_that_name_a_user_before_login_are_redirected() {
        let (username, password, token, device) = (String::from("a"), String::from("p"), vec![1], String::from("d"));
        for request in [
            Request::Register { username: username.clone(), password: password.clone() },
            Request::Login { username: username.clone(), password: password.clone() },
            Request::Resume { username: username.clone(), token: token.clone() },
            Request::LoginDevice { username: username.clone(), password: password.clone(), device: device.clone() },
            Request::ResumeDevice { username: username.clone(), token, device },
        ] {
            assert!(may_redirect(&request), "{request:?}");
        }
        for request in [Request::Ping, Request::Logout, Request::ServiceLogin { name: username, token: password }] {
            assert!(!may_redirect(&request), "{request:?}");
        }
    }

    #[test]
    fn retry_after_speaks_for_rate_limited_and_unavailable() {
        let error = |code, retry_after_ms| ClientError::Server { code, message: String::new(), retry_after_ms };
        assert_eq!(error(ErrorCode::RateLimited, 250).retry_after(), Some(Duration::from_millis(250)));
        assert_eq!(error(ErrorCode::Unavailable, 1000).retry_after(), Some(Duration::from_secs(1)));
        assert_eq!(error(ErrorCode::WrongPassword, 0).retry_after(), None);
        assert_eq!(ClientError::Timeout.retry_after(), None);
    }

    /// A node that answers every Hello, and every other request with `answer`, on one
    /// connection after the other (a test closes one before it opens the next); it
    /// reports each request it reads.
    fn fake_node(answer: impl Fn(u32, &Request) -> ServerFrame + Send + 'static) -> (SocketAddr, Receiver<Request>) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("local address");
        let (seen, requests) = mpsc::channel();
        std::thread::spawn(move || {
            // Ends with the test process; a test that is done no longer connects.
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                while let Some(ClientFrame { request_id, request }) = read_request(&mut stream) {
                    let frame = match request {
                        Request::Hello { .. } | Request::HelloApp { .. } => hello(request_id),
                        ref request => answer(request_id, request),
                    };
                    // A test may not care what was sent (it dropped the receiver).
                    let _ = seen.send(request);
                    if stream.write_all(&frame::encode(&frame)).is_err() {
                        break;
                    }
                }
            }
        });
        (address, requests)
    }

    fn read_request(stream: &mut TcpStream) -> Option<ClientFrame> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            if let Some((body, _)) = frame::split(&buf, 1 << 16).ok()? {
                return frame::decode_body(body).ok();
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn hello(request_id: u32) -> ServerFrame {
        let limits = Limits {
            request_rate: 100,
            request_burst: 200,
            delivery_window_bytes: 65_536,
            max_outbound: 1 << 20,
            token_ttl_secs: 3600,
            max_frame_before_login: 1024,
        };
        let reply = Reply::Hello {
            version: PROTOCOL_VERSION,
            server: "fake".into(),
            max_frame: 1 << 16,
            max_body: 1 << 15,
            heartbeat_secs: 30,
            idle_timeout_secs: 90,
            delivery_window: 64,
            limits,
        };
        ServerFrame::Reply { request_id, reply }
    }

    fn logged_in(request_id: u32) -> ServerFrame {
        let reply = Reply::LoggedIn {
            user_id: crate::protocol::UserId(7),
            display_name: "alice".into(),
            acked: Seq(0),
            last_seq: Seq(0),
            resume_token: vec![9; 32],
            admin: false,
        };
        ServerFrame::Reply { request_id, reply }
    }

    fn redirect(request_id: u32, node: u32, to: SocketAddr) -> ServerFrame {
        ServerFrame::Reply { request_id, reply: Reply::Redirect { node, address: to.to_string() } }
    }

    fn login() -> Request {
        Request::Login { username: "alice".into(), password: "secret".into() }
    }

    /// Hello, then one request: what a node that was visited once saw.
    fn visit(requests: &Receiver<Request>) -> (Request, Request) {
        let wait = Duration::from_secs(5);
        let hello = requests.recv_timeout(wait).expect("a Hello");
        (hello, requests.recv_timeout(wait).expect("a request after the Hello"))
    }

    #[test]
    fn a_login_on_its_home_node_stays_there() {
        let (home, requests) = fake_node(|id, _| logged_in(id));
        let reached = Client::connect_home(home, "test", login()).expect("logged in");
        assert_eq!(reached.address, home);
        assert!(reached.redirects.is_empty());
        assert!(matches!(reached.reply, Reply::LoggedIn { .. }));
        assert!(matches!(reached.hello, Reply::Hello { .. }));
        assert_eq!(visit(&requests).1, login());
    }

    #[test]
    fn a_login_elsewhere_is_sent_again_on_its_home_node() {
        let (home, at_home) = fake_node(|id, _| logged_in(id));
        let (other, at_other) = fake_node(move |id, _| redirect(id, 2, home));
        let request = Request::LoginDevice { username: "alice".into(), password: "secret".into(), device: "d".into() };
        let reached = Client::connect_home_to_app(other, "test", "acme", request.clone()).expect("logged in");
        assert_eq!(reached.address, home);
        assert_eq!(reached.redirects, [Hop { node: 2, address: home }]);
        for requests in [&at_other, &at_home] {
            let (hello, sent) = visit(requests);
            assert!(matches!(hello, Request::HelloApp { ref app, .. } if app == "acme"), "{hello:?}");
            assert_eq!(sent, request, "the same request on every node");
        }
        drop(reached);

        let (_client, reply) = Client::login_following(other, "test", "alice", "secret").expect("logged in");
        assert!(matches!(reply, Reply::LoggedIn { .. }));
    }

    #[test]
    fn nodes_that_redirect_to_each_other_are_a_loop() {
        let (second_tx, second_rx) = mpsc::channel::<SocketAddr>();
        let (first, _) = fake_node(move |id, _| {
            let second = second_rx.recv_timeout(Duration::from_secs(5)).expect("the second node's address");
            redirect(id, 2, second)
        });
        let (second, _) = fake_node(move |id, _| redirect(id, 1, first));
        second_tx.send(second).expect("first node waiting");
        match Client::connect_home(first, "test", login()) {
            Err(ClientError::RedirectLoop { trail }) => assert_eq!(trail, [first, second, first]),
            Err(e) => panic!("expected a redirect loop, got {e}"),
            Ok(_) => panic!("expected a redirect loop, got a login"),
        }
    }

    #[test]
    fn a_home_that_is_down_is_unavailable_with_a_wait() {
        let (node, _) =
            fake_node(|id, _| ServerFrame::unavailable(id, "node 2 is unavailable", Duration::from_secs(2)));
        match Client::login_following(node, "test", "alice", "secret") {
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Unavailable));
                assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
            }
            Ok(_) => panic!("expected Unavailable"),
        }
    }

    #[test]
    fn the_single_request_helpers_report_a_redirect() {
        let home = addr("127.0.0.1:7422");
        let (node, _) = fake_node(move |id, _| redirect(id, 2, home));
        let (mut client, _) = Client::connect(node, "test").expect("connected");
        match client.login("alice", "secret") {
            Err(ClientError::Redirected { node: 2, address }) => assert_eq!(address, "127.0.0.1:7422"),
            Err(e) => panic!("expected Redirected, got {e}"),
            Ok(reply) => panic!("expected Redirected, got {reply:?}"),
        }
    }
}
