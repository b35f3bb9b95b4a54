//! A stand-in for confabd's side of the push feed, driven step by step by the test: it
//! accepts the gateway's connection, answers the handshake, and then the test pushes
//! events, reads acks and answers them in whatever order it wants to check (events while
//! an ack is unanswered, a connection closed before an ack's receipt, a refusal).
//!
//! It speaks the real wire format (confab-proto's frame codec), so what the gateway's link
//! does with it is what it does with confabd; what confabd decides is not tested here.

use confab_proto::frame;
use confab_proto::protocol::{
    ClientFrame, ErrorCode, Limits, Push, PushEvent, Reply, Request, ServerFrame, PROTOCOL_VERSION,
};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(10);

pub struct FakeConfabd {
    listener: TcpListener,
    pub addr: SocketAddr,
}

impl FakeConfabd {
    pub fn start() -> FakeConfabd {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake confabd");
        listener.set_nonblocking(true).expect("non-blocking accept, for a deadline");
        let addr = listener.local_addr().expect("local address");
        FakeConfabd { listener, addr }
    }

    /// The gateway's next connection.
    pub fn accept(&self) -> FakeConn {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).expect("blocking connection");
                    stream.set_read_timeout(Some(WAIT)).expect("read timeout");
                    return FakeConn { stream, buf: Vec::new(), pings: 0 };
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("the gateway did not connect within {WAIT:?}: {e}"),
            }
        }
    }

    /// Whether the gateway connects within `wait` (it should not, after a fatal refusal).
    pub fn connects_within(&self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.listener.accept().is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }
}

pub struct FakeConn {
    stream: TcpStream,
    buf: Vec<u8>,
    /// Pings answered so far.
    pub pings: u32,
}

impl FakeConn {
    /// Reads the next request, answering Pings on the way.
    pub fn next_request(&mut self) -> (u32, Request) {
        loop {
            let ClientFrame { request_id, request } = self.read_frame();
            if request == Request::Ping {
                self.pings += 1;
                self.reply(request_id, Reply::Pong);
                continue;
            }
            return (request_id, request);
        }
    }

    /// The next frame whatever it is, Pings included.
    pub fn read_frame(&mut self) -> ClientFrame {
        loop {
            if let Some((body, used)) = frame::split(&self.buf, 1 << 20).expect("a well-formed frame") {
                let frame = frame::decode_body(body).expect("a client frame");
                self.buf.drain(..used);
                return frame;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the gateway closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("reading from the gateway: {e}"),
            }
        }
    }

    /// Whether the gateway closes the connection within `wait`, with no further request
    /// but Pings.
    pub fn closed_within(&mut self, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        self.stream.set_read_timeout(Some(wait)).expect("read timeout");
        loop {
            if frame::split(&self.buf, 1 << 20).expect("a well-formed frame").is_some() {
                let frame = self.read_frame();
                assert_eq!(frame.request, Request::Ping, "a request after the gateway should have closed");
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return true,
                Err(_) if Instant::now() >= deadline => return false,
                Err(e) => panic!("reading from the gateway: {e}"),
            }
        }
    }

    /// Reads the request, checks it is `expected`, and returns its id.
    pub fn expect(&mut self, expected: &Request) -> u32 {
        let (request_id, request) = self.next_request();
        assert_eq!(&request, expected);
        request_id
    }

    /// Answers Hello (with this heartbeat) and ServiceLogin (checking name and token).
    pub fn handshake(&mut self, heartbeat_secs: u32, service: &str, token: &str) {
        let (id, hello) = self.next_request();
        assert!(
            matches!(&hello, Request::Hello { version, client } if *version == PROTOCOL_VERSION && client.starts_with("confab-pushgw/")),
            "{hello:?}"
        );
        self.reply(id, hello_reply(heartbeat_secs));
        let id = self.expect(&Request::ServiceLogin { name: service.into(), token: token.into() });
        self.reply(id, Reply::ServiceLoggedIn { name: service.into() });
    }

    /// Answers the SubscribePush that follows the handshake.
    pub fn subscribe(&mut self, acked: u64, last_seq: u64) {
        let id = self.expect(&Request::SubscribePush);
        self.reply(id, Reply::PushSubscribed { acked, last_seq });
    }

    /// The next AckPush's request id and position.
    pub fn next_ack(&mut self) -> (u32, u64) {
        match self.next_request() {
            (id, Request::AckPush { up_to }) => (id, up_to),
            (_, other) => panic!("expected AckPush, got {other:?}"),
        }
    }

    pub fn reply(&mut self, request_id: u32, reply: Reply) {
        self.send(&ServerFrame::Reply { request_id, reply });
    }

    pub fn error(&mut self, request_id: u32, code: ErrorCode, message: &str) {
        self.send(&ServerFrame::error(request_id, code, message));
    }

    pub fn push(&mut self, event: PushEvent) {
        self.send(&ServerFrame::Push(Push::PushEvent(event)));
    }

    pub fn close(self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }

    fn send(&mut self, frame: &ServerFrame) {
        self.stream.write_all(&frame::encode(frame)).expect("write to the gateway");
    }
}

/// The Hello reply of a server with this heartbeat.
pub fn hello_reply(heartbeat_secs: u32) -> Reply {
    Reply::Hello {
        version: PROTOCOL_VERSION,
        server: "fake-confabd".into(),
        max_frame: 1 << 20,
        max_body: 1 << 16,
        heartbeat_secs,
        idle_timeout_secs: heartbeat_secs * 3,
        delivery_window: 256,
        limits: Limits {
            request_rate: 100,
            request_burst: 200,
            delivery_window_bytes: 1 << 20,
            max_outbound: 1 << 24,
            token_ttl_secs: 3600,
            max_frame_before_login: 4096,
        },
    }
}
