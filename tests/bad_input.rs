//! Hostile and broken input: protocol.md "Framing" and "Errors". Every case gets a typed
//! error, a close where the stream can no longer be trusted, and never a crash: each test
//! ends by showing that the server still serves a well-behaved client.

use crate::common::TestServer;
use confab::client::{Client, ClientError};
use confab::frame;
use confab::protocol::{ClientFrame, ClientMsgId, ErrorCode, Reply, Request, Seq, ServerFrame, PROTOCOL_VERSION};
use std::io::Write;

fn error_of(frame: ServerFrame) -> (u32, ErrorCode) {
    match frame {
        ServerFrame::Error { request_id, code, .. } => (request_id, code),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

fn raw_frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = (body.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(body);
    bytes
}

fn still_serving(server: &TestServer) {
    let mut client = server.client();
    assert_eq!(client.request(Request::Ping).unwrap(), Reply::Pong);
}

#[test]
fn malformed_body_gets_an_error_and_the_connection_survives() {
    let server = TestServer::start();
    let mut client = server.client();
    // Request id 9, then an unknown request variant 200.
    client.write_raw(&raw_frame(&[9, 0xc8, 0x01])).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (9, ErrorCode::BadRequest));
    // Request id 10, Register with a string length running past the end.
    client.write_raw(&raw_frame(&[10, 2, 50, b'a'])).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (10, ErrorCode::BadRequest));
    // A valid request followed by trailing garbage in the same frame.
    let mut ping = frame::encode(&ClientFrame { request_id: 11, request: Request::Ping })[4..].to_vec();
    ping.push(0xff);
    client.write_raw(&raw_frame(&ping)).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (11, ErrorCode::BadRequest));
    // Invalid UTF-8 in a string.
    client.write_raw(&raw_frame(&[12, 2, 3, 0xff, 0xfe, 0xfd, 0])).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (12, ErrorCode::BadRequest));
    assert_eq!(client.request(Request::Ping).unwrap(), Reply::Pong);
}

#[test]
fn oversized_frame_is_refused_and_closed() {
    let server = TestServer::start();
    let mut client = server.client();
    client.write_raw(&(64 * 1024 + 1u32).to_be_bytes()).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (0, ErrorCode::FrameTooLarge));
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
    still_serving(&server);
}

#[test]
fn a_four_gigabyte_length_prefix_costs_nothing() {
    let server = TestServer::start();
    let mut client = Client::connect_raw(server.addr).unwrap();
    client.write_raw(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (0, ErrorCode::FrameTooLarge));
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
    still_serving(&server);
}

#[test]
fn zero_length_frame_closes() {
    let server = TestServer::start();
    let mut client = server.client();
    client.write_raw(&[0, 0, 0, 0]).unwrap();
    assert_eq!(error_of(client.read_frame().unwrap()), (0, ErrorCode::BadRequest));
    assert!(matches!(client.read_frame(), Err(ClientError::Closed)));
    still_serving(&server);
}

#[test]
fn truncated_frames_then_hang_up() {
    let server = TestServer::start();
    for cut in [1usize, 3, 4, 6] {
        let mut client = server.client();
        let bytes = frame::encode(&ClientFrame {
            request_id: 1,
            request: Request::Login { username: "alice".into(), password: "whatever1".into() },
        });
        client.write_raw(&bytes[..cut]).unwrap();
        drop(client);
    }
    still_serving(&server);
}

#[test]
fn frames_split_byte_by_byte_and_batched_in_one_write() {
    let server = TestServer::start();
    let mut client = Client::connect_raw(server.addr).unwrap();
    let hello = frame::encode(&ClientFrame {
        request_id: 1,
        request: Request::Hello { version: PROTOCOL_VERSION, client: "slow".into() },
    });
    for byte in &hello {
        client.write_raw(&[*byte]).unwrap();
        client.stream().flush().unwrap();
    }
    assert!(matches!(client.read_frame().unwrap(), ServerFrame::Reply { request_id: 1, reply: Reply::Hello { .. } }));
    let mut batch = Vec::new();
    for id in 2..=40 {
        frame::encode_into(&ClientFrame { request_id: id, request: Request::Ping }, &mut batch);
    }
    client.write_raw(&batch).unwrap();
    for id in 2..=40 {
        assert_eq!(client.read_frame().unwrap(), ServerFrame::Reply { request_id: id, reply: Reply::Pong });
    }
}

#[test]
fn garbage_connections_do_not_disturb_others() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let mut junk = Vec::new();
    for i in 0..20u8 {
        let mut c = Client::connect_raw(server.addr).unwrap();
        let noise: Vec<u8> = (0..64).map(|j| i.wrapping_mul(31).wrapping_add(j)).collect();
        c.write_raw(&noise).unwrap();
        junk.push(c);
    }
    for i in 1..=10u64 {
        alice.send_text("bob", ClientMsgId(i), "still here").unwrap();
    }
    for _ in 0..10 {
        bob.next_message().unwrap();
    }
    drop(junk);
    still_serving(&server);
}

#[test]
fn a_flood_of_hostile_connections_leaves_the_server_serving() {
    let server = TestServer::start();
    let mut alice = server.user("alice");
    let mut bob = server.user("bob");
    let valid_hello = frame::encode(&ClientFrame {
        request_id: 1,
        request: Request::Hello { version: PROTOCOL_VERSION, client: "x".into() },
    });
    let mut hostile = Vec::new();
    // A small deterministic generator: the same garbage every run.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..200u64 {
        let mut c = Client::connect_raw(server.addr).unwrap();
        let bytes: Vec<u8> = match i % 5 {
            // Pure noise.
            0 => (0..256).map(|_| next() as u8).collect(),
            // A 4 GiB length prefix.
            1 => vec![0xff, 0xff, 0xff, 0xff, 0, 0],
            // Half a frame, then silence.
            2 => valid_hello[..valid_hello.len() / 2].to_vec(),
            // A valid Hello followed by frames of random bodies.
            3 => {
                let mut b = valid_hello.clone();
                for _ in 0..20 {
                    let body: Vec<u8> = (0..(next() % 40 + 1)).map(|_| next() as u8).collect();
                    b.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    b.extend_from_slice(&body);
                }
                b
            }
            // A valid Hello, then a login storm with garbage names.
            _ => {
                let mut b = valid_hello.clone();
                for id in 2..30 {
                    let name: String = (0..8).map(|_| char::from(b'a' + (next() % 26) as u8)).collect();
                    let request = Request::Login { username: name, password: "whatever1".into() };
                    frame::encode_into(&ClientFrame { request_id: id, request }, &mut b);
                }
                b
            }
        };
        // The server may close some of these before the write completes.
        let _ = c.write_raw(&bytes);
        hostile.push(c);
    }
    for i in 1..=50u64 {
        alice.send_text("bob", ClientMsgId(i), "business as usual").unwrap();
    }
    for seq in (1..=50).map(Seq) {
        assert_eq!(bob.next_message().unwrap().seq, seq);
    }
    drop(hostile);
    still_serving(&server);
}
