//! The socket half of the connection: dialling on a short-lived thread, the writing half
//! ([`Link`]), and the reader thread that decodes frames. Every thread reports on one
//! channel as [`NetEvent`]s tagged with the link's generation, so the connection can tell
//! a current link's news from a replaced one's.

use confab_proto::frame;
use confab_proto::protocol::{ClientFrame, ServerFrame};
use crossbeam_channel::Sender;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Largest frame accepted from a server (the server's own limits are far lower).
const MAX_SERVER_FRAME: u32 = 16 * 1024 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A blocked write means the server stopped reading; treat it as a dead link.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connection's threads report, in arrival order, on one channel.
pub enum NetEvent {
    Dialled { generation: u64, stream: TcpStream },
    DialFailed { generation: u64, reason: String },
    // Boxed: a server frame is far larger than the other events.
    Frame { generation: u64, frame: Box<ServerFrame> },
    Closed { generation: u64, reason: String },
}

/// Dials `addr` on its own thread (resolving and connecting may block for seconds) and
/// reports `Dialled` or `DialFailed`.
pub fn spawn_dial(generation: u64, addr: String, events: Sender<NetEvent>) {
    let reporter = events.clone();
    let spawned = std::thread::Builder::new().name("chat-dial".into()).spawn(move || {
        let event = match dial(&addr) {
            Ok(stream) => NetEvent::Dialled { generation, stream },
            Err(reason) => NetEvent::DialFailed { generation, reason },
        };
        // The receiver is gone only when the client is exiting.
        let _ = reporter.send(event);
    });
    if let Err(e) = spawned {
        let _ = events.send(NetEvent::DialFailed { generation, reason: format!("cannot start a thread: {e}") });
    }
}

/// The writing half of a connected socket whose reading half has its own thread.
pub struct Link {
    stream: TcpStream,
}

impl Link {
    /// Starts the reader thread on a clone of `stream`.
    pub fn start(generation: u64, stream: TcpStream, events: Sender<NetEvent>) -> io::Result<Link> {
        let reader = stream.try_clone()?;
        std::thread::Builder::new()
            .name("chat-reader".into())
            .spawn(move || read_frames(generation, reader, events))?;
        Ok(Link { stream })
    }

    pub fn write(&mut self, frame: &ClientFrame) -> io::Result<()> {
        self.stream.write_all(&frame::encode(frame))
    }

    /// Ends the link; the reader thread then reports `Closed`.
    pub fn shut_down(&self) {
        let _ = self.stream.shutdown(Shutdown::Both);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Shutting down (not just dropping our handle) also ends the reader thread, which
        // holds a clone of the socket.
        self.shut_down();
    }
}

fn dial(addr: &str) -> Result<TcpStream, String> {
    let addrs = addr.to_socket_addrs().map_err(|e| format!("cannot resolve {addr}: {e}"))?;
    let mut last_error = format!("{addr} resolves to no address");
    for candidate in addrs {
        match TcpStream::connect_timeout(&candidate, CONNECT_TIMEOUT) {
            Ok(stream) => {
                // Small frames, sent as typed: Nagle would only add latency.
                let _ = stream.set_nodelay(true);
                stream.set_write_timeout(Some(WRITE_TIMEOUT)).map_err(|e| e.to_string())?;
                return Ok(stream);
            }
            Err(e) => last_error = format!("cannot connect to {candidate}: {e}"),
        }
    }
    Err(last_error)
}

/// The reader thread: frames off the socket until it closes or lies.
fn read_frames(generation: u64, mut stream: TcpStream, events: Sender<NetEvent>) {
    let reason = match pump_frames(generation, &mut stream, &events) {
        Ok(()) => return,
        Err(reason) => reason,
    };
    let _ = stream.shutdown(Shutdown::Both);
    let _ = events.send(NetEvent::Closed { generation, reason });
}

/// Returns `Ok` only when the receiver is gone; otherwise why the link ended.
fn pump_frames(generation: u64, stream: &mut TcpStream, events: &Sender<NetEvent>) -> Result<(), String> {
    let mut buf = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let mut used = 0;
        loop {
            match frame::split(&buf[used..], MAX_SERVER_FRAME) {
                Ok(Some((body, len))) => {
                    let frame = frame::decode_body::<ServerFrame>(body).map_err(|e| format!("protocol error: {e}"))?;
                    used += len;
                    if events.send(NetEvent::Frame { generation, frame: Box::new(frame) }).is_err() {
                        return Ok(());
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(format!("protocol error: {e}")),
            }
        }
        buf.drain(..used);
        match stream.read(&mut chunk) {
            Ok(0) => return Err("connection closed".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
}
