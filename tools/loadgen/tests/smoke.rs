//! Smoke test: the built load generator against the real confabd, a child process on an
//! ephemeral port (run by `confab-testd`). Short runs of direct (closed and open loop, and
//! with two devices per client), offline and soak (each with and without push devices),
//! login, group and room; and direct through a fake cluster node that redirects every
//! login to the daemon. The assertions read the `--json` results and check correctness,
//! never timing.

use confab_testd::{confabd, Daemon};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

fn loadgen(addr: SocketAddr, dir: &Path, name: &str, args: &[&str]) -> Value {
    loadgen_at(&addr.to_string(), dir, name, args)
}

/// With `--addr addrs` (a cluster's nodes: "A,B").
fn loadgen_at(addrs: &str, dir: &Path, name: &str, args: &[&str]) -> Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_confab-loadgen"))
        .arg("--addr")
        .arg(addrs)
        .arg("--accounts-file")
        .arg(dir.join("accounts.json"))
        .arg("--json")
        .arg(&json)
        .args(args)
        .output()
        .expect("the load generator runs");
    assert!(
        out.status.success(),
        "{name} failed\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read(&json).expect("--json wrote its file");
    serde_json::from_slice(&text).expect("--json is JSON")
}

/// Every receipted message delivered exactly once, and some were.
fn assert_exactly_once(name: &str, r: &Value) {
    let receipted = r["receipted"].as_u64().expect("receipted");
    assert!(receipted > 0, "{name}: nothing receipted: {r}");
    assert_eq!(r["delivered"].as_u64(), Some(receipted), "{name}: {r}");
    assert_eq!(r["correctness"]["lost"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["duplicated"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["misrouted"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["ok"].as_bool(), Some(true), "{name}");
}

/// Every answered group or room send reached each of the other `members - 1` exactly once.
fn assert_fanout(name: &str, r: &Value, members: u64) {
    let answered = r["receipted"].as_u64().expect("receipted");
    assert!(answered > 0, "{name}: nothing answered: {r}");
    assert_eq!(r["delivered"].as_u64(), Some(answered * (members - 1)), "{name}: {r}");
    assert_eq!(r["correctness"]["lost"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["duplicated"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["misrouted"].as_u64(), Some(0), "{name}");
    assert_eq!(r["correctness"]["ok"].as_bool(), Some(true), "{name}");
}

fn assert_percentiles(name: &str, p: &Value) {
    for field in ["count", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(p[field].is_number(), "{name}: latency field {field} missing in {p}");
    }
}

/// A soak of 2 groups of 5: nothing lost or duplicated, clients came and went, every group
/// message reached the 4 other members, and the server's memory was read.
fn assert_soak(name: &str, soak: &Value) {
    let c = &soak["correctness"];
    assert_eq!(c["lost"].as_u64(), Some(0), "{name}: {soak}");
    assert_eq!(c["duplicated"].as_u64(), Some(0), "{name}: {soak}");
    assert_eq!(c["ok"].as_bool(), Some(true), "{name}: {soak}");
    assert!(soak["delivered"].as_u64() > Some(0), "{name}: {soak}");
    let d = &soak["details"];
    assert!(d["disconnects"].as_u64() > Some(0), "{name}: {d}");
    assert!(d["reconnects"].as_u64() >= d["disconnects"].as_u64(), "{name}: {d}");
    assert_eq!(d["direct"]["delivered"], d["direct"]["receipted"], "{name}: {d}");
    assert_eq!(
        d["group"]["deliveries"].as_u64(),
        d["group"]["receipted"].as_u64().map(|n| n * 4),
        "{name}: every group message reaches the 4 other members: {d}"
    );
    assert!(d["server_rss_kib"]["max_kib"].as_u64() > Some(0), "{name}: {d}");
}

#[test]
fn scenarios_against_the_real_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(confabd(), &dir.path().join("data"), SocketAddr::from(([127, 0, 0, 1], 0)), &[]);
    let addr = daemon.addr;
    let tmp = dir.path();

    let plot = tmp.join("direct.svg");
    let plot_arg = plot.to_string_lossy().to_string();
    let direct = loadgen(
        addr,
        tmp,
        "direct",
        &[
            "direct",
            "--clients",
            "20",
            "--warmup",
            "0",
            "--duration",
            "1",
            "--drain",
            "5",
            "--window",
            "2",
            "--plot",
            &plot_arg,
        ],
    );
    assert_exactly_once("direct", &direct);
    assert_percentiles("direct delivery", &direct["latency_ms"]["delivery"]);
    assert_percentiles("direct receipt", &direct["latency_ms"]["receipt"]);
    assert!(direct["delivered_per_sec"].is_number());
    let svg = std::fs::read_to_string(&plot).expect("--plot wrote its file");
    assert!(svg.contains("<svg"), "not an SVG");

    // Again, open loop: the accounts now log in with their cached tokens.
    let open = loadgen(
        addr,
        tmp,
        "direct-open",
        &["direct", "--clients", "20", "--warmup", "0", "--duration", "1", "--drain", "5", "--rate", "500"],
    );
    assert_exactly_once("direct --rate", &open);
    assert_eq!(open["correctness"]["stale"].as_u64(), Some(0));

    let offline = loadgen(addr, tmp, "offline", &["offline", "--users", "10", "--senders", "4", "--messages", "30"]);
    assert_exactly_once("offline", &offline);
    assert_eq!(offline["delivered"].as_u64(), Some(300));
    assert_percentiles("offline delivery", &offline["latency_ms"]["delivery"]);
    // Again with a push device per recipient: the run fails unless every SetPushDevice was
    // answered Done, and the push notes on the way must not disturb the messages.
    let pushed = loadgen(
        addr,
        tmp,
        "offline-push",
        &["offline", "--users", "10", "--senders", "4", "--messages", "30", "--push-devices"],
    );
    assert_exactly_once("offline --push-devices", &pushed);
    assert_eq!(pushed["delivered"].as_u64(), Some(300));
    assert_eq!(pushed["params"]["push_devices"].as_bool(), Some(true), "{pushed}");

    let login = loadgen(
        addr,
        tmp,
        "login",
        &["login", "--accounts", "8", "--parallel", "4", "--warmup", "0", "--duration", "0.5"],
    );
    assert!(login["details"]["password_logins"].as_u64() > Some(0), "{login}");
    assert!(login["details"]["token_logins"].as_u64() > Some(0), "{login}");
    assert_percentiles("password login", &login["latency_ms"]["password_login"]);
    assert_percentiles("token login", &login["latency_ms"]["token_login"]);

    // 3 groups of 4 on two event loops, closed loop; then again at a fixed rate (this
    // also exercises removing nothing left over and re-creating groups for the same users).
    let group_args = ["group", "--groups", "3", "--members", "4", "--warmup", "0", "--duration", "1", "--drain", "5"];
    let group = loadgen(addr, tmp, "group", &[&group_args[..], &["--threads", "2", "--window", "2"]].concat());
    assert_fanout("group", &group, 4);
    assert_percentiles("group delivery", &group["latency_ms"]["delivery"]);
    assert_percentiles("group receipt", &group["latency_ms"]["receipt"]);
    let group_open = loadgen(addr, tmp, "group-open", &[&group_args[..], &["--rate", "200"]].concat());
    assert_fanout("group --rate", &group_open, 4);

    let room = loadgen(
        addr,
        tmp,
        "room",
        &["room", "--rooms", "3", "--members", "4", "--warmup", "0", "--duration", "1", "--drain", "5"],
    );
    assert_fanout("room", &room, 4);
    assert_eq!(room["details"]["short_delivered_answers"].as_u64(), Some(0), "{room}");
    assert_percentiles("room delivery", &room["latency_ms"]["delivery"]);
    assert_percentiles("room reply", &room["latency_ms"]["reply"]);

    // The daemon's resident memory, read from /proc by the load generator.
    let pid = daemon.pid().to_string();
    let soak_args = [
        "--server-pid",
        &pid,
        "soak",
        "--clients",
        "30",
        "--groups",
        "2",
        "--group-members",
        "5",
        "--rate",
        "200",
        "--group-rate",
        "20",
        "--churn",
        "6",
        "--away",
        "0.5",
        "--duration",
        "2",
        "--drain",
        "10",
    ];
    let soak = loadgen(addr, tmp, "soak", &soak_args);
    assert_soak("soak", &soak);
    // Again with a push device per client: the run fails unless every SetPushDevice was
    // answered Done, and the push notes for clients that are away must not disturb the
    // messages.
    let pushed = loadgen(addr, tmp, "soak-push", &[&soak_args[..], &["--push-devices"]].concat());
    assert_soak("soak --push-devices", &pushed);
    assert_eq!(pushed["params"]["push_devices"].as_bool(), Some(true), "{pushed}");

    daemon.stop();
}

#[test]
fn a_run_in_another_app_has_accounts_of_its_own() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let added = confab_testd::subcommand(confabd(), &data, &["app", "add", "acme"], "");
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let daemon = Daemon::start(confabd(), &data, SocketAddr::from(([127, 0, 0, 1], 0)), &[]);
    let tmp = dir.path();
    let direct = ["direct", "--clients", "10", "--warmup", "0", "--duration", "1", "--drain", "5", "--window", "2"];
    // The same account names in both apps: two sets of accounts, each with its own tokens.
    assert_exactly_once("default", &loadgen(daemon.addr, tmp, "default", &direct));
    let mut in_acme = vec!["--app", "acme"];
    in_acme.extend(direct);
    let acme = loadgen(daemon.addr, tmp, "acme", &in_acme);
    assert_exactly_once("acme", &acme);
    assert_eq!(acme["correctness"]["stale"].as_u64(), Some(0), "acme's tokens are not default's");
    let accounts = std::fs::read_to_string(tmp.join("accounts.json")).expect("the accounts file");
    assert!(accounts.contains(&format!("{}/acme", daemon.addr)), "{accounts}");

    let unknown = Command::new(env!("CARGO_BIN_EXE_confab-loadgen"))
        .args(["--addr", &daemon.addr.to_string(), "--app", "nosuch", "--accounts-file"])
        .arg(tmp.join("other.json"))
        .args(["direct", "--clients", "2", "--warmup", "0", "--duration", "1", "--setup-timeout", "5"])
        .output()
        .expect("the load generator runs");
    assert!(!unknown.status.success(), "an app the server does not host fails the run");
}

#[test]
fn direct_with_two_devices_per_client_checks_every_device_and_every_copy() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(confabd(), &dir.path().join("data"), SocketAddr::from(([127, 0, 0, 1], 0)), &[]);
    let tmp = dir.path();
    let args = ["direct", "--clients", "10", "--devices", "2", "--warmup", "0", "--duration", "1", "--drain", "5"];
    // Closed loop on two event loops, then open loop with the tokens each device kept.
    let runs = [("devices", &["--window", "2", "--threads", "2"][..]), ("devices-open", &["--rate", "300"][..])];
    for (name, extra) in runs {
        let r = loadgen(daemon.addr, tmp, name, &[&args[..], extra].concat());
        let receipted = r["receipted"].as_u64().expect("receipted");
        assert!(receipted > 0, "{name}: nothing receipted: {r}");
        // A delivery counts per device: each message reached both of its recipient's.
        assert_eq!(r["delivered"].as_u64(), Some(receipted * 2), "{name}: {r}");
        let c = &r["correctness"];
        for field in ["lost", "duplicated", "misrouted"] {
            assert_eq!(c[field].as_u64(), Some(0), "{name}: {field}: {r}");
        }
        assert_eq!(c["ok"].as_bool(), Some(true), "{name}: {r}");
        let d = &r["details"];
        assert_eq!(d["devices"].as_u64(), Some(2), "{name}: {d}");
        // Each message's copy reached the sender's other device, once.
        let copies = &d["sent_copies"];
        assert_eq!(copies["expected"].as_u64(), Some(receipted), "{name}: {copies}");
        assert_eq!(copies["received"].as_u64(), Some(receipted), "{name}: {copies}");
        assert_eq!(copies["lost"].as_u64(), Some(0), "{name}: {copies}");
        assert_eq!(copies["duplicated"].as_u64(), Some(0), "{name}: {copies}");
        assert_percentiles(name, &r["latency_ms"]["copy"]);
    }
    let accounts = std::fs::read_to_string(tmp.join("accounts.json")).expect("the accounts file");
    assert!(accounts.contains("\"lg-9/d1\""), "a token per device: {accounts}");
    daemon.stop();
}

/// A stand-in for the other node of a cluster: it answers Hello, and every login or
/// register with a Redirect to `home` (protocol.md "Cluster"), on every connection.
fn redirecting_node(home: SocketAddr) -> SocketAddr {
    use confab_proto::frame;
    use confab_proto::protocol::{ClientFrame, Limits, Reply, Request, ServerFrame, PROTOCOL_VERSION};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};

    fn serve(mut stream: TcpStream, home: SocketAddr) {
        let (mut buf, mut chunk) = (Vec::new(), [0u8; 4096]);
        loop {
            while let Ok(Some((body, used))) = frame::split(&buf, 1 << 20) {
                let Ok(ClientFrame { request_id, request }) = frame::decode_body::<ClientFrame>(body) else { return };
                buf.drain(..used);
                let reply = match request {
                    Request::Hello { .. } | Request::HelloApp { .. } => Reply::Hello {
                        version: PROTOCOL_VERSION,
                        server: "redirecting".into(),
                        max_frame: 1 << 16,
                        max_body: 1 << 15,
                        heartbeat_secs: 30,
                        idle_timeout_secs: 90,
                        delivery_window: 64,
                        limits: Limits {
                            request_rate: 1000,
                            request_burst: 1000,
                            delivery_window_bytes: 1 << 20,
                            max_outbound: 1 << 24,
                            token_ttl_secs: 3600,
                            max_frame_before_login: 4096,
                        },
                    },
                    _ => Reply::Redirect { node: 1, address: home.to_string() },
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

    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local address");
    // Ends with the test process.
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream, home));
        }
    });
    addr
}

#[test]
fn clients_spread_over_two_addresses_follow_redirects_to_their_home() {
    let dir = tempfile::tempdir().expect("temp dir");
    let daemon = Daemon::start(confabd(), &dir.path().join("data"), SocketAddr::from(([127, 0, 0, 1], 0)), &[]);
    let other = redirecting_node(daemon.addr);
    let tmp = dir.path();
    // Clients 0, 2, 4, ... start at the redirecting node, 1, 3, 5, ... at the daemon.
    let addrs = format!("{other},{}", daemon.addr);
    let args = ["direct", "--clients", "10", "--warmup", "0", "--duration", "1", "--drain", "5", "--window", "2"];
    let r = loadgen_at(&addrs, tmp, "redirected", &args);
    assert_exactly_once("redirected", &r);
    assert_eq!(r["server"].as_str(), Some(addrs.as_str()), "{r}");
    let cluster = &r["details"]["cluster"];
    assert_eq!(cluster["redirects"].as_u64(), Some(5), "{cluster}");
    assert_eq!(cluster["clients_per_node"][daemon.addr.to_string()].as_u64(), Some(10), "{cluster}");
    assert_eq!(cluster["unavailable"].as_u64(), Some(0), "{cluster}");
    // Every client on one node: the delivery latency is not split.
    assert!(r["latency_ms"].get("cross-node").is_none() && r["latency_ms"].get("same-node").is_none(), "{r}");
    // Against the daemon alone the report has no cluster details.
    let single = loadgen(daemon.addr, tmp, "single", &args);
    assert_exactly_once("single", &single);
    assert!(single["details"].get("cluster").is_none(), "{single}");
    daemon.stop();
}
