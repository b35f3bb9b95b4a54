//! The event loop's door: the listener, accepting connections into the table, refusing
//! those beyond a limit with `ServerFull` (total, per address, not logged in, or out of
//! descriptors), and logging refusals at most about once a second.

use super::conn::Conn;
use super::refusals::RefusalLog;
use super::table::{Admitted, ConnTable};
use crate::config::Config;
use crate::frame;
use crate::protocol::{ErrorCode, ServerFrame, NO_REQUEST};
use log::{debug, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::Instant;

/// A connection's mio token is its table slot plus this: tokens 0 and 1 are the listener's and
/// the waker's.
pub(super) const FIRST_CONN: usize = 2;

pub struct Door {
    /// None once shutdown has begun.
    listener: Option<TcpListener>,
    /// A descriptor held in reserve: when accept fails for lack of descriptors, closing it
    /// lets the loop accept one newcomer, tell it `ServerFull` and close it, instead of
    /// leaving it hanging in the backlog.
    spare_fd: Option<File>,
    /// Refused connections, logged at most about once a second.
    refusals: RefusalLog,
}

impl Door {
    /// A door on a listener already registered with the loop's poll.
    pub fn new(listener: TcpListener) -> Self {
        Door { listener: Some(listener), spare_fd: open_spare(), refusals: RefusalLog::default() }
    }

    /// Closes the door for good: no more connections are accepted.
    pub fn close(&mut self, registry: &Registry) {
        if let Some(mut listener) = self.listener.take() {
            let _ = registry.deregister(&mut listener);
        }
    }

    /// The line summing up recent refusals, if one is due (see [`RefusalLog::summary`]).
    pub fn refusal_summary(&mut self, now: Instant) -> Option<String> {
        self.refusals.summary(now)
    }

    /// Accepts until the listener would block, into `table` as far as its caps allow.
    pub fn accept(&mut self, table: &mut ConnTable, registry: &Registry, config: &Config) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => match table.admit(peer.ip()) {
                    Ok(admitted) => add_conn(table, registry, config, admitted, stream, peer),
                    Err(reason) => self.refuse(stream, peer, reason),
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if out_of_descriptors(&e) => {
                    if !self.shed_one() {
                        // No spare to give up: the sweep tries again within a second.
                        break;
                    }
                }
                Err(e) => {
                    warn!("accept failed: {e}");
                    break;
                }
            }
        }
    }

    /// Out of descriptors: gives up the spare for one accept, refuses that newcomer with
    /// `ServerFull`, and takes the spare back. False when there was no spare or nothing
    /// to accept.
    fn shed_one(&mut self) -> bool {
        let Some(listener) = self.listener.as_ref() else { return false };
        if self.spare_fd.take().is_none() {
            self.spare_fd = open_spare();
            self.note_refusal(None, "out of file descriptors");
            return false;
        }
        let shed = match listener.accept() {
            Ok((stream, peer)) => {
                self.refuse(stream, peer, "out of file descriptors");
                true
            }
            Err(_) => false,
        };
        self.spare_fd = open_spare();
        shed
    }

    /// Tells a newcomer `ServerFull` and closes it; logs at most about once a second.
    fn refuse(&mut self, mut stream: TcpStream, peer: SocketAddr, reason: &'static str) {
        // Best effort: the socket is fresh, so a small frame fits its buffer.
        let _ = stream.write(&frame::encode(&ServerFrame::error(NO_REQUEST, ErrorCode::ServerFull, reason)));
        self.note_refusal(Some(peer), reason);
    }

    fn note_refusal(&mut self, peer: Option<SocketAddr>, reason: &'static str) {
        if self.refusals.note(reason, Instant::now()) {
            match peer {
                Some(peer) => warn!("refused {peer}: {reason} (further refusals are summed up once a second)"),
                None => warn!("cannot accept: {reason} (further refusals are summed up once a second)"),
            }
        }
    }
}

/// Registers an admitted newcomer and puts it in the table; if that fails, it is dropped
/// (closed) and its place given back.
fn add_conn(
    table: &mut ConnTable,
    registry: &Registry,
    config: &Config,
    admitted: Admitted,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let opened = table.insert(admitted, |id| {
        stream.set_nodelay(true)?;
        // Readable and writable once, for good: edge-triggered readiness costs nothing
        // while idle, and saves a re-registration each time output backs up.
        registry.register(&mut stream, Token(id.slot() + FIRST_CONN), Interest::READABLE | Interest::WRITABLE)?;
        Ok(Conn::new(id, stream, peer, config.request_burst, Instant::now()))
    });
    match opened {
        Ok(id) => debug!("connection {id:?} from {peer} accepted"),
        Err(e) => warn!("could not register {peer}: {e}"),
    }
}

/// The spare descriptor (see `Door::spare_fd`); None if even that cannot be opened.
fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// accept's way of saying the process (EMFILE) or the system (ENFILE) has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(rustix::io::Errno::from_io_error(e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE))
}
