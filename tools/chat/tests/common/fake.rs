//! A fake server node for what one confabd cannot show: the nodes of a cluster that
//! redirect a login to another, or answer `Unavailable`. It speaks the real wire format
//! (confab-proto's codec), answers every Hello itself and every other request with the
//! test's function, and reports the requests it reads.

use confab_proto::frame;
use confab_proto::protocol::{ClientFrame, Limits, Reply, Request, ServerFrame, PROTOCOL_VERSION};
use crossbeam_channel::{Receiver, Sender};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;

type Answer = dyn Fn(u32, &Request) -> ServerFrame + Send + Sync;

pub struct FakeNode {
    pub addr: SocketAddr,
    requests: Receiver<Request>,
}

impl FakeNode {
    /// Listens on a free loopback port; each connection is served on its own thread.
    pub fn start(answer: impl Fn(u32, &Request) -> ServerFrame + Send + Sync + 'static) -> FakeNode {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local address");
        let (seen, requests) = crossbeam_channel::unbounded();
        let answer: Arc<Answer> = Arc::new(answer);
        // The threads end with the test process (or when a client leaves).
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (answer, seen) = (Arc::clone(&answer), seen.clone());
                std::thread::spawn(move || serve(stream, &*answer, &seen));
            }
        });
        FakeNode { addr, requests }
    }

    /// Every request read so far (Hellos included), in order.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.try_iter().collect()
    }
}

fn serve(mut stream: TcpStream, answer: &Answer, seen: &Sender<Request>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        while let Ok(Some((body, used))) = frame::split(&buf, 1 << 20) {
            let Ok(ClientFrame { request_id, request }) = frame::decode_body::<ClientFrame>(body) else { return };
            buf.drain(..used);
            let reply = match request {
                Request::Hello { .. } | Request::HelloApp { .. } => hello(request_id),
                ref request => answer(request_id, request),
            };
            let _ = seen.send(request);
            if stream.write_all(&frame::encode(&reply)).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn hello(request_id: u32) -> ServerFrame {
    let limits = Limits {
        request_rate: 100,
        request_burst: 200,
        delivery_window_bytes: 65_536,
        max_outbound: 1 << 20,
        token_ttl_secs: 3600,
        max_frame_before_login: 1024,
    };
    let reply = Reply::Hello {
        version: PROTOCOL_VERSION,
        server: "fake".into(),
        max_frame: 1 << 16,
        max_body: 1 << 15,
        heartbeat_secs: 30,
        idle_timeout_secs: 90,
        delivery_window: 64,
        limits,
    };
    ServerFrame::Reply { request_id, reply }
}
