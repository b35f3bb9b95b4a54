//! What a fanout thread hears: members' deliveries (group pushes or room messages), the
//! answers to its sends, and dropped connections. Apart from `fanout.rs`, which plans,
//! paces and reports, because here each delivery is matched to its send for the
//! exactly-once check.

use super::{Fanout, Kind};
use crate::engine::{Engine, Handler};
use crate::error::Fault;
use crate::payload::Stamp;
use crate::scenario::common::retryable;
use crate::scenario::SETUP_IDS;
use crate::stats::Line;
use confab_proto::protocol::{Conversation, ErrorCode, Message, Push, Reply};

impl Handler for Fanout<'_> {
    fn ready(&mut self, eng: &mut Engine, c: usize, _now: u64) {
        // Only a group member's reconnect gets here: resend what was never answered, then
        // use the window slots freed meanwhile.
        let mut unanswered: Vec<(u32, u64)> =
            self.senders[c].pending.iter().filter(|(_, p)| !p.answered).map(|(q, p)| (*q, p.sent_ns)).collect();
        unanswered.sort_unstable();
        for (q, sent_ns) in unanswered {
            self.queue_send(eng, c, q, sent_ns);
        }
        let deferred = std::mem::take(&mut self.senders[c].deferred);
        if self.pacer.sending && self.pacer.rate.is_none() {
            for _ in 0..deferred {
                self.send(eng, c);
            }
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        let set = c / self.plan.members;
        match (self.plan.kind, msg.conversation) {
            (Kind::Group, Conversation::Group(id)) if id == self.ids[set] => {
                if msg.event.is_some() {
                    // Membership changes live in the same sequence; not our traffic.
                    self.events += 1;
                    return;
                }
                match Stamp::decode(&msg.content.body) {
                    Some(stamp) if stamp.run == self.plan.run_id => self.delivery(eng, c, stamp, &msg.from, now),
                    _ => self.foreign(&msg.content.body),
                }
            }
            _ if msg.event.is_some() => self.events += 1,
            _ => self.foreign(&msg.content.body),
        }
    }

    fn push(&mut self, eng: &mut Engine, c: usize, push: Push, now: u64) {
        let Push::RoomMessage { room, from, content } = push else {
            // Presence of fellow members coming and going, and the like.
            return;
        };
        let set = c / self.plan.members;
        match Stamp::decode(&content.body) {
            Some(stamp) if stamp.run == self.plan.run_id => {
                if self.plan.kind != Kind::Room || room != self.rooms[set] {
                    self.misrouted += 1;
                    return;
                }
                self.delivery(eng, c, stamp, &from, now);
            }
            _ => self.foreign(&content.body),
        }
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        if request_id >= SETUP_IDS {
            self.rec.error("late_setup_answer");
            return;
        }
        let waiting = self.senders[c].pending.get(&request_id).is_some_and(|p| !p.answered);
        if !waiting {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        }
        if let Some(code) = retryable(&reply) {
            self.retry.later(&mut self.rec, code, now, eng.retry_after_ns, c, request_id);
            return;
        }
        self.deltas[1] += 1;
        let others = (self.plan.members - 1) as u32;
        let kind = self.plan.kind;
        let s = &mut self.senders[c];
        let Some(p) = s.pending.get_mut(&request_id) else {
            return;
        };
        let sent_ns = p.sent_ns;
        let recipients = match (kind, reply) {
            (Kind::Group, Ok(Reply::Sent { seq, .. })) => {
                let group = self.ids[c / self.plan.members];
                eng.group_own(c, group, seq);
                others
            }
            (Kind::Room, Ok(Reply::Delivered { recipients })) => {
                if recipients < others {
                    // Members that are not there get nothing; the check leaves out members
                    // whose connection dropped, and a short count without a drop is a loss.
                    p.remaining = p.remaining.saturating_sub(others - recipients);
                    self.short_answers += 1;
                }
                recipients
            }
            (_, answer) => {
                match answer {
                    Ok(_) => self.rec.error("unexpected:reply_to_send"),
                    Err(code) => self.rec.error(&format!("send:{code:?}")),
                }
                s.pending.remove(&request_id);
                self.credit(eng, c);
                return;
            }
        };
        p.answered = true;
        if s.receipted.insert(request_id) {
            self.rec.receipted(now);
            self.rec.latency(kind.answer(), Line::Receipt, sent_ns, now);
            self.deltas[2] += 1;
            self.deltas[4] += u64::from(recipients);
        }
        self.maybe_complete(eng, c, request_id);
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _now: u64) {
        self.rec.error(&fault.kind());
        match self.plan.kind {
            Kind::Group => {
                self.reconnects.try_again(eng, &mut self.rec, c, self.first + c);
            }
            Kind::Room => {
                // The connection's room membership ended with it: it is out of the check,
                // and its unanswered sends are given up (a room send is not idempotent).
                self.dropped[c] = true;
                let s = &mut self.senders[c];
                let before = s.pending.len();
                s.pending.retain(|_, p| p.answered);
                let abandoned = (before - s.pending.len()) as u64;
                self.abandoned += abandoned;
                self.deltas[1] += abandoned;
            }
        }
    }
}
