//! `login`: how many logins per second the server completes, first with passwords (each
//! one an argon2 verification on the server's hashing threads), then with resume tokens
//! (a digest lookup). Every login is a fresh connection: connect, Hello, log in, close;
//! `--parallel` of them in flight, rotating over `--accounts` prepared accounts.
//! The latency is from the login request to its LoggedIn reply.

use super::common::{cpu, log_in_all, report};
use super::{idle_for, seconds_flag, Ctx, Quiet, Slots};
use crate::cli::LoginArgs;
use crate::clock::{now_ns, secs};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{rate, Correctness, Report};
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ErrorCode, Message, Reply};
use std::time::Duration;

/// How long in-flight logins may take to finish once a phase has ended.
const PHASE_GRACE_NS: u64 = 5_000_000_000;

pub fn run(ctx: &Ctx, args: &LoginArgs) -> Result<Report, Error> {
    if args.parallel == 0 || args.accounts < args.parallel {
        return Err(Error::Usage("--parallel must be positive and --accounts at least --parallel".into()));
    }
    let warmup_ns = seconds_flag("warmup", args.warmup, 0.0)?;
    let duration_ns = seconds_flag("duration", args.duration, 0.1)?;
    ctx.check_fd_limit(args.parallel.max(ctx.concurrency()))?;
    let mut accounts = ctx.load_accounts(args.accounts)?;
    let mut eng = ctx.engine(accounts.clone(), args.parallel)?;
    log_in_all(ctx, &mut eng, &mut accounts, args.accounts, Slots::Recycle, "accounts prepared")?;
    idle_for(&mut eng, &mut Quiet, Duration::from_millis(300))?;

    let mut monitor = Monitor::new(ctx.common.server_pid);
    let origin = now_ns();
    monitor.start(origin);
    let mut rec = Recorder::new(origin, (0, 0));
    let mut phases = Vec::new();
    let mut per_phase = Vec::new();
    for (auth, name) in [(Auth::Password, "password_login"), (Auth::Token, "token_login")] {
        let start = now_ns();
        phases.push((name, start));
        let window = (start + warmup_ns, start + warmup_ns + duration_ns);
        let mut h = Logins {
            auth,
            name,
            accounts: args.accounts,
            next: 0,
            active: true,
            in_flight: 0,
            idle: (0..args.parallel).collect(),
            rec: Recorder::new(origin, window),
        };
        let mut progress = Progress::new((window.1 - start) / 1_000_000, "ms");
        let mut marked = false;
        loop {
            let now = now_ns();
            if !marked && now >= window.0 {
                monitor.mark(now);
                marked = true;
            }
            if now >= window.1 {
                h.active = false;
            }
            if h.active {
                h.restart_idle(&mut eng);
            } else if h.in_flight == 0 || now > window.1 + PHASE_GRACE_NS {
                break;
            }
            eng.turn(Some(Duration::from_millis(5)), &mut h).map_err(Error::Poll)?;
            monitor.tick(now_ns());
            progress
                .update((now.min(window.1) - start) / 1_000_000, || format!("{name}: {} done", h.rec.total.completed));
        }
        progress.finish();
        monitor.mark(window.1);
        for c in 0..args.parallel {
            eng.close(c);
        }
        let marks = per_phase.len() * 2;
        let cpu = monitor.cpu_between(marks, marks + 1);
        per_phase.push((name, h.rec.measured.completed, cpu));
        rec.merge(h.rec);
    }
    ctx.save_accounts(&mut accounts, &[&eng])?;
    rec.add_errors(&eng.errors);

    let seconds = secs(duration_ns);
    let mut details = serde_json::json!({
        "accounts": args.accounts,
        "parallel": args.parallel,
    });
    for (name, count, (loadgen, server)) in &per_phase {
        details[format!("{name}s")] = serde_json::json!(count);
        details[format!("{name}s_per_sec")] = serde_json::json!(rate(*count, seconds));
        details[format!("{name}_cpu_percent")] = serde_json::json!({ "loadgen": loadgen, "server": server });
    }
    let mut correctness = Correctness { stale: rec.stale, ..Correctness::default() };
    correctness.judge();
    Ok(Report {
        measured_seconds: seconds,
        correctness,
        cpu: cpu(monitor.cpu_between(0, 3)),
        details,
        per_second: rec.seconds(&phases, &monitor.per_second()),
        phases: phases.iter().map(|(name, t)| (*name, secs(t - origin))).collect(),
        ..report(ctx, "login", serde_json::to_value(args).unwrap_or_default(), &rec)
    })
}

struct Logins {
    auth: Auth,
    name: &'static str,
    accounts: usize,
    next: usize,
    active: bool,
    in_flight: usize,
    /// Slots waiting for their next login (started at the top of the next turn, so a
    /// connection that fails at once cannot spin).
    idle: Vec<usize>,
    rec: Recorder,
}

impl Logins {
    fn restart_idle(&mut self, eng: &mut Engine) {
        for slot in std::mem::take(&mut self.idle) {
            let account = self.next % self.accounts;
            self.next += 1;
            match eng.connect(slot, account, self.auth) {
                Ok(()) => self.in_flight += 1,
                Err(fault) => {
                    self.rec.error(&fault.kind());
                    self.idle.push(slot);
                }
            }
        }
    }

    fn finished(&mut self, eng: &mut Engine, c: usize) {
        eng.close(c);
        self.in_flight -= 1;
        if self.active {
            self.idle.push(c);
        }
    }
}

impl Handler for Logins {
    fn ready(&mut self, eng: &mut Engine, c: usize, now: u64) {
        self.rec.completed(now);
        self.rec.latency(self.name, Line::Main, eng.conns[c].auth_sent_ns, now);
        self.finished(eng, c);
    }

    fn message(&mut self, _: &mut Engine, _: usize, _: Message, _: u64) {
        self.rec.stale += 1;
    }

    fn reply(&mut self, eng: &mut Engine, _: usize, _: u32, _: Result<Reply, ErrorCode>, _: u64) {
        eng.count("unexpected:reply_during_login");
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _: u64) {
        self.rec.error(&fault.kind());
        self.finished(eng, c);
    }
}
