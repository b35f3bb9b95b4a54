//! One client connection as the event loop holds it: socket, buffers, protocol phase and
//! the logged-in user. Only the loop thread touches it.

use super::limits::RequestBudget;
use super::outqueue::OutQueue;
use crate::apps::DEFAULT_APP;
use crate::route::{ConnId, Destination, Inbound, SessionUser};
use mio::net::TcpStream;
use std::io::{self, Read};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connected; only Hello is allowed.
    AwaitHello,
    /// Hello accepted.
    Ready,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Life {
    Open,
    /// Reads nothing more; closes once the queued output is written (or a grace period ends).
    Closing {
        since: Instant,
    },
    /// To be reaped at the end of this loop turn.
    Dead,
}

pub enum ReadOutcome {
    /// Drained until the socket would block.
    Drained,
    /// Read the per-turn budget; more may be waiting.
    BudgetSpent,
    /// The peer closed its side or the socket failed.
    Closed,
}

pub struct Conn {
    pub id: ConnId,
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub budget: RequestBudget,
    pub phase: Phase,
    /// The app its Hello named: every name in its requests is qualified with it.
    pub app: Arc<str>,
    pub life: Life,
    pub user: Option<SessionUser>,
    /// Received bytes not yet decoded into frames; `read_pos` bytes of it are consumed.
    pub read_buf: Vec<u8>,
    pub read_pos: usize,
    /// Encoded frames not yet written.
    pub out: OutQueue,
    pub last_heard: Instant,
    /// When the connection was last without a user (accepted, or logged out): the Hello
    /// and login deadlines count from here.
    pub unauthenticated_since: Instant,
    /// A command its worker's full queue refused; nothing more is read until it goes.
    pub stalled: Option<(Destination, Inbound)>,
    /// Why it closes, once that is decided (told to services watching connections).
    pub close_reason: &'static str,
    /// In a cluster: the other nodes its session sent requests to, which may hold
    /// something for it (a presence subscription); told when the session ends.
    pub remote_nodes: Vec<u8>,
}

/// Buffers above this capacity are released once empty, so idle connections stay small.
const KEEP_CAPACITY: usize = 4096;

impl Conn {
    pub fn new(id: ConnId, stream: TcpStream, peer: SocketAddr, burst: u32, now: Instant) -> Self {
        Conn {
            id,
            stream,
            peer,
            budget: RequestBudget::new(burst, now),

            phase: Phase::AwaitHello,
            app: Arc::from(DEFAULT_APP),
            life: Life::Open,
            user: None,
            read_buf: Vec::new(),
            read_pos: 0,
            out: OutQueue::default(),
            last_heard: now,
            unauthenticated_since: now,
            stalled: None,
            close_reason: "closed by the client",
            remote_nodes: Vec::new(),
        }
    }

    pub fn is_open(&self) -> bool {
        self.life == Life::Open
    }

    pub fn pending_out(&self) -> usize {
        self.out.len()
    }

    pub fn unread(&self) -> &[u8] {
        &self.read_buf[self.read_pos..]
    }

    /// Reads into `read_buf` until the socket would block or `budget` bytes were read.
    pub fn read_from_socket(&mut self, scratch: &mut [u8], budget: usize) -> ReadOutcome {
        let mut total = 0;
        loop {
            match self.stream.read(scratch) {
                Ok(0) => return ReadOutcome::Closed,
                Ok(n) => {
                    self.read_buf.extend_from_slice(&scratch[..n]);
                    total += n;
                    if total >= budget {
                        return ReadOutcome::BudgetSpent;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::Drained,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return ReadOutcome::Closed,
            }
        }
    }

    /// Drops consumed input; releases a large buffer once it is empty.
    pub fn compact_input(&mut self) {
        if self.read_pos == self.read_buf.len() {
            self.read_buf.clear();
            self.read_pos = 0;
            if self.read_buf.capacity() > KEEP_CAPACITY {
                self.read_buf = Vec::new();
            }
        } else if self.read_pos > 0 {
            self.read_buf.drain(..self.read_pos);
            self.read_pos = 0;
        }
    }

    /// Writes queued output until done or the socket would block; returns the bytes
    /// written. Err means the connection is unusable.
    pub fn write_to_socket(&mut self) -> io::Result<usize> {
        self.out.write_to(&mut self.stream)
    }
}
