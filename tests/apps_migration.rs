//! A data directory written before apps (tests/fixtures/v0-datadir.tar.gz, made by
//! tests/fixtures/make-v0-datadir.sh with confabd at 35cde68) is moved into the app
//! `default` when it is opened: every stored name is qualified, nothing else changes, and a
//! second open changes nothing. Then the old users, the service and the data work as before
//! for clients that name no app (the old `Hello`).
//!
//! The same again with tests/fixtures/v0-datadir-killed.tar.gz, the same scenario ended
//! with SIGKILL (`KILL=1` to the script): its last writes are in the old commit log only,
//! so the open replays the old log and then migrates what it wrote.

use crate::common::daemon::spawn_daemon;
use crate::common::DataDir;
use confab::client::Client;
use confab::protocol::{
    Chat, Content, Conversation, GroupEvent, GroupId, Message, Push, PushPlatform, Reply, Request, Role, SenderKind,
    Seq, UserId,
};
use confab::store::{Addressee, MemberRecord, Mute, Store, StoredMessage};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A fixture, and the relay token make-v0-datadir.sh printed when it made it.
struct Fixture {
    archive: &'static str,
    relay_token: &'static str,
}

/// Ended with SIGTERM: everything in sled.
const CLEAN: Fixture = Fixture {
    archive: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0-datadir.tar.gz"),
    relay_token: "52e1169aa8267b223121c7140c3dd15a6c4393846fc4cc38b4dbe6945427e13a",
};

/// Ended with SIGKILL right after the last receipt: the last writes in the commit log only.
const KILLED: Fixture = Fixture {
    archive: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0-datadir-killed.tar.gz"),
    relay_token: "16a4f4f81e1d3f6cc2052f1d4b1726cf09b2febce47eb252c1f96059c86d096f",
};
/// (username, password, display name, user id, administrator)
const USERS: [(&str, &str, &str, UserId, bool); 3] = [
    ("alice", "alice-password-v0", "Alice Admin", UserId(1), true),
    ("bob", "bob-password-v0", "Bob Builder", UserId(2000001), false),
    ("carol", "carol-password-v0", "Carol Singer", UserId(4000001), false),
];
const CAROL: UserId = USERS[2].3;
const GROUP: GroupId = GroupId(8000001);

/// The fixture extracted into a new temporary data directory.
fn v0_data_dir(fixture: &Fixture) -> DataDir {
    let archive = fixture.archive;
    assert!(
        Path::new(archive).is_file(),
        "the fixture {archive} is missing (tests/fixtures/make-v0-datadir.sh makes it)"
    );
    let dir = DataDir::new();
    let parent = dir.path().parent().expect("a data directory inside the temporary one");
    // The archive holds `data/`, the name DataDir gives its directory.
    let output = Command::new("tar")
        .arg("-xzf")
        .arg(archive)
        .arg("-C")
        .arg(parent)
        .output()
        .unwrap_or_else(|e| panic!("cannot run tar to extract {archive}: {e}"));
    assert!(output.status.success(), "tar -xzf {archive} failed: {}", String::from_utf8_lossy(&output.stderr));
    assert!(dir.path().join("db").is_file(), "{archive} holds no data/db");
    dir
}

fn text(body: &str) -> Content {
    Content::text(body)
}

/// (from, sender kind, event, text, addressee) of a stored message.
type Stored = (String, SenderKind, Option<GroupEvent>, Content, Addressee);

fn stored(m: &StoredMessage) -> Stored {
    (m.from.clone(), m.sender, m.event.clone(), m.content.clone(), m.addressee.clone())
}

fn system() -> Content {
    Content { kind: confab::protocol::MediaKind::System, body: Vec::new(), media: None }
}

/// The group's whole history as the fixture holds it, with names as `q` makes them.
fn group_history(q: impl Fn(&str) -> String) -> Vec<Stored> {
    let event = |from: &str, event: GroupEvent| (q(from), SenderKind::User, Some(event), system(), Addressee::Readers);
    let said = |from: &str, kind, body: &str, to: Addressee| (q(from), kind, None, text(body), to);
    vec![
        event("alice", GroupEvent::Created { by: q("alice") }),
        event("alice", GroupEvent::Added { username: q("bob"), by: q("alice") }),
        event("alice", GroupEvent::Added { username: q("carol"), by: q("alice") }),
        event("alice", GroupEvent::RoleChanged { username: q("bob"), role: Role::Admin, by: q("alice") }),
        said("alice", SenderKind::User, "welcome to the book club", Addressee::Readers),
        said("bob", SenderKind::User, "first book: Dune", Addressee::Readers),
        said("relay", SenderKind::Service, "meeting on friday (not for bob)", Addressee::AllBut(q("bob"))),
    ]
}

/// carol's inbox as the fixture holds it.
fn carol_inbox(q: impl Fn(&str) -> String) -> Vec<Stored> {
    let said = |from: &str, kind, body: &str| (q(from), kind, None, text(body), Addressee::Readers);
    vec![
        said("relay", SenderKind::Service, "your order has shipped"),
        said("alice", SenderKind::User, "hi carol"),
        said("alice", SenderKind::User, "are you coming on friday?"),
        said("bob", SenderKind::User, "bring the book"),
    ]
}

fn qualified(name: &str) -> String {
    format!("default/{name}")
}

/// Everything the store holds, through its own reading API, as one comparable text.
fn everything(store: &Store) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for name in store.usernames().unwrap() {
        line(format!("account {name} {:?}", store.account(&name).unwrap()));
        line(format!("memberships {name} {:?}", store.memberships(&name).unwrap()));
    }
    for name in store.service_names().unwrap() {
        line(format!("service {name} {:?} {:?}", store.service(&name).unwrap(), store.is_push_gateway(&name)));
    }
    for (id, group) in store.groups().unwrap() {
        line(format!("group {id} {group:?}"));
        for member in &group.members {
            line(format!("ack {} {:?}", member.username, store.group_ack(id, &member.username).unwrap()));
        }
        line(format!(
            "history {:?} {:?}",
            store.group_log.state(id.into()),
            store.group_log.read(id.into(), Seq::ZERO, 100)
        ));
    }
    for (_, _, _, uid, _) in USERS {
        line(format!(
            "inbox {uid} {:?} {:?}",
            store.inbox.state(uid.into()),
            store.inbox.read(uid.into(), Seq::ZERO, 100)
        ));
    }
    line(format!("push {:?} {:?}", store.all_push_prefs(), store.push_queue()));
    line(format!("apps format {:?}", store.apps_format()));
    out
}

#[test]
fn a_v0_data_directory_is_migrated_into_the_default_app_once() {
    migrates_once(&CLEAN);
}

#[test]
fn a_v0_data_directory_left_by_a_crash_replays_its_old_log_then_migrates_once() {
    let dir = v0_data_dir(&KILLED);
    // Its segments hold records past their headers (a segment is preallocated with zeroes):
    // writes sled did not have when the daemon died.
    let mut written = 0;
    for entry in std::fs::read_dir(dir.path().join("commitlog")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        written += bytes.iter().rposition(|b| *b != 0).map_or(0, |last| last + 1);
    }
    assert!(written > 512, "the killed fixture keeps a commit log with records ({written} bytes)");
    migrates_once(&KILLED);
}

fn migrates_once(fixture: &Fixture) {
    let dir = v0_data_dir(fixture);
    let store = Store::open(dir.path()).expect("the v0 directory opens and migrates");
    assert_eq!(store.apps_format().unwrap(), Some(1));

    // Accounts: new keys, records as they were.
    assert_eq!(store.usernames().unwrap(), USERS.map(|u| qualified(u.0)));
    for (name, _, display, uid, admin) in USERS {
        let account = store.account(&qualified(name)).unwrap().expect("the account under its qualified name");
        assert_eq!((account.user_id, account.display_name.as_str(), account.admin), (uid, display, admin));
        assert!(account.password_hash.starts_with("$argon2id$"), "the password hash is kept");
        assert_eq!(store.account(name).unwrap(), None, "no account under the bare name");
        assert_eq!(store.memberships(&qualified(name)).unwrap(), [GROUP]);
        assert_eq!(store.memberships(name).unwrap(), []);
    }
    // The service and its push permission.
    assert_eq!(store.service_names().unwrap(), ["default/relay"]);
    assert!(store.service("default/relay").unwrap().is_some());
    assert!(store.is_push_gateway("default/relay").unwrap());
    assert!(!store.is_push_gateway("relay").unwrap());

    // The group: members and roles, positions, the history in order.
    let groups = store.groups().unwrap();
    assert_eq!(groups.len(), 1);
    let (id, group) = &groups[0];
    assert_eq!((*id, group.name.as_str(), group.open), (GROUP, "Book club", false));
    let member = |name: &str, uid, role| MemberRecord { username: qualified(name), uid, role };
    assert_eq!(
        group.members,
        [
            member("alice", USERS[0].3, Role::Owner),
            member("bob", USERS[1].3, Role::Admin),
            member("carol", CAROL, Role::Member)
        ]
    );
    // Nobody acknowledged anything: each member's position is where it joined.
    let acks: Vec<Seq> = USERS.iter().map(|u| store.group_ack(GROUP, &qualified(u.0)).unwrap()).collect();
    assert_eq!(acks, [Seq(0), Seq(1), Seq(2)]);
    let history = store.group_log.read(GROUP.into(), Seq::ZERO, 100).unwrap();
    assert_eq!(history.iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), (1..=7).collect::<Vec<_>>());
    assert_eq!(history.iter().map(|(_, m)| stored(m)).collect::<Vec<_>>(), group_history(qualified));

    // carol's inbox, in order, unacknowledged.
    assert_eq!(store.inbox.state(CAROL.into()).unwrap().floor, Seq::ZERO);
    let inbox = store.inbox.read(CAROL.into(), Seq::ZERO, 100).unwrap();
    assert_eq!(inbox.iter().map(|(s, _)| s.get()).collect::<Vec<_>>(), [1, 2, 3, 4]);
    assert_eq!(inbox.iter().map(|(_, m)| stored(m)).collect::<Vec<_>>(), carol_inbox(qualified));

    // carol's push device and mutes, and the event queued for her.
    let prefs = store.push_prefs(CAROL).unwrap().expect("carol's push settings");
    assert_eq!(prefs.devices.len(), 1);
    assert_eq!(
        (prefs.devices[0].device.as_str(), prefs.devices[0].token.as_str()),
        ("carol-phone", "apns-token-carol")
    );
    assert_eq!(
        prefs.mutes,
        [
            Mute { chat: Chat::User(qualified("bob")), until_ms: 0 },
            Mute { chat: Chat::Service(qualified("relay")), until_ms: 0 }
        ]
    );
    let queue = store.push_queue().unwrap();
    assert_eq!((queue.floor, queue.damaged, queue.events.len()), (0, 0, 1), "{queue:?}");
    let (_, event) = &queue.events[0];
    assert_eq!((event.recipient.as_str(), event.recipient_uid), ("default/carol", CAROL));
    assert_eq!(event.message.chat, Chat::User(qualified("alice")));
    assert_eq!(event.message.sender, "default/alice");
    // Display texts are not names: as they were.
    assert_eq!((event.message.chat_name.as_str(), event.message.sender_name.as_str()), ("Alice Admin", "Alice Admin"));

    let report = store.verify().unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!((report.accounts, report.groups, report.messages, report.push_events), (3, 1, 11, 1));

    // A second open changes nothing: the same data, and no checkpoint (the marker's
    // serial would have risen).
    let before = everything(&store);
    drop(store);
    let marker = std::fs::read(dir.path().join("checkpoint")).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(everything(&store), before);
    drop(store);
    assert_eq!(std::fs::read(dir.path().join("checkpoint")).unwrap(), marker, "the second open wrote no checkpoint");
}

/// The next message pushed to `client`, skipping presence and other notices.
fn next_message(client: &mut Client) -> Message {
    loop {
        match client.next_push().expect("a push") {
            Push::Message(message) => return message,
            Push::Presence { .. } | Push::Connection { .. } => continue,
            other => panic!("expected a stored message, got {other:?}"),
        }
    }
}

/// Wire view of a pushed message: names as a client of the app `default` sees them (bare,
/// its own app's), the sender's display name now.
fn received(m: &Message) -> (Stored, String) {
    ((m.from.clone(), m.sender, m.event.clone(), m.content.clone(), Addressee::Readers), m.display_name.clone())
}

/// Needs the server's side of apps (fails with the migration alone: the server looks up
/// the bare names the migration moved).
#[test]
fn the_old_users_service_and_data_work_after_the_migration() {
    old_users_service_and_data_work(&CLEAN);
}

#[test]
fn the_old_users_service_and_data_work_after_a_crash_and_the_migration() {
    old_users_service_and_data_work(&KILLED);
}

fn old_users_service_and_data_work(fixture: &Fixture) {
    let dir = v0_data_dir(fixture);
    let daemon = spawn_daemon(dir.path(), &["--push-window-ms", "100"]);
    let connect = || Client::connect(daemon.addr, "v0 client").expect("connect with the old Hello").0;
    let bare = |name: &str| name.to_string();

    // The service logs in with its old token and, as the push gateway, gets carol's
    // queued event with her device.
    let mut relay = connect();
    let login = relay.request(Request::ServiceLogin { name: "relay".into(), token: fixture.relay_token.into() });
    assert_eq!(login.expect("the old token works"), Reply::ServiceLoggedIn { name: "relay".into() });
    assert_eq!(relay.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { acked: 0, last_seq: 1 });
    let event = loop {
        match relay.next_push().expect("the queued push event") {
            Push::PushEvent(event) => break event,
            Push::Connection { .. } => continue,
            other => panic!("expected the push event, got {other:?}"),
        }
    };
    assert_eq!((event.seq, event.recipient.as_str()), (1, "carol"));
    assert_eq!((event.chat, event.sender.as_str()), (Chat::User("alice".into()), "alice"));
    assert_eq!(event.devices.len(), 1);
    assert_eq!(
        (event.devices[0].device.as_str(), event.devices[0].token.as_str()),
        ("carol-phone", "apns-token-carol")
    );

    // Every old user logs in with the old password, and is who they were.
    for (name, password, display, uid, admin) in USERS {
        let mut client = connect();
        match client.login(name, password).unwrap_or_else(|e| panic!("{name} logs in with the old password: {e}")) {
            Reply::LoggedIn { user_id, display_name, admin: is_admin, .. } => {
                assert_eq!((user_id, display_name.as_str(), is_admin), (uid, display, admin), "{name}");
            }
            other => panic!("{other:?}"),
        }
    }

    // carol gets her waiting direct messages and the group's, each in order.
    let mut carol = connect();
    match carol.login("carol", USERS[2].1).unwrap() {
        Reply::LoggedIn { acked, last_seq, .. } => assert_eq!((acked, last_seq), (Seq(0), Seq(4))),
        other => panic!("{other:?}"),
    }
    let (mut inbox, mut group) = (Vec::new(), Vec::new());
    carol.set_timeout(Duration::from_secs(10)).unwrap();
    while inbox.len() < 4 || group.len() < 5 {
        let m = next_message(&mut carol);
        match m.conversation {
            Conversation::Inbox => inbox.push((m.seq, received(&m))),
            Conversation::Group(id) => {
                assert_eq!(id, GROUP);
                group.push((m.seq, received(&m)));
            }
            Conversation::Support(id) => panic!("a pre-apps directory has no support conversation {id}"),
        }
    }
    let display = |from: &str| -> String {
        match from {
            "alice" => "Alice Admin".into(),
            "bob" => "Bob Builder".into(),
            service => service.into(), // a service's display name is its name
        }
    };
    let expected_inbox: Vec<_> =
        carol_inbox(bare).into_iter().zip(1..).map(|(m, seq)| (Seq(seq), (m.clone(), display(&m.0)))).collect();
    assert_eq!(inbox, expected_inbox);
    // Her history starts at the event that added her; a message's `except` is not shown.
    let expected_group: Vec<_> = group_history(bare)
        .into_iter()
        .zip(1..)
        .skip(2)
        .map(|((from, kind, event, content, _), seq)| {
            let shown = display(&from);
            (Seq(seq), ((from, kind, event, content, Addressee::Readers), shown))
        })
        .collect();
    assert_eq!(group, expected_group);

    // The group's members and roles.
    let members = match carol.request(Request::GroupMembers { group_id: GROUP }).unwrap() {
        Reply::Members { group_id, members } if group_id == GROUP => members,
        other => panic!("{other:?}"),
    };
    let members: Vec<_> = members.into_iter().map(|m| (m.username, m.role, m.display_name)).collect();
    assert_eq!(
        members,
        [
            ("alice".to_string(), Role::Owner, "Alice Admin".to_string()),
            ("bob".to_string(), Role::Admin, "Bob Builder".to_string()),
            ("carol".to_string(), Role::Member, "Carol Singer".to_string()),
        ]
    );

    // Her push settings: the device and the mutes, names as she gave them.
    match carol.request(Request::PushSettings).unwrap() {
        Reply::PushSettings { devices, mutes } => {
            let devices: Vec<_> = devices.into_iter().map(|d| (d.device, d.platform, d.previews)).collect();
            assert_eq!(devices, [("carol-phone".to_string(), PushPlatform::Apns, true)]);
            let mutes: Vec<_> = mutes.into_iter().map(|m| (m.chat, m.until_ms)).collect();
            assert_eq!(mutes, [(Chat::User("bob".into()), 0), (Chat::Service("relay".into()), 0)]);
        }
        other => panic!("{other:?}"),
    }
    daemon.stop();
}
