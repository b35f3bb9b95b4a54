//! A damaged data directory, as an operator meets it: confabd must refuse to start on
//! damage it can detect, with an error that names the directory and says what to do, and
//! never start and serve less in silence; `confabd storage --verify` says what is wrong.

use crate::common::daemon::confabd;
use crate::common::{in_default, DataDir, PASSWORD};
use confab::client::Client;
use confab::protocol::{ClientMsgId, Content, GroupId, MessageId, SenderKind, Seq, UserId};
use confab::store::{Addressee, LogOwner, StoredMessage};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};

const MESSAGES: u64 = 60;

/// What starting confabd on `data` led to: it listens, or it exits with its log.
enum Start {
    Listening(Child, SocketAddr),
    Refused(String),
}

fn start(data: &Path) -> Start {
    let mut child = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(["--listen", "127.0.0.1:0", "--hash-memory-kib", "8", "--hash-iterations", "1", "--data-dir"])
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines().map_while(Result::ok) {
        if let Some(rest) = line.split("listening on ").nth(1) {
            let addr = rest.split_whitespace().next().unwrap().parse().unwrap();
            return Start::Listening(child, addr);
        }
        log.push(line);
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "a refusal exits non-zero");
    Start::Refused(log.join("\n"))
}

fn stop(mut child: Child) {
    let status = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success());
}

/// A data directory after a clean stop: alice and bob, and MESSAGES messages for bob.
fn written() -> DataDir {
    let data = DataDir::new();
    let Start::Listening(child, addr) = start(data.path()) else { panic!("a fresh directory starts") };
    let (mut alice, _) = Client::connect(addr, "alice").unwrap();
    alice.register("alice", PASSWORD).unwrap();
    alice.register("bob", PASSWORD).unwrap();
    alice.login("alice", PASSWORD).unwrap();
    for i in 1..=MESSAGES {
        alice.send_text("bob", ClientMsgId(i), &format!("message {i}")).unwrap();
    }
    stop(child);
    data
}

/// Either a refusal that says what to do, or a server that serves everything.
fn refused_or_whole(data: &Path, what: &str) -> bool {
    match start(data) {
        Start::Refused(log) => {
            assert!(log.contains(&data.display().to_string()), "{what}: the error names the directory:\n{log}");
            assert!(log.contains("restore"), "{what}: the error says what to do:\n{log}");
            println!("{what}: {}", log.lines().last().unwrap_or(""));
            true
        }
        Start::Listening(child, addr) => {
            let (mut bob, _) = Client::connect(addr, "bob").unwrap();
            bob.login("bob", PASSWORD).unwrap_or_else(|e| panic!("{what}: started, but bob cannot log in: {e}"));
            for i in 1..=MESSAGES {
                let m = bob.next_message().unwrap_or_else(|e| panic!("{what}: started, but message {i} is gone: {e}"));
                assert_eq!(String::from_utf8(m.content.body).unwrap(), format!("message {i}"), "{what}");
            }
            stop(child);
            false
        }
    }
}

#[test]
fn a_database_file_truncated_to_nothing_is_refused_not_started_empty() {
    let data = written();
    std::fs::OpenOptions::new().write(true).open(data.path().join("db")).unwrap().set_len(0).unwrap();
    match start(data.path()) {
        Start::Refused(log) => {
            assert!(log.contains("lost writes"), "{log}");
            assert!(log.contains("restore"), "{log}");
        }
        Start::Listening(child, _) => {
            stop(child);
            panic!("started on an emptied database");
        }
    }
}

#[test]
fn flipped_bytes_in_the_database_never_start_a_server_that_serves_less() {
    let data = written();
    let db = std::fs::read(data.path().join("db")).unwrap();
    // Damage spread over the file (where sled's data is, and beyond).
    let used = db.iter().rposition(|b| *b != 0).unwrap_or(0).max(64);
    let mut refusals = 0;
    for i in 1..=6 {
        let trial = DataDir::copy_of(data.path());
        let at = used * i / 7;
        let mut damaged = db.clone();
        for b in &mut damaged[at..(at + 16).min(db.len())] {
            *b ^= 0x5a;
        }
        std::fs::write(trial.path().join("db"), damaged).unwrap();
        if refused_or_whole(trial.path(), &format!("16 bytes flipped at {at} of {used}")) {
            refusals += 1;
        }
    }
    println!("{refusals} of 6 damaged copies refused, the rest served everything");
}

#[test]
fn storage_verify_reports_a_missing_message_and_the_server_refuses_it() {
    let data = DataDir::new();
    let output = confabd(data.path(), &["storage", "--verify"], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok: no problems found"));
    {
        // Bob's inbox with message 3 gone, written below the server.
        let store = data.store();
        let m = |text: &str| StoredMessage {
            message_id: MessageId(1),
            from: "alice".into(),
            sender: SenderKind::User,
            timestamp_ms: 0,
            content: Content::text(text),
            event: None,
            addressee: Addressee::Readers,
        };
        let bob = LogOwner::from(UserId(77));
        for seq in [1, 2, 4, 5] {
            store.inbox.append(bob, Seq(seq), &m("x")).unwrap();
        }
        store.checkpoint().unwrap();
    }
    let output = confabd(data.path(), &["storage", "--verify"], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(stdout.contains("inbox of user id 77: messages 3 to 3 are missing"), "{stdout}");
    match start(data.path()) {
        Start::Refused(log) => assert!(log.contains("messages 3 to 3 are missing") && log.contains("restore"), "{log}"),
        Start::Listening(child, _) => {
            stop(child);
            panic!("started with a message missing");
        }
    }
}

/// What a crash can leave without any damage: a member added just before it, given the
/// sequence of group messages that the crash then lost (never durable, never receipted),
/// holds a position beyond the history's end. The server starts, and the member gets the
/// next message, which takes that sequence again.
#[test]
fn a_position_beyond_the_group_history_is_brought_back_not_refused() {
    use crate::common::TestServer;
    use confab::admin;
    use confab::config::HashCost;
    use confab::protocol::{Conversation, Reply, Request, Role, Target};
    use confab::store::{GroupRecord, MemberRecord};

    let data = DataDir::new();
    {
        let store = data.store();
        let alice = admin::add_user(&store, &in_default("alice"), PASSWORD, HashCost::MINIMUM).unwrap();
        let bob = admin::add_user(&store, &in_default("bob"), PASSWORD, HashCost::MINIMUM).unwrap();
        let members = vec![
            MemberRecord { username: in_default("alice"), uid: alice, role: Role::Owner },
            MemberRecord { username: in_default("bob"), uid: bob, role: Role::Member },
        ];
        let group = GroupId(70);
        store.put_group(group, &GroupRecord { name: "g".into(), open: false, created_ms: 0, members }).unwrap();
        for (name, acked) in [("alice", 5), ("bob", 7)] {
            store.add_membership(&in_default(name), group).unwrap();
            store.put_group_ack(group, &in_default(name), Seq(acked)).unwrap();
        }
        for seq in 1..=5 {
            let m = StoredMessage {
                message_id: MessageId(seq),
                from: in_default("alice"),
                sender: SenderKind::User,
                timestamp_ms: 0,
                content: Content::text(format!("m{seq}")),
                event: None,
                addressee: Addressee::Readers,
            };
            store.group_log.append(group.into(), Seq(seq), &m).unwrap();
        }
        store.checkpoint().unwrap();
    }
    let output = confabd(data.path(), &["storage", "--verify"], "");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let server = TestServer::with(|c| c.data_dir = data.path().to_path_buf());
    let mut bob = server.login("bob");
    match bob.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => assert_eq!((groups[0].acked, groups[0].last_seq), (Seq(5), Seq(5))),
        other => panic!("{other:?}"),
    }
    let mut alice = server.login("alice");
    let send = Request::Send {
        to: Target::Group(GroupId(70)),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: Content::text("six"),
    };
    assert!(matches!(alice.request(send).unwrap(), Reply::Sent { seq: Seq(6), .. }));
    let m = bob.next_message().unwrap();
    assert_eq!((m.conversation, m.seq), (Conversation::Group(GroupId(70)), Seq(6)));
}
