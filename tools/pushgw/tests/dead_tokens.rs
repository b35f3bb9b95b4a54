//! The webhook reports dead tokens (`{"invalid_tokens":[...]}` in its 2xx answer) and the
//! gateway asks the server to forget them (`DropPushToken`): for the event's recipient,
//! only tokens of the event's devices, ahead of the ack that covers the event; any other
//! answer says nothing; and the server's refusal of a drop does not end the subscription.

use crate::common::fake_confabd::{FakeConfabd, WAIT};
use crate::common::feed::{direct_event, ScriptedFeed, Sent};
use crate::common::gateway_thread::{finished, start_gateway, SERVICE, TOKEN};
use crate::common::webhook_server::{Answer, WebhookServer};
use confab_proto::protocol::{ErrorCode, Reply, Request};
use confab_pushgw::backoff::RetryPolicy;
use confab_pushgw::feed::{pump, DeliveredMark};
use confab_pushgw::stop::stop_signal;
use confab_pushgw::webhook::{HttpWebhook, MAX_RESPONSE_BODY};
use std::time::Duration;

const RETRY: RetryPolicy = RetryPolicy { base: Duration::from_millis(50), max: Duration::from_millis(400) };

/// bob's devices in [`direct_event`]: a phone (apns) and a laptop (webpush).
const PHONE: &str = "apns-token";
const LAPTOP: &str = "wp";

/// A 2xx answer longer than the gateway reads, listing the phone's token first.
fn oversize_answer() -> &'static str {
    let padding = "x".repeat(MAX_RESPONSE_BODY as usize);
    // Leaked so that answers stay Copy; one per test run.
    format!(r#"{{"invalid_tokens":["{PHONE}"],"padding":"{padding}"}}"#).leak()
}

/// Delivers events 1 to `last` to `server`, `concurrency` at once; what the loop sent.
fn pump_events(server: &WebhookServer, last: u64, concurrency: usize) -> Vec<Sent> {
    let webhook = HttpWebhook::new(&server.url, WAIT, "pushgw-test", concurrency).expect("the test webhook's URL");
    let mut feed = ScriptedFeed::new((1..=last).map(|seq| direct_event(seq, "hi")).collect());
    let (_handle, stop) = stop_signal();
    pump(&mut feed, &webhook, RETRY, concurrency, &stop, &mut DeliveredMark::default())
        .expect("a scripted feed does not fail");
    feed.sent
}

#[test]
fn the_listed_tokens_of_the_events_devices_are_dropped_for_its_recipient_before_its_ack() {
    let server = WebhookServer::start(vec![
        // Another user's token, and junk, beside the laptop's.
        Answer::Body(r#"{"delivered":1,"invalid_tokens":["carols-token","wp",""]}"#),
        Answer::Body("not json"),
        Answer::Body(oversize_answer()),
        Answer::Body(r#"{"invalid_tokens":"apns-token"}"#),
        Answer::Body(r#"{"invalid_tokens":["apns-token","wp"]}"#),
    ]);
    let sent = pump_events(&server, 5, 1);
    assert_eq!(
        sent,
        [
            Sent::drop("bob", LAPTOP),
            Sent::Ack(1),
            Sent::Ack(2),
            Sent::Ack(3),
            Sent::Ack(4),
            Sent::drop("bob", PHONE),
            Sent::drop("bob", LAPTOP),
            Sent::Ack(5),
        ],
        "junk, an oversize answer or a malformed list drop nothing"
    );
}

#[test]
fn with_several_posts_at_once_each_drop_comes_before_the_ack_that_covers_its_event() {
    // Event 2 fails first, so 3 and 4 are answered (and report the phone) before the ack
    // can pass 2; 2's own answer reports the laptop.
    let dead_phone = Answer::Body(r#"{"invalid_tokens":["apns-token"]}"#);
    let server = WebhookServer::per_event(vec![
        (2, vec![Answer::Status(503), Answer::Body(r#"{"invalid_tokens":["wp"]}"#)]),
        (3, vec![dead_phone]),
        (4, vec![dead_phone]),
    ]);
    let sent = pump_events(&server, 5, 4);

    let acks: Vec<u64> = sent.iter().filter_map(|s| if let Sent::Ack(seq) = s { Some(*seq) } else { None }).collect();
    assert_eq!(acks.last(), Some(&5), "{sent:?}");
    let mut drops: Vec<&Sent> = sent.iter().filter(|s| matches!(s, Sent::Drop { .. })).collect();
    drops.sort_by_key(|s| format!("{s:?}"));
    let (phone, laptop) = (Sent::drop("bob", PHONE), Sent::drop("bob", LAPTOP));
    // The phone twice: each event reports it, and a repeat is harmless.
    assert_eq!(drops, [&phone, &phone, &laptop], "{sent:?}");
    // Each drop before the ack that covers its event, though 3 and 4 were answered long
    // before that ack could be sent.
    let first_ack_covering =
        |seq: u64| sent.iter().position(|s| matches!(s, Sent::Ack(up_to) if *up_to >= seq)).expect("every event acked");
    let drops_of = |drop: &Sent| sent.iter().enumerate().filter(|(_, s)| *s == drop).map(|(i, _)| i).collect();
    let (phones, laptops): (Vec<usize>, Vec<usize>) = (drops_of(&phone), drops_of(&laptop));
    assert!(laptops[0] < first_ack_covering(2), "{sent:?}");
    assert!(phones[0] < first_ack_covering(3) && phones[1] < first_ack_covering(4), "{sent:?}");
}

#[test]
fn the_gateway_sends_drop_push_token_before_the_ack_and_a_refused_drop_does_not_end_the_feed() {
    let fake = FakeConfabd::start();
    let webhook = WebhookServer::start(vec![
        Answer::Body(r#"{"invalid_tokens":["apns-token","carols-token"]}"#),
        Answer::Body(r#"{"invalid_tokens":["wp"]}"#),
        Answer::Body(oversize_answer()),
    ]);
    let (stop, gateway) = start_gateway(&fake, &webhook);
    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    conn.subscribe(0, 1);

    // The phone's token is reported dead: the drop, for bob, then the ack.
    conn.push(direct_event(1, "one"));
    let drop_id = conn.expect(&Request::DropPushToken { username: "bob".into(), token: PHONE.into() });
    let (ack_id, acked) = conn.next_ack();
    assert_eq!(acked, 1);
    assert_eq!(webhook.next(WAIT).seq(), 1);
    // The service lost its push permission meanwhile: logged, and the feed goes on.
    conn.error(drop_id, ErrorCode::Forbidden, "this service has no push permission");
    conn.reply(ack_id, Reply::PushAcked { up_to: 1 });

    conn.push(direct_event(2, "two"));
    let drop_id = conn.expect(&Request::DropPushToken { username: "bob".into(), token: LAPTOP.into() });
    conn.reply(drop_id, Reply::Done);
    let (ack_id, acked) = conn.next_ack();
    assert_eq!(acked, 2, "acked on the same connection after the refused drop");
    conn.reply(ack_id, Reply::PushAcked { up_to: 2 });

    // An answer too long to read drops nothing.
    conn.push(direct_event(3, "three"));
    let (ack_id, acked) = conn.next_ack();
    assert_eq!(acked, 3);
    conn.reply(ack_id, Reply::PushAcked { up_to: 3 });
    assert!(!fake.connects_within(Duration::from_millis(200)), "the gateway subscribed again");

    stop.stop();
    assert!(conn.closed_within(WAIT), "the gateway did not close");
    assert_eq!(finished(gateway), Ok(()));
    assert_eq!([webhook.next(WAIT).seq(), webhook.next(WAIT).seq()], [2, 3]);
}
