//! What arrives during a soak: deliveries told apart as first copies, redeliveries after a
//! reconnect, or duplicates ([`Track`]); send answers; and drops the server made. Apart
//! from `soak.rs`, which paces the traffic and churn, because this is where the run's
//! exactly-once verdict is decided.

use super::{Dest, Soak};
use crate::engine::{Engine, Handler};
use crate::error::Fault;
use crate::scenario::common::{retryable, this_run};
use crate::stats::Line;
use confab_proto::protocol::{Conversation, ErrorCode, Message, Reply, Seq};
use std::cmp::Reverse;

/// Per conversation of a client (inbox, group): what tells a redelivery from a duplicate.
#[derive(Clone, Copy, Default)]
pub(super) struct Track {
    /// The highest sequence received in the current session.
    session_high: Seq,
    /// The highest sequence received in any earlier session.
    high_before: Seq,
    /// The highest ack the server had confirmed when an earlier session ended.
    confirmed_before: Seq,
}

impl Track {
    /// Message `seq` arrived; returns whether a repeat of it would be a redelivery: the
    /// first arrival of `seq` in this session (pushes come in increasing order within a
    /// session), received in an earlier session, and never acknowledged (as far as the
    /// server had confirmed).
    pub(super) fn arrived(&mut self, seq: Seq) -> bool {
        let first_in_session = seq > self.session_high;
        self.session_high = self.session_high.max(seq);
        first_in_session && seq <= self.high_before && seq > self.confirmed_before
    }

    /// The session is over; `confirmed` is the highest ack the server confirmed in it.
    pub(super) fn session_ended(&mut self, confirmed: Seq) {
        self.high_before = self.high_before.max(self.session_high);
        self.session_high = Seq::ZERO;
        self.confirmed_before = self.confirmed_before.max(confirmed);
    }
}

impl Handler for Soak {
    fn ready(&mut self, eng: &mut Engine, c: usize, now: u64) {
        let client = &mut self.clients[c];
        client.failures = 0;
        client.session_started_ns = now;
        self.counts.reconnects += 1;
        self.rec.completed(now);
        self.rec.latency("reconnect", Line::Off, eng.conns[c].setup_started_ns, now);
        let mut pending: Vec<(u32, (Dest, u64))> = client.pending.iter().map(|(q, v)| (*q, *v)).collect();
        pending.sort_unstable_by_key(|(q, _)| *q);
        for (q, (dest, sent_ns)) in pending {
            self.queue_send(eng, c, q, dest, sent_ns);
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        self.receive(eng, c, &msg, now);
        if self.clients[c].drop_on_message != 0 && self.traffic {
            // Gone before the ack of this message is written: it must come again.
            self.counts.disconnects_unacked += 1;
            self.disconnect(eng, c, now);
        }
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        self.answer(eng, c, request_id, reply, now);
    }

    fn down(&mut self, eng: &mut Engine, c: usize, was_ready: bool, fault: Fault, now: u64) {
        if was_ready {
            // Not one of ours: the server (or the network) ended it. Back at once.
            self.session_ended(eng, c);
            self.counts.server_drops += 1;
            self.rec.error(&format!("dropped:{}", fault.kind()));
            self.comebacks.push(Reverse((now, c)));
        } else {
            self.rec.error(&fault.kind());
            self.retry_later(c, now);
        }
    }
}

impl Soak {
    fn receive(&mut self, eng: &mut Engine, c: usize, msg: &Message, now: u64) {
        let track = match msg.conversation {
            Conversation::Inbox => 0,
            Conversation::Group(id) if self.group_of(c).is_some_and(|set| self.ids[set] == id) => 1,
            // A group of an earlier run, on its way out (or a support conversation, which
            // the soak never opens).
            Conversation::Group(_) | Conversation::Support(_) => {
                self.rec.stale += 1;
                return;
            }
        };
        let redelivery = self.clients[c].tracks[track].arrived(msg.seq);
        if msg.event.is_some() {
            self.counts.events += 1;
            return;
        }
        let Some(stamp) = this_run(&mut self.rec, &msg.content.body, self.run_id) else {
            return;
        };
        let g = stamp.sender as usize;
        if g >= self.clients.len() || msg.from != eng.accounts().name(g) {
            self.counts.misrouted += 1;
            return;
        }
        let fresh = if track == 0 {
            if stamp.recipient as usize != c {
                self.counts.misrouted += 1;
                return;
            }
            self.clients[g].delivered_direct.insert(stamp.seq)
        } else {
            let set = c / self.gm;
            if g == c || self.group_of(g) != Some(set) || stamp.recipient as usize != set {
                self.counts.misrouted += 1;
                return;
            }
            self.clients[c].from_members[g % self.gm].insert(stamp.seq)
        };
        if !fresh {
            if redelivery {
                self.counts.redelivered += 1;
            } else {
                self.counts.duplicated += 1;
            }
            return;
        }
        if track == 0 {
            self.counts.direct_delivered += 1;
        } else {
            self.counts.group_delivered += 1;
        }
        self.rec.delivered(now);
        // Messages that waited for their recipient to come back are not the server's latency.
        if self.clients[c].session_started_ns <= stamp.sent_ns {
            self.rec.latency("delivery", Line::Main, stamp.sent_ns, now);
            if let Some(name) = self.homes.between(g, c).filter(|_| self.split && track == 0) {
                self.rec.latency(name, Line::Off, stamp.sent_ns, now);
            }
        } else {
            self.rec.latency("delivery_after_reconnect", Line::Off, stamp.sent_ns, now);
        }
    }

    fn answer(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        let Some(&(dest, sent_ns)) = self.clients[c].pending.get(&request_id) else {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        };
        if let Some(code) = retryable(&reply) {
            self.retry.later(&mut self.rec, code, now, eng.retry_after_ns, c, request_id);
            return;
        }
        self.clients[c].pending.remove(&request_id);
        match reply {
            Ok(Reply::Sent { seq, duplicate, .. }) => {
                if duplicate {
                    self.counts.duplicate_receipts += 1;
                }
                let client = &mut self.clients[c];
                let fresh = match dest {
                    Dest::User(_) => client.receipted_direct.insert(request_id),
                    Dest::Group => client.receipted_group.insert(request_id),
                };
                if dest == Dest::Group {
                    let id = self.ids[c / self.gm];
                    eng.group_own(c, id, seq);
                }
                if fresh {
                    match dest {
                        Dest::User(_) => self.counts.direct_receipted += 1,
                        Dest::Group => self.counts.group_receipted += 1,
                    }
                    self.rec.receipted(now);
                    self.rec.latency("receipt", Line::Receipt, sent_ns, now);
                }
            }
            Ok(_) => self.rec.error("unexpected:reply_to_send"),
            Err(code) => self.rec.error(&format!("send:{code:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redelivery_needs_a_new_session_and_no_confirmed_ack() {
        let mut t = Track::default();
        for seq in (1..=5).map(Seq) {
            assert!(!t.arrived(seq), "first session: nothing is a redelivery");
        }
        assert!(!t.arrived(Seq(5)), "a repeat within the session is a duplicate");
        t.session_ended(Seq(3));
        assert!(!t.arrived(Seq(3)), "acked and confirmed: must not come again");
        let mut t2 = Track::default();
        for seq in (1..=5).map(Seq) {
            t2.arrived(seq);
        }
        t2.session_ended(Seq(3));
        assert!(t2.arrived(Seq(4)), "received, not acked, next session: a redelivery");
        assert!(!t2.arrived(Seq(4)), "but only once in that session");
        assert!(t2.arrived(Seq(5)));
        assert!(!t2.arrived(Seq(6)), "never received before: a repeat of it is a second copy");
    }
}
