//! One connection to confabd as the push gateway: the handshake (Hello, ServiceLogin,
//! SubscribePush), then a reader thread and a writer thread, so that pushes, replies and
//! heartbeats flow while the gateway is busy with a slow webhook.
//!
//! Why two threads and not the blocking client alone: the server pushes events while an
//! AckPush is unanswered (up to 256 in flight), and the connection must send a frame at
//! least every heartbeat even while POSTs are retried for minutes, or the server closes
//! it as idle. So the reader takes every frame as it comes (events and ack receipts go to
//! the gateway through one channel, in the order they arrived) and the writer
//! ([`crate::writer`]) sends the acks and drops of dead tokens the gateway hands it, and a
//! Ping when it has had nothing to send for a heartbeat. Only the writer writes and only
//! the reader reads; the gateway never touches the socket.
//!
//! The handshake uses [`confab_proto::client::Client`]; the reader goes on with the same
//! client (it has the bytes already buffered) and the writer with a clone of its socket.

use crate::config::{Config, FALLBACK_HEARTBEAT};
use crate::feed::{Feed, FeedError, Next};
use crate::pool::Finished;
use crate::stop::Stop;
use crate::writer::{is_drop, write_frames, Outgoing};
use confab_proto::client::{Client, ClientError};
use confab_proto::protocol::{ErrorCode, Push, PushEvent, Reply, Request, ServerFrame};
use crossbeam_channel::{select, Receiver, Sender};
use log::{debug, info, warn};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why there is no subscription.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum OpenError {
    /// Another connection holds the push feed: stand by.
    #[error("another gateway holds the push feed ({0})")]
    Busy(String),
    /// Trying again will not help until the operator acts (a wrong token, a service
    /// without the push permission, a server that does not speak our protocol).
    #[error("{0}")]
    Fatal(String),
    /// Anything else (the server is down, restarting, full): try again later, not before
    /// `after` if the server said so.
    #[error("{reason}")]
    Retry { reason: String, after: Option<Duration> },
}

/// The server's answer to SubscribePush.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscribed {
    /// Events up to here are acknowledged; the next one sent is after it.
    pub acked: u64,
    /// The queue's last event now.
    pub last_seq: u64,
}

/// What the reader passes to the gateway, in the order it read it.
enum FromServer {
    Event(PushEvent),
    /// The server's acknowledged position after one of our acks.
    Acked(u64),
    /// The connection is over; the reader has stopped.
    Lost(String),
}

/// A subscribed connection. [`Link::close`] ends it politely; dropping it ends it at once.
pub struct Link {
    from_server: Receiver<FromServer>,
    /// Acks and drops for the writer; None once closing.
    outgoing: Option<Sender<Outgoing>>,
    /// To shut the socket down, which ends the reader.
    socket: TcpStream,
    reader: Option<JoinHandle<()>>,
    writer: Option<JoinHandle<()>>,
    /// The highest ack handed to the writer, and the highest the server confirmed.
    sent: Option<u64>,
    confirmed: Option<u64>,
    ack_confirm_wait: Duration,
}

impl Link {
    /// Connects to `config.server`, logs in as the service and subscribes.
    pub fn open(config: &Config) -> Result<(Link, Subscribed), OpenError> {
        let (mut client, hello) = connect(config)?;
        let Reply::Hello { heartbeat_secs, idle_timeout_secs, .. } = hello else {
            return Err(retry(format!("the server answered Hello with {hello:?}")));
        };
        let login = Request::ServiceLogin { name: config.service.clone(), token: config.token.clone() };
        match client.request(login) {
            Ok(Reply::ServiceLoggedIn { .. }) => {}
            Ok(other) => return Err(retry(format!("the server answered ServiceLogin with {other:?}"))),
            Err(e) if e.code() == Some(ErrorCode::InvalidToken) => {
                return Err(OpenError::Fatal(format!("service {}: {e}", config.service)))
            }
            Err(e) => return Err(refused("ServiceLogin", e)),
        }
        // The server sends PushSubscribed before the first event, so the handshake leaves
        // no event in the client's own push queue: the reader sees every one.
        let subscribed = match client.request(Request::SubscribePush) {
            Ok(Reply::PushSubscribed { acked, last_seq }) => Subscribed { acked, last_seq },
            Ok(other) => return Err(retry(format!("the server answered SubscribePush with {other:?}"))),
            Err(e) => {
                return Err(match e.code() {
                    Some(ErrorCode::LimitReached) => OpenError::Busy(e.to_string()),
                    Some(ErrorCode::Forbidden) => OpenError::Fatal(format!(
                        "service {0} may not be the push gateway ({e}); give it the permission with \
                         `confabd service add {0} --push`",
                        config.service
                    )),
                    // An unknown request is malformed to a server without push support.
                    Some(ErrorCode::BadRequest) => {
                        OpenError::Fatal(format!("SubscribePush refused ({e}): does this server support push?"))
                    }
                    _ => refused("SubscribePush", e),
                });
            }
        };
        let heartbeat = match heartbeat_secs {
            0 => FALLBACK_HEARTBEAT,
            secs => Duration::from_secs(u64::from(secs)),
        };
        // The server answers each Ping, so a server silent for this long is gone.
        let silence = heartbeat.saturating_mul(2).max(Duration::from_secs(u64::from(idle_timeout_secs)));
        Link::start(client, subscribed, heartbeat, silence, config.ack_confirm_wait)
            .map(|link| (link, subscribed))
            .map_err(|e| retry(format!("setting up the connection: {e}")))
    }

    fn start(
        mut client: Client,
        subscribed: Subscribed,
        heartbeat: Duration,
        silence: Duration,
        ack_confirm_wait: Duration,
    ) -> std::io::Result<Link> {
        client.set_timeout(silence).map_err(client_io)?;
        let socket = client.stream().try_clone()?;
        let write_half = client.stream().try_clone()?;
        write_half.set_write_timeout(Some(silence))?;
        let (to_gateway, from_server) = crossbeam_channel::unbounded();
        let (outgoing, outgoing_rx) = crossbeam_channel::unbounded();
        let reader =
            std::thread::Builder::new().name("pushgw-reader".into()).spawn(move || read_frames(client, &to_gateway))?;
        let writer = std::thread::Builder::new()
            .name("pushgw-writer".into())
            .spawn(move || write_frames(write_half, &outgoing_rx, heartbeat))?;
        // A subscription resumed after earlier acks counts them as confirmed.
        let confirmed = Some(subscribed.acked).filter(|&acked| acked > 0);
        Ok(Link {
            from_server,
            outgoing: Some(outgoing),
            socket,
            reader: Some(reader),
            writer: Some(writer),
            sent: None,
            confirmed,
            ack_confirm_wait,
        })
    }

    /// Sends the acks and drops given so far, waits a little for the server to confirm
    /// the last ack (so that a gateway started next does not get those events again), and
    /// closes. Returns the position the server confirmed.
    pub fn close(mut self) -> Option<u64> {
        // The writer sends what is queued before it sees the channel closed.
        drop(self.outgoing.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
        let deadline = Instant::now() + self.ack_confirm_wait;
        while self.sent > self.confirmed {
            match self.from_server.recv_deadline(deadline) {
                Ok(FromServer::Acked(up_to)) => self.confirmed = self.confirmed.max(Some(up_to)),
                // Later events go to the next subscriber; the server resends them.
                Ok(FromServer::Event(_)) => {}
                Ok(FromServer::Lost(_)) | Err(_) => break,
            }
        }
        match (self.sent, self.confirmed) {
            (Some(sent), confirmed) if confirmed < Some(sent) => {
                warn!("the server did not confirm acks up to {sent} (it did up to {confirmed:?}): they may come again")
            }
            (_, Some(confirmed)) => info!("the server confirmed events up to {confirmed}"),
            _ => {}
        }
        self.confirmed
    }

    /// Hands `outgoing` to the writer, behind everything handed to it before.
    fn send(&self, outgoing: Outgoing) -> Result<(), FeedError> {
        let writer = self.outgoing.as_ref().ok_or_else(|| FeedError("the connection is closing".into()))?;
        writer.send(outgoing).map_err(|_| FeedError("the connection's writer stopped".into()))
    }
}

impl Feed for Link {
    fn next_event(&mut self, stop: &Stop, finished: &Receiver<Finished>) -> Result<Next, FeedError> {
        loop {
            // Checked first: select! picks at random among ready channels, and a busy
            // feed must not delay a stop.
            if stop.is_stopped() {
                return Ok(Next::Stopped);
            }
            select! {
                recv(self.from_server) -> message => match message {
                    Ok(FromServer::Event(event)) => return Ok(Next::Event(event)),
                    Ok(FromServer::Acked(up_to)) => {
                        debug!("the server confirmed events up to {up_to}");
                        self.confirmed = self.confirmed.max(Some(up_to));
                    }
                    Ok(FromServer::Lost(reason)) => return Err(FeedError(reason)),
                    Err(_) => return Err(FeedError("the connection's reader stopped".into())),
                },
                recv(finished) -> message => match message {
                    Ok(finished) => return Ok(Next::Finished(finished)),
                    Err(_) => return Err(FeedError("the delivery threads stopped".into())),
                },
                recv(stop.receiver()) -> _ => return Ok(Next::Stopped),
            }
        }
    }

    fn ack(&mut self, seq: u64) -> Result<(), FeedError> {
        self.send(Outgoing::Ack(seq))?;
        self.sent = self.sent.max(Some(seq));
        Ok(())
    }

    fn drop_token(&mut self, username: &str, token: &str) -> Result<(), FeedError> {
        self.send(Outgoing::DropToken { username: username.to_string(), token: token.to_string() })
    }
}

impl Drop for Link {
    /// Ends both threads: the writer by closing its channel, the reader by shutting the
    /// socket down under it.
    fn drop(&mut self) {
        drop(self.outgoing.take());
        let _ = self.socket.shutdown(Shutdown::Both);
        for thread in [self.writer.take(), self.reader.take()].into_iter().flatten() {
            let _ = thread.join();
        }
    }
}

/// Connects to the first of the server's addresses that answers, and says Hello.
fn connect(config: &Config) -> Result<(Client, Reply), OpenError> {
    let addrs = config.server.to_socket_addrs().map_err(|e| retry(format!("cannot resolve {}: {e}", config.server)))?;
    let mut last = retry(format!("{} resolves to no address", config.server));
    for addr in addrs {
        match Client::connect(addr, &config.client_name) {
            Ok(connected) => return Ok(connected),
            Err(e) if e.code() == Some(ErrorCode::UnsupportedVersion) => {
                return Err(OpenError::Fatal(format!("{addr}: {e}")))
            }
            Err(e) => last = refused(&format!("connecting to {addr}"), e),
        }
    }
    Err(last)
}

fn retry(reason: String) -> OpenError {
    OpenError::Retry { reason, after: None }
}

/// A failed request of the handshake that may succeed later (RateLimited says when).
fn refused(what: &str, e: ClientError) -> OpenError {
    OpenError::Retry { after: e.retry_after(), reason: format!("{what}: {e}") }
}

fn client_io(e: ClientError) -> std::io::Error {
    match e {
        ClientError::Io(e) => e,
        other => std::io::Error::other(other.to_string()),
    }
}

/// The reader thread: every frame, until the connection ends or the gateway is gone.
fn read_frames(mut client: Client, to_gateway: &Sender<FromServer>) {
    let lost = loop {
        let message = match client.read_frame() {
            Ok(ServerFrame::Push(Push::PushEvent(event))) => FromServer::Event(event),
            Ok(ServerFrame::Reply { reply: Reply::PushAcked { up_to }, .. }) => FromServer::Acked(up_to),
            Ok(ServerFrame::Reply { reply: Reply::Pong, .. }) => continue,
            Ok(ServerFrame::Reply { request_id, reply: Reply::Done }) if is_drop(request_id) => {
                debug!("the server forgot the dropped push token (request {request_id})");
                continue;
            }
            // A drop that does not take is reported again by the webhook with the next
            // event for its user (crate::feed, Pumping::report): its refusal (a permission
            // taken away, a full disk) is for the operator to see, not a reason to leave
            // the feed.
            Ok(ServerFrame::Error { request_id, code, message, .. }) if is_drop(request_id) => {
                warn!("the server refused to drop a push token (request {request_id}): {code:?}: {message}");
                continue;
            }
            Ok(ServerFrame::Push(Push::ShuttingDown)) => break "the server is shutting down".to_string(),
            Ok(ServerFrame::Push(Push::Kicked { reason })) => break format!("the server ended the session: {reason}"),
            // An error to an ack or a ping means the server and we disagree about the feed;
            // a new subscription starts again from what the server knows.
            Ok(ServerFrame::Error { request_id, code, message, .. }) => {
                break format!("the server answered request {request_id} with {code:?}: {message}")
            }
            Ok(other) => {
                debug!("ignoring {other:?}");
                continue;
            }
            Err(ClientError::Timeout) => break "the server has been silent past its idle timeout".to_string(),
            Err(e) => break e.to_string(),
        };
        if to_gateway.send(message).is_err() {
            return;
        }
    };
    let _ = to_gateway.send(FromServer::Lost(lost));
}
