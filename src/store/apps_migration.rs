//! The one-time migration of a data directory written before apps into the app `default`.
//!
//! Why: the server is multi-tenant, and every user and service name it stores is
//! *qualified*, `app/name` (`/` is in no username, service name or app name), so that two
//! apps may each have a "bob". A data directory of an earlier version holds bare names, all
//! of which belong to the app a client gets when it names none: `default`.
//!
//! What: at open, after the commit log's replay (whose records hold bare names too) and
//! before anything reads a name, when `meta` has no [`APPS_FORMAT_KEY`], every stored name
//! without a `/` gets the prefix `default/`:
//! - keys: `accounts` and `services` (names), `push_gateways` (service names),
//!   `memberships` (`username ++ 0x00 ++ group id`), `group_acks` (`group id ++ username`);
//! - values: the members of `groups`; in `inbox` and `group_log` messages (not floors) the
//!   sender, the member left out (`except`) and every name in a group event; the chats of
//!   `push_prefs` mutes; in `push_queue` events the recipient, the sender and the chat.
//!
//! Display texts stay as they are: display names, group names, and the names a push event
//! shows (`chat_name`, `sender_name`: for a service, its bare name). Ids, sequences,
//! floors, contents and times are not touched.
//!
//! Then a checkpoint makes the rewrite durable, and only then is [`APPS_FORMAT_KEY`] written
//! (and checkpointed): a crash at any point leaves the key absent, and the next open runs
//! the migration again. That is safe because every step is idempotent: a name that has a
//! `/` is left alone, and a key is moved with one atomic sled batch (insert the new key,
//! remove the old one), so an old and a new key of one name can only both exist with the
//! same value, and the rerun moves the old one onto the new again.
//!
//! It needs a checkpoint, so it refuses to run on a full disk, and in particular when the
//! commit log's replay could not checkpoint and kept its segments: those hold bare names,
//! and replaying them over a migrated store would bring bare names back. The open fails
//! with [`StoreError::NoRoom`] telling the operator to free space.
//!
//! O(data), once per data directory; one info line with the counts.

use super::{decode, encode, Addressee, Mute, PushPrefs, Store, StoreError, StoreResult, StoredMessage};
use crate::apps::{DEFAULT_APP, SEPARATOR};
use crate::protocol::{Chat, GroupEvent};
use log::{info, warn};

/// The key in `meta` whose presence says every stored name is qualified.
pub const APPS_FORMAT_KEY: &[u8] = b"apps_format";
/// Its value: the format of names, big-endian (1: qualified `app/name`).
pub const APPS_FORMAT: u64 = 1;

/// `name` in the app `default`, or None when it is qualified already (or is no name at
/// all: empty).
fn qualify_default(name: &str) -> Option<String> {
    if name.is_empty() || name.contains(SEPARATOR) {
        return None;
    }
    Some(format!("{DEFAULT_APP}{SEPARATOR}{name}"))
}

/// Qualifies `name` in place; returns whether it changed.
fn qualify(name: &mut String) -> bool {
    match qualify_default(name) {
        Some(qualified) => {
            *name = qualified;
            true
        }
        None => false,
    }
}

/// What the migration changed, for the log line and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    pub accounts: u64,
    pub services: u64,
    pub gateways: u64,
    pub memberships: u64,
    pub group_acks: u64,
    pub groups: u64,
    pub inbox_messages: u64,
    pub group_messages: u64,
    pub push_prefs: u64,
    pub push_events: u64,
}

/// Whether every stored name is qualified already.
pub fn is_migrated(store: &Store) -> StoreResult<bool> {
    Ok(store.meta.contains_key(APPS_FORMAT_KEY)?)
}

impl Store {
    /// The format of stored names: `Some(1)` once they are qualified (see
    /// [`APPS_FORMAT_KEY`]); None before the migration (for tests and verification).
    pub fn apps_format(&self) -> StoreResult<Option<u64>> {
        match self.meta.get(APPS_FORMAT_KEY)? {
            Some(raw) => Ok(Some(super::read_u64("meta", &raw)?)),
            None => Ok(None),
        }
    }
}

/// Migrates the store unless it is migrated already (see the module's doc); `log_kept`:
/// the commit log's replay kept its segments. Returns what changed (None: nothing to do).
pub fn migrate_if_needed(store: &Store, log_kept: bool) -> StoreResult<Option<Migrated>> {
    if is_migrated(store)? {
        return Ok(None);
    }
    if log_kept || !store.has_room_for_checkpoint() {
        return Err(StoreError::NoRoom(format!(
            "the data directory {} was written by an earlier version and must be migrated once (its user \
             and service names become names in the app \"{DEFAULT_APP}\"), which needs a checkpoint, and its \
             disk is too full for one{}. Free some space on that disk and start again; nothing was changed",
            store.dir.display(),
            if log_kept {
                " (the commit log of the last run could not be checkpointed either, and is kept)"
            } else {
                ""
            }
        )));
    }
    let migrated = migrate(store)?;
    store.checkpoint()?;
    store.meta.insert(APPS_FORMAT_KEY, &APPS_FORMAT.to_be_bytes())?;
    store.checkpoint()?;
    info!(
        "apps migration: names qualified as {DEFAULT_APP}/NAME: {} accounts, {} services, {} push gateways, \
         {} memberships, {} group positions, {} groups, {} inbox messages, {} group messages, {} push settings, \
         {} push events",
        migrated.accounts,
        migrated.services,
        migrated.gateways,
        migrated.memberships,
        migrated.group_acks,
        migrated.groups,
        migrated.inbox_messages,
        migrated.group_messages,
        migrated.push_prefs,
        migrated.push_events
    );
    Ok(Some(migrated))
}

/// The rewrite itself, without the checkpoints and the format key.
fn migrate(store: &Store) -> StoreResult<Migrated> {
    let name_key = |key: &[u8]| Some(qualify_default(std::str::from_utf8(key).ok()?)?.into_bytes());
    let mut migrated = Migrated {
        accounts: move_keys(&store.accounts, name_key)?,
        services: move_keys(&store.services, name_key)?,
        memberships: move_keys(&store.memberships, |key| {
            // `username ++ 0x00 ++ group id`.
            let split = key.iter().position(|b| *b == 0)?;
            let mut moved = qualify_default(std::str::from_utf8(&key[..split]).ok()?)?.into_bytes();
            moved.extend_from_slice(&key[split..]);
            Some(moved)
        })?,
        group_acks: move_keys(&store.group_acks, |key| {
            // `group id ++ username`.
            let (group, name) = (key.get(..8)?, key.get(8..)?);
            let mut moved = group.to_vec();
            moved.extend_from_slice(qualify_default(std::str::from_utf8(name).ok()?)?.as_bytes());
            Some(moved)
        })?,
        ..Migrated::default()
    };
    for service in store.push_gateway_names()? {
        if let Some(qualified) = qualify_default(&service) {
            // Allow the new name before dropping the old: a crash between leaves both.
            store.set_push_gateway(&qualified, true)?;
            store.set_push_gateway(&service, false)?;
            migrated.gateways += 1;
        }
    }
    for entry in store.groups.iter() {
        let (key, raw) = entry?;
        let Ok(mut record) = decode::<super::GroupRecord>("groups", &raw) else {
            warn!("apps migration: group record {key:?} does not decode; left as it is");
            continue;
        };
        if record.members.iter_mut().fold(false, |changed, m| qualify(&mut m.username) | changed) {
            store.groups.insert(key, encode(&record))?;
            migrated.groups += 1;
        }
    }
    migrated.inbox_messages = store.inbox.rewrite_messages(qualify_message)?;
    migrated.group_messages = store.group_log.rewrite_messages(qualify_message)?;
    for (uid, mut prefs) in store.all_push_prefs()? {
        if qualify_prefs(&mut prefs) {
            store.put_push_prefs(uid, &prefs)?;
            migrated.push_prefs += 1;
        }
    }
    for (seq, mut event) in store.push_queue()?.events {
        let message = &mut event.message;
        if qualify(&mut event.recipient) | qualify_chat(&mut message.chat) | qualify(&mut message.sender) {
            store.put_push_event(seq, &event)?;
            migrated.push_events += 1;
        }
    }
    Ok(migrated)
}

/// Moves every key `rename` gives a new name to, with its value; returns how many moved.
/// Each move is one sled batch, so a key is never lost between its old and new place.
fn move_keys(tree: &sled::Tree, rename: impl Fn(&[u8]) -> Option<Vec<u8>>) -> StoreResult<u64> {
    // Collected first, so that no key is moved under the iterator that found it.
    let mut moves = Vec::new();
    for entry in tree.iter() {
        let (key, value) = entry?;
        if let Some(moved) = rename(&key) {
            moves.push((key, moved, value));
        }
    }
    for (old, new, value) in &moves {
        let mut batch = sled::Batch::default();
        batch.insert(new.as_slice(), value.clone());
        batch.remove(old.clone());
        tree.apply_batch(batch)?;
    }
    Ok(moves.len() as u64)
}

/// The names a stored message holds; returns whether any changed.
fn qualify_message(message: &mut StoredMessage) -> bool {
    // `|`, not `||`: every name is qualified, not just the first that changes.
    qualify(&mut message.from)
        | match &mut message.addressee {
            Addressee::AllBut(name) | Addressee::CopyTo(name) => qualify(name),
            Addressee::Readers => false,
        }
        | message.event.as_mut().is_some_and(qualify_event)
}

/// Every name in a group event. No wildcard arm: a new variant with a name must be
/// considered here.
fn qualify_event(event: &mut GroupEvent) -> bool {
    match event {
        GroupEvent::Created { by } | GroupEvent::Deleted { by } | GroupEvent::Renamed { by, name: _ } => qualify(by),
        // Deletions came after apps: a pre-apps directory has none.
        GroupEvent::MessageDeleted { by, message_id: _ } => qualify(by),
        GroupEvent::Joined { username } | GroupEvent::Left { username } => qualify(username),
        GroupEvent::Added { username, by }
        | GroupEvent::Removed { username, by }
        | GroupEvent::RoleChanged { username, by, role: _ } => qualify(username) | qualify(by),
    }
}

fn qualify_chat(chat: &mut Chat) -> bool {
    match chat {
        Chat::User(name) | Chat::Service(name) => qualify(name),
        // Support conversations came after apps: a pre-apps directory has none.
        Chat::Group(_) | Chat::Support(_) => false,
    }
}

fn qualify_prefs(prefs: &mut PushPrefs) -> bool {
    prefs.mutes.iter_mut().fold(false, |changed, Mute { chat, .. }| qualify_chat(chat) | changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Content, GroupId, MessageId, PushPlatform, Role, SenderKind, Seq, UserId};
    use crate::store::{
        Account, GroupRecord, LogState, MemberRecord, PushDevice, PushMessage, PushRecord, ServiceRecord,
    };

    #[test]
    fn qualify_default_prefixes_bare_names_only() {
        assert_eq!(qualify_default("bob").as_deref(), Some("default/bob"));
        assert_eq!(qualify_default("a.b-c_1").as_deref(), Some("default/a.b-c_1"));
        assert_eq!(qualify_default("default/bob"), None, "qualified already");
        assert_eq!(qualify_default("shop/bob"), None, "another app's name is left alone");
        assert_eq!(qualify_default(""), None, "not a name");
        let mut name = "relay".to_string();
        assert!(qualify(&mut name));
        assert_eq!(name, "default/relay");
        assert!(!qualify(&mut name), "twice is once");
        assert_eq!(name, "default/relay");
    }

    const GROUP: GroupId = GroupId(50);
    const ALICE: UserId = UserId(1);
    const BOB: UserId = UserId(2);
    const CAROL: UserId = UserId(3);
    const RELAY: UserId = UserId(4);

    fn account(uid: UserId, display_name: &str) -> Account {
        Account {
            user_id: uid,
            display_name: display_name.into(),
            password_hash: "h".into(),
            admin: false,
            created_ms: 7,
        }
    }

    fn message(from: &str, text: &str, event: Option<GroupEvent>, except: Option<&str>) -> StoredMessage {
        StoredMessage {
            message_id: MessageId(100),
            from: from.into(),
            sender: SenderKind::User,
            timestamp_ms: 9,
            content: Content::text(text),
            event,
            addressee: except.map_or(Addressee::Readers, |name| Addressee::AllBut(name.into())),
        }
    }

    fn added(username: &str, by: &str) -> Option<GroupEvent> {
        Some(GroupEvent::Added { username: username.into(), by: by.into() })
    }

    fn group(names: [&str; 3]) -> GroupRecord {
        let member =
            |(username, uid, role): (&str, UserId, Role)| MemberRecord { username: username.into(), uid, role };
        GroupRecord {
            name: "Book club".into(),
            open: false,
            created_ms: 3,
            members: [(names[0], ALICE, Role::Owner), (names[1], BOB, Role::Admin), (names[2], CAROL, Role::Member)]
                .map(member)
                .to_vec(),
        }
    }

    /// Group 51, bob's alone.
    fn solo(bob: &str) -> GroupRecord {
        let members = vec![MemberRecord { username: bob.into(), uid: BOB, role: Role::Owner }];
        GroupRecord { name: "Solo".into(), open: true, created_ms: 4, members }
    }

    fn prefs(bob: &str, relay: &str) -> PushPrefs {
        let device = PushDevice {
            device: "phone".into(),
            platform: PushPlatform::Apns,
            token: "t".into(),
            previews: true,
            registered_ms: 1,
        };
        let mutes = vec![
            Mute { chat: Chat::User(bob.into()), until_ms: 0 },
            Mute { chat: Chat::Service(relay.into()), until_ms: 5 },
            Mute { chat: Chat::Group(GROUP), until_ms: 0 },
        ];
        PushPrefs { devices: vec![device], mutes }
    }

    fn push_event(carol: &str, alice: &str) -> PushRecord {
        let message = PushMessage {
            chat: Chat::User(alice.into()),
            chat_name: "Alice A".into(),
            sender: alice.into(),
            sender_name: "Alice A".into(),
            ..PushMessage::example()
        };
        PushRecord { recipient: carol.into(), recipient_uid: CAROL, message, count: 2, unread: 2 }
    }

    /// The group's history: a floor of 1 (its first message acknowledged by all) and
    /// messages 2 to 5.
    fn history(q: impl Fn(&str) -> String) -> Vec<(Seq, StoredMessage)> {
        vec![
            (Seq(2), message(&q("alice"), "", added(&q("bob"), &q("alice")), None)),
            (
                Seq(3),
                message(
                    &q("alice"),
                    "",
                    Some(GroupEvent::RoleChanged { username: q("bob"), role: Role::Admin, by: q("alice") }),
                    None,
                ),
            ),
            (Seq(4), message(&q("bob"), "hello", None, None)),
            (Seq(5), message(&q("relay"), "all but bob", None, Some(&q("bob")))),
        ]
    }

    fn inbox(q: impl Fn(&str) -> String) -> Vec<(Seq, StoredMessage)> {
        vec![
            (Seq(1), message(&q("alice"), "hi carol", None, None)),
            (Seq(2), message(&q("bob"), "bring it", None, None)),
        ]
    }

    /// Writes what an earlier version would have stored, through the store's own API,
    /// and takes the format key away again (a fresh store is migrated when it opens).
    fn old_store(dir: &std::path::Path) -> Store {
        let store = Store::open(dir).unwrap();
        let bare = |name: &str| name.to_string();
        for (name, uid, display) in [("alice", ALICE, "Alice A"), ("bob", BOB, "Bob B"), ("carol", CAROL, "Carol C")] {
            assert!(store.create_account(name, &account(uid, display)).unwrap());
            store.add_membership(name, GROUP).unwrap();
            store.put_group_ack(GROUP, name, Seq(1)).unwrap();
        }
        store.add_membership("bob", GroupId(51)).unwrap();
        store.put_group(GroupId(51), &solo("bob")).unwrap();
        store.put_service("relay", &ServiceRecord { uid: RELAY, token_digest: [7; 32], created_ms: 2 }).unwrap();
        store.set_push_gateway("relay", true).unwrap();
        store.put_group(GROUP, &group(["alice", "bob", "carol"])).unwrap();
        // A floor, and a message below it not yet collected: neither is a name's.
        store.group_log.append(GROUP.into(), Seq(1), &message("alice", "acked by all", None, None)).unwrap();
        store.group_log.raise_floor(GROUP.into(), Seq(1)).unwrap();
        for (seq, m) in history(bare) {
            store.group_log.append(GROUP.into(), seq, &m).unwrap();
        }
        for (seq, m) in inbox(bare) {
            store.inbox.append(CAROL.into(), seq, &m).unwrap();
        }
        store.put_push_prefs(CAROL, &prefs("bob", "relay")).unwrap();
        assert!(store.put_push_event(1, &push_event("carol", "alice")).unwrap());
        assert!(store.put_push_event(2, &push_event("carol", "alice")).unwrap());
        assert!(store.raise_push_floor(1).unwrap());
        store.meta.remove(APPS_FORMAT_KEY).unwrap();
        store.checkpoint().unwrap();
        store
    }

    fn keys(tree: &sled::Tree) -> Vec<Vec<u8>> {
        tree.iter().keys().map(|k| k.unwrap().to_vec()).collect()
    }

    fn member_key(name: &str, group: u64) -> Vec<u8> {
        [name.as_bytes(), &[0], &group.to_be_bytes()].concat()
    }

    fn ack_key(name: &str) -> Vec<u8> {
        [&GROUP.get().to_be_bytes(), name.as_bytes()].concat()
    }

    /// Everything a migrated [`old_store`] holds, exactly.
    fn assert_migrated(store: &Store) {
        let q = |name: &str| format!("default/{name}");
        assert!(is_migrated(store).unwrap());
        assert_eq!(store.apps_format().unwrap(), Some(APPS_FORMAT));
        assert_eq!(store.usernames().unwrap(), ["default/alice", "default/bob", "default/carol"]);
        assert_eq!(store.account("default/bob").unwrap(), Some(account(BOB, "Bob B")), "the record is as it was");
        assert_eq!(store.account("bob").unwrap(), None);
        assert_eq!(store.service_names().unwrap(), ["default/relay"]);
        assert_eq!(store.service("default/relay").unwrap().unwrap().token_digest, [7; 32]);
        assert!(store.is_push_gateway("default/relay").unwrap());
        assert!(!store.is_push_gateway("relay").unwrap());
        assert_eq!(store.push_gateway_names().unwrap(), ["default/relay"]);
        let mut memberships: Vec<_> = ["alice", "bob", "carol"].map(|n| member_key(&q(n), GROUP.get())).to_vec();
        memberships.insert(2, member_key("default/bob", 51));
        assert_eq!(keys(&store.memberships), memberships);
        assert_eq!(store.memberships("default/bob").unwrap(), [GROUP, GroupId(51)]);
        assert_eq!(keys(&store.group_acks), ["alice", "bob", "carol"].map(|n| ack_key(&q(n))));
        assert_eq!(store.group_ack(GROUP, "default/carol").unwrap(), Seq(1), "positions are as they were");
        assert_eq!(store.group(GROUP).unwrap(), Some(group(["default/alice", "default/bob", "default/carol"])));
        assert_eq!(store.group(GroupId(51)).unwrap(), Some(solo("default/bob")));
        // Messages: names qualified, everything else as it was; floors and garbage too.
        assert_eq!(store.group_log.read(GROUP.into(), Seq::ZERO, 10).unwrap(), history(q));
        assert_eq!(store.group_log.state(GROUP.into()).unwrap(), LogState { floor: Seq(1), last_seq: Seq(5) });
        assert_eq!(store.inbox.read(CAROL.into(), Seq::ZERO, 10).unwrap(), inbox(q));
        assert_eq!(store.inbox.state(CAROL.into()).unwrap(), LogState { floor: Seq::ZERO, last_seq: Seq(2) });
        assert_eq!(store.push_prefs(CAROL).unwrap(), Some(prefs("default/bob", "default/relay")));
        let queue = store.push_queue().unwrap();
        assert_eq!((queue.floor, queue.last_seq, queue.damaged), (1, 2, 0));
        assert_eq!(queue.events, [(2, push_event("default/carol", "default/alice"))]);
        assert!(store.verify().unwrap().problems.is_empty(), "{:?}", store.verify().unwrap().problems);
    }

    #[test]
    fn every_name_moves_into_the_default_app_and_nothing_else_changes() {
        let dir = tempfile::tempdir().unwrap();
        let store = old_store(dir.path());
        assert!(!is_migrated(&store).unwrap());
        let migrated = migrate_if_needed(&store, false).unwrap().expect("migrated");
        assert_eq!(
            migrated,
            Migrated {
                accounts: 3,
                services: 1,
                gateways: 1,
                memberships: 4,
                group_acks: 3,
                groups: 2,
                inbox_messages: 2,
                // With the garbage message below the floor (never read, rewritten anyway).
                group_messages: 5,
                push_prefs: 1,
                push_events: 1,
            }
        );
        assert_migrated(&store);
        assert_eq!(migrate_if_needed(&store, false).unwrap(), None, "once");
        // Run again regardless of the key: nothing is qualified twice, nothing changes.
        assert_eq!(migrate(&store).unwrap(), Migrated::default());
        assert_migrated(&store);
    }

    #[test]
    fn the_store_migrates_at_open_and_once() {
        let dir = tempfile::tempdir().unwrap();
        drop(old_store(dir.path()));
        let store = Store::open(dir.path()).unwrap();
        assert_migrated(&store);
        let serial = store.checkpoints.lock().unwrap().serial;
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_migrated(&store);
        assert_eq!(store.checkpoints.lock().unwrap().serial, serial, "a second open wrote nothing");
    }

    #[test]
    fn a_crash_half_way_is_finished_by_the_next_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = old_store(dir.path());
        // As a crash could leave it: bob's account copied to its new key but not yet
        // removed from the old, carol's moved, one message rewritten.
        let bob = store.accounts.get("bob").unwrap().unwrap();
        store.accounts.insert("default/bob", bob).unwrap();
        let carol = store.accounts.remove("carol").unwrap().unwrap();
        store.accounts.insert("default/carol", carol).unwrap();
        let mut first = history(|n: &str| n.to_string()).remove(0).1;
        assert!(qualify_message(&mut first));
        store.group_log.append(GROUP.into(), Seq(2), &first).unwrap();
        migrate_if_needed(&store, false).unwrap();
        assert_migrated(&store);
    }

    #[test]
    fn a_kept_commit_log_refuses_the_migration_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = old_store(dir.path());
        let refused = migrate_if_needed(&store, true).unwrap_err();
        assert!(matches!(refused, StoreError::NoRoom(_)), "{refused:?}");
        assert!(refused.to_string().contains("Free some space"), "{refused}");
        assert!(!is_migrated(&store).unwrap());
        assert_eq!(store.usernames().unwrap(), ["alice", "bob", "carol"]);
        assert_eq!(store.inbox.read(CAROL.into(), Seq::ZERO, 10).unwrap(), inbox(|n: &str| n.to_string()));
    }
}
