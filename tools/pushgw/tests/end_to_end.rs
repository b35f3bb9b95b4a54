//! The built gateway against the real confabd (push-spec.md, "tools/pushgw"): bob
//! registers a phone and a tablet for push and goes offline; alice writes to him; the
//! webhook gets the events (POSTed concurrently, so perhaps out of order) with bob's
//! devices and the previews, and the gateway acks them, so a gateway started next gets no
//! repeats; a second gateway stands by and takes over when the first stops. The webhook
//! reports the tablet's token dead, and the server forgets it: later events name only the
//! phone.

use crate::common::gateway_process::GatewayProcess;
use crate::common::webhook_server::{Answer, Received, WebhookServer};
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
/// bob's tablet's token, which the webhook reports dead.
const TABLET_TOKEN: &str = "fcm-token-2";

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

/// bob's devices as an event lists them for `text`: the phone with the preview, and the
/// tablet (no previews) while the server has it.
fn bob_devices(text: &str, tablet: bool) -> Value {
    let phone = json!({"device": "phone", "platform": "apns", "token": "apns-token-1", "preview": text});
    let tablet = tablet.then(|| json!({"device": "tablet", "platform": "fcm", "token": TABLET_TOKEN, "preview": null}));
    Value::Array([Some(phone), tablet].into_iter().flatten().collect())
}

/// POSTs until they stand for `messages` messages (the server coalesces a burst into
/// fewer events); each is checked against what alice sent, and lists the tablet if
/// `tablet`. Sorted by seq: the gateway POSTs several at once, so the webhook may answer
/// them in another order.
fn events_for(webhook: &WebhookServer, messages: u64, sent: &Sent, alice_name: &str, tablet: bool) -> Vec<Received> {
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
            bob_devices(text, tablet),
            "tablet listed: {tablet}; the preview is the latest text"
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

    // bob registers his phone and his tablet, alice watches him go offline.
    let (mut bob, _) = user(addr, "bob");
    let phone = Request::SetPushDevice {
        device: "phone".into(),
        platform: PushPlatform::Apns,
        token: "apns-token-1".into(),
        previews: true,
    };
    assert_eq!(bob.request(phone).expect("SetPushDevice"), Reply::Done);
    let tablet = Request::SetPushDevice {
        device: "tablet".into(),
        platform: PushPlatform::Fcm,
        token: TABLET_TOKEN.into(),
        previews: false,
    };
    assert_eq!(bob.request(tablet).expect("SetPushDevice"), Reply::Done);
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
    let events = events_for(&webhook, 3, &sent, &alice_name, true);
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

    // The push service refuses the tablet's token: the webhook says so in its answer to
    // the next event (with a token that is not bob's, which the gateway must not drop).
    let dead = r#"{"invalid_tokens":["fcm-token-2","apns-token-of-carol"]}"#;
    webhook.answer_next(Answer::Body(dead));
    send(&mut alice, &mut sent, "four");
    let four = events_for(&webhook, 1, &sent, &alice_name, true);
    let four_seq = four[0].seq();
    assert!(four_seq > last, "event {four_seq} after {last}: a repeat?");
    assert_eq!(four[0].answer, Answer::Body(dead));
    assert_eq!(four[0].body["devices"][0]["preview"], "four");
    // The drop's Done and the ack's receipt come from different parts of the server, in
    // either order.
    gateway.wait_for_each(&[
        "the server forgot the dropped push token",
        &format!("the server confirmed events up to {four_seq}"),
    ]);
    gateway.stop();

    // The standby takes over where the first left off.
    let subscribed = standby.wait_for("subscribed to the push feed");
    assert!(subscribed.ends_with(&format!("acked {four_seq}, last {four_seq}")), "{subscribed}");
    send(&mut alice, &mut sent, "five");
    // The server forgot the tablet: the next event names the phone alone.
    let five = events_for(&webhook, 1, &sent, &alice_name, false);
    assert!(five[0].seq() > four_seq);
    assert_eq!(five[0].body["devices"][0]["preview"], "five");
    standby.wait_for(&format!("the server confirmed events up to {}", five[0].seq()));
    standby.stop();

    assert!(webhook.try_next(Duration::from_millis(100)).is_none(), "a POST after the last event");
    drop(alice);
    daemon.stop();
}
