//! The whole gateway (`gateway::run`: the link's threads, the loop, the delivery threads,
//! the webhook; the default concurrency) against a fake confabd that the test drives frame
//! by frame: events pushed while an ack is still unanswered, a connection lost before an
//! ack's receipt, a standby, the heartbeat, the refusals that end the gateway, and the last
//! ack confirmed before a stop closes.

use crate::common::fake_confabd::{hello_reply, FakeConfabd, FakeConn, WAIT};
use crate::common::feed::direct_event;
use crate::common::gateway_thread::{finished, start_gateway, SERVICE, TOKEN};
use crate::common::webhook_server::{Received, WebhookServer};
use confab_proto::protocol::{ErrorCode, Reply, Request};
use confab_pushgw::gateway::Fatal;
use std::time::{Duration, Instant};

/// Reads acks, answering each with its position, until one reaches `up_to`, which is
/// left unanswered; returns them with when they came, and the last one's request id.
fn acks_until(conn: &mut FakeConn, up_to: u64) -> (Vec<(u64, Instant)>, u32) {
    let mut acks = Vec::new();
    loop {
        let (id, acked) = conn.next_ack();
        acks.push((acked, Instant::now()));
        assert!(acks.windows(2).all(|w| w[0].0 < w[1].0), "acks go forward: {acks:?}");
        if acked >= up_to {
            assert_eq!(acked, up_to, "acked past the last event");
            return (acks, id);
        }
        conn.reply(id, Reply::PushAcked { up_to: acked });
    }
}

/// Every ack came after the webhook began its 2xx answer to that event and to every
/// earlier one in `posts` (POSTs run concurrently; acks are cumulative).
fn assert_acked_after_delivery(acks: &[(u64, Instant)], posts: &[Received]) {
    for (acked, at) in acks {
        assert!(posts.iter().any(|p| p.seq() == *acked), "ack {acked} without a POST");
        for post in posts.iter().filter(|p| p.seq() <= *acked) {
            assert!(*at >= post.answering, "event {} acked (up to {acked}) before the webhook answered it", post.seq());
        }
    }
}

#[test]
fn events_pushed_while_an_ack_is_unanswered_are_delivered_and_acked_in_order_and_a_lost_ack_does_not_post_again() {
    let fake = FakeConfabd::start();
    let webhook = WebhookServer::start(vec![]);
    let (stop, gateway) = start_gateway(&fake, &webhook);

    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    conn.subscribe(0, 2);
    conn.push(direct_event(1, "one"));
    conn.push(direct_event(2, "two"));
    // The first ack stays unanswered while event 3 is pushed: receipt and event interleave.
    let (first_id, first) = conn.next_ack();
    let mut acks = vec![(first, Instant::now())];
    conn.push(direct_event(3, "three"));
    conn.reply(first_id, Reply::PushAcked { up_to: first });
    acks.extend(acks_until(&mut conn, 3).0);
    // 1 and 2 are POSTed at once and may be answered in either order.
    let mut posts: Vec<Received> = (0..3).map(|_| webhook.next(WAIT)).collect();
    posts.sort_by_key(Received::seq);
    assert_eq!(posts.iter().map(Received::seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_acked_after_delivery(&acks, &posts);

    // The connection drops before ack 3's receipt: the server sends 3 again. The gateway
    // delivered it already, so it acks it without a POST, then delivers 4.
    conn.close();
    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    conn.subscribe(2, 4);
    conn.push(direct_event(3, "three"));
    conn.push(direct_event(4, "four"));
    let (acks, last_id) = acks_until(&mut conn, 4);
    let post = webhook.next(WAIT);
    assert_eq!(post.seq(), 4, "event 3 was POSTed again");
    assert_acked_after_delivery(&acks[acks.len() - 1..], std::slice::from_ref(&post));
    assert!(acks.iter().all(|(acked, _)| *acked >= 3));

    // A stop waits for the receipt of the last ack before it closes.
    stop.stop();
    assert!(!conn.closed_within(Duration::from_millis(300)), "closed before the last ack's receipt");
    conn.reply(last_id, Reply::PushAcked { up_to: 4 });
    assert!(conn.closed_within(WAIT), "the gateway did not close after the receipt");
    assert_eq!(finished(gateway), Ok(()));
    assert!(webhook.try_next(Duration::from_millis(50)).is_none(), "no more POSTs");
}

#[test]
fn a_standby_waits_while_another_gateway_holds_the_feed_and_pings_while_idle() {
    let fake = FakeConfabd::start();
    let webhook = WebhookServer::start(vec![]);
    let (stop, gateway) = start_gateway(&fake, &webhook);

    let mut conn = fake.accept();
    conn.handshake(1, SERVICE, TOKEN);
    let id = conn.expect(&Request::SubscribePush);
    conn.error(id, ErrorCode::LimitReached, "another gateway holds the push feed");
    assert!(conn.closed_within(WAIT), "the standby keeps its refused connection open");

    let mut conn = fake.accept();
    conn.handshake(1, SERVICE, TOKEN);
    conn.subscribe(0, 0);
    // Nothing to deliver: within a heartbeat (1 s here) the gateway pings.
    let idle_since = Instant::now();
    let ping = conn.read_frame();
    assert_eq!(ping.request, Request::Ping);
    assert!(idle_since.elapsed() >= Duration::from_millis(500), "pinged at once, not after a heartbeat");
    conn.reply(ping.request_id, Reply::Pong);
    conn.push(direct_event(1, "one"));
    let (acks, last_id) = acks_until(&mut conn, 1);
    assert_acked_after_delivery(&acks, &[webhook.next(WAIT)]);

    stop.stop();
    conn.reply(last_id, Reply::PushAcked { up_to: 1 });
    assert!(conn.closed_within(WAIT));
    assert_eq!(finished(gateway), Ok(()));
}

#[test]
fn an_error_in_answer_to_an_ack_makes_the_gateway_subscribe_again() {
    let fake = FakeConfabd::start();
    let webhook = WebhookServer::start(vec![]);
    let (stop, gateway) = start_gateway(&fake, &webhook);

    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    conn.subscribe(0, 1);
    conn.push(direct_event(1, "one"));
    let (id, acked) = conn.next_ack();
    assert_eq!(acked, 1);
    conn.error(id, ErrorCode::BadRequest, "up_to beyond the last event sent");
    assert!(conn.closed_within(WAIT), "the gateway goes on after an error to its ack");

    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    conn.subscribe(0, 1);
    conn.push(direct_event(1, "one"));
    let (id, acked) = conn.next_ack();
    assert_eq!(acked, 1);
    conn.reply(id, Reply::PushAcked { up_to: 1 });
    assert_eq!(webhook.next(WAIT).seq(), 1);
    assert!(webhook.try_next(Duration::from_millis(200)).is_none(), "delivered event 1 twice");
    stop.stop();
    assert!(conn.closed_within(WAIT));
    assert_eq!(finished(gateway), Ok(()));
}

#[test]
fn a_wrong_token_or_a_service_without_the_push_permission_ends_the_gateway() {
    let webhook = WebhookServer::start(vec![]);

    let fake = FakeConfabd::start();
    let (_stop, gateway) = start_gateway(&fake, &webhook);
    let mut conn = fake.accept();
    let (id, _) = conn.next_request();
    conn.reply(id, hello_reply(30));
    let id = conn.expect(&Request::ServiceLogin { name: SERVICE.into(), token: TOKEN.into() });
    conn.error(id, ErrorCode::InvalidToken, "unknown service or wrong token");
    let Err(Fatal(reason)) = finished(gateway) else { panic!("a wrong token is fatal") };
    assert!(reason.contains(SERVICE), "{reason}");
    assert!(!fake.connects_within(Duration::from_millis(200)), "tried again after a fatal refusal");

    let fake = FakeConfabd::start();
    let (_stop, gateway) = start_gateway(&fake, &webhook);
    let mut conn = fake.accept();
    conn.handshake(30, SERVICE, TOKEN);
    let id = conn.expect(&Request::SubscribePush);
    conn.error(id, ErrorCode::Forbidden, "no push permission");
    let Err(Fatal(reason)) = finished(gateway) else { panic!("no push permission is fatal") };
    assert!(reason.contains("confabd service add gw --push"), "{reason}");
}
