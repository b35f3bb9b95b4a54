//! Arbitrary bytes into a live server over TCP: the event loop, the state gate and the
//! workers see whatever a hostile client could send. After each input the server must
//! still answer a well-behaved client.

#![no_main]

use confab::client::Client;
use confab::protocol::{Reply, Request};
use confab::{Config, Server};
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

/// One server for the life of the fuzzing process (held in a static, so the leak
/// sanitizer sees it as reachable, not leaked).
fn server() -> SocketAddr {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("confab-fuzz-{}", std::process::id()));
            let mut config = Config::for_tests(dir);
            config.request_rate = u32::MAX;
            config.request_burst = u32::MAX;
            config.max_connections_per_ip = usize::MAX;
            Server::start(config).expect("the fuzzed server starts")
        })
        .local_addr()
}


fuzz_target!(|data: &[u8]| {
    let addr = server();
    if let Ok(mut stream) = TcpStream::connect(addr) {
        let _ = stream.set_read_timeout(Some(Duration::from_millis(20)));
        let _ = stream.write_all(data);
        let mut sink = [0u8; 4096];
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    }
    let (mut probe, _) = Client::connect(addr, "probe").expect("the server still accepts");
    assert_eq!(probe.request(Request::Ping).expect("the server still answers"), Reply::Pong);
});
