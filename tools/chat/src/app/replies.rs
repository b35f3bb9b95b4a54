//! Replies to our requests, matched with the request they answer, turned into [`Event`]s,
//! and the state they change: the session, cursors (our own group messages, resyncs), the
//! rooms we are in and the users we watch.

use super::failures::request_name;
use super::{changes_session, App};
use crate::chats::Own;
use crate::connection::{Origin, Pending};
use crate::render::{preview, Event, Output};
use confab_proto::client::may_redirect;
use confab_proto::protocol::{Chat, Conversation, GroupId, Reply, Request, Target};

impl<O: Output> App<O> {
    pub(super) fn reply(&mut self, pending: Pending, reply: Reply) {
        if self.barrier == Some(pending.id) {
            self.barrier = None;
        }
        if let Reply::Redirect { node, address } = reply {
            if may_redirect(&pending.request) {
                self.redirected(pending, node, address);
            } else {
                let what = request_name(&pending.request);
                let message = format!("a redirect to node {node} at {address} answered {what}");
                self.out.emit(Event::error("Protocol", message));
            }
            return;
        }
        if changes_session(&pending.request) {
            // The chain of redirects, if any, ended here.
            self.hops.clear();
        }
        let asked = pending.origin == Origin::User;
        let event = match (reply, pending.request) {
            (Reply::Registered { .. }, Request::Register { username, .. }) => Event::Registered { username },
            (
                Reply::DeviceLoggedIn {
                    display_name, device, acked, last_seq, resume_token, chats, read_receipts, ..
                },
                Request::LoginDevice { username, .. } | Request::ResumeDevice { username, .. },
            ) => {
                let reconnected = pending.origin == Origin::Auto;
                self.logged_in(&username, &device, resume_token, acked, last_seq, reconnected);
                self.out.emit(Event::LoggedIn { username, display_name, device, acked, last_seq, reconnected });
                self.read_state(chats, read_receipts, true);
                return;
            }
            (Reply::Sent { message_id, seq, duplicate, .. }, Request::Send { to, content, .. }) => {
                // Never pushed back to us: the receipt is where it sits in the conversation.
                let own = match &to {
                    Target::Group(id) => Some(Conversation::Group(*id)),
                    Target::Support(id) => Some(Conversation::Support(*id)),
                    _ => None,
                };
                if let Some(cursor) = own.and_then(|conversation| self.cursor(conversation)) {
                    cursor.own(seq);
                }
                let chat = match &to {
                    Target::User(name) => Some(Chat::User(name.clone())),
                    Target::Group(id) => Some(Chat::Group(*id)),
                    Target::Support(id) => Some(Chat::Support(*id)),
                    _ => None,
                };
                if let (Some(chat), Some(chats)) = (chat, self.chats_mut()) {
                    chats.sent_here(message_id);
                    // A direct message's receipt is a sequence of the recipient's inbox.
                    if !matches!(chat, Chat::User(_)) {
                        chats.own_seq(&chat, seq);
                    }
                    chats.own_message(&chat, Own { message_id, receipt_seq: Some(seq), preview: preview(&content) });
                }
                Event::Sent { to, seq, message_id, duplicate, content }
            }
            (Reply::TransientSent { delivered }, Request::Send { to: Target::User(to), .. }) => {
                Event::TransientSent { to, delivered }
            }
            (Reply::Delivered { recipients }, Request::Send { to, content, .. }) => {
                Event::Delivered { to, recipients, content }
            }
            (Reply::Acked { conversation, up_to }, _) => Event::Acked { conversation, up_to },
            (Reply::Resynced { conversation, after, last_seq }, _) => {
                if let Some(cursor) = self.cursor(conversation) {
                    cursor.resynced(after);
                }
                Event::Resynced { conversation, after, last_seq, asked }
            }
            (Reply::Renamed { display_name }, _) => Event::Renamed { display_name },
            (Reply::Online { users, more }, _) => Event::Online { users, more },
            (Reply::LoggedOut, _) | (Reply::Done, Request::LogoutEverywhere) => {
                self.logged_out();
                Event::LoggedOut
            }
            (Reply::Done, Request::MarkRead { chat, up_to }) => {
                self.marked_read(chat, up_to, asked);
                return;
            }
            (Reply::Done, Request::SetReadReceipts { enabled }) => {
                if let Some(chats) = self.chats_mut() {
                    chats.read_receipts = enabled;
                }
                Event::Done { request: Request::SetReadReceipts { enabled } }
            }
            (Reply::Done, Request::ClearHistory { chat, up_to }) => {
                if let Some(chats) = self.chats_mut() {
                    let view = chats.view(&chat);
                    view.cleared_up_to = view.cleared_up_to.max(up_to);
                }
                Event::Done { request: Request::ClearHistory { chat, up_to } }
            }
            (Reply::HistoryPage { chat, messages, more }, _) => {
                self.history_page(pending.id, chat, messages, more);
                return;
            }
            (Reply::ReadState { chats, read_receipts }, _) => {
                self.read_state(chats, read_receipts, false);
                return;
            }
            (Reply::ReadPositions { group_id, readers }, _) => Event::ReadPositions { group_id, readers },
            (Reply::Devices { devices }, _) => {
                self.out.emit(Event::DeviceCount { count: devices.len() });
                for device in devices {
                    self.out.emit(Event::Device(device));
                }
                return;
            }
            (Reply::GroupCreated { group_id }, Request::CreateGroup { name, open }) => {
                Event::GroupCreated { group_id, name, open }
            }
            // A mute's only answer is Done: the line says what now holds.
            (Reply::Done, Request::Mute { chat, until_ms }) => Event::Muted { chat, until_ms },
            (Reply::Done, request) => {
                self.carried_out(&request);
                Event::Done { request }
            }
            (Reply::Groups { groups }, _) => {
                self.out.emit(Event::GroupCount { count: groups.len() });
                for group in groups {
                    self.out.emit(Event::Group(group));
                }
                return;
            }
            (Reply::Members { group_id, members }, _) => Event::Members { group_id, members },
            (Reply::Rooms { rooms, more }, _) => Event::Rooms { rooms, more },
            (Reply::RoomMembers { room, members }, _) => Event::RoomMembers { room, members },
            (Reply::OpenGroups { groups, more }, _) => {
                let last = groups.last().map_or(GroupId(0), |g| g.group_id);
                self.out.emit(Event::OpenGroupCount { count: groups.len(), more, last });
                for group in groups {
                    self.out.emit(Event::OpenGroup(group));
                }
                return;
            }
            (Reply::Subscribed { username, online }, _) => {
                self.watching.insert(username.clone());
                Event::Watching { username, online }
            }
            (Reply::Stats(mut stats), _) => {
                let apps = std::mem::take(&mut stats.apps);
                self.out.emit(Event::Stats(stats));
                for app in apps {
                    self.out.emit(Event::AppStats(app));
                }
                return;
            }
            (Reply::AppStats(app), _) => Event::AppStats(app),
            (Reply::SupportList { conversations, more }, _) => {
                self.out.emit(Event::SupportCount { count: conversations.len(), more });
                for conversation in conversations {
                    self.out.emit(Event::Support(conversation));
                }
                return;
            }
            (Reply::PushSettings { devices, mutes }, _) => {
                self.out.emit(Event::PushSettings { devices: devices.len(), mutes: mutes.len() });
                for device in devices {
                    self.out.emit(Event::PushDevice(device));
                }
                for mute in mutes {
                    self.out.emit(Event::Muted { chat: mute.chat, until_ms: mute.until_ms });
                }
                return;
            }
            (reply, request) => {
                Event::error("Protocol", format!("unexpected reply to {}: {reply:?}", request_name(&request)))
            }
        };
        self.out.emit(event);
    }

    /// What a plain `Done` changes here.
    fn carried_out(&mut self, request: &Request) {
        match request {
            Request::JoinRoom { room } => {
                self.rooms.insert(room.clone());
            }
            Request::LeaveRoom { room } => {
                self.rooms.remove(room);
            }
            Request::UnsubscribePresence { username } => {
                self.watching.remove(username);
            }
            // Normally the Left or Deleted event already did this.
            Request::LeaveGroup { group_id } | Request::DeleteGroup { group_id } => {
                self.forget(Conversation::Group(*group_id))
            }
            _ => {}
        }
    }
}
