//! The gateway's loop without a server, one POST at a time (`--concurrency 1`): a scripted
//! feed, the real HTTP webhook client and a local webhook. Each event is POSTed in order
//! with the documented JSON and headers and acked only after the webhook's 2xx, before the
//! next is POSTed; failures and timeouts are retried with backoff.

use crate::common::feed::{direct_event, ScriptedFeed};
use crate::common::webhook_server::{Answer, Received, WebhookServer};
use confab_pushgw::backoff::RetryPolicy;
use confab_pushgw::feed::{pump, DeliveredMark};
use confab_pushgw::stop::stop_signal;
use confab_pushgw::webhook::HttpWebhook;
use serde_json::json;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
/// Short waits so the retries take milliseconds, not the spec's seconds.
const RETRY: RetryPolicy = RetryPolicy { base: Duration::from_millis(50), max: Duration::from_millis(400) };

fn webhook(server: &WebhookServer, timeout: Duration) -> HttpWebhook {
    HttpWebhook::new(&server.url, timeout, "pushgw-test", 1).expect("the test webhook's URL")
}

/// Delivers `feed`'s events to `server` one at a time until the script ends; the pump
/// must end well.
fn run(feed: &mut ScriptedFeed, server: &WebhookServer, timeout: Duration, mark: &mut DeliveredMark) {
    let (_handle, stop) = stop_signal();
    pump(feed, &webhook(server, timeout), RETRY, 1, &stop, mark).expect("a scripted feed does not fail");
}

/// The requests the webhook has answered, in the order they arrived.
fn requests(server: &WebhookServer, count: usize) -> Vec<Received> {
    let mut received: Vec<Received> = (0..count).map(|_| server.next(WAIT)).collect();
    received.sort_by_key(|r| r.arrived);
    assert!(server.try_next(Duration::from_millis(100)).is_none(), "more than {count} requests");
    received
}

#[test]
fn every_event_is_posted_once_in_order_with_its_json_and_headers_then_acked() {
    let server = WebhookServer::start(vec![]);
    let mut feed = ScriptedFeed::new((1..=3).map(|seq| direct_event(seq, &format!("message {seq}"))).collect());
    run(&mut feed, &server, WAIT, &mut DeliveredMark::default());

    let received = requests(&server, 3);
    assert_eq!(received.iter().map(Received::seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(feed.acked_seqs(), [1, 2, 3]);
    for (i, request) in received.iter().enumerate() {
        let seq = request.seq();
        assert_eq!((request.method.as_str(), request.path.as_str()), ("POST", "/push"));
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("idempotency-key"), Some(seq.to_string().as_str()));
        assert_eq!(request.header("user-agent"), Some("pushgw-test"));
        let (acked, acked_at) = feed.acks[i];
        assert_eq!(acked, seq);
        assert!(acked_at >= request.answering, "event {seq} acked before the webhook answered");
        if let Some(next) = received.get(i + 1) {
            assert!(next.arrived >= acked_at, "event {} POSTed before {seq} was acked", next.seq());
        }
    }
    assert_eq!(
        received[1].body,
        json!({
            "seq": 2,
            "recipient": "bob",
            "chat": {"type": "user", "name": "alice"},
            "chat_name": "Alice",
            "sender": "alice",
            "sender_name": "Alice",
            "sender_kind": "user",
            "message_id": 102,
            "kind": "text",
            "count": 1,
            "unread": 2,
            "timestamp_ms": 1_700_000_000_002u64,
            "devices": [
                {"device": "phone", "platform": "apns", "token": "apns-token", "preview": "message 2"},
                {"device": "laptop", "platform": "webpush", "token": "wp", "preview": null}
            ]
        })
    );
}

#[test]
fn a_failing_webhook_is_retried_with_backoff_and_the_event_acked_only_after_the_2xx() {
    // Event 1 meets 500, 503 and 404 before a 200; event 2 goes through at once (each
    // event starts its backoff afresh).
    let server = WebhookServer::start(vec![Answer::Status(500), Answer::Status(503), Answer::Status(404)]);
    let mut feed = ScriptedFeed::new(vec![direct_event(1, "one"), direct_event(2, "two")]);
    run(&mut feed, &server, WAIT, &mut DeliveredMark::default());

    let received = requests(&server, 5);
    let seqs: Vec<u64> = received.iter().map(Received::seq).collect();
    assert_eq!(seqs, [1, 1, 1, 1, 2], "never skipped, never out of order");
    let answers: Vec<Answer> = received.iter().map(|r| r.answer).collect();
    assert_eq!(answers[..4], [Answer::Status(500), Answer::Status(503), Answer::Status(404), Answer::Status(200)]);
    assert!(received[..4].iter().all(|r| r.body == received[0].body), "every retry sends the same JSON");
    assert!(received[..4].iter().all(|r| r.header("idempotency-key") == Some("1")));
    // The waits double from the base: 50, 100, 200 ms at least.
    for (i, min_wait) in [50u64, 100, 200].into_iter().enumerate() {
        let gap = received[i + 1].arrived - received[i].answering;
        assert!(gap >= Duration::from_millis(min_wait), "wait {} was {gap:?}, below {min_wait} ms", i + 1);
    }
    assert_eq!(feed.acked_seqs(), [1, 2], "one ack per event");
    assert!(feed.acks[0].1 >= received[3].answering, "acked before the 200");
    assert!(received[4].arrived >= feed.acks[0].1);
}

#[test]
fn a_webhook_slower_than_the_timeout_is_given_up_on_and_retried() {
    let timeout = Duration::from_millis(300);
    let hang = Duration::from_millis(1500);
    let server = WebhookServer::start(vec![Answer::Hang(hang)]);
    let mut feed = ScriptedFeed::new(vec![direct_event(1, "one")]);
    let started = Instant::now();
    run(&mut feed, &server, timeout, &mut DeliveredMark::default());
    let delivered_after = started.elapsed();

    assert_eq!(feed.acked_seqs(), [1]);
    assert!(delivered_after < hang, "the POST was not cut at the timeout: delivered after {delivered_after:?}");
    let received = requests(&server, 2);
    assert_eq!(
        received.iter().map(|r| (r.seq(), r.answer)).collect::<Vec<_>>(),
        [(1, Answer::Hang(hang)), (1, Answer::Status(200))]
    );
    let retried_after = received[1].arrived - received[0].arrived;
    assert!(retried_after >= timeout + RETRY.base, "retried after {retried_after:?}");
    assert!(feed.acks[0].1 >= received[1].answering);
}

#[test]
fn an_event_delivered_before_a_reconnect_is_acked_again_without_a_second_post() {
    let server = WebhookServer::start(vec![]);
    let mut mark = DeliveredMark::default();
    mark.record(2);
    let mut feed = ScriptedFeed::new((1..=3).map(|seq| direct_event(seq, "again")).collect());
    run(&mut feed, &server, WAIT, &mut mark);
    assert_eq!(requests(&server, 1).iter().map(Received::seq).collect::<Vec<_>>(), [3]);
    assert_eq!(feed.acked_seqs(), [1, 2, 3]);
    assert!(mark.covers(3));
}

#[test]
fn a_stop_during_the_backoff_ends_the_loop_without_acking() {
    let server = WebhookServer::start(vec![Answer::Status(500); 100]);
    let mut feed = ScriptedFeed::new(vec![direct_event(1, "one")]);
    let (handle, stop) = stop_signal();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        handle.stop();
    });
    let started = Instant::now();
    let policy = RetryPolicy { base: Duration::from_secs(30), max: Duration::from_secs(30) };
    pump(&mut feed, &webhook(&server, WAIT), policy, 1, &stop, &mut DeliveredMark::default())
        .expect("stopped, not failed");
    assert!(started.elapsed() < Duration::from_secs(10), "the 30 s backoff was not cut short by the stop");
    stopper.join().expect("the stopper thread");
    assert!(feed.acks.is_empty(), "an undelivered event was acked");
    assert_eq!(server.next(WAIT).answer, Answer::Status(500));
}
