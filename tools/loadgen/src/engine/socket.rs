//! The engine's socket side: one poll turn, non-blocking connects, reads under a budget,
//! buffered writes, and splitting what was read into frames for [`Engine::dispatch`]. Kept
//! apart from the protocol side so that the cost of a turn can be read in one place.

use super::{Engine, Handler, State, CONTROL, EINPROGRESS, KEEP_CAPACITY, MAX_SERVER_FRAME, READ_BUDGET, WAKE_TOKEN};
use crate::clock::now_ns;
use crate::error::Fault;
use confab_proto::frame;
use confab_proto::protocol::{Conversation, Message, Push, ServerFrame};
use mio::net::TcpStream;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

impl Engine {
    /// One loop turn: wait for readiness (at most `timeout`), handle it, write out.
    pub fn turn<H: Handler>(&mut self, timeout: Option<Duration>, h: &mut H) -> io::Result<()> {
        let timeout = if self.again.is_empty() && self.flush_list.is_empty() { timeout } else { Some(Duration::ZERO) };
        if let Err(e) = self.poll.poll(&mut self.events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        let mut ready = std::mem::take(&mut self.ready_buf);
        ready.clear();
        for event in self.events.iter() {
            ready.push((
                event.token().0,
                event.is_readable() || event.is_read_closed() || event.is_error(),
                event.is_writable(),
            ));
        }
        for c in std::mem::take(&mut self.again) {
            ready.push((c, true, false));
        }
        let mut woken = false;
        for &(c, readable, writable) in &ready {
            if c == WAKE_TOKEN.0 {
                woken = true;
                continue;
            }
            if c >= self.conns.len() || self.conns[c].stream.is_none() {
                continue;
            }
            if writable {
                self.writable(c, h);
            }
            if readable {
                self.readable(c, h);
            }
        }
        self.ready_buf = ready;
        if woken {
            h.woken(self, now_ns());
        }
        self.flush(h);
        Ok(())
    }

    /// Writes every connection with queued output.
    pub fn flush<H: Handler>(&mut self, h: &mut H) {
        while !self.flush_list.is_empty() {
            for c in std::mem::take(&mut self.flush_list) {
                self.conns[c].queued = false;
                self.write_out(c, h);
            }
        }
    }

    /// For a connecting socket: Some(true) once connected, Some(false) while still
    /// connecting, None after reporting the failure.
    fn check_connected<H: Handler>(&mut self, c: usize, h: &mut H) -> Option<bool> {
        let conn = &mut self.conns[c];
        if conn.state != State::Connecting {
            return Some(true);
        }
        let stream = conn.stream.as_ref()?;
        let outcome = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Err(e),
            Ok(None) => match stream.peer_addr() {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(true) => {
                conn.state = State::AwaitHello;
                if !conn.queued {
                    conn.queued = true;
                    self.flush_list.push(c);
                }
                Some(true)
            }
            Ok(false) => Some(false),
            Err(e) => {
                self.fail(c, Fault::Connect(e), h);
                None
            }
        }
    }

    fn writable<H: Handler>(&mut self, c: usize, h: &mut H) {
        if self.check_connected(c, h) == Some(true) {
            self.write_out(c, h);
        }
    }

    fn write_out<H: Handler>(&mut self, c: usize, h: &mut H) {
        let conn = &mut self.conns[c];
        if conn.state == State::Connecting {
            return;
        }
        let Some(stream) = conn.stream.as_mut() else {
            return;
        };
        let mut failure = None;
        while conn.wpos < conn.wbuf.len() {
            match stream.write(&conn.wbuf[conn.wpos..]) {
                Ok(0) => {
                    failure = Some(Fault::Closed);
                    break;
                }
                Ok(n) => conn.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    failure = Some(Fault::Io(e));
                    break;
                }
            }
        }
        conn.last_write_ns = now_ns();
        if conn.wpos == conn.wbuf.len() {
            conn.wbuf.clear();
            conn.wpos = 0;
            if conn.wbuf.capacity() > KEEP_CAPACITY {
                conn.wbuf = Vec::new();
            }
        } else if conn.wpos > conn.wbuf.len() / 2 {
            conn.wbuf.drain(..conn.wpos);
            conn.wpos = 0;
        }
        if let Some(fault) = failure {
            self.fail(c, fault, h);
        }
    }

    fn readable<H: Handler>(&mut self, c: usize, h: &mut H) {
        if self.check_connected(c, h) != Some(true) {
            return;
        }
        let generation = self.conns[c].generation;
        let mut total = 0;
        loop {
            let conn = &mut self.conns[c];
            let Some(stream) = conn.stream.as_mut() else {
                return;
            };
            let n = match stream.read(&mut self.scratch) {
                Ok(0) => {
                    self.fail(c, Fault::Closed, h);
                    return;
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let fault = if e.kind() == io::ErrorKind::ConnectionReset { Fault::Closed } else { Fault::Io(e) };
                    self.fail(c, fault, h);
                    return;
                }
            };
            // The arrival time of everything in this read, taken before decoding it.
            let now = now_ns();
            conn.rbuf.extend_from_slice(&self.scratch[..n]);
            if !self.decode(c, generation, now, h) {
                return;
            }
            total += n;
            if total >= READ_BUDGET {
                self.again.push(c);
                break;
            }
        }
        self.maybe_ack(c);
    }

    /// Handles every whole frame buffered; false if the connection changed under us.
    fn decode<H: Handler>(&mut self, c: usize, generation: u64, now: u64, h: &mut H) -> bool {
        let mut pos = 0;
        loop {
            let conn = &self.conns[c];
            let (decoded, used) = match frame::split(&conn.rbuf[pos..], MAX_SERVER_FRAME) {
                Ok(None) => break,
                Ok(Some((body, used))) => (frame::decode_body::<ServerFrame>(body), used),
                Err(e) => {
                    self.fail(c, Fault::Frame(e), h);
                    return false;
                }
            };
            pos += used;
            match decoded {
                Ok(server_frame) => self.dispatch(c, server_frame, now, h),
                Err(e) => {
                    self.fail(c, Fault::Frame(e), h);
                    return false;
                }
            }
            if self.conns[c].generation != generation {
                return false;
            }
        }
        let conn = &mut self.conns[c];
        if pos == conn.rbuf.len() {
            conn.rbuf.clear();
            if conn.rbuf.capacity() > KEEP_CAPACITY {
                conn.rbuf = Vec::new();
            }
        } else {
            conn.rbuf.drain(..pos);
        }
        true
    }

    /// The bookkeeping of one inbox push (a message or a sent copy); what is odd about
    /// it, if anything. A device is not pushed the copy of what it sent itself while it
    /// was caught up, so the sequence may skip: `prev_seq` (what the server pushed before)
    /// tells a skip from a gap, as in a group.
    fn inbox_push(&mut self, c: usize, msg: &Message) -> Option<&'static str> {
        let conn = &mut self.conns[c];
        if msg.seq < conn.next_seq {
            Some("inbox_seq_repeat")
        } else if msg.seq == conn.next_seq || msg.prev_seq < conn.next_seq {
            conn.next_seq = msg.seq.next();
            None
        } else {
            conn.next_seq = msg.seq.next();
            Some("inbox_seq_gap")
        }
    }

    fn dispatch<H: Handler>(&mut self, c: usize, server_frame: ServerFrame, now: u64, h: &mut H) {
        match server_frame {
            ServerFrame::Push(Push::Message(msg)) => {
                let kind = match msg.conversation {
                    Conversation::Inbox => self.inbox_push(c, &msg),
                    Conversation::Group(id) => self.group_push(c, id, &msg),
                    // loadgen never opens support conversations: count it if one comes.
                    Conversation::Support(_) => Some("support_push"),
                };
                if let Some(kind) = kind {
                    self.count(kind);
                }
                h.message(self, c, msg, now);
            }
            // A copy of what the user sent from another device: in the inbox's sequence.
            ServerFrame::Push(Push::SentCopy { to, message }) => {
                if let Some(kind) = self.inbox_push(c, &message) {
                    self.count(kind);
                }
                h.sent_copy(self, c, to, message, now);
            }
            ServerFrame::Push(Push::Kicked { .. }) => self.count("kicked"),
            ServerFrame::Push(Push::ShuttingDown) => self.count("server_shutting_down"),
            ServerFrame::Push(push) => h.push(self, c, push, now),
            ServerFrame::Reply { request_id, reply } if request_id & CONTROL != 0 => {
                self.control_reply(c, request_id, Ok(reply), now, h)
            }
            ServerFrame::Error { request_id, code, retry_after_ms, .. } if request_id & CONTROL != 0 => {
                self.retry_after_ns = u64::from(retry_after_ms) * 1_000_000;
                self.control_reply(c, request_id, Err(code), now, h)
            }
            ServerFrame::Error { request_id: 0, code, .. } => {
                if self.conns[c].state == State::Ready {
                    // The server closes after these; the close is reported then.
                    self.count(&format!("server:{code:?}"));
                } else {
                    self.fail(c, Fault::Server(code), h);
                }
            }
            ServerFrame::Reply { request_id, reply } => h.reply(self, c, request_id, Ok(reply), now),
            ServerFrame::Error { request_id, code, retry_after_ms, .. } => {
                self.retry_after_ns = u64::from(retry_after_ms) * 1_000_000;
                h.reply(self, c, request_id, Err(code), now)
            }
        }
    }
}

pub(super) fn open_socket(target: SocketAddr, source: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    // Close with an RST: thousands of client sockets in TIME_WAIT would exhaust the
    // ports of a source address between runs.
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(source) = source {
        socket.bind(&SocketAddr::from((source, 0)).into())?;
    }
    match socket.connect(&target.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(EINPROGRESS) => {}
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}
