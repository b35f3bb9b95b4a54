//! Which sessions are sent what: frames only clients that name a device decode (sent copies
//! and deletions, `StoredMessage::device_only`; `Push::HistoryCleared`) go to sessions of
//! named devices only, never to a session that names none (an older client, which would
//! fail to decode them). Used by every delivery path (live pushes, backlogs) and by
//! history's pushes, so the rule is in one place.

use super::context::Ctx;
use super::cursor::{Cursor, Session};
use crate::protocol::Seq;
use crate::route::{ConnId, SessionUser};

/// Whether `session` may be sent a message that only clients naming a device decode
/// (`device_only`). Sessions name no device yet, so every session is a legacy one and is
/// never sent them; history pages, which only newer clients ask for, show them.
pub fn sent_to(_session: &Session, device_only: bool) -> bool {
    !device_only
}

/// Whether the cursor's session (if online) is not to be sent a message (see [`sent_to`]).
pub fn withheld(cursor: &Cursor, device_only: bool) -> bool {
    cursor.session.as_ref().is_some_and(|session| !sent_to(session, device_only))
}

/// A message the cursor's session is not sent: counted as sent when it is next in line,
/// so the stream goes on after it (a member's own group messages are passed over alike).
pub fn pass_over(cursor: &mut Cursor, seq: Seq) {
    if let Some(session) = cursor.session.as_mut() {
        if session.sent_upto.next() == seq {
            session.sent_upto = seq;
        }
    }
}

/// The user's connections but `except` that are told of changes to the user's own view of
/// history (`Push::HistoryCleared`, a frame of named devices): the user's other sessions.
/// Today a user has one session at most, so there is never another to tell.
pub fn others_of(ctx: &Ctx, user: &SessionUser, except: ConnId) -> Vec<ConnId> {
    ctx.shared.directory.conns_of(&user.name).into_iter().filter(|conn| *conn != except).collect()
}
