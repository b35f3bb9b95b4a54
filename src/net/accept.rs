//! The event loop's door: accepting connections, refusing those beyond a limit with
//! `ServerFull` (total, per address, not logged in, or out of descriptors), and logging
//! refusals at most about once a second.

use super::conn::Conn;
use super::event_loop::{EventLoop, FIRST_CONN};
use super::output::error_frame;
use super::ConnId;
use crate::frame;
use crate::protocol::{ErrorCode, NO_REQUEST};
use log::{debug, warn};
use mio::net::TcpStream;
use mio::{Interest, Token};
use std::fs::File;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl EventLoop {
    pub(super) fn accept(&mut self) {
        loop {
            let Some(listener) = self.listener.as_ref() else { return };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let (max, per_ip) = (self.config.max_unauthenticated, self.config.max_unauthenticated_per_ip);
                    let refusal = if self.conns.len() >= self.config.max_connections.min(self.ledger.capacity()) {
                        Err("too many connections")
                    } else {
                        self.unauthenticated.admit(peer.ip(), max, per_ip)
                    };
                    let refusal = refusal.and_then(|()| {
                        if self.per_address.admit(peer.ip(), self.config.max_connections_per_ip) {
                            Ok(())
                        } else {
                            self.unauthenticated.remove(peer.ip());
                            Err("too many connections from your address")
                        }
                    });
                    if let Err(reason) = refusal {
                        self.refuse(stream, peer, reason);
                        continue;
                    }
                    if let Err(e) = self.add_conn(stream, peer) {
                        self.unauthenticated.remove(peer.ip());
                        self.per_address.release(peer.ip());
                        warn!("could not register {peer}: {e}");
                    }
                }
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
        let _ = stream.write(&frame::encode(&error_frame(NO_REQUEST, ErrorCode::ServerFull, reason)));
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

    fn add_conn(&mut self, mut stream: TcpStream, peer: SocketAddr) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let entry = self.conns.vacant_entry();
        let slot = entry.key();
        // Readable and writable once, for good: edge-triggered readiness costs nothing
        // while idle, and saves a re-registration each time output backs up.
        self.poll.registry().register(
            &mut stream,
            Token(slot + FIRST_CONN),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        self.serial = self.serial.wrapping_add(1);
        let id = ConnId::new(self.serial, slot);
        self.ledger.open(id);
        entry.insert(Conn::new(id, stream, peer, self.config.request_burst, Instant::now()));
        self.metrics.connections.fetch_add(1, Ordering::Relaxed);
        debug!("connection {id:?} from {peer} accepted");
        Ok(())
    }
}

/// The spare descriptor (see `EventLoop::spare_fd`); None if even that cannot be opened.
pub(super) fn open_spare() -> Option<File> {
    File::open("/dev/null").ok()
}

/// accept's way of saying the process (EMFILE) or the system (ENFILE) has no descriptor left.
fn out_of_descriptors(e: &io::Error) -> bool {
    matches!(rustix::io::Errno::from_io_error(e), Some(rustix::io::Errno::MFILE | rustix::io::Errno::NFILE))
}
