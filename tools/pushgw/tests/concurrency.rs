//! Several POSTs at once (`--concurrency N`): a scripted feed, the real HTTP webhook
//! client and a local webhook that counts the requests under way. N events are POSTed at
//! once and each is retried on its own, so the webhook sees them out of order; the acks
//! stay in order: an ack never passes an event the webhook has not answered 2xx.

use crate::common::feed::{direct_event, ScriptedFeed};
use crate::common::webhook_server::{Answer, Received, WebhookServer};
use confab_pushgw::backoff::RetryPolicy;
use confab_pushgw::feed::{pump, DeliveredMark, FeedError};
use confab_pushgw::stop::{stop_signal, Stop};
use confab_pushgw::webhook::HttpWebhook;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);
const RETRY: RetryPolicy = RetryPolicy { base: Duration::from_millis(50), max: Duration::from_millis(400) };

fn events(seqs: std::ops::RangeInclusive<u64>) -> Vec<confab_proto::protocol::PushEvent> {
    seqs.map(|seq| direct_event(seq, &format!("message {seq}"))).collect()
}

/// Delivers `feed`'s events to `server`, `concurrency` at once, until the script ends.
fn run(
    feed: &mut ScriptedFeed,
    server: &WebhookServer,
    concurrency: usize,
    retry: RetryPolicy,
    stop: &Stop,
    mark: &mut DeliveredMark,
) -> Result<(), FeedError> {
    let webhook = HttpWebhook::new(&server.url, WAIT, "pushgw-test", concurrency).expect("the test webhook's URL");
    pump(feed, &webhook, retry, concurrency, stop, mark)
}

/// Exactly `count` requests, sorted by when they arrived.
fn requests(server: &WebhookServer, count: usize) -> Vec<Received> {
    let mut received: Vec<Received> = (0..count).map(|_| server.next(WAIT)).collect();
    received.sort_by_key(|r| r.arrived);
    assert!(server.try_next(Duration::from_millis(100)).is_none(), "more than {count} requests");
    received
}

/// Whether the webhook answered this request 2xx.
fn delivered(request: &Received) -> bool {
    matches!(request.answer, Answer::Status(200..=299) | Answer::Slow(_) | Answer::Body(_))
}

/// The acks go forward, end at `last`, and each came after the webhook's 2xx to every
/// event up to it.
fn assert_acks_in_order(feed: &ScriptedFeed, received: &[Received], last: u64) {
    let acked = feed.acked_seqs();
    assert!(acked.windows(2).all(|w| w[0] < w[1]), "acks go forward: {acked:?}");
    assert_eq!(acked.last(), Some(&last), "every event acked: {acked:?}");
    for &(up_to, at) in &feed.acks {
        for seq in 1..=up_to {
            let post = received
                .iter()
                .find(|r| r.seq() == seq && delivered(r))
                .unwrap_or_else(|| panic!("ack {up_to}: event {seq} was never answered 2xx"));
            assert!(at >= post.answering, "ack {up_to} sent before the webhook's 2xx to event {seq}");
        }
    }
}

#[test]
fn four_posts_are_in_flight_at_once_and_each_ack_follows_every_earlier_events_2xx() {
    let hold = Duration::from_millis(300);
    let server = WebhookServer::start(vec![Answer::Slow(hold); 12]);
    let mut feed = ScriptedFeed::new(events(1..=12));
    let (_handle, stop) = stop_signal();
    let started = Instant::now();
    run(&mut feed, &server, 4, RETRY, &stop, &mut DeliveredMark::default()).expect("a scripted feed does not fail");
    let took = started.elapsed();

    let received = requests(&server, 12);
    let mut seqs: Vec<u64> = received.iter().map(Received::seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=12).collect::<Vec<_>>(), "each event POSTed once");
    let most = received.iter().map(|r| r.in_flight).max();
    assert_eq!(most, Some(4), "the webhook saw {most:?} requests at once at most, not 4");
    // Three rounds of four, not twelve POSTs one after the other.
    assert!(took < hold * 12, "took {took:?}: the POSTs did not overlap");
    assert_acks_in_order(&feed, &received, 12);
}

#[test]
fn an_earlier_event_that_fails_holds_the_ack_back_until_it_succeeds() {
    // Event 2 fails twice (waits of 250 and 500 ms) while the others go through at once.
    let server = WebhookServer::per_event(vec![(2, vec![Answer::Status(500), Answer::Status(503)])]);
    let mut feed = ScriptedFeed::new(events(1..=6));
    let (_handle, stop) = stop_signal();
    let retry = RetryPolicy { base: Duration::from_millis(250), max: Duration::from_secs(1) };
    run(&mut feed, &server, 4, retry, &stop, &mut DeliveredMark::default()).expect("a scripted feed does not fail");

    let received = requests(&server, 8);
    let posts_of = |seq: u64| received.iter().filter(|r| r.seq() == seq).map(|r| r.answer).collect::<Vec<_>>();
    assert_eq!(posts_of(2), [Answer::Status(500), Answer::Status(503), Answer::Status(200)], "never skipped");
    for seq in [1, 3, 4, 5, 6] {
        assert_eq!(posts_of(seq), [Answer::Status(200)], "event {seq}");
    }
    let two_delivered = received.iter().find(|r| r.seq() == 2 && delivered(r)).expect("2 delivered");
    let mut later_first: Vec<u64> =
        received.iter().filter(|r| r.seq() > 2 && r.answering < two_delivered.answering).map(Received::seq).collect();
    later_first.sort_unstable();
    assert_eq!(later_first, [3, 4, 5, 6], "later events waited for event 2's retries");
    // 1 is acked at once; nothing passes 2 until its 200, and then the ack jumps to 6.
    assert_eq!(feed.acked_seqs(), [1, 6]);
    assert!(feed.acks[1].1 >= two_delivered.answering, "acked past event 2 before its 2xx");
    assert_acks_in_order(&feed, &received, 6);
}

#[test]
fn a_stop_finishes_the_posts_under_way_and_starts_no_new_one() {
    let server = WebhookServer::start(vec![Answer::Slow(Duration::from_millis(500)); 6]);
    let url = server.url.clone();
    let (handle, stop) = stop_signal();
    let pumping = std::thread::spawn(move || {
        let mut feed = ScriptedFeed::new(events(1..=6));
        let webhook = HttpWebhook::new(&url, WAIT, "pushgw-test", 2).expect("the test webhook's URL");
        let pumped = pump(&mut feed, &webhook, RETRY, 2, &stop, &mut DeliveredMark::default());
        (pumped, feed, Instant::now())
    });
    // Stop while both POSTs are held by the webhook.
    let mut arrived = [server.next_arrival(WAIT), server.next_arrival(WAIT)];
    arrived.sort_unstable();
    assert_eq!(arrived, [1, 2]);
    handle.stop();
    let (pumped, feed, returned) = pumping.join().expect("the pump's thread");
    assert_eq!(pumped, Ok(()));

    let received = requests(&server, 2);
    assert!(received.iter().all(delivered), "{received:?}");
    assert!(received.iter().all(|r| returned >= r.answering), "returned before the POSTs under way ended");
    assert_eq!(feed.acked_seqs().last(), Some(&2), "the POSTs under way are acked");
    assert_acks_in_order(&feed, &received, 2);
}

#[test]
fn events_taken_before_the_connection_is_lost_are_delivered_and_not_posted_again_after_it() {
    let server = WebhookServer::start(vec![Answer::Slow(Duration::from_millis(300)); 3]);
    let (_handle, stop) = stop_signal();
    let mut mark = DeliveredMark::default();
    // Three POSTs under way when the connection drops: they still end in a 2xx, and the
    // mark remembers them, though no ack could be sent.
    let mut lost = ScriptedFeed::losing_the_connection(events(1..=3), "connection reset");
    let pumped = run(&mut lost, &server, 4, RETRY, &stop, &mut mark);
    assert_eq!(pumped, Err(FeedError("connection reset".into())));
    assert!(lost.acks.is_empty(), "acked on a lost connection");
    assert!(mark.covers(3));

    // The next subscription sends them again: acked without a second POST; 4 is new.
    let mut again = ScriptedFeed::new(events(1..=4));
    run(&mut again, &server, 4, RETRY, &stop, &mut mark).expect("a scripted feed does not fail");
    let received = requests(&server, 4);
    let mut seqs: Vec<u64> = received.iter().map(Received::seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 2, 3, 4], "an event POSTed twice");
    assert_eq!(again.acked_seqs(), [1, 2, 3, 4]);
    assert!(again.acks[3].1 >= received.iter().find(|r| r.seq() == 4).expect("4 POSTed").answering);
}
