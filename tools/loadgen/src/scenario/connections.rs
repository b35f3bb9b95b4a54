//! `connections`: how many idle, logged-in connections the server holds, how fast it takes
//! them on, and what each costs it in memory.
//!
//! 1. Prepare the accounts (register, log in, cache tokens) a few hundred at a time,
//!    closing each connection when done, so the server's connection table never grows
//!    during preparation.
//! 2. Read the server's RSS ("before"). The users are now loaded in the server, so the
//!    difference between "before" and the very first reading is the cost of a known user
//!    without a connection; the difference after step 3 is the cost of a connection with
//!    its session.
//! 3. Open all connections (connect, Hello, Resume) with `--setup-concurrency` in flight:
//!    the setup rate is connections / time from the first connect to the last login.
//! 4. Hold them for `--hold` seconds (pinging if that outlasts the heartbeat), then read
//!    the RSS again ("after").

use super::common::{cpu, log_in_all, report};
use super::{establish, idle_for, seconds_flag, Ctx, Quiet, Slots};
use crate::cli::ConnectionsArgs;
use crate::clock::{now_ns, secs};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{rate, Correctness, Report};
use crate::stats::Recorder;
use confab_proto::protocol::{ErrorCode, Message, Reply};
use std::time::Duration;

/// Pings go out well within the server's heartbeat (30 s by default).
const PING_IDLE_NS: u64 = 15_000_000_000;

pub fn run(ctx: &Ctx, args: &ConnectionsArgs) -> Result<Report, Error> {
    if args.count == 0 {
        return Err(Error::Usage("--count must be positive".into()));
    }
    let hold_ns = seconds_flag("hold", args.hold, 0.0)?;
    ctx.check_fd_limit(args.count)?;
    let mut accounts = ctx.load_accounts(args.count)?;
    let mut eng = ctx.engine(accounts.clone(), args.count)?;
    let monitor_pid = ctx.common.server_pid;
    let rss_start = monitor_pid.and_then(crate::procfs::rss_kib);
    let all: Vec<usize> = (0..args.count).collect();

    let prepared = log_in_all(ctx, &mut eng, &mut accounts, args.count, Slots::Recycle, "accounts prepared")?;
    // Let the server reap the preparation's connections before the baseline.
    idle_for(&mut eng, &mut Quiet, Duration::from_millis(1000))?;
    let rss_before = monitor_pid.and_then(crate::procfs::rss_kib);

    let mut monitor = Monitor::new(monitor_pid);
    let origin = now_ns();
    monitor.start(origin);
    monitor.mark(origin);
    let rec = Recorder::new(origin, (origin, u64::MAX));
    let stale_before = eng.stale_tokens;
    let opened = establish(
        &mut eng,
        &all,
        Auth::Auto,
        Slots::KeepOpen,
        ctx.concurrency(),
        ctx.setup_deadline(),
        Some(rec),
        Some("connections open"),
    )?;
    let setup_end = opened.last_ready_ns.max(origin);
    monitor.mark(setup_end);
    let setup_seconds = secs(setup_end - origin);

    let mut hold = Hold { dropped: 0 };
    let hold_until = now_ns() + hold_ns;
    let mut progress = Progress::new(hold_ns / 1_000_000, "ms held");
    let hold_start = now_ns();
    while now_ns() < hold_until {
        eng.turn(Some(Duration::from_millis(50)), &mut hold).map_err(Error::Poll)?;
        let now = now_ns();
        monitor.tick(now);
        eng.ping_idle(PING_IDLE_NS, now);
        progress.update((now - hold_start) / 1_000_000, || {
            format!("{} connections, {} dropped", opened.ready, hold.dropped)
        });
    }
    progress.finish();
    let rss_after = monitor_pid.and_then(crate::procfs::rss_kib);
    monitor.tick(now_ns());
    ctx.save_accounts(&mut accounts, &[&eng])?;

    let mut rec = opened.recorder.unwrap_or_else(|| Recorder::new(origin, (0, 0)));
    rec.add_errors(&eng.errors);
    for (kind, n) in &opened.faults {
        *rec.errors.entry(kind.clone()).or_default() += n;
    }
    let per_conn = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if opened.ready > 0 => {
            Some(((b as f64 - a as f64) / opened.ready as f64 * 100.0).round() / 100.0)
        }
        _ => None,
    };
    let details = serde_json::json!({
        "connections": args.count,
        "logged_in": opened.ready,
        "failed": opened.failed,
        "dropped_while_held": hold.dropped,
        "setup_seconds": (setup_seconds * 1000.0).round() / 1000.0,
        "setups_per_sec": rate(opened.ready as u64, setup_seconds),
        "resumed_with_token": (opened.ready as u64).saturating_sub(eng.stale_tokens - stale_before),
        "server_rss_start_kib": rss_start,
        "server_rss_before_kib": rss_before,
        "server_rss_after_kib": rss_after,
        "server_rss_per_connection_kib": per_conn(rss_before, rss_after),
        "server_rss_per_known_user_kib": per_conn(rss_start, rss_before),
        "stale_messages_at_preparation": prepared.stale,
    });
    let (loadgen_cpu, server_cpu) = monitor.cpu_between_marks();
    let mut correctness = Correctness::default();
    correctness.judge();
    // Connections that never came up fail the run, after the report is out.
    correctness.ok = opened.failed == 0 && hold.dropped == 0;
    let phases_ns = [("setup", origin), ("hold", setup_end)];
    let report = Report {
        measured_seconds: setup_seconds,
        correctness,
        cpu: cpu((loadgen_cpu, server_cpu)),
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases: vec![("setup", 0.0), ("hold", secs(setup_end - origin))],
        ..report(ctx, "connections", serde_json::to_value(args).unwrap_or_default(), &rec)
    };
    Ok(report)
}

/// Holding: nothing should happen; count what does.
struct Hold {
    dropped: u64,
}

impl Handler for Hold {
    fn ready(&mut self, _: &mut Engine, _: usize, _: u64) {}
    fn message(&mut self, eng: &mut Engine, _: usize, _: Message, _: u64) {
        eng.count("unexpected:message_while_idle");
    }
    fn reply(&mut self, eng: &mut Engine, _: usize, _: u32, _: Result<Reply, ErrorCode>, _: u64) {
        eng.count("unexpected:reply_while_idle");
    }
    fn down(&mut self, eng: &mut Engine, _: usize, _: bool, fault: Fault, _: u64) {
        self.dropped += 1;
        eng.count(&format!("dropped:{}", fault.kind()));
    }
}
