//! A `confab-chat` process against the nodes of a cluster (protocol.md "Cluster"), played
//! by fake nodes (`common::fake`): a register, a login and a token login on a node that
//! is not the user's home go on at the home, which the token file then remembers; nodes
//! that redirect to each other end in an error, not a loop; `Unavailable` says the
//! command was not carried out and can be tried again.

mod common;

use common::fake::FakeNode;
use common::{drop_field, PASSWORD};
use confab_proto::protocol::{ErrorCode, Reply, Request, Seq, ServerFrame, UserId};
use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// alice's home: it registers her and logs her in, by password or token.
fn home_node() -> FakeNode {
    FakeNode::start(|request_id, request| {
        let reply = match request {
            Request::Register { .. } => Reply::Registered { user_id: UserId(7) },
            Request::LoginDevice { device, .. } | Request::ResumeDevice { device, .. } => logged_in(device),
            _ => Reply::Done,
        };
        ServerFrame::Reply { request_id, reply }
    })
}

fn logged_in(device: &str) -> Reply {
    Reply::DeviceLoggedIn {
        user_id: UserId(7),
        display_name: "alice".into(),
        device: device.into(),
        acked: Seq::ZERO,
        last_seq: Seq::ZERO,
        resume_token: vec![0xab; 32],
        admin: false,
        chats: Vec::new(),
        read_receipts: true,
    }
}

/// A node that sends everyone to `node` at `home`, before login as a node does.
fn redirecting_node(node: u32, home: impl Fn() -> SocketAddr + Send + Sync + 'static) -> FakeNode {
    FakeNode::start(move |request_id, _| ServerFrame::Reply {
        request_id,
        reply: Reply::Redirect { node, address: home().to_string() },
    })
}

#[test]
fn register_and_login_go_on_at_the_home_node_which_the_token_remembers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token-alice");
    let home = home_node();
    let home_addr = home.addr;
    let other = redirecting_node(2, move || home_addr);

    let mut alice = common::Chat::start("alice", other.addr, &token_file, &[]);
    assert_eq!(alice.expect("connected "), format!("connected {}", other.addr));
    alice.send(&format!("/register alice {PASSWORD}"));
    alice.send(&format!("/login alice {PASSWORD}"));
    assert_eq!(alice.expect("redirected "), format!("redirected node=2 addr={home_addr}"));
    assert_eq!(alice.expect("connected "), format!("connected {home_addr}"));
    assert_eq!(alice.expect_any(&["registered ", "redirected "]), "registered alice");
    // The login goes to the node the link is on, the home: no second redirect.
    let logged_in = alice.expect_any(&["logged-in ", "redirected "]);
    assert_eq!(drop_field(&logged_in, "device"), "logged-in alice acked=0 last=0");
    alice.finish();
    let text = std::fs::read_to_string(&token_file).expect("the token file");
    assert_eq!(text.lines().nth(4), Some(home_addr.to_string().as_str()), "{text}");
    assert!(matches!(&other.requests()[..], [Request::Hello { .. }, Request::Register { .. }]));

    // --user without --server: straight to the home the token file remembers.
    let args = [OsString::from("--token-file"), token_file.clone().into(), "--user".into(), "alice".into()];
    let mut alice = common::Chat::spawn("alice", &args);
    assert_eq!(alice.expect("connected "), format!("connected {home_addr}"));
    assert!(alice.expect_any(&["logged-in ", "redirected "]).starts_with("logged-in alice "));
    alice.finish();
    assert!(other.requests().is_empty(), "the other node was not asked again");

    // --server naming another node: the token login is redirected like the password's.
    let mut alice = common::Chat::start("alice", other.addr, &token_file, &["--user", "alice"]);
    assert_eq!(alice.expect("redirected "), format!("redirected node=2 addr={home_addr}"));
    assert_eq!(alice.expect("connected "), format!("connected {home_addr}"));
    assert!(alice.expect_any(&["logged-in ", "redirected "]).starts_with("logged-in alice "));
    alice.finish();
    assert!(other
        .requests()
        .iter()
        .any(|r| matches!(r, Request::ResumeDevice { username, .. } if username == "alice")));
    let at_home = home.requests();
    let resumes = at_home.iter().filter(|r| matches!(r, Request::ResumeDevice { .. })).count();
    assert_eq!(resumes, 2, "{at_home:?}");
}

#[test]
fn nodes_that_redirect_to_each_other_end_in_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let second_addr = Arc::new(OnceLock::new());
    let second_of_first = Arc::clone(&second_addr);
    let first = redirecting_node(2, move || *second_of_first.get().expect("both nodes started"));
    let first_addr = first.addr;
    let second = redirecting_node(1, move || first_addr);
    second_addr.set(second.addr).expect("set once");

    let mut alice = common::Chat::start("alice", first.addr, &dir.path().join("token"), &[]);
    alice.expect("connected ");
    alice.send(&format!("/login alice {PASSWORD}"));
    assert_eq!(alice.expect("redirected "), format!("redirected node=2 addr={}", second.addr));
    assert_eq!(
        alice.expect("error "),
        format!(
            "error RedirectLoop: login not carried out: the servers send it round in a loop ({} -> {} -> {})",
            first.addr, second.addr, first.addr
        )
    );
    alice.finish();
}

#[test]
fn unavailable_says_nothing_was_done_and_when_to_try_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = FakeNode::start(|request_id, request| match request {
        Request::LoginDevice { device, .. } => ServerFrame::Reply { request_id, reply: logged_in(device) },
        Request::Send { .. } => {
            ServerFrame::unavailable(request_id, "node 2 is unavailable", Duration::from_millis(1500))
        }
        _ => ServerFrame::Reply { request_id, reply: Reply::Done },
    });
    let mut alice = common::Chat::start("alice", node.addr, &dir.path().join("token"), &[]);
    alice.expect("connected ");
    alice.send(&format!("/login alice {PASSWORD}"));
    alice.expect("logged-in alice ");
    alice.send("/msg bob are you there?");
    assert_eq!(
        alice.expect("error "),
        format!(
            "error {:?}: msg not carried out, try again: node 2 is unavailable (retry in 1.5 s)",
            ErrorCode::Unavailable
        )
    );
    alice.finish();
}
