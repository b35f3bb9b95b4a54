//! A feed without a server: the events it is given, in order, then a stop; and every ack
//! and every drop of a dead token, in the order they came. Plus push events to feed it.
//!
//! It never hands over a delivery's end itself: at the end of the script it says stop (or
//! that the connection is lost), and the loop then waits for the deliveries under way on
//! its own, as after a real stop (but without one, so the events already taken are still
//! POSTed).

use confab_proto::protocol::{Chat, MediaKind, MessageId, PushEvent, PushPlatform, PushTarget, SenderKind};
use confab_pushgw::feed::{Feed, FeedError, Next};
use confab_pushgw::pool::Finished;
use confab_pushgw::stop::Stop;
use crossbeam_channel::Receiver;
use std::collections::VecDeque;
use std::time::Instant;

pub struct ScriptedFeed {
    events: VecDeque<PushEvent>,
    /// The end of the script: a stop (None), or the connection lost for this reason.
    lost: Option<String>,
    pub acks: Vec<(u64, Instant)>,
    /// Acks (`Sent::Ack`) and drops, in the order the loop handed them over.
    pub sent: Vec<Sent>,
}

/// What the loop handed the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    Ack(u64),
    Drop { username: String, token: String },
}

impl Sent {
    pub fn drop(username: &str, token: &str) -> Sent {
        Sent::Drop { username: username.into(), token: token.into() }
    }
}

impl ScriptedFeed {
    pub fn new(events: Vec<PushEvent>) -> Self {
        ScriptedFeed { events: events.into(), lost: None, acks: Vec::new(), sent: Vec::new() }
    }

    /// After its events the connection is lost, and every ack fails from then on.
    pub fn losing_the_connection(events: Vec<PushEvent>, reason: &str) -> Self {
        ScriptedFeed { events: events.into(), lost: Some(reason.to_string()), acks: Vec::new(), sent: Vec::new() }
    }

    pub fn acked_seqs(&self) -> Vec<u64> {
        self.acks.iter().map(|(seq, _)| *seq).collect()
    }
}

impl Feed for ScriptedFeed {
    fn next_event(&mut self, stop: &Stop, _finished: &Receiver<Finished>) -> Result<Next, FeedError> {
        if stop.is_stopped() {
            return Ok(Next::Stopped);
        }
        // The end of the script is where a real gateway would wait; the tests end there.
        match (self.events.pop_front(), &self.lost) {
            (Some(event), _) => Ok(Next::Event(event)),
            (None, None) => Ok(Next::Stopped),
            (None, Some(reason)) => Err(FeedError(reason.clone())),
        }
    }

    fn ack(&mut self, seq: u64) -> Result<(), FeedError> {
        self.check_connection()?;
        self.acks.push((seq, Instant::now()));
        self.sent.push(Sent::Ack(seq));
        Ok(())
    }

    fn drop_token(&mut self, username: &str, token: &str) -> Result<(), FeedError> {
        self.check_connection()?;
        self.sent.push(Sent::drop(username, token));
        Ok(())
    }
}

impl ScriptedFeed {
    /// Once the connection is lost, nothing can be sent.
    fn check_connection(&self) -> Result<(), FeedError> {
        match (self.events.is_empty(), &self.lost) {
            (true, Some(reason)) => Err(FeedError(reason.clone())),
            _ => Ok(()),
        }
    }
}

/// A direct message from alice to bob, whose phone shows previews and laptop does not.
pub fn direct_event(seq: u64, text: &str) -> PushEvent {
    PushEvent {
        seq,
        recipient: "bob".into(),
        devices: vec![
            PushTarget {
                device: "phone".into(),
                platform: PushPlatform::Apns,
                token: "apns-token".into(),
                preview: Some(text.into()),
            },
            PushTarget { device: "laptop".into(), platform: PushPlatform::WebPush, token: "wp".into(), preview: None },
        ],
        chat: Chat::User("alice".into()),
        chat_name: "Alice".into(),
        sender: "alice".into(),
        sender_name: "Alice".into(),
        sender_kind: SenderKind::User,
        message_id: MessageId(100 + seq),
        kind: MediaKind::Text,
        count: 1,
        unread: seq,
        timestamp_ms: 1_700_000_000_000 + seq,
    }
}
