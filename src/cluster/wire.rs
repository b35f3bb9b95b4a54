//! What nodes send each other over the bus, postcard-encoded like everything else confab
//! writes. Every node of a cluster runs the same version (docs/CLUSTER.md, "Upgrading").
//!
//! Subjects, under the cluster's name `C`:
//! - `C.node.N.in`: [`Envelope`]s for node N, in order (one subject, so what one node
//!   sends another arrives in the order it was sent);
//! - `C.node.N.reply.T`: the answer to node N's forwarded request number T (one frame, the
//!   bytes the client gets), or NATS's "no responders" status when nobody listens on the
//!   `in` subject it went to.
//!
//! Heartbeats ([`Envelope::Beat`]) travel on the `in` subjects too, so a node's first
//! envelope of a run, at every other node, is its beat.
//!
//! A node subscribes `C.node.N.>` once, so its envelopes and its answers come on one
//! stream, in the order they were sent.

use crate::protocol::{
    AppFigures, ClientMsgId, Content, ErrorCode, GroupId, GroupInfo, MessageId, Request, Seq, ServerStats, UserId,
};
use crate::route::{ConnId, Owner, SessionUser};
use crate::store::{PushMessage, StoredMessage};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Something one node sends another.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum Envelope {
    /// A client's request for an owner on the receiving node; `display_name` is the
    /// sender's, which the receiving node cannot read from an account it does not hold.
    Request {
        /// The owner's [`Owner::key`]: the receiving node picks its worker from it.
        key: u64,
        conn: ConnId,
        peer: IpAddr,
        user: Option<SessionUser>,
        display_name: Option<String>,
        request_id: u32,
        request: Request,
    },
    /// Frames for connections the receiving node holds, in order.
    Frames(Vec<(ConnId, Vec<u8>)>),
    /// A worker's command for an owner on the receiving node.
    Cmd(RemoteCmd),
    /// The session of a connection held by the sending node ended: forget what is held
    /// for it (subscriptions, waits).
    Closed { conn: ConnId, user: SessionUser },
    /// A page of what the receiving node has, for a listing gathered from every node;
    /// answered with an encoded [`Page`].
    Query(Query),
    /// The sending node's heartbeat, with its run (random at each start).
    Beat { node: u8, run: u64 },
}

/// A listing that spans the cluster: each node has its own part (the users homed on it
/// who are online, the rooms homed on it).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Online users (app-qualified names) after `after`, at most `limit`.
    Online { after: String, limit: u32 },
    /// Rooms (app-qualified names) after `after`, at most `limit`.
    Rooms { after: String, limit: u32 },
    /// Which of these users (app-qualified names) are online (a service's `QueryOnline`).
    Status { users: Vec<String> },
    /// The statistics of `app` (the server's own for the app `default`).
    Stats { app: String },
    /// What `user` is told of its groups `ids` (`ListGroups`): each node answers for the
    /// groups homed on it (their records are there).
    Groups { user: SessionUser, ids: Vec<GroupId> },
}

impl Query {
    /// The listing a request asks for, when it is one gathered from every node, within
    /// the largest pages of each listing.
    pub fn of(request: &Request, max_online: u32, max_rooms: u32, max_names: usize) -> Option<Query> {
        let page = |limit: u32, max: u32| if limit == 0 { 100.min(max) } else { limit.min(max) };
        match request {
            Request::ListOnline { after, limit } => {
                Some(Query::Online { after: after.clone(), limit: page(*limit, max_online) })
            }
            Request::ListRooms { after, limit } => {
                Some(Query::Rooms { after: after.clone(), limit: page(*limit, max_rooms) })
            }
            Request::QueryOnline { users } if users.len() <= max_names => Some(Query::Status { users: users.clone() }),
            _ => None,
        }
    }

    pub fn limit(&self) -> u32 {
        match self {
            Query::Online { limit, .. } | Query::Rooms { limit, .. } => *limit,
            Query::Status { users } => users.len() as u32,
            Query::Stats { .. } => u32::MAX,
            Query::Groups { ids, .. } => ids.len() as u32,
        }
    }
}

/// One node's part of a listing: (name, detail) in name order (a display name for users,
/// a member count for rooms), and whether it had more.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    pub entries: Vec<(String, Entry)>,
    pub more: bool,
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    DisplayName(String),
    Members(u32),
    /// The user is online here.
    Online,
    /// This node's statistics (the app `default`'s: the server's own).
    Stats(Box<ServerStats>),
    /// This node's figures of one app.
    AppStats(AppFigures),
    /// One of the caller's groups homed on this node.
    Group(GroupInfo),
}

/// The cluster's page: the first `limit` of every node's page together, in name order;
/// `more` when some node had more or some were left out.
pub fn merge(pages: Vec<Page>, limit: u32) -> Page {
    let mut more = pages.iter().any(|p| p.more);
    let mut entries: Vec<(String, Entry)> = pages.into_iter().flat_map(|p| p.entries).collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    entries.dedup_by(|a, b| a.0 == b.0);
    if entries.len() > limit as usize {
        entries.truncate(limit as usize);
        more = true;
    }
    Page { entries, more }
}

/// The worker commands that cross nodes: each follows from a direct message, a read mark
/// or a deletion between users homed apart, from a broadcast, or from a group whose members
/// are homed on other nodes than the group (see `worker::commands::WorkerCmd` for what each
/// does).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub enum RemoteCmd {
    SentCopy {
        sender: String,
        device: String,
        conn: ConnId,
        stored: StoredMessage,
    },
    /// The sender's user id is read from its account on its home.
    ReadReceipt {
        sender: String,
        reader: String,
        up_to: Seq,
    },
    DeleteDirect {
        conn: ConnId,
        request_id: u32,
        user: SessionUser,
        peer: String,
        message_id: MessageId,
    },
    SenderDeleted {
        sender: String,
        peer: String,
        message_id: MessageId,
    },
    /// A broadcast made on another node, for this node's online users of the sender's app.
    Broadcast {
        from: String,
        content: Content,
    },
    /// A part of a service send coordinated on another node: to these users homed here
    /// (every online user of the service's app here when None).
    ServiceDeliver {
        part: Part,
        users: Option<Vec<String>>,
        message: Outgoing,
    },
    /// A part of a service send: to a group homed here.
    ServiceGroup {
        part: Part,
        group_id: GroupId,
        except: Option<String>,
        message: Outgoing,
    },
    /// A part of a service send coordinated here is done (by worker `coordinator`).
    Gathered {
        coordinator: usize,
        gather: u64,
        outcome: Result<Tally, (ErrorCode, String)>,
    },
    /// A node split its part of a service send coordinated here into `extra` more.
    MoreParts {
        coordinator: usize,
        gather: u64,
        extra: usize,
    },
    /// A service connected to another node watches connections of `app` here too.
    Watch {
        conn: ConnId,
        app: String,
    },
    /// To the group's home, from the member's: the member is online on `device` at `conn`
    /// (a connection of the sending node, which keeps the session). `display_name` is the
    /// member's, which the group's node cannot read from an account it does not hold.
    MemberOnline {
        group_id: GroupId,
        username: String,
        device: String,
        conn: ConnId,
        display_name: String,
    },
    /// To the home of a user the group's home is about to make a member (added or
    /// joining): check that the account exists and that the user has a seat left, and
    /// record the membership there; the answer is [`RemoteCmd::Admitted`], with the same
    /// `admission` (the group's node's number for this attempt).
    Admit {
        group_id: GroupId,
        username: String,
        admission: u64,
    },
    /// To the group's home, the answer to [`RemoteCmd::Admit`]: the user's id and display
    /// name (the membership is recorded at its home), or why not.
    Admitted {
        group_id: GroupId,
        username: String,
        admission: u64,
        outcome: Result<(UserId, String), (ErrorCode, String)>,
    },
    /// To a member's home, from the group's: the user is not (or no longer) a member of
    /// the group: its membership there goes.
    MembershipEnded {
        group_id: GroupId,
        username: String,
    },
    /// To a node, from a user's home: the user came online or went offline; its co-members
    /// in `groups` (homed on the receiving node) hear of it.
    GroupPresence {
        username: String,
        online: bool,
        groups: Vec<GroupId>,
    },
    /// A group message stored for these offline members homed on the receiving node
    /// (name, user id, unread count): their home makes their push notes.
    PushNotes {
        message: PushMessage,
        readers: Vec<(String, UserId, u64)>,
    },
    /// The user (homed on the sending node) forgot this device: the groups here drop its
    /// positions.
    ForgetDevice {
        username: String,
        device: String,
    },
}

impl RemoteCmd {
    /// The user whose worker carries it out.
    pub fn owner(&self) -> Owner<'_> {
        match self {
            RemoteCmd::SentCopy { sender, .. } | RemoteCmd::ReadReceipt { sender, .. } => Owner::User(sender),
            RemoteCmd::DeleteDirect { peer, .. } => Owner::User(peer),
            RemoteCmd::SenderDeleted { sender, .. } => Owner::User(sender),
            RemoteCmd::Broadcast { from, .. } => Owner::User(from),
            // Taken apart by the receiving node (see `worker::mailbox`).
            RemoteCmd::ServiceDeliver { part, .. } => Owner::Service(&part.service.name),
            RemoteCmd::ServiceGroup { group_id, .. } => Owner::Group(*group_id),
            RemoteCmd::Gathered { .. } | RemoteCmd::MoreParts { .. } | RemoteCmd::Watch { .. } => Owner::PushQueue,
            RemoteCmd::MemberOnline { group_id, .. } | RemoteCmd::Admitted { group_id, .. } => Owner::Group(*group_id),
            RemoteCmd::PushNotes { .. } => Owner::PushQueue,
            // Every worker here hears it (see `worker::mailbox`).
            RemoteCmd::ForgetDevice { username, .. } => Owner::User(username),
            RemoteCmd::Admit { username, .. }
            | RemoteCmd::MembershipEnded { username, .. }
            | RemoteCmd::GroupPresence { username, .. } => Owner::User(username),
        }
    }
}

/// A service's message as it travels between workers (and nodes).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outgoing {
    /// [`ClientMsgId::NONE`] for a transient send.
    pub client_msg_id: ClientMsgId,
    /// Live only: pushed to connected recipients, stored nowhere.
    pub transient: bool,
    pub content: Content,
}

/// Which send a part belongs to, and where its tally goes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Part {
    /// The cluster node of the coordinating worker (0 outside a cluster).
    pub node: u8,
    /// The worker that coordinates the send.
    pub coordinator: usize,
    pub gather: u64,
    pub service: SessionUser,
}

/// What one part of a service send did.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Tally {
    pub stored: u32,
    pub delivered: u32,
    pub unknown: Vec<String>,
}

pub fn encode(envelope: &Envelope) -> Vec<u8> {
    postcard::to_stdvec(envelope).unwrap_or_default()
}

pub fn decode(bytes: &[u8]) -> Result<Envelope, postcard::Error> {
    postcard::from_bytes(bytes)
}

/// The request id an encoded server frame (length prefix included) answers, or `None`
/// for a push (or bytes that are no frame). The id is the first field after the variant
/// index of `Reply` (0) and `Error` (1); reading it needs no full decode.
pub fn answers(frame: &[u8]) -> Option<u32> {
    let body = frame.get(4..)?;
    let (&variant, rest) = body.split_first()?;
    match variant {
        0 | 1 => postcard::take_from_bytes::<u32>(rest).ok().map(|(id, _)| id),
        _ => None,
    }
}

/// Splits encoded frames (each with its 4-byte big-endian length prefix) apart.
pub fn split_frames(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut frames = Vec::new();
    while bytes.len() >= 4 {
        let len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let end = (4 + len).min(bytes.len());
        frames.push(&bytes[..end]);
        bytes = &bytes[end..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame;
    use crate::protocol::{ErrorCode, Push, Reply, ServerFrame, UserId};

    #[test]
    fn a_frame_says_which_request_it_answers() {
        let reply = frame::encode(&ServerFrame::Reply { request_id: 300, reply: Reply::Pong });
        let error = frame::encode(&ServerFrame::error(7, ErrorCode::UnknownUser, "no"));
        let push = frame::encode(&ServerFrame::Push(Push::Transient {
            from: "a".into(),
            content: crate::protocol::Content::text("hi"),
        }));
        assert_eq!(answers(&reply), Some(300));
        assert_eq!(answers(&error), Some(7));
        assert_eq!(answers(&push), None);
        assert_eq!(answers(&[0, 0]), None);
        let mut all = reply.clone();
        all.extend_from_slice(&push);
        all.extend_from_slice(&error);
        assert_eq!(split_frames(&all), vec![&reply[..], &push[..], &error[..]]);
    }

    #[test]
    fn pages_merge_in_name_order_up_to_the_limit() {
        let page = |names: &[&str], more| Page {
            entries: names.iter().map(|n| (n.to_string(), Entry::Members(1))).collect(),
            more,
        };
        let merged = merge(vec![page(&["a", "d"], false), page(&["b", "c"], false), page(&[], false)], 3);
        assert_eq!(merged, page(&["a", "b", "c"], true), "one left out");
        let merged = merge(vec![page(&["a"], true), page(&["b"], false)], 3);
        assert_eq!(merged, page(&["a", "b"], true), "a node had more");
        assert_eq!(merge(vec![page(&["a"], false)], 3), page(&["a"], false));
        let request = Request::ListOnline { after: "default/".into(), limit: 0 };
        assert_eq!(Query::of(&request, 500, 500, 10), Some(Query::Online { after: "default/".into(), limit: 100 }));
        assert_eq!(Query::of(&Request::Ping, 500, 500, 10), None);
        let many = Request::QueryOnline { users: vec!["a".into(); 11] };
        assert_eq!(Query::of(&many, 500, 500, 10), None, "more names than a query may hold");
    }

    #[test]
    fn an_envelope_round_trips() {
        let user = SessionUser {
            name: "alice".into(),
            uid: UserId(257),
            admin: false,
            service: false,
            device: "laptop".into(),
        };
        let envelope = Envelope::Request {
            key: 42,
            conn: ConnId::on_node(1, 9, 4),
            peer: IpAddr::from([127, 0, 0, 1]),
            user: Some(user),
            display_name: Some("Alice".into()),
            request_id: 5,
            request: Request::Ping,
        };
        let back = decode(&encode(&envelope)).expect("decodes");
        assert!(matches!(back, Envelope::Request { request_id: 5, conn, .. } if conn == ConnId::on_node(1, 9, 4)));
        assert!(decode(&[0xff, 0xff]).is_err());
    }
}
