//! A cluster's home nodes (protocol.md "Cluster"): where an account's connections go, and
//! following a `Redirect`. A user's account, inbox and tokens live on its home node only;
//! any other node answers its login or register with `Redirect { node, address }` and
//! does nothing else. The engine then connects again at that address, says Hello and
//! makes the same login there (the connection's state machine starts over, as for any
//! new connection), and sends every later connection of the account straight there.

use super::{Auth, Engine, Handler};
use crate::error::Fault;
use confab_proto::client::MAX_REDIRECTS;
use std::net::SocketAddr;

impl Engine {
    /// Where account `account`'s connections go: the home a redirect named, else one of
    /// the addresses given, chosen by the account's number so the accounts spread evenly
    /// (with one address, always that one).
    pub fn home(&self, account: usize) -> SocketAddr {
        self.homes.get(&account).copied().unwrap_or(self.targets[account % self.targets.len()])
    }

    /// The login or register on `c` was answered with `Redirect { address, .. }`.
    pub(super) fn redirected<H: Handler>(&mut self, c: usize, address: &str, h: &mut H) {
        // The event loop must not block on a name lookup: nodes are named by address.
        let Ok(home) = address.parse::<SocketAddr>() else {
            return self.fail(c, Fault::Unexpected("redirect to something that is not an address"), h);
        };
        let conn = &self.conns[c];
        // Back where it is, or on and on: the nodes disagree about the node list.
        if home == conn.addr || usize::from(conn.hops) >= MAX_REDIRECTS {
            return self.fail(c, Fault::Unexpected("redirect loop"), h);
        }
        let (identity, auth, hops, started): (usize, Auth, u8, u64) =
            (conn.account, conn.auth, conn.hops + 1, conn.setup_started_ns);
        self.homes.insert(self.accounts.account_of(identity), home);
        self.redirects += 1;
        if let Err(fault) = self.connect(c, identity, auth) {
            return self.fail(c, fault, h);
        }
        let conn = &mut self.conns[c];
        conn.hops = hops;
        // The setup's time includes the detour.
        conn.setup_started_ns = started;
    }
}

#[cfg(test)]
mod tests {
    use crate::accounts::Accounts;
    use crate::clock::now_ns;
    use crate::engine::{Auth, Engine};
    use crate::scenario::{establish, Slots};
    use confab_proto::frame;
    use confab_proto::protocol::{ClientFrame, Limits, Reply, Request, Seq, ServerFrame, UserId, PROTOCOL_VERSION};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::sync::{Arc, OnceLock};

    /// A fake node on loopback: it answers Hello itself and everything else with `answer`,
    /// each connection on its own thread (they end with the test process).
    fn node(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("local address");
        let answer = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let answer = Arc::clone(&answer);
                std::thread::spawn(move || serve(stream, &*answer));
            }
        });
        addr
    }

    fn serve(mut stream: TcpStream, answer: &(dyn Fn(&Request) -> Reply + Send + Sync)) {
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            while let Ok(Some((body, used))) = frame::split(&buf, 1 << 20) {
                let Ok(ClientFrame { request_id, request }) = frame::decode_body::<ClientFrame>(body) else { return };
                buf.drain(..used);
                let reply = match request {
                    Request::Hello { .. } | Request::HelloApp { .. } => hello(),
                    ref request => answer(request),
                };
                if stream.write_all(&frame::encode(&ServerFrame::Reply { request_id, reply })).is_err() {
                    return;
                }
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn hello() -> Reply {
        let limits = Limits {
            request_rate: 1000,
            request_burst: 1000,
            delivery_window_bytes: 1 << 20,
            max_outbound: 1 << 24,
            token_ttl_secs: 3600,
            max_frame_before_login: 4096,
        };
        Reply::Hello {
            version: PROTOCOL_VERSION,
            server: "fake".into(),
            max_frame: 1 << 16,
            max_body: 1 << 15,
            heartbeat_secs: 30,
            idle_timeout_secs: 90,
            delivery_window: 64,
            limits,
        }
    }

    /// The home of every user: it registers and logs in whoever asks.
    fn home() -> SocketAddr {
        node(|request| match request {
            Request::Register { .. } => Reply::Registered { user_id: UserId(1) },
            _ => Reply::LoggedIn {
                user_id: UserId(1),
                display_name: "x".into(),
                acked: Seq::ZERO,
                last_seq: Seq::ZERO,
                resume_token: vec![1; 32],
                admin: false,
            },
        })
    }

    fn redirecting(node_id: u32, to: impl Fn() -> SocketAddr + Send + Sync + 'static) -> SocketAddr {
        node(move |_| Reply::Redirect { node: node_id, address: to().to_string() })
    }

    fn engine(targets: Vec<SocketAddr>) -> Engine {
        Engine::new(targets, "default", Vec::new(), Accounts::new("t-", 3)).expect("an engine")
    }

    #[test]
    fn clients_spread_over_the_addresses_end_on_their_home_node() {
        let home = home();
        let other = redirecting(2, move || home);
        let mut eng = engine(vec![other, home]);
        assert_eq!((eng.home(0), eng.home(1), eng.home(2)), (other, home, other), "spread by account");
        let est =
            establish(&mut eng, &[0, 1, 2], Auth::Auto, Slots::KeepOpen, 3, now_ns() + 10_000_000_000, None, None)
                .expect("the engine runs");
        assert_eq!((est.ready, est.failed), (3, 0), "{:?}", est.faults);
        assert_eq!(eng.redirects, 2, "accounts 0 and 2 started elsewhere");
        for c in 0..3 {
            assert_eq!(eng.home(c), home);
            assert_eq!(eng.conns[c].addr, home);
        }
    }

    #[test]
    fn nodes_that_redirect_to_each_other_fail_the_login_after_a_few_hops() {
        let second = Arc::new(OnceLock::new());
        let second_of_first = Arc::clone(&second);
        let first = redirecting(2, move || *second_of_first.get().expect("both nodes started"));
        let second_addr = redirecting(1, move || first);
        second.set(second_addr).expect("set once");
        let mut eng = engine(vec![first]);
        let est = establish(&mut eng, &[0], Auth::Auto, Slots::KeepOpen, 1, now_ns() + 10_000_000_000, None, None)
            .expect("the engine runs");
        assert_eq!((est.ready, est.failed), (0, 1));
        assert_eq!(est.faults.get("unexpected:redirect loop"), Some(&1), "{:?}", est.faults);
        assert_eq!(eng.redirects, super::MAX_REDIRECTS as u64);
    }
}
