//! What workers and the hashing threads send a worker on its internal queue, and what
//! those commands carry. What the event loop sends comes on the inbound queue instead
//! ([`crate::route::Inbound`]).

use super::push::notes::PushNote;
use super::seats::Seat;
use crate::protocol::{Content, ErrorCode, GroupId, MessageId, Request, Seq, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::StoredMessage;

/// A service send's pieces travel between nodes too, so they are the bus's types.
pub use crate::cluster::wire::{Outgoing, Part, Tally};
use std::net::IpAddr;
use std::sync::Arc;

pub enum WorkerCmd {
    /// A password hash or check finished.
    Hashed(HashOutcome),
    /// The user logged out on the connection (told by the user's worker): forget what is
    /// held for it here, as for a closed connection.
    LoggedOut { conn: ConnId, user: SessionUser },
    /// A member of a group this worker owns is online on `device` at `conn` (sent by the
    /// member's worker after login): deliver what that device has not acknowledged.
    MemberOnline { group_id: GroupId, username: Arc<str>, device: Arc<str>, conn: ConnId },
    /// Create a group whose id the creator's worker allocated.
    /// The creator's seat is given back once the membership is written (or not).
    CreateGroup { group: NewGroup, seat: Seat },
    /// Part of a service's send: store and push to these users of this worker (all its
    /// online users when `users` is None), then report to the coordinating worker.
    ServiceDeliver { part: Part, users: Option<Vec<String>>, message: Outgoing },
    /// A service's send to a group this worker owns.
    ServiceGroup { part: Part, group_id: GroupId, except: Option<String>, message: Outgoing },
    /// One part of a service's send is done (and durable).
    Gathered { gather: u64, outcome: Result<Tally, (ErrorCode, String)> },
    /// Another cluster node split its part of a service send into `extra` more parts.
    MoreParts { gather: u64, extra: usize },
    /// Room was freed in the delivery budget of the session on `conn` (every waiting
    /// session when None): push what waits for it.
    Pump { conn: Option<ConnId> },
    /// Stored messages met readers who are not connected (to the push queue's worker).
    PushNotes(Vec<PushNote>),
    /// A group message of another cluster node met these offline users of this node (to
    /// the push queue's worker, which makes their notes).
    RemoteNotes { message: crate::store::PushMessage, readers: Vec<(String, UserId, u64)> },
    /// The user logged in (to the push queue's worker): its badge counts start again.
    PushOnline { uid: UserId },
    /// A push event's coalescing window closed: feed the gateway.
    PushDue,
    /// Time to forget devices not seen for `--device-expiry` (the worker's own tick).
    ExpireDevices,
    /// A customer or staff member of the shop this worker owns is online at `conn` (sent
    /// by the user's worker after login): deliver what its active cursors are owed.
    SupportOnline { shop: String, username: Arc<str>, device: Arc<str>, conn: ConnId },
    /// A direct message of `sender`'s is stored in its recipient's inbox (sent by the
    /// recipient's worker after its commit): store its sent copy in the sender's inbox.
    /// `device` on `conn` sent it.
    SentCopy { sender: Arc<str>, device: Arc<str>, conn: ConnId, stored: StoredMessage },
    /// The user's device is forgotten (removed or expired; sent by the user's worker to
    /// every worker): drop its cursors in the groups and support conversations held here.
    ForgetDevice { username: Arc<str>, device: Arc<str> },
    /// A request about a support conversation known by id, handed on by the worker that
    /// looked up the conversation's shop to the shop's worker (this one).
    Forward { conn: ConnId, peer: IpAddr, user: SessionUser, request_id: u32, request: Request },
    /// `reader` (with receipts on) marked its direct chat with `sender` read up to `up_to`
    /// (sent by the reader's worker to the sender's, after the mark's commit): keep it as
    /// the sender's latest receipt from `reader`, and push it to the sender's connections.
    ReadReceipt { sender: Arc<str>, sender_uid: UserId, reader: Arc<str>, up_to: Seq },
    /// Time to settle another share of the loaded logs (see `History::pass`).
    RetentionPass,
    /// `DeleteMessage` of a direct message `user` sent `peer`, handed on by the user's worker
    /// (which found nothing against it) to the worker of `peer`, whose inbox holds it.
    DeleteDirect { conn: ConnId, request_id: u32, user: SessionUser, peer: String, message_id: MessageId },
    /// `sender` deleted its direct message `message_id` to `peer` (told by the recipient's
    /// worker once the deletion is stored there): erase the sender's copy and tell the
    /// sender's other devices, in its own inbox.
    SenderDeleted { sender: Arc<str>, peer: String, message_id: MessageId },
    /// A broadcast made on another cluster node: push it to this node's online users of
    /// the sender's app.
    Broadcast { from: String, content: Content },
    /// From the worker of a group homed on another cluster node, to the worker of a user of
    /// this one it is about to make a member: check the account and the user's seats,
    /// record the membership, and answer with `Admitted` (see `remote_members`).
    Admit { group_id: GroupId, username: Arc<str>, admission: u64 },
    /// The answer to an `Admit`, for the worker of the group: the user's id and display
    /// name, or why it may not be a member.
    Admitted {
        group_id: GroupId,
        username: Arc<str>,
        admission: u64,
        outcome: Result<(UserId, String), (ErrorCode, String)>,
    },
    /// From the worker of a group homed on another cluster node: the user (of this node)
    /// is not, or no longer, a member; its membership record here goes.
    MembershipEnded { group_id: GroupId, username: Arc<str> },
    /// A user of another cluster node came online or went offline: its co-members in
    /// `groups` (homed here) hear of it.
    GroupPresence { username: String, online: bool, groups: Vec<GroupId> },
    /// A user's home did not answer an admission in time (the worker's own timer): its
    /// client is told `Unavailable`.
    AdmissionsDue,
    /// A service send with parts on other nodes ran out of patience (see `Gathers::expire`).
    GathersDue,
    /// Cluster node `node` (every other node when None) may have lost the sessions of this
    /// node's users that it held (it restarted, or the bus was down): tell it again which
    /// are online in its groups.
    Reannounce { node: Option<u8> },
    /// Cluster node `node` is down (seen by the bus): its connections are gone, so what is
    /// held here for them (room places, presence subscriptions, connection watches) goes.
    NodeDown { node: u8 },
    /// Finish the queues, commit, and exit (shutdown).
    Stop,
}

/// Results coming back from the hashing threads.
pub enum HashOutcome {
    Registered {
        conn: ConnId,
        request_id: u32,
        username: String,
        phc: Option<String>,
    },
    /// `device` is None for a `Login`, the device's id for a `LoginDevice`.
    LoginChecked {
        conn: ConnId,
        peer: IpAddr,
        request_id: u32,
        username: String,
        device: Option<String>,
        ok: bool,
    },
}

/// A group to create, as the creator's worker hands it to the worker that owns its id.
pub struct NewGroup {
    pub conn: ConnId,
    pub request_id: u32,
    pub creator: SessionUser,
    pub id: GroupId,
    pub name: String,
    pub open: bool,
}
