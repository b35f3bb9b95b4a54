//! The built gateway against the real confabd (push-spec.md, "tools/pushgw"): bob
//! registers a phone for push and goes offline; alice writes to him; the webhook gets the
//! events (POSTed concurrently, so perhaps out of order) with bob's device and the
//! previews, and the gateway acks them, so a
//! gateway started next gets no repeats; a second gateway stands by and takes over when
//! the first stops.

use crate::common::gateway_process::GatewayProcess;
use crate::common::webhook_server::{Received, WebhookServer};
use confab_proto::client::Client;
use confab_proto::protocol::{ClientMsgId, MessageId, Push, PushPlatform, Reply, Request};
use confab_testd::{confabd, subcommand, Daemon};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

const PASSWORD: &str = "correct horse";
const SERVICE: &str = "pushgw";
const WAIT: Duration = Duration::from_secs(15);

/// Creates the gateway's service with the push permission (daemon stopped) and writes its
/// token where the gateway reads it.
fn add_push_service(data_dir: &Path, token_file: &Path) {
    let output = subcommand(confabd(), data_dir, &["service", "add", SERVICE, "--push"], "");
    assert!(
        output.status.success(),
        "confabd service add {SERVICE} --push failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let token = stdout.lines().rev().map(str::trim).find(|line| !line.is_empty()).expect("the token is printed");
    std::fs::write(token_file, format!("{token}\n")).expect("write the token file");
}

/// Registers `name` and logs in; returns the client and the display name.
fn user(addr: SocketAddr, name: &str) -> (Client, String) {
    let (mut client, _) = Client::connect(addr, "pushgw-e2e").expect("connect");
    client.register(name, PASSWORD).expect("register");
    let Reply::LoggedIn { display_name, .. } = client.login(name, PASSWORD).expect("login") else {
        unreachable!("login returns LoggedIn")
    };
    (client, display_name)
}

/// What alice sent: message id to text.
type Sent = HashMap<MessageId, String>;

fn send(alice: &mut Client, sent: &mut Sent, text: &str) {
    let client_msg_id = ClientMsgId(sent.len() as u64 + 1);
    let (message_id, _, duplicate) = alice.send_text("bob", client_msg_id, text).expect("alice's message is stored");
    assert!(!duplicate);
    sent.insert(message_id, text.to_string());
}

/// POSTs until they stand for `messages` messages (the server coalesces a burst into
/// fewer events); each is checked against what alice sent. Sorted by seq: the gateway
/// POSTs several at once, so the webhook may answer them in another order.
fn events_for(webhook: &WebhookServer, messages: u64, sent: &Sent, alice_name: &str) -> Vec<Received> {
    let deadline = Instant::now() + WAIT;
    let mut events = Vec::new();
    let mut counted = 0;
    while counted < messages {
        let wait = deadline.saturating_duration_since(Instant::now());
        let event = webhook.try_next(wait).unwrap_or_else(|| panic!("events for {counted} of {messages} messages"));
        let body = &event.body;
        let message_id = MessageId(body["message_id"].as_u64().expect("a message id"));
        let text = sent.get(&message_id).unwrap_or_else(|| panic!("an event for a message alice did not send: {body}"));
        assert_eq!(event.header("idempotency-key"), Some(event.seq().to_string().as_str()));
        assert_eq!(event.header("content-type"), Some("application/json"));
        assert_eq!(body["recipient"], "bob");
        assert_eq!(body["chat"], json!({"type": "user", "name": "alice"}));
        assert_eq!(body["chat_name"], alice_name);
        assert_eq!(body["sender"], "alice");
        assert_eq!(body["sender_name"], alice_name);
        assert_eq!(body["sender_kind"], "user");
        assert_eq!(body["kind"], "text");
        assert_eq!(
            body["devices"],
            json!([{"device": "phone", "platform": "apns", "token": "apns-token-1", "preview": text}]),
            "the preview is the latest message's text"
        );
        assert!(body["timestamp_ms"].as_u64().is_some_and(|ms| ms > 0), "{body}");
        let count = body["count"].as_u64().expect("a count");
        assert!(count >= 1, "{body}");
        counted += count;
        events.push(event);
    }
    assert_eq!(counted, messages, "events stand for more messages than were sent");
    events.sort_by_key(Received::seq);
    events
}

#[test]
fn offline_messages_reach_the_webhook_once_and_are_acked_in_order_and_a_standby_takes_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("data");
    let token_file = dir.path().join("service-token");
    add_push_service(&data_dir, &token_file);
    let daemon = Daemon::start(confabd(), &data_dir, SocketAddr::from(([127, 0, 0, 1], 0)), &[]);
    let addr = daemon.addr;
    let webhook = WebhookServer::start(vec![]);

    // bob registers his phone, alice watches him go offline.
    let (mut bob, _) = user(addr, "bob");
    let device = Request::SetPushDevice {
        device: "phone".into(),
        platform: PushPlatform::Apns,
        token: "apns-token-1".into(),
        previews: true,
    };
    assert_eq!(bob.request(device).expect("SetPushDevice"), Reply::Done);
    let (mut alice, alice_name) = user(addr, "alice");
    let watching = alice.request(Request::SubscribePresence { username: "bob".into() }).expect("watch bob");
    assert_eq!(watching, Reply::Subscribed { username: "bob".into(), online: true });
    drop(bob);
    loop {
        match alice.next_push().expect("bob's presence") {
            Push::Presence { username, online: false } if username == "bob" => break,
            _ => continue,
        }
    }

    let mut gateway = GatewayProcess::start("gateway 1", addr, SERVICE, &token_file, &webhook.url);
    gateway.wait_for("subscribed to the push feed");

    // Three messages while bob is offline: events for all three, once each, acked.
    let mut sent = Sent::new();
    for text in ["one", "two", "three"] {
        send(&mut alice, &mut sent, text);
    }
    let events = events_for(&webhook, 3, &sent, &alice_name);
    let seqs: Vec<u64> = events.iter().map(Received::seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "an event POSTed twice: {seqs:?}");
    let mut unread = 0;
    for event in &events {
        unread += event.body["count"].as_u64().unwrap_or(0);
        assert_eq!(event.body["unread"].as_u64(), Some(unread), "the badge counts bob's unread messages");
    }
    let last = *seqs.last().expect("at least one event");
    assert_eq!(events.last().map(|e| e.body["devices"][0]["preview"].clone()), Some(Value::from("three")));
    gateway.wait_for(&format!("the server confirmed events up to {last}"));
    gateway.stop();

    // A gateway started next resumes after the last ack: nothing comes again.
    let mut gateway = GatewayProcess::start("gateway 2", addr, SERVICE, &token_file, &webhook.url);
    let subscribed = gateway.wait_for("subscribed to the push feed");
    assert!(subscribed.ends_with(&format!("acked {last}, last {last}")), "{subscribed}");

    // A third one stands by while the second holds the feed.
    let mut standby = GatewayProcess::start("gateway 3", addr, SERVICE, &token_file, &webhook.url);
    standby.wait_for("standing by");

    send(&mut alice, &mut sent, "four");
    let four = events_for(&webhook, 1, &sent, &alice_name);
    let four_seq = four[0].seq();
    assert!(four_seq > last, "event {four_seq} after {last}: a repeat?");
    assert_eq!(four[0].body["devices"][0]["preview"], "four");
    gateway.wait_for(&format!("the server confirmed events up to {four_seq}"));
    gateway.stop();

    // The standby takes over where the first left off.
    let subscribed = standby.wait_for("subscribed to the push feed");
    assert!(subscribed.ends_with(&format!("acked {four_seq}, last {four_seq}")), "{subscribed}");
    send(&mut alice, &mut sent, "five");
    let five = events_for(&webhook, 1, &sent, &alice_name);
    assert!(five[0].seq() > four_seq);
    assert_eq!(five[0].body["devices"][0]["preview"], "five");
    standby.wait_for(&format!("the server confirmed events up to {}", five[0].seq()));
    standby.stop();

    assert!(webhook.try_next(Duration::from_millis(100)).is_none(), "a POST after the last event");
    drop(alice);
    daemon.stop();
}
