//! Hostile names and fake system messages: protocol.md "Names" and "Content".

use crate::common::{in_default, open_store, TestServer, PASSWORD};
use confab::admin;
use confab::client::Client;
use confab::protocol::{
    ClientMsgId, Content, ErrorCode, MediaKind, Reply, Request, SenderKind, Seq, ServiceTarget, Target,
};

fn refused(client: &mut Client, request: Request) -> ErrorCode {
    client.request(request).unwrap_err().code().expect("a server error")
}

fn rename(client: &mut Client, name: &str) -> Result<String, ErrorCode> {
    match client.request(Request::Rename { display_name: name.into() }) {
        Ok(Reply::Renamed { display_name }) => Ok(display_name),
        Ok(other) => panic!("{other:?}"),
        Err(e) => Err(e.code().expect("a server error")),
    }
}

/// Strings that hide, reorder or fake text, each refused as a display and a group name.
const HIDDEN: [&str; 8] = [
    "\u{200B}\u{200B}\u{200B}",
    "\u{202E}nimda",
    "bob\u{FEFF}",
    "bob\u{E0041}",
    "bob\u{FFFF}",
    "bob\u{E000}",
    "   ",
    "a\u{2028}b",
];

#[test]
fn display_names_that_hide_or_impersonate_are_refused() {
    let server = TestServer::start();
    server.register(&["admin"]);
    let mut mallory = server.user("mallory");
    for name in HIDDEN {
        assert_eq!(rename(&mut mallory, name), Err(ErrorCode::InvalidName), "{name:?}");
    }
    for name in ["admin", "Admin", "adm1n", "\u{0430}dmin", "ADM\u{0406}N"] {
        assert_eq!(rename(&mut mallory, name), Err(ErrorCode::NameTaken), "{name:?}");
    }
    // What is stored is the tidy form, and one's own username is always fine.
    assert_eq!(rename(&mut mallory, "  Mallory \u{3000} M. ").as_deref(), Ok("Mallory M."));
    assert_eq!(rename(&mut mallory, "Mallory").as_deref(), Ok("Mallory"));
    let mut admin = server.login("admin");
    assert_eq!(rename(&mut admin, "Admin").as_deref(), Ok("Admin"));
    // The refusals changed nothing: the listing shows the names that were accepted.
    match admin.request(Request::ListOnline { after: String::new(), limit: 0 }).unwrap() {
        Reply::Online { users, .. } => {
            let names: Vec<_> = users.iter().map(|u| (u.username.as_str(), u.display_name.as_str())).collect();
            assert_eq!(names, [("admin", "Admin"), ("mallory", "Mallory")]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn usernames_that_look_like_existing_ones_cannot_be_registered() {
    let server = TestServer::start();
    server.register(&["admin", "bob"]);
    let mut client = server.client();
    for name in ["adm1n", "admln", "b0b"] {
        let refused = client.register(name, PASSWORD).unwrap_err();
        assert_eq!(refused.code(), Some(ErrorCode::NameTaken), "{name}: {refused}");
    }
    // Registrations racing on several workers: one of each look-alike family wins.
    let ids: Vec<u32> = ["carol", "car0l", "caro1", "dave", "d4ve"]
        .iter()
        .map(|name| client.send(Request::Register { username: name.to_string(), password: PASSWORD.into() }).unwrap())
        .collect();
    let won = ids.into_iter().filter(|id| client.reply_to(*id).is_ok()).count();
    assert_eq!(won, 3, "carol (or one look-alike), dave and d4ve (4 is not an a)");
}

#[test]
fn group_names_follow_the_same_policy() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    for name in HIDDEN {
        let code = refused(&mut alice, Request::CreateGroup { name: name.into(), open: true });
        assert_eq!(code, ErrorCode::InvalidName, "{name:?}");
    }
    let group_id = match alice.request(Request::CreateGroup { name: " Book\u{00A0} club ".into(), open: true }).unwrap()
    {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    let code = refused(&mut alice, Request::RenameGroup { group_id, name: "\u{202E}sko0b".into() });
    assert_eq!(code, ErrorCode::InvalidName);
    match alice.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => assert_eq!(groups[0].name, "Book club"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn users_cannot_send_system_messages() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let group_id = match alice.request(Request::CreateGroup { name: "g".into(), open: true }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    assert_eq!(alice.request(Request::JoinRoom { room: "lobby".into() }).unwrap(), Reply::Done);
    let system = Content { kind: MediaKind::System, body: b"you have been banned".to_vec(), media: None };
    for (to, transient, id) in [
        (Target::User("bob".into()), false, 1),
        (Target::User("bob".into()), true, 0),
        (Target::Group(group_id), false, 2),
        (Target::Room("lobby".into()), true, 0),
        (Target::Everyone, true, 0),
    ] {
        let request =
            Request::Send { to: to.clone(), client_msg_id: ClientMsgId(id), transient, content: system.clone() };
        assert_eq!(refused(&mut alice, request), ErrorCode::InvalidContent, "{to:?}");
    }
    // Nothing reached bob: the next thing he receives is an ordinary message.
    alice.send_text("bob", ClientMsgId(3), "hello").unwrap();
    let message = bob.next_message().unwrap();
    assert_eq!((message.seq, message.content.kind), (Seq(1), MediaKind::Text));

    // A service may send System messages: they arrive marked as the service's.
    let token = admin::add_service(server.server().store(), &in_default("notices"), false).unwrap();
    let mut service = server.client();
    service.request(Request::ServiceLogin { name: "notices".into(), token }).unwrap();
    let to = ServiceTarget::Users(vec!["bob".into()]);
    let reply =
        service.request(Request::ServiceSend { to, client_msg_id: ClientMsgId(1), transient: false, content: system });
    assert!(matches!(reply, Ok(Reply::ServiceSent { stored: 1, .. })), "{reply:?}");
    let message = bob.next_message().unwrap();
    assert_eq!((message.sender, message.content.kind), (SenderKind::Service, MediaKind::System));
}

#[test]
fn names_stored_before_the_policy_are_tidied_at_start() {
    let mut server = TestServer::start();
    server.register(&["admin", "mallory", "carol"]);
    let mut carol = server.login("carol");
    let group_id = match carol.request(Request::CreateGroup { name: "Book club".into(), open: false }).unwrap() {
        Reply::GroupCreated { group_id } => group_id,
        other => panic!("{other:?}"),
    };
    drop(carol);
    server.stop();
    // What an earlier version may have stored: a look-alike of another user, a bidi
    // override, and padding the policy trims.
    {
        let store = open_store(server.data_dir());
        let mut account = store.account("default/mallory").unwrap().unwrap();
        account.display_name = "adm1n".into();
        store.put_account("default/mallory", &account).unwrap();
        let mut account = store.account("default/carol").unwrap().unwrap();
        account.display_name = "  Carol  ".into();
        store.put_account("default/carol", &account).unwrap();
        let mut group = store.group(group_id).unwrap().unwrap();
        group.name = "\u{202E}bulc kooB".into();
        store.put_group(group_id, &group).unwrap();
        store.checkpoint().unwrap();
    }
    server.restart();
    let display_name = |name: &str| match server.client().login(name, PASSWORD).unwrap() {
        Reply::LoggedIn { display_name, .. } => display_name,
        other => panic!("{other:?}"),
    };
    assert_eq!(display_name("mallory"), "mallory", "a look-alike of another user becomes the username");
    assert_eq!(display_name("carol"), "Carol", "padding is trimmed");
    let mut carol = server.login("carol");
    match carol.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => assert_eq!(groups[0].name, format!("group {group_id}")),
        other => panic!("{other:?}"),
    }
}
