//! The link's writer thread, the only code that writes to the server once subscribed: the
//! acks and the drops of dead tokens the gateway hands it, in one channel and in that
//! order, and a Ping when it has had nothing to send for a heartbeat.
//!
//! Each request gets an id from its kind's own range, so the reader tells the answer to a
//! drop from the answer to an ack by the id alone: an error to an ack ends the
//! subscription, an error to a drop is only logged.

use confab_proto::frame;
use confab_proto::protocol::{ClientFrame, Request};
use crossbeam_channel::{Receiver, RecvTimeoutError};
use log::debug;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::ops::Range;
use std::time::Duration;

/// Ids of acks and pings: far from the handshake's first few, so a reply in a log says
/// which side asked. Their replies are recognised by what they are (Pong, PushAcked), so
/// the ids need not be tracked.
const ACK_IDS: Range<u32> = 1 << 20..1 << 30;
/// Ids of drops.
const DROP_IDS: Range<u32> = 1 << 30..u32::MAX;

/// What the gateway hands the writer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    /// AckPush: every event up to here is delivered.
    Ack(u64),
    /// DropPushToken.
    DropToken { username: String, token: String },
}

/// Whether `request_id` is one the writer gave a DropPushToken.
pub fn is_drop(request_id: u32) -> bool {
    DROP_IDS.contains(&request_id)
}

/// The next id of a range, starting over at its start after its end (a billion requests
/// on; long answered by then).
struct Ids {
    next: u32,
    range: Range<u32>,
}

impl Ids {
    fn new(range: Range<u32>) -> Ids {
        Ids { next: range.start, range }
    }

    fn take(&mut self) -> u32 {
        let id = self.next;
        self.next = if id + 1 < self.range.end { id + 1 } else { self.range.start };
        id
    }
}

/// The writer thread: what the gateway gives, each batch in one write, a Ping after a
/// heartbeat with nothing, until the gateway closes the channel or a write fails.
pub fn write_frames(mut socket: TcpStream, outgoing: &Receiver<Outgoing>, heartbeat: Duration) {
    let (mut ack_ids, mut drop_ids) = (Ids::new(ACK_IDS), Ids::new(DROP_IDS));
    loop {
        let requests = match outgoing.recv_timeout(heartbeat) {
            Ok(first) => batch(first, outgoing.try_iter()),
            Err(RecvTimeoutError::Timeout) => vec![Request::Ping],
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut bytes = Vec::new();
        for request in requests {
            let request_id = match request {
                Request::DropPushToken { .. } => drop_ids.take(),
                _ => ack_ids.take(),
            };
            // The token is redacted in Debug.
            debug!("sending {request:?} (request {request_id})");
            bytes.extend_from_slice(&frame::encode(&ClientFrame { request_id, request }));
        }
        if let Err(e) = socket.write_all(&bytes) {
            // The reader sees the shut-down socket and reports the connection lost.
            debug!("writing to the server: {e}");
            let _ = socket.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// What the gateway handed over since the last write, as requests: the drops in order,
/// then the highest ack alone (acks are cumulative). Moving an ack after a drop handed
/// over later changes nothing; a drop never goes after an ack handed over after it, so an
/// event is never acknowledged ahead of its drops.
fn batch(first: Outgoing, rest: impl Iterator<Item = Outgoing>) -> Vec<Request> {
    let mut requests = Vec::new();
    let mut up_to = None;
    for outgoing in std::iter::once(first).chain(rest) {
        match outgoing {
            Outgoing::Ack(seq) => up_to = up_to.max(Some(seq)),
            Outgoing::DropToken { username, token } => requests.push(Request::DropPushToken { username, token }),
        }
    }
    requests.extend(up_to.map(|up_to| Request::AckPush { up_to }));
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_token(token: &str) -> Outgoing {
        Outgoing::DropToken { username: "bob".into(), token: token.into() }
    }

    fn dropped(token: &str) -> Request {
        Request::DropPushToken { username: "bob".into(), token: token.into() }
    }

    #[test]
    fn a_batch_keeps_the_drops_in_order_and_ends_with_the_highest_ack() {
        let rest = vec![drop_token("a"), Outgoing::Ack(5), drop_token("b"), Outgoing::Ack(4)];
        assert_eq!(
            batch(Outgoing::Ack(3), rest.into_iter()),
            [dropped("a"), dropped("b"), Request::AckPush { up_to: 5 }]
        );
        assert_eq!(batch(drop_token("a"), std::iter::empty()), [dropped("a")]);
        assert_eq!(batch(Outgoing::Ack(9), std::iter::empty()), [Request::AckPush { up_to: 9 }]);
    }

    #[test]
    fn drops_and_acks_have_ids_of_their_own_that_start_over_after_their_range() {
        let mut acks = Ids::new(ACK_IDS);
        let mut drops = Ids::new(DROP_IDS);
        let (ack, drop) = (acks.take(), drops.take());
        assert!(!is_drop(ack) && is_drop(drop) && is_drop(drops.take()));
        assert!(!is_drop(1) && !is_drop(ACK_IDS.end - 1) && is_drop(u32::MAX - 1));
        let mut last = Ids { next: DROP_IDS.end - 1, range: DROP_IDS };
        assert_eq!((last.take(), last.take()), (u32::MAX - 1, DROP_IDS.start));
    }
}
