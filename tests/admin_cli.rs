//! confabd's administration subcommands, run as a person would: on a stopped daemon's data
//! directory, refused while it runs, and `stats` against a running one.

use crate::common::daemon::{confabd, spawn_daemon};
use crate::common::{eventually, DataDir, PASSWORD};
use confab::client::Client;
use confab::protocol::{ClientMsgId, Push, PushPlatform, Reply, Request};
use std::process::Command;
use std::time::Duration;

/// What confabd says when another daemon holds the directory.
fn running_on(data: &std::path::Path, pid: u32) -> String {
    format!("confabd: confabd is already running on {} (pid {pid}); stop it first\n", data.display())
}

fn stdout(output: &std::process::Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn accounts_and_services_made_offline_work_once_the_daemon_runs() {
    let dir = DataDir::new();
    let data = dir.path();
    stdout(&confabd(data, &["user", "add", "alice"], &format!("{PASSWORD}\n")));
    stdout(&confabd(data, &["user", "add", "root"], &format!("{PASSWORD}\n")));
    stdout(&confabd(data, &["user", "admin", "root"], ""));
    let taken = confabd(data, &["user", "add", "alice"], &format!("{PASSWORD}\n"));
    assert!(!taken.status.success());
    assert!(String::from_utf8_lossy(&taken.stderr).contains("name taken"));
    let listed = stdout(&confabd(data, &["user", "list"], ""));
    assert!(listed.contains("alice\t") && listed.contains("root\t") && listed.contains("\tadmin\t"), "{listed}");
    let token = stdout(&confabd(data, &["service", "add", "shop"], "")).trim().to_string();
    assert_eq!(token.len(), 64);
    assert_eq!(stdout(&confabd(data, &["service", "list"], "")), "shop\n");

    let mut daemon = spawn_daemon(data, &[]);
    // While the daemon holds the directory, offline commands refuse clearly.
    let busy = confabd(data, &["user", "list"], "");
    assert!(!busy.status.success());
    assert_eq!(String::from_utf8_lossy(&busy.stderr), running_on(data, daemon.child.id()));

    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    let (mut shop, _) = Client::connect(daemon.addr, "t").unwrap();
    let reply = shop.request(Request::ServiceLogin { name: "shop".into(), token: token.clone() }).unwrap();
    assert_eq!(reply, Reply::ServiceLoggedIn { name: "shop".into() });
    let (mut root, _) = Client::connect(daemon.addr, "t").unwrap();
    root.login("root", PASSWORD).unwrap();
    assert!(matches!(root.request(Request::Stats).unwrap(), Reply::Stats(_)));

    // Live statistics from the command line, as the service.
    let stats = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(["stats", "--server", &daemon.addr.to_string(), "--service", "shop"])
        .env("CONFAB_SERVICE_TOKEN", &token)
        .output()
        .unwrap();
    let printed = stdout(&stats);
    assert!(printed.contains("connections\t4") && printed.contains("logged_in\t2"), "{printed}");

    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    stdout(&confabd(data, &["user", "passwd", "alice"], "a brand new password\n"));
    stdout(&confabd(data, &["user", "delete", "root"], ""));
    stdout(&confabd(data, &["service", "remove", "shop"], ""));
    let storage = stdout(&confabd(data, &["storage"], ""));
    assert!(storage.contains("users\t1"), "{storage}");

    let daemon = spawn_daemon(data, &[]);
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    assert!(alice.login("alice", PASSWORD).is_err(), "the old password no longer works");
    alice.login("alice", "a brand new password").unwrap();
    let (mut shop, _) = Client::connect(daemon.addr, "t").unwrap();
    assert!(shop.request(Request::ServiceLogin { name: "shop".into(), token }).is_err());
    drop(daemon);
}

#[test]
fn a_second_daemon_and_the_admin_commands_say_who_holds_the_directory() {
    let dir = DataDir::new();
    let data = dir.path();
    let mut daemon = spawn_daemon(data, &[]);
    let pid = daemon.child.id();
    for args in [&["user", "list"][..], &["storage"]] {
        let busy = confabd(data, args, "");
        assert!(!busy.status.success());
        assert_eq!(String::from_utf8_lossy(&busy.stderr), running_on(data, pid), "{args:?}");
    }
    let second = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    assert!(!second.status.success());
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        said.contains(&format!("confabd is already running on {} (pid {pid}); stop it first", data.display())),
        "{said}"
    );

    // Killed, the daemon leaves its pid file behind; that blocks nothing.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    assert!(data.join("confabd.pid").exists());
    stdout(&confabd(data, &["user", "list"], ""));
    // A clean stop removes it.
    let mut daemon = spawn_daemon(data, &[]);
    // SAFETY: kill(2) on our own child's pid.
    let pid = daemon.child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert!(daemon.child.wait().unwrap().success());
    assert!(!data.join("confabd.pid").exists());
}

#[test]
fn a_push_gateway_made_offline_gets_events_that_outlive_a_kill_and_user_delete_drops_devices() {
    let dir = DataDir::new();
    let data = dir.path();
    for name in ["alice", "bob"] {
        stdout(&confabd(data, &["user", "add", name], &format!("{PASSWORD}\n")));
    }
    let token = stdout(&confabd(data, &["service", "add", "relay", "--push"], "")).trim().to_string();
    stdout(&confabd(data, &["service", "add", "shop"], ""));
    assert_eq!(stdout(&confabd(data, &["service", "list"], "")), "relay (push)\nshop\n");

    let flags = ["--push-window-ms", "0"];
    let mut daemon = spawn_daemon(data, &flags);
    let (mut bob, _) = Client::connect(daemon.addr, "t").unwrap();
    bob.login("bob", PASSWORD).unwrap();
    let device = Request::SetPushDevice {
        device: "phone".into(),
        platform: PushPlatform::Fcm,
        token: "fcm-1".into(),
        previews: true,
    };
    assert_eq!(bob.request(device).unwrap(), Reply::Done);
    drop(bob);
    let (mut relay, _) = Client::connect(daemon.addr, "t").unwrap();
    relay.request(Request::ServiceLogin { name: "relay".into(), token: token.clone() }).unwrap();
    eventually("bob offline", Duration::from_secs(10), || {
        relay.request(Request::QueryOnline { users: vec!["bob".into()] }).unwrap()
            == Reply::OnlineStatus { online: vec![false] }
    });
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    alice.send_text("bob", ClientMsgId(1), "wake up").unwrap();
    assert!(matches!(relay.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { .. }));
    let Push::PushEvent(event) = relay.next_push().unwrap() else { panic!("a push event") };
    assert_eq!((event.recipient.as_str(), event.devices[0].preview.as_deref()), ("bob", Some("wake up")));

    // Killed before the gateway's ack: the event comes back from the commit log.
    daemon.child.kill().unwrap();
    daemon.child.wait().unwrap();
    let daemon = spawn_daemon(data, &flags);
    let (mut relay, _) = Client::connect(daemon.addr, "t").unwrap();
    relay.request(Request::ServiceLogin { name: "relay".into(), token }).unwrap();
    assert_eq!(relay.request(Request::SubscribePush).unwrap(), Reply::PushSubscribed { acked: 0, last_seq: event.seq });
    assert_eq!(relay.next_push().unwrap(), Push::PushEvent(event.clone()));
    assert_eq!(relay.request(Request::AckPush { up_to: event.seq }).unwrap(), Reply::PushAcked { up_to: event.seq });
    drop(daemon);

    assert_eq!(dir.store().all_push_prefs().unwrap().len(), 1, "bob's device is kept with his account");
    stdout(&confabd(data, &["user", "delete", "bob"], ""));
    assert!(dir.store().all_push_prefs().unwrap().is_empty(), "and deleted with it");
}

#[test]
fn apps_are_made_limited_listed_and_removed_offline_and_hosted_once_the_daemon_runs() {
    let dir = DataDir::new();
    let data = dir.path();
    assert_eq!(stdout(&confabd(data, &["app", "add", "acme", "--max-users", "2"], "")), "added app acme\n");
    let again = confabd(data, &["app", "add", "acme"], "");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"), "{again:?}");
    let unknown = confabd(data, &["user", "add", "alice", "--app", "nosuch"], &format!("{PASSWORD}\n"));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no such app: nosuch"), "{unknown:?}");
    stdout(&confabd(data, &["user", "add", "alice", "--app", "acme"], &format!("{PASSWORD}\n")));
    stdout(&confabd(data, &["user", "add", "alice"], &format!("{PASSWORD}\n")));
    let hooks_token = stdout(&confabd(data, &["service", "add", "hooks", "--app", "acme"], "")).trim().to_string();
    let push = confabd(data, &["service", "add", "relay", "--app", "acme", "--push"], "");
    assert!(String::from_utf8_lossy(&push.stderr).contains("app default"), "{push:?}");
    assert!(stdout(&confabd(data, &["user", "list", "--app", "acme"], "")).starts_with("alice\t"));
    assert_eq!(stdout(&confabd(data, &["service", "list", "--app", "acme"], "")), "hooks\n");
    assert_eq!(stdout(&confabd(data, &["service", "list"], "")), "");
    stdout(&confabd(data, &["app", "set", "acme", "--max-users", "5", "--max-groups", "3"], ""));
    assert_eq!(
        stdout(&confabd(data, &["app", "list"], "")),
        "acme\tusers 1/5\tconnections -/-\tgroups 0/3\tservices 1\ndefault\tusers 1/-\tconnections -/-\tgroups 0/-\tservices 0\n"
    );
    let in_use = confabd(data, &["app", "remove", "acme"], "");
    assert!(
        String::from_utf8_lossy(&in_use.stderr).contains("still has 1 users, 0 groups and 1 services"),
        "{in_use:?}"
    );

    // The daemon hosts the app: its alice is not the app default's alice.
    let daemon = spawn_daemon(data, &[]);
    let (mut acme_alice, _) = Client::connect_to_app(daemon.addr, "t", "acme").unwrap();
    acme_alice.login("alice", PASSWORD).unwrap();
    let (mut alice, _) = Client::connect(daemon.addr, "t").unwrap();
    alice.login("alice", PASSWORD).unwrap();
    let send = Request::Send {
        to: confab::protocol::Target::User("alice".into()),
        client_msg_id: ClientMsgId(1),
        transient: false,
        content: confab::protocol::Content::text("to acme's alice, from acme's alice"),
    };
    acme_alice.request(send).unwrap();
    assert_eq!(acme_alice.next_message().unwrap().from, "alice");
    // `confabd stats --app` asks as the app's service and prints that app's figures only.
    let stats = Command::new(env!("CARGO_BIN_EXE_confabd"))
        .args(["stats", "--server", &daemon.addr.to_string(), "--service", "hooks", "--app", "acme"])
        .env("CONFAB_SERVICE_TOKEN", &hooks_token)
        .output()
        .unwrap();
    let printed = stdout(&stats);
    assert!(printed.starts_with("app.acme.users\t1\napp.acme.max_users\t5\n"), "{printed}");
    assert!(printed.contains("app.acme.logged_in\t1\n") && !printed.contains("default"), "{printed}");
    daemon.stop();

    stdout(&confabd(data, &["user", "delete", "alice", "--app", "acme"], ""));
    stdout(&confabd(data, &["service", "remove", "hooks", "--app", "acme"], ""));
    assert_eq!(stdout(&confabd(data, &["app", "remove", "acme"], "")), "removed app acme\n");
    let default = confabd(data, &["app", "remove", "default"], "");
    assert!(!default.status.success());
}
