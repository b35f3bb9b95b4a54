//! The engine's protocol side: the Hello/Resume/Login/Register dance with its fallbacks
//! (and a cluster's redirects, followed in `home.rs`),
//! the answers to the engine's own requests, and the cumulative acks of the inbox and of
//! every group, following protocol.md's client algorithm.
//!
//! A connection's `account` is an identity of [`Accounts`](crate::accounts::Accounts): with
//! devices it logs in and resumes as that device (`LoginDevice`, `ResumeDevice`), otherwise
//! with the plain requests, exactly as before devices existed.

use super::{Auth, Engine, Handler, State};
use crate::error::Fault;
use confab_proto::protocol::{Conversation, ErrorCode, GroupEvent, GroupId, Message, Reply, Request, Seq};

impl Engine {
    /// The bookkeeping of one group push; what is odd about it, if anything.
    pub(super) fn group_push(&mut self, c: usize, id: GroupId, msg: &Message) -> Option<&'static str> {
        let conn = &mut self.conns[c];
        if matches!(msg.event, Some(GroupEvent::Deleted { .. })) {
            // Live only, beyond the last sequence: never acked (protocol.md "Groups").
            conn.groups.retain(|g| g.id != id);
            return None;
        }
        let cursor = conn.group_mut(id);
        let kind = match cursor.position {
            None => {
                cursor.position = Some(msg.seq);
                // The first push starts at the server's ack: below an ack it confirmed
                // earlier means the server forgot that ack.
                (msg.prev_seq < cursor.acked_ever).then_some("group_ack_regressed")
            }
            Some(pos) if msg.seq <= pos => Some("group_seq_repeat"),
            Some(pos) => {
                cursor.position = Some(msg.seq);
                (msg.prev_seq > pos).then_some("group_seq_gap")
            }
        };
        cursor.advance_own();
        kind
    }

    pub(super) fn control_reply<H: Handler>(
        &mut self,
        c: usize,
        request_id: u32,
        reply: Result<Reply, ErrorCode>,
        now: u64,
        h: &mut H,
    ) {
        let (state, auth) = (self.conns[c].state, self.conns[c].auth);
        let ack_of = match self.conns[c].acks_out.iter().position(|(id, _)| *id == request_id) {
            Some(i) => Some(self.conns[c].acks_out.swap_remove(i).1),
            None => None,
        };
        match (state, reply) {
            (State::AwaitHello, Ok(Reply::Hello { .. })) => self.authenticate(c, now, h),
            (
                State::Resuming | State::LoggingIn,
                Ok(
                    Reply::LoggedIn { acked, last_seq, resume_token, .. }
                    | Reply::DeviceLoggedIn { acked, last_seq, resume_token, .. },
                ),
            ) => {
                if acked < self.conns[c].inbox_acked_ever {
                    self.count("inbox_ack_regressed");
                }
                let conn = &mut self.conns[c];
                conn.state = State::Ready;
                conn.next_seq = acked + 1;
                conn.ack_sent = acked;
                conn.ack_confirmed = acked;
                conn.login_acked = acked;
                conn.login_last_seq = last_seq;
                let account = conn.account;
                if state == State::LoggingIn && !resume_token.is_empty() {
                    self.accounts.set_token(account, resume_token);
                    self.token_changes.push(account);
                }
                h.ready(self, c, now);
            }
            (State::Registering, Ok(Reply::Registered { .. })) => self.login(c, now),
            (State::Resuming | State::LoggingIn | State::Registering, Ok(Reply::Redirect { address, .. })) => {
                self.redirected(c, &address, h)
            }
            (State::Ready, Ok(Reply::Acked { conversation: Conversation::Inbox, up_to })) => {
                let conn = &mut self.conns[c];
                conn.ack_confirmed = conn.ack_confirmed.max(up_to);
                conn.inbox_acked_ever = conn.inbox_acked_ever.max(up_to);
                conn.ack_in_flight = false;
                h.acked(self, c);
                self.maybe_ack(c);
            }
            (State::Ready, Ok(Reply::Acked { conversation: Conversation::Group(id), up_to })) => {
                // None if the group was deleted meanwhile.
                if let Some(cursor) = self.conns[c].groups.iter_mut().find(|g| g.id == id) {
                    cursor.ack_confirmed = cursor.ack_confirmed.max(up_to);
                    cursor.acked_ever = cursor.acked_ever.max(up_to);
                    cursor.ack_in_flight = false;
                }
                h.acked(self, c);
                self.maybe_ack(c);
            }
            (_, Ok(Reply::Pong)) => {}
            (State::Resuming, Err(ErrorCode::InvalidToken)) if auth == Auth::Auto => {
                let account = self.conns[c].account;
                self.accounts.forget_token(account);
                self.token_changes.push(account);
                self.stale_tokens += 1;
                self.login(c, now);
            }
            (State::Resuming, Err(ErrorCode::UnknownUser)) if auth == Auth::Auto => {
                let account = self.conns[c].account;
                self.accounts.forget_token(account);
                self.token_changes.push(account);
                self.stale_tokens += 1;
                self.register(c, now)
            }
            (State::LoggingIn, Err(ErrorCode::UnknownUser)) if auth == Auth::Auto => self.register(c, now),
            (State::Registering, Err(ErrorCode::NameTaken)) if auth == Auth::Auto => self.login(c, now),
            (State::Ready, Err(code)) => {
                let conn = &mut self.conns[c];
                match ack_of {
                    Some(Conversation::Inbox) => conn.ack_in_flight = false,
                    // Deleted (its Deleted event came first) while the ack was on its way.
                    Some(Conversation::Group(id)) if conn.group(id).is_none() => return,
                    // The group is gone or we are no longer in it: stop acking it.
                    Some(Conversation::Group(id))
                        if matches!(code, ErrorCode::UnknownGroup | ErrorCode::NotAMember) =>
                    {
                        conn.groups.retain(|g| g.id != id)
                    }
                    Some(Conversation::Group(id)) => conn.group_mut(id).ack_in_flight = false,
                    // loadgen never opens support conversations.
                    Some(Conversation::Support(_)) => {}
                    None => {
                        self.count(&format!("control:{code:?}"));
                        return;
                    }
                }
                self.count(&format!("ack:{code:?}"));
            }
            (_, Err(code)) => self.fail(c, Fault::Auth(code), h),
            (_, Ok(_)) => self.fail(c, Fault::Unexpected("reply out of place"), h),
        }
    }

    fn authenticate<H: Handler>(&mut self, c: usize, now: u64, h: &mut H) {
        let account = self.conns[c].account;
        let token = self.accounts.token(account).map(<[u8]>::to_vec);
        match (self.conns[c].auth, token) {
            (Auth::Password, _) => self.login(c, now),
            (Auth::Auto, None) => self.register(c, now),
            (Auth::Auto | Auth::Token, Some(token)) => {
                self.conns[c].state = State::Resuming;
                self.conns[c].auth_sent_ns = now;
                let username = self.accounts.name(self.accounts.account_of(account)).to_string();
                let request = match self.accounts.device(account) {
                    Some(device) => Request::ResumeDevice { username, token, device },
                    None => Request::Resume { username, token },
                };
                self.control(c, request);
            }
            (Auth::Token, None) => self.fail(c, Fault::Unexpected("no cached token"), h),
        }
    }

    fn login(&mut self, c: usize, now: u64) {
        let account = self.conns[c].account;
        self.conns[c].state = State::LoggingIn;
        self.conns[c].auth_sent_ns = now;
        let (username, password) = self.name_and_password(account);
        let request = match self.accounts.device(account) {
            Some(device) => Request::LoginDevice { username, password, device },
            None => Request::Login { username, password },
        };
        self.control(c, request);
    }

    fn register(&mut self, c: usize, now: u64) {
        let account = self.conns[c].account;
        self.conns[c].state = State::Registering;
        self.conns[c].auth_sent_ns = now;
        let (username, password) = self.name_and_password(account);
        self.control(c, Request::Register { username, password });
    }

    /// The username and password of an identity's account.
    fn name_and_password(&self, identity: usize) -> (String, String) {
        let account = self.accounts.account_of(identity);
        (self.accounts.name(account).to_string(), self.accounts.password(account))
    }

    /// Acknowledges what arrived, with at most one ack in flight per conversation (the
    /// delivery window is per conversation): under load the acks coalesce by themselves,
    /// when idle every message is acked at once.
    pub(super) fn maybe_ack(&mut self, c: usize) {
        let conn = &mut self.conns[c];
        if conn.state != State::Ready {
            return;
        }
        if !conn.ack_in_flight && conn.next_seq - 1 > conn.ack_sent {
            let up_to = conn.next_seq - 1;
            conn.ack_sent = up_to;
            conn.ack_in_flight = true;
            self.ack(c, Conversation::Inbox, up_to);
        }
        for i in 0..self.conns[c].groups.len() {
            let group = &mut self.conns[c].groups[i];
            match group.position {
                Some(pos) if !group.ack_in_flight && pos > group.ack_sent => {
                    group.ack_sent = pos;
                    group.ack_in_flight = true;
                    let id = group.id;
                    self.ack(c, Conversation::Group(id), pos);
                }
                _ => {}
            }
        }
    }

    fn ack(&mut self, c: usize, conversation: Conversation, up_to: Seq) {
        let id = self.control(c, Request::Ack { conversation, up_to });
        self.conns[c].acks_out.push((id, conversation));
    }
}
