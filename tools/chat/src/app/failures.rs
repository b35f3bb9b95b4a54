//! Requests that failed or were never answered: what the user is told, and what the
//! client cleans up (tokens, sessions, cursors of groups gone, rooms and watches it could
//! not get back); also how requests and recipients are named in those messages.

use super::{changes_session, App};
use crate::connection::{Origin, Pending};
use crate::render::{Event, Output};
use confab_proto::protocol::{Chat, Conversation, ErrorCode, Request, Target};

impl<O: Output> App<O> {
    pub(super) fn unanswered(&mut self, pending: Pending, reconnecting: bool) {
        self.fetches.remove(&pending.id);
        let user = pending.origin == Origin::User;
        match pending.request {
            request @ Request::Send { transient: false, .. } if user && reconnecting && self.resume.is_some() => {
                self.unsent.push(request)
            }
            Request::Send { to, transient: false, .. } if user => self.out.emit(Event::error(
                "Disconnected",
                format!("no receipt for a message to {}; it may not have been stored", recipient(&to)),
            )),
            request if user => {
                self.out.emit(Event::error("Disconnected", format!("no reply to {}", request_name(&request))))
            }
            _ => {}
        }
    }

    pub(super) fn fail_unsent(&mut self) {
        for request in std::mem::take(&mut self.unsent) {
            if let Request::Send { to, .. } = request {
                self.out.emit(Event::error("Offline", format!("a message to {} was not sent", recipient(&to))));
            }
        }
    }

    pub(super) fn failed(&mut self, pending: Option<Pending>, code: ErrorCode, message: String) {
        if pending.as_ref().map(|p| p.id) == self.barrier {
            self.barrier = None;
        }
        if pending.as_ref().is_some_and(|p| changes_session(&p.request)) {
            // A chain of redirects, if any, ended here.
            self.hops.clear();
        }
        if let Some(Pending { request, origin: Origin::Auto, .. }) = &pending {
            if self.auto_refused(request, code) {
                return;
            }
        }
        let message = match (&pending, code) {
            // In a cluster, the node that holds what the request is about is down or out
            // of reach: nothing was done (a message was not stored), and the same command
            // may well work after the wait the message names.
            (Some(pending), ErrorCode::Unavailable) => {
                format!("{} not carried out, try again: {message}", request_name(&pending.request))
            }
            _ => message,
        };
        self.out.emit(Event::error(format!("{code:?}"), message));
        let Some(pending) = pending else {
            return;
        };
        self.fetches.remove(&pending.id);
        if let Request::ResumeDevice { username, .. } = pending.request {
            if code == ErrorCode::InvalidToken {
                if let Err(e) = self.tokens.forget_token(&username) {
                    self.out.emit(Event::error("TokenFile", e.to_string()));
                }
            }
            if pending.origin == Origin::Auto {
                // Cannot get the session back by ourselves; the user has to log in.
                self.resume = None;
                self.forget_live_state();
                self.fail_unsent();
            }
        }
    }

    /// Cleans up after the server refused a request the client made by itself; true if
    /// that needs no word to the user.
    fn auto_refused(&mut self, request: &Request, code: ErrorCode) -> bool {
        match request {
            // The group went away under an ack or resync (we were removed, or it was
            // deleted while the request was on its way): nothing left to keep up with.
            Request::Ack { conversation: conversation @ Conversation::Group(_), .. }
            | Request::Resync { conversation: conversation @ Conversation::Group(_), .. }
                if matches!(code, ErrorCode::NotAMember | ErrorCode::UnknownGroup) =>
            {
                self.forget(*conversation);
                return true;
            }
            // Another gap may ask again.
            Request::Resync { conversation, .. } => {
                if let Some(cursor) = self.cursor(*conversation) {
                    cursor.resync_failed();
                }
            }
            // Rejoining after a reconnect failed: stop trying.
            Request::JoinRoom { room } => {
                self.rooms.remove(room);
            }
            Request::SubscribePresence { username } => {
                self.watching.remove(username);
            }
            _ => {}
        }
        false
    }
}

/// The command that sends a request, for messages about it.
pub(super) fn request_name(request: &Request) -> &'static str {
    match request {
        Request::Hello { .. } => "hello",
        Request::Ping => "ping",
        Request::Register { .. } => "register",
        Request::Login { .. } | Request::LoginDevice { .. } => "login",
        Request::Send { to: Target::User(_), transient: false, .. } => "msg",
        Request::Send { to: Target::User(_), .. } => "typing",
        Request::Send { to: Target::Group(_), .. } => "say",
        Request::Send { to: Target::Room(_), .. } => "room",
        Request::Send { to: Target::Everyone, .. } => "broadcast",
        Request::Send { to: Target::Shop(_), .. } => "shop",
        Request::Send { to: Target::Support(_), .. } => "reply",
        Request::ListSupport { .. } => "support",
        Request::ClaimSupport { .. } => "claim",
        Request::HandOverSupport { .. } => "handover",
        Request::ReleaseSupport { .. } => "release",
        Request::Ack { .. } => "ack",
        Request::Resync { .. } => "resync",
        Request::Rename { .. } => "rename",
        Request::ListOnline { .. } => "who",
        Request::Logout => "logout",
        Request::Resume { .. } | Request::ResumeDevice { .. } => "resume",
        Request::LogoutEverywhere => "logout-all",
        Request::ListDevices => "devices",
        Request::RemoveDevice { .. } => "device-remove",
        Request::History { chat: Chat::Group(_), .. } => "group history",
        Request::History { .. } => "history",
        Request::DeleteMessage { chat: Chat::Group(_), .. } => "group delete-message",
        Request::DeleteMessage { .. } => "delete",
        Request::ClearHistory { chat: Chat::Group(_), .. } => "group clear",
        Request::ClearHistory { .. } => "clear",
        Request::MarkRead { chat: Chat::Group(_), .. } => "group mark-read",
        Request::MarkRead { .. } => "read",
        Request::ReadState => "unread",
        Request::SetReadReceipts { .. } => "receipts",
        Request::ReadPositions { .. } => "group read",
        Request::CreateGroup { .. } => "group create",
        Request::RenameGroup { .. } => "group rename",
        Request::AddMember { .. } => "group add",
        Request::RemoveMember { .. } => "group remove",
        Request::SetRole { .. } => "group role",
        Request::JoinGroup { .. } => "group join",
        Request::LeaveGroup { .. } => "group leave",
        Request::DeleteGroup { .. } => "group delete",
        Request::ListGroups => "groups",
        Request::GroupMembers { .. } => "members",
        Request::JoinRoom { .. } => "join",
        Request::LeaveRoom { .. } => "leave",
        Request::ListRooms { .. } => "rooms",
        Request::RoomMembers { .. } => "room-members",
        Request::SubscribePresence { .. } => "watch",
        Request::UnsubscribePresence { .. } => "unwatch",
        Request::Stats => "stats",
        Request::Mute { chat: Chat::Group(_), .. } => "group mute",
        Request::Mute { .. } => "mute",
        Request::Unmute { chat: Chat::Group(_) } => "group unmute",
        Request::Unmute { .. } => "unmute",
        Request::PushSettings => "push",
        // Requests this client never sends: the services' and the push gateway's, and
        // registering a device (an app on the device does that).
        _ => "request",
    }
}

/// Who a stored message was for, in words.
fn recipient(to: &Target) -> String {
    match to {
        Target::User(name) => name.clone(),
        Target::Group(id) => format!("group {id}"),
        Target::Room(room) => format!("room {room}"),
        Target::Everyone => "everyone".into(),
        Target::Shop(shop) => format!("shop {shop}"),
        Target::Support(id) => format!("support conversation {id}"),
    }
}
