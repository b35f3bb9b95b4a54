//! Hostile users against the real server: limits that must hold whatever the
//! interleaving, fan-out that must cost its sender, backlogs that must drain.

use crate::common::{TestServer, PASSWORD};
use confab::client::Client;
use confab::protocol::{ErrorCode, Reply, Request};

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
fn create_groups(client: &mut Client, prefix: &str, count: usize) -> Vec<u64> {
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
