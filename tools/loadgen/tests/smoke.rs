//! Smoke test: the built load generator against the real server, started in-process on an
//! ephemeral port. Short runs of direct (closed and open loop), offline and login; the
//! assertions read the `--json` results and check correctness, never timing.

use serde_json::Value;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

fn loadgen(addr: SocketAddr, dir: &Path, name: &str, args: &[&str]) -> Value {
    let json = dir.join(format!("{name}.json"));
    let out = Command::new(env!("CARGO_BIN_EXE_confab-loadgen"))
        .arg("--addr")
        .arg(addr.to_string())
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

fn assert_percentiles(name: &str, p: &Value) {
    for field in ["count", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(p[field].is_number(), "{name}: latency field {field} missing in {p}");
    }
}

#[test]
fn scenarios_against_the_real_server() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = confab::Server::start(confab::Config::for_tests(dir.path().join("data"))).expect("server starts");
    let addr = server.local_addr();
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

    server.shutdown().expect("server stops cleanly");
}
