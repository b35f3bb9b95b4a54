//! A small blocking client speaking the protocol over TCP. The integration tests and the
//! tools use it; it doubles as a reference for client authors.
//!
//! Replies are matched to requests by request id; pushes that arrive while a reply is
//! awaited are kept, in order, for [`Client::next_push`].
//!
//! In a cluster (protocol.md "Cluster") a login or register on a node that is not the
//! user's home is answered by [`Reply::Redirect`]: [`Client::connect_home`] (and
//! [`Client::login_following`], [`Client::register_following`]) connect again there and
//! repeat the request, at most [`MAX_REDIRECTS`] times. The single-request helpers
//! ([`Client::login`] and the like) do not follow; they report the redirect as
//! [`ClientError::Redirected`].

use crate::frame::{self, FrameError};
use crate::protocol::{
    ClientFrame, ClientMsgId, Content, Conversation, ErrorCode, Message, MessageId, Push, Reply, Request, Seq,
    ServerFrame, Target, UserId, DEFAULT_APP, PROTOCOL_VERSION,
};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use thiserror::Error;

mod home;

pub use home::{may_redirect, Home, Hop, RedirectTrail, MAX_REDIRECTS};

/// Largest frame the client accepts from a server.
const MAX_SERVER_FRAME: u32 = 16 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out waiting for the server")]
    Timeout,
    #[error("the server closed the connection")]
    Closed,
    /// `retry_after_ms` is the server's wait for `RateLimited` and `Unavailable` (0 for
    /// other codes).
    #[error("server error {code:?}: {message}")]
    Server { code: ErrorCode, message: String, retry_after_ms: u32 },
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The user is homed on node `node` (a cluster): nothing was done here; send the same
    /// request on a new connection to `address` (what [`Client::connect_home`] does).
    #[error("redirected to node {node} at {address}")]
    Redirected { node: u32, address: String },
    /// Redirects that do not end on a node that answers: a node sent us back where we had
    /// been, or more than [`MAX_REDIRECTS`] came in a row. The nodes disagree about the
    /// node list; following further would never end.
    #[error("redirect loop: {}", home::trail_text(.trail))]
    RedirectLoop { trail: Vec<SocketAddr> },
}

impl ClientError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Server { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// How long the server asked the client to wait before retrying: `RateLimited` and
    /// `Unavailable` (nothing was done; the same request may succeed after the wait).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Server { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(Duration::from_millis(u64::from(*retry_after_ms)))
            }
            _ => None,
        }
    }
}

pub type ClientResult<T> = Result<T, ClientError>;

pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
    next_request: u32,
    pushes: VecDeque<Push>,
    /// Frames that answer other requests than the one awaited (pipelining).
    replies: VecDeque<ServerFrame>,
}

impl Client {
    /// Connects without saying Hello (for tests of the handshake itself).
    pub fn connect_raw(addr: SocketAddr) -> ClientResult<Client> {
        Client::over(TcpStream::connect(addr)?)
    }

    /// Connects from a chosen local address (tests play several hosts through
    /// 127.0.0.2, 127.0.0.3, ..., all of which are loopback on Linux), without Hello.
    pub fn connect_raw_from(addr: SocketAddr, local: std::net::IpAddr) -> ClientResult<Client> {
        use socket2::{Domain, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.bind(&SocketAddr::new(local, 0).into())?;
        socket.connect(&addr.into())?;
        Client::over(socket.into())
    }

    /// Like [`Client::connect`], from a chosen local address.
    pub fn connect_from(addr: SocketAddr, local: std::net::IpAddr, name: &str) -> ClientResult<(Client, Reply)> {
        let mut client = Client::connect_raw_from(addr, local)?;
        let hello = client.request(Request::Hello { version: PROTOCOL_VERSION, client: name.to_string() })?;
        Ok((client, hello))
    }

    fn over(stream: TcpStream) -> ClientResult<Client> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(Client { stream, buf: Vec::new(), next_request: 1, pushes: VecDeque::new(), replies: VecDeque::new() })
    }

    /// Connects and completes the Hello handshake; returns the server's Hello reply.
    pub fn connect(addr: SocketAddr, name: &str) -> ClientResult<(Client, Reply)> {
        let mut client = Client::connect_raw(addr)?;
        let hello = client.request(Request::Hello { version: PROTOCOL_VERSION, client: name.to_string() })?;
        Ok((client, hello))
    }

    /// Connects to `app` (a `HelloApp` handshake; the app `default` says plain `Hello`, as
    /// a client that names no app does); returns the server's Hello reply.
    pub fn connect_to_app(addr: SocketAddr, name: &str, app: &str) -> ClientResult<(Client, Reply)> {
        if app == DEFAULT_APP {
            return Client::connect(addr, name);
        }
        let mut client = Client::connect_raw(addr)?;
        let hello = Request::HelloApp { version: PROTOCOL_VERSION, client: name.to_string(), app: app.to_string() };
        let hello = client.request(hello)?;
        Ok((client, hello))
    }

    /// How long a read may wait before [`ClientError::Timeout`].
    pub fn set_timeout(&mut self, timeout: Duration) -> ClientResult<()> {
        self.stream.set_read_timeout(Some(timeout))?;
        Ok(())
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sends a request without waiting; returns its request id.
    pub fn send(&mut self, request: Request) -> ClientResult<u32> {
        let request_id = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        self.write_raw(&frame::encode(&ClientFrame { request_id, request }))?;
        Ok(request_id)
    }

    pub fn write_raw(&mut self, bytes: &[u8]) -> ClientResult<()> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Sends a request and waits for its reply. Error frames become [`ClientError::Server`].
    pub fn request(&mut self, request: Request) -> ClientResult<Reply> {
        let id = self.send(request)?;
        self.reply_to(id)
    }

    /// Waits for the reply to request `id`.
    pub fn reply_to(&mut self, id: u32) -> ClientResult<Reply> {
        if let Some(pos) = self.replies.iter().position(|f| answers(f, id)) {
            return into_reply(self.replies.remove(pos).expect("position is in range"));
        }
        loop {
            match self.read_frame()? {
                ServerFrame::Push(push) => self.pushes.push_back(push),
                frame if answers(&frame, id) => return into_reply(frame),
                ServerFrame::Error { request_id: 0, code, message, retry_after_ms } => {
                    return Err(ClientError::Server { code, message, retry_after_ms })
                }
                other => self.replies.push_back(other),
            }
        }
    }

    /// The next push, from those already received or from the socket.
    pub fn next_push(&mut self) -> ClientResult<Push> {
        if let Some(push) = self.pushes.pop_front() {
            return Ok(push);
        }
        loop {
            match self.read_frame()? {
                ServerFrame::Push(push) => return Ok(push),
                ServerFrame::Error { request_id: 0, code, message, retry_after_ms } => {
                    return Err(ClientError::Server { code, message, retry_after_ms })
                }
                other => self.replies.push_back(other),
            }
        }
    }

    /// The next stored message pushed (other pushes are skipped).
    pub fn next_message(&mut self) -> ClientResult<Message> {
        loop {
            if let Push::Message(message) = self.next_push()? {
                return Ok(message);
            }
        }
    }

    /// Reads one frame from the socket, whatever it is.
    pub fn read_frame(&mut self) -> ClientResult<ServerFrame> {
        loop {
            match frame::split(&self.buf, MAX_SERVER_FRAME) {
                Ok(Some((body, used))) => {
                    let frame =
                        frame::decode_body::<ServerFrame>(body).map_err(|e| ClientError::Protocol(e.to_string()));
                    self.buf.drain(..used);
                    return frame;
                }
                Ok(None) => {}
                Err(FrameError::TooLarge { len, .. }) => {
                    return Err(ClientError::Protocol(format!("server frame of {len} bytes")))
                }
                Err(e) => return Err(ClientError::Protocol(e.to_string())),
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ClientError::Closed),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(ClientError::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => return Err(ClientError::Closed),
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub fn register(&mut self, username: &str, password: &str) -> ClientResult<UserId> {
        match self.request(Request::Register { username: username.into(), password: password.into() })? {
            Reply::Registered { user_id } => Ok(user_id),
            other => Err(unexpected(other)),
        }
    }

    /// Logs in; returns the LoggedIn reply (user id, display name, inbox position).
    pub fn login(&mut self, username: &str, password: &str) -> ClientResult<Reply> {
        match self.request(Request::Login { username: username.into(), password: password.into() })? {
            reply @ Reply::LoggedIn { .. } => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Logs in with a resume token from an earlier LoggedIn reply.
    pub fn resume(&mut self, username: &str, token: &[u8]) -> ClientResult<Reply> {
        match self.request(Request::Resume { username: username.into(), token: token.to_vec() })? {
            reply @ Reply::LoggedIn { .. } => Ok(reply),
            other => Err(unexpected(other)),
        }
    }

    /// Sends a stored message and waits for its receipt; returns (message id, seq, duplicate).
    pub fn send_message(
        &mut self,
        to: &str,
        client_msg_id: ClientMsgId,
        content: Content,
    ) -> ClientResult<(MessageId, Seq, bool)> {
        let request = Request::Send { to: Target::User(to.into()), client_msg_id, transient: false, content };
        match self.request(request)? {
            Reply::Sent { message_id, seq, duplicate, .. } => Ok((message_id, seq, duplicate)),
            other => Err(unexpected(other)),
        }
    }

    pub fn send_text(
        &mut self,
        to: &str,
        client_msg_id: ClientMsgId,
        text: &str,
    ) -> ClientResult<(MessageId, Seq, bool)> {
        self.send_message(to, client_msg_id, Content::text(text))
    }

    /// Acknowledges the inbox up to `up_to`.
    pub fn ack(&mut self, up_to: Seq) -> ClientResult<Seq> {
        match self.request(Request::Ack { conversation: Conversation::Inbox, up_to })? {
            Reply::Acked { up_to, .. } => Ok(up_to),
            other => Err(unexpected(other)),
        }
    }
}

fn answers(frame: &ServerFrame, id: u32) -> bool {
    matches!(frame, ServerFrame::Reply { request_id, .. } | ServerFrame::Error { request_id, .. } if *request_id == id)
}

fn into_reply(frame: ServerFrame) -> ClientResult<Reply> {
    match frame {
        ServerFrame::Reply { reply, .. } => Ok(reply),
        ServerFrame::Error { code, message, retry_after_ms, .. } => {
            Err(ClientError::Server { code, message, retry_after_ms })
        }
        ServerFrame::Push(_) => Err(ClientError::Protocol("a push is not a reply".into())),
    }
}

fn unexpected(reply: Reply) -> ClientError {
    match reply {
        Reply::Redirect { node, address } => ClientError::Redirected { node, address },
        reply => ClientError::Protocol(format!("unexpected reply {reply:?}")),
    }
}
