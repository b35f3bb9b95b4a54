//! Hostile users against the real server: limits that must hold whatever the
//! interleaving, fan-out that must cost its sender, backlogs that must drain.

use crate::common::daemon::spawn_daemon;
use crate::common::{in_default, DataDir, TestServer, PASSWORD};
use confab::client::Client;
use confab::frame;
use confab::protocol::{ClientMsgId, Content, ErrorCode, GroupId, MediaKind, Reply, Request, Seq, ServerFrame, Target};

/// Sends every request before reading any reply (one pipelined burst); returns the replies
/// (errors as their codes) in request order.
fn pipelined(client: &mut Client, requests: Vec<Request>) -> Vec<Result<Reply, ErrorCode>> {
    let ids: Vec<u32> = requests.into_iter().map(|r| client.send(r).unwrap()).collect();
    ids.into_iter()
        .map(|id| client.reply_to(id).map_err(|e| e.code().unwrap_or_else(|| panic!("transport error: {e}"))))
        .collect()
}

fn group_count(client: &mut Client) -> usize {
    match client.request(Request::ListGroups).unwrap() {
        Reply::Groups { groups } => groups.len(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pipelined_group_creation_stops_at_the_limit() {
    // Three workers: the new groups land on all of them, while the count is the creator's.
    let server = TestServer::with(|c| {
        c.workers = 3;
        c.max_groups_per_user = 10;
    });
    let mut mallory = server.user("mallory");
    let creates = (0..60).map(|i| Request::CreateGroup { name: format!("g{i}"), open: false }).collect();
    let outcomes = pipelined(&mut mallory, creates);
    let created = outcomes.iter().filter(|o| o.is_ok()).count();
    assert_eq!(created, 10, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, Ok(Reply::GroupCreated { .. }) | Err(ErrorCode::LimitReached))));
    assert_eq!(group_count(&mut mallory), 10);
}

/// Creates `count` groups owned by `client`, pipelined; returns their ids.
fn create_groups(client: &mut Client, prefix: &str, count: usize) -> Vec<GroupId> {
    let creates = (0..count).map(|i| Request::CreateGroup { name: format!("{prefix}{i}"), open: false }).collect();
    pipelined(client, creates)
        .into_iter()
        .map(|o| match o {
            Ok(Reply::GroupCreated { group_id }) => group_id,
            other => panic!("{other:?}"),
        })
        .collect()
}

#[test]
fn racing_adds_on_several_workers_stop_at_the_victims_limit() {
    let server = TestServer::with(|c| {
        c.workers = 3;
        c.max_groups_per_user = 10;
    });
    server.register(&["victim"]);
    let mut mallory = server.user("mallory");
    let mut eve = server.user("eve");
    let mallorys = create_groups(&mut mallory, "m", 9);
    let eves = create_groups(&mut eve, "e", 9);
    // Two adders interleave on the victim, on three workers: 18 adds, room for 10.
    let mut sent = Vec::new();
    for (client, groups) in [(&mut mallory, &mallorys), (&mut eve, &eves)] {
        let ids: Vec<u32> = groups
            .iter()
            .map(|&group_id| client.send(Request::AddMember { group_id, username: "victim".into() }).unwrap())
            .collect();
        sent.push(ids);
    }
    let mut added = 0;
    for (client, ids) in [&mut mallory, &mut eve].into_iter().zip(sent) {
        for id in ids {
            match client.reply_to(id) {
                Ok(Reply::Done) => added += 1,
                Err(e) => assert_eq!(e.code(), Some(ErrorCode::LimitReached), "{e}"),
                Ok(other) => panic!("{other:?}"),
            }
        }
    }
    assert_eq!(added, 10);
    let mut victim = server.client();
    victim.login("victim", PASSWORD).unwrap();
    assert_eq!(group_count(&mut victim), 10);
}

fn room_send(room: &str, body: Vec<u8>) -> Request {
    Request::Send {
        to: Target::Room(room.into()),
        client_msg_id: ClientMsgId::NONE,
        transient: true,
        content: Content { kind: MediaKind::Custom, body, media: None },
    }
}

fn join(client: &mut Client, room: &str) -> Result<Reply, ErrorCode> {
    client.request(Request::JoinRoom { room: room.into() }).map_err(|e| e.code().expect("a typed refusal"))
}

#[test]
fn a_room_send_costs_its_sender_bytes_times_members() {
    // 64 KiB a second, 2 MiB saved up; 20 members hear 30 KB: about 600 KB a send.
    let server = TestServer::with(|c| {
        c.fanout_rate = 64 * 1024;
        c.fanout_burst = 2 * 1024 * 1024;
    });
    let names: Vec<String> = (0..20).map(|i| format!("member{i}")).collect();
    let mut members: Vec<Client> = names.iter().map(|n| server.user(n)).collect();
    for member in &mut members {
        join(member, "hall").unwrap();
    }
    let mut mallory = server.user("mallory");
    join(&mut mallory, "hall").unwrap();
    let outcomes = pipelined(&mut mallory, (0..10).map(|_| room_send("hall", vec![b'x'; 30 * 1024])).collect());
    let delivered = outcomes.iter().filter(|o| matches!(o, Ok(Reply::Delivered { recipients: 20 }))).count();
    assert_eq!(delivered, 3, "{outcomes:?}");
    assert!(outcomes[3..].iter().all(|o| *o == Err(ErrorCode::RateLimited)), "{outcomes:?}");
    // The refusal says when the budget has room again: at 64 KiB a second, seconds away.
    let refused = mallory.request(room_send("hall", vec![b'x'; 30 * 1024])).unwrap_err();
    assert!(refused.retry_after().is_some_and(|wait| wait > std::time::Duration::from_secs(1)), "{refused}");
    // Small talk in the same room is cheap, and others' budgets are their own.
    let mut member = members.pop().unwrap();
    assert_eq!(member.request(room_send("hall", b"hi".to_vec())).unwrap(), Reply::Delivered { recipients: 20 });
}

#[test]
fn one_fan_out_budget_covers_rooms_on_every_worker() {
    // Rooms spread over workers by name; spreading sends over rooms buys nothing.
    let server = TestServer::with(|c| {
        c.workers = 4;
        c.fanout_rate = 64 * 1024;
        c.fanout_burst = 2 * 1024 * 1024;
    });
    let rooms: Vec<String> = (0..4).map(|i| format!("hall{i}")).collect();
    let workers: std::collections::HashSet<usize> =
        rooms.iter().map(|r| confab::route::Owner::Room(r).partition(4)).collect();
    assert!(workers.len() > 1, "the rooms are on several workers");
    let mut members: Vec<Client> = (0..10).map(|i| server.user(&format!("member{i}"))).collect();
    let mut mallory = server.user("mallory");
    for room in &rooms {
        for member in &mut members {
            join(member, room).unwrap();
        }
        join(&mut mallory, room).unwrap();
    }
    // 10 members x 30 KB: about 300 KB a send, so about 7 fit the 2 MiB budget in all.
    let sends = rooms.iter().cycle().take(40).map(|room| room_send(room, vec![b'x'; 30 * 1024])).collect();
    let delivered = pipelined(&mut mallory, sends).iter().filter(|o| o.is_ok()).count();
    assert!((6..=8).contains(&delivered), "{delivered} delivered");
}

#[test]
fn presence_subscriptions_per_connection_are_limited_across_workers() {
    let server = TestServer::with(|c| {
        c.workers = 3;
        c.max_subscriptions = 5;
    });
    let names: Vec<String> = (0..20).map(|i| format!("target{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    server.register(&refs);
    let mut mallory = server.user("mallory");
    let subscribe = |client: &mut Client, name: &str| {
        client.request(Request::SubscribePresence { username: name.into() }).map_err(|e| e.code().unwrap())
    };
    let outcomes: Vec<_> = names.iter().map(|n| subscribe(&mut mallory, n)).collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 5, "{outcomes:?}");
    assert!(outcomes[5..].iter().all(|o| *o == Err(ErrorCode::LimitReached)));
    // Subscribing again to the same user takes no second place.
    assert!(subscribe(&mut mallory, &names[0]).is_ok());
    mallory.request(Request::UnsubscribePresence { username: names[0].clone() }).unwrap();
    assert!(subscribe(&mut mallory, &names[19]).is_ok());
    assert_eq!(subscribe(&mut mallory, &names[18]), Err(ErrorCode::LimitReached));
}

#[test]
fn rooms_per_connection_are_limited_across_workers() {
    let server = TestServer::with(|c| {
        c.workers = 3;
        c.max_rooms_per_conn = 5;
    });
    let mut mallory = server.user("mallory");
    // Room names spread over the three workers; the limit is the connection's.
    let outcomes: Vec<_> = (0..20).map(|i| join(&mut mallory, &format!("room{i}"))).collect();
    assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 5, "{outcomes:?}");
    assert!(outcomes[5..].iter().all(|o| *o == Err(ErrorCode::LimitReached)));
    mallory.request(Request::LeaveRoom { room: "room0".into() }).unwrap();
    join(&mut mallory, "room19").unwrap();
    // A new connection starts with none.
    let mut again = server.login("mallory");
    join(&mut again, "room18").unwrap();
}

/// The daemon's peak resident memory, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the daemon's /proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
    line.split_whitespace().nth(1).and_then(|kib| kib.parse::<u64>().ok()).expect("VmHWM in kB") * 1024
}

#[test]
fn a_room_of_members_who_never_read_costs_at_most_their_output_bound() {
    // The daemon as a child, so its memory is its own. No fan-out budget: the bound on
    // what is owed to each connection has to hold by itself.
    let data = DataDir::new();
    let daemon = spawn_daemon(
        data.path(),
        &["--max-outbound", "1048576", "--fanout-rate-mib", "100000", "--cache-mib", "16", "--register-rate", "100000"],
    );
    let mut setup = Client::connect(daemon.addr, "setup").unwrap().0;
    let names: Vec<String> = (0..100).map(|i| format!("idle{i}")).collect();
    for name in names.iter().map(String::as_str).chain(["mallory"]) {
        setup.register(name, PASSWORD).unwrap();
    }
    let _idle: Vec<Client> = names
        .iter()
        .map(|name| {
            let mut client = Client::connect(daemon.addr, "idle").unwrap().0;
            client.login(name, PASSWORD).unwrap();
            join(&mut client, "hall").unwrap();
            client
        })
        .collect();
    let mut mallory = Client::connect(daemon.addr, "mallory").unwrap().0;
    mallory.login("mallory", PASSWORD).unwrap();
    join(&mut mallory, "hall").unwrap();
    // 1,500 sends of 30 KB to 100 members who never read: 4.5 GB of fan-out.
    let mut reader = mallory.stream().try_clone().unwrap();
    reader.set_read_timeout(Some(std::time::Duration::from_secs(120))).unwrap();
    let replies = std::thread::spawn(move || {
        // Counts the sends fanned out until the request after them is answered.
        let (mut buf, mut chunk, mut delivered) = (Vec::new(), vec![0u8; 64 * 1024], 0);
        loop {
            while let Ok(Some((body, used))) = frame::split(&buf, u32::MAX) {
                match frame::decode_body::<ServerFrame>(body).unwrap() {
                    ServerFrame::Reply { reply: Reply::Delivered { .. }, .. } => delivered += 1,
                    ServerFrame::Reply { reply: Reply::RoomMembers { .. }, .. } => return delivered,
                    _ => {}
                }
                buf.drain(..used);
            }
            match std::io::Read::read(&mut reader, &mut chunk) {
                Ok(0) => return delivered,
                Err(e) => panic!("{e} after {delivered}"),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    });
    for _ in 0..1500 {
        mallory.send(room_send("hall", vec![b'x'; 30 * 1024])).unwrap();
    }
    // Answered by the room's worker after every send before it (a ping is answered by
    // the event loop at once).
    mallory.send(Request::RoomMembers { room: "hall".into() }).unwrap();
    let delivered = replies.join().unwrap();
    assert_eq!(delivered, 1500);
    let peak = peak_rss(daemon.child.id());
    // 100 connections times 1 MiB, plus the daemon itself.
    assert!(peak < 400 * 1024 * 1024, "peak RSS {} MiB", peak / (1024 * 1024));
}

#[test]
fn a_backlog_across_many_groups_drains_within_the_output_bound() {
    // 30 groups of 20 messages of 16 KB: 9.6 MB owed, far past the 1 MiB output bound,
    // and each group's backlog (320 KB) is inside the per-conversation window. Anyone may
    // add anyone to a group: this is what an attacker can do to a victim.
    let server = TestServer::with(|c| {
        c.workers = 3;
        c.max_outbound = 1024 * 1024;
        c.delivery_window_bytes = 512 * 1024;
    });
    server.register(&["victim"]);
    let mut mallory = server.user("mallory");
    let groups = create_groups(&mut mallory, "g", 30);
    let mut requests: Vec<Request> =
        groups.iter().map(|&group_id| Request::AddMember { group_id, username: "victim".into() }).collect();
    for (i, &group_id) in groups.iter().enumerate() {
        for n in 0..20 {
            requests.push(Request::Send {
                to: Target::Group(group_id),
                client_msg_id: ClientMsgId((i * 100 + n + 1) as u64),
                transient: false,
                content: Content { kind: MediaKind::File, body: vec![b'x'; 16 * 1024], media: None },
            });
        }
    }
    assert!(pipelined(&mut mallory, requests).iter().all(Result::is_ok));
    // The victim reads and acks as it goes: every message arrives, in order per group,
    // and it is never cut off.
    let mut victim = server.client();
    victim.login("victim", PASSWORD).unwrap();
    let mut next: std::collections::HashMap<GroupId, Seq> = groups.iter().map(|&g| (g, Seq::ZERO)).collect();
    let mut received = 0;
    while received < 30 * 20 {
        let message = victim.next_message().unwrap_or_else(|e| panic!("after {received} messages: {e}"));
        let confab::protocol::Conversation::Group(group_id) = message.conversation else {
            panic!("{message:?}");
        };
        let seen = next.get_mut(&group_id).expect("one of the groups");
        assert!(message.seq > *seen, "in order per group");
        *seen = message.seq;
        if message.event.is_none() {
            received += 1;
        }
        victim.send(Request::Ack { conversation: message.conversation, up_to: message.seq }).unwrap();
    }
}

#[test]
fn an_inbox_holds_at_most_its_quota_and_reading_frees_it() {
    // 1 MiB per inbox: about 31 messages of 32 KB.
    let mut server = TestServer::with(|c| c.max_inbox_bytes = 1024 * 1024);
    server.register(&["sink"]);
    let mut mallory = server.user("mallory");
    let big = |i: u64| Request::Send {
        to: Target::User("sink".into()),
        client_msg_id: ClientMsgId(i),
        transient: false,
        content: Content { kind: MediaKind::File, body: vec![b'x'; 32 * 1024], media: None },
    };
    let outcomes = pipelined(&mut mallory, (1..=100).map(big).collect());
    let stored = outcomes.iter().take_while(|o| o.is_ok()).count();
    assert!((25..=32).contains(&stored), "{stored} stored");
    assert!(outcomes[stored..].iter().all(|o| *o == Err(ErrorCode::QuotaExceeded)), "{outcomes:?}");
    // A retry of a stored message still gets its receipt; the quota holds across a restart.
    assert!(matches!(mallory.request(big(1)).unwrap(), Reply::Sent { duplicate: true, .. }));
    drop(mallory);
    server.restart();
    let mut mallory = server.login("mallory");
    assert_eq!(mallory.request(big(1000)).unwrap_err().code(), Some(ErrorCode::QuotaExceeded));
    // The recipient reads and acks: room again.
    let mut sink = server.login("sink");
    for seq in (1..=stored as u64).map(Seq) {
        assert_eq!(sink.next_message().unwrap().seq, seq);
    }
    sink.ack(Seq(stored as u64)).unwrap();
    assert!(matches!(mallory.request(big(1001)).unwrap(), Reply::Sent { duplicate: false, .. }));
    // Small messages to someone else are not affected by sink's quota.
    assert!(mallory.send_text("mallory", ClientMsgId(1002), "note to self").is_ok());
}

#[test]
fn output_owed_to_all_clients_together_is_bounded() {
    // Each idle client may be owed 32 MiB, all together 32 MiB too: four of them fed
    // 30 MiB each cannot all keep theirs, even if the kernel's socket buffers take up to
    // 10 MB of each.
    let server = TestServer::with(|c| {
        c.max_outbound = 32 * 1024 * 1024;
        c.max_outbound_total = 32 * 1024 * 1024;
        c.request_rate = 1_000_000;
        c.request_burst = 1_000_000;
    });
    let names: Vec<String> = (0..4).map(|i| format!("idle{i}")).collect();
    let mut idle: Vec<Client> = names.iter().map(|n| server.user(n)).collect();
    let mut mallory = server.user("mallory");
    for name in &names {
        let typing: Vec<Request> = (0..960)
            .map(|_| Request::Send {
                to: Target::User(name.clone()),
                client_msg_id: ClientMsgId::NONE,
                transient: true,
                content: Content { kind: MediaKind::Custom, body: vec![b'x'; 32 * 1024], media: None },
            })
            .collect();
        assert!(pipelined(&mut mallory, typing).iter().all(Result::is_ok));
    }
    // Each idle client now reads what it was left: some were closed to keep the total
    // under the bound, the others still hold their whole share.
    let mut closed = 0;
    for client in &mut idle {
        client.set_timeout(std::time::Duration::from_millis(500)).unwrap();
        loop {
            match client.read_frame() {
                Ok(_) => {}
                Err(confab::client::ClientError::Closed) => {
                    closed += 1;
                    break;
                }
                Err(confab::client::ClientError::Timeout) => break,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!((1..4).contains(&closed), "{closed} of 4 closed");
}

#[test]
fn services_fill_a_quota_they_are_never_refused_by() {
    let server = TestServer::with(|c| c.max_inbox_bytes = 1024 * 1024);
    server.register(&["sink"]);
    let token = confab::admin::add_service(server.server().store(), &in_default("shop"), false).unwrap();
    let mut shop = server.client();
    shop.request(Request::ServiceLogin { name: "shop".into(), token }).unwrap();
    // 40 messages of 32 KB: past the quota, and every one stored.
    for id in 1..=40 {
        let notice = Request::ServiceSend {
            to: confab::protocol::ServiceTarget::Users(vec!["sink".into()]),
            client_msg_id: ClientMsgId(id),
            transient: false,
            content: Content { kind: MediaKind::File, body: vec![b'x'; 32 * 1024], media: None },
        };
        shop.request(notice).unwrap_or_else(|e| panic!("service send {id}: {e}"));
    }
    // What they stored counts: a user's send finds the inbox full.
    let mut mallory = server.user("mallory");
    assert_eq!(mallory.send_text("sink", ClientMsgId(1), "hi").unwrap_err().code(), Some(ErrorCode::QuotaExceeded));
}

#[test]
fn a_fan_out_bigger_than_the_servers_output_bound_is_refused_with_a_retry_time() {
    // All clients together may be owed 64 KiB: three recipients times 30 KB is more.
    let server = TestServer::with(|c| {
        c.max_outbound = 64 * 1024;
        c.max_outbound_total = 64 * 1024;
    });
    let mut members: Vec<Client> = (0..4).map(|i| server.user(&format!("member{i}"))).collect();
    for member in &mut members {
        join(member, "hall").unwrap();
    }
    let refused = members[0].request(room_send("hall", vec![b'x'; 30 * 1024])).unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::RateLimited), "{refused}");
    assert!(refused.retry_after().is_some(), "{refused}");
    // A small message fits.
    assert_eq!(members[0].request(room_send("hall", b"hi".to_vec())).unwrap(), Reply::Delivered { recipients: 3 });
}
