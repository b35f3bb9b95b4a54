//! `offline`: stored messages waiting for users who were away.
//!
//! 1. Log in `--users` recipients and `--senders` senders (settling any old inbox); with
//!    `--push-devices` every recipient registers a push device (protocol.md "Push
//!    notifications"), so the fill also loads the server's push queue; then disconnect the
//!    recipients.
//! 2. Fill: the senders store `--messages` messages in every recipient's inbox, each
//!    sender keeping `--window` sends outstanding until receipted. Message `m` (over all
//!    senders) goes to recipient `m mod users`, so every inbox gets exactly `--messages`.
//! 3. Drain: all recipients log in at once (token logins) and receive their backlog,
//!    acknowledging as they go; the server paces each inbox by its delivery window.
//!    The drain rate is messages delivered / time from the first login request to the
//!    last message.

use super::common::{
    cpu, log_in_all, receipt, register_push_devices, report, retryable, settle, stored_send, this_run, Reconnects,
    Retries,
};
use super::{idle_for, seconds_flag, Ctx, Quiet, Slots};
use crate::bitset::BitSet;
use crate::cli::OfflineArgs;
use crate::clock::{now_ns, secs};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::payload::{Stamp, STAMP_LEN};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{rate, Correctness, Report};
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ErrorCode, Message, Reply, Target};
use std::collections::HashMap;
use std::time::Duration;

pub fn run(ctx: &Ctx, args: &OfflineArgs) -> Result<Report, Error> {
    if args.users == 0 || args.senders == 0 || args.messages == 0 || args.window == 0 {
        return Err(Error::Usage("--users, --senders, --messages and --window must be positive".into()));
    }
    if args.size < STAMP_LEN {
        return Err(Error::Usage(format!("--size must be at least {STAMP_LEN}")));
    }
    let timeout_ns = seconds_flag("timeout", args.timeout, 1.0)?;
    let (users, senders) = (args.users, args.senders);
    let total = users as u64 * args.messages as u64;
    if total > u64::from(u32::MAX) {
        return Err(Error::Usage("--users × --messages is too large".into()));
    }
    ctx.check_fd_limit(users + senders)?;
    let mut accounts = ctx.load_accounts(users + senders)?;
    let mut eng = ctx.engine(accounts.clone(), users + senders)?;
    let est = log_in_all(ctx, &mut eng, &mut accounts, users + senders, Slots::KeepOpen, "accounts logged in")?;
    if args.push_devices {
        register_push_devices(&mut eng, users, ctx.setup_deadline())?;
    }
    for c in 0..users {
        eng.close(c);
    }
    // The server must see the recipients gone before the fill, or it pushes live.
    idle_for(&mut eng, &mut Quiet, Duration::from_millis(300))?;

    let mut monitor = Monitor::new(ctx.common.server_pid);
    let origin = now_ns();
    monitor.start(origin);
    monitor.mark(origin);
    let mut h = Offline {
        run_id: ctx.run_id,
        size: args.size,
        users,
        senders: (0..senders)
            .map(|k| SenderState {
                quota: total / senders as u64 + u64::from((k as u64) < total % senders as u64),
                ..SenderState::default()
            })
            .collect(),
        delivered: vec![BitSet::default(); senders],
        rec: Recorder::new(origin, (origin, u64::MAX)),
        draining: false,
        last_delivery: 0,
        user_done_at: vec![0; users],
        user_received: vec![0; users],
        reconnects: Reconnects::new(users),
        misrouted: 0,
        retry: Retries::default(),
    };

    // Fill.
    for k in 0..senders {
        for _ in 0..args.window {
            h.send_next(&mut eng, k);
        }
    }
    let mut progress = Progress::new(total, "stored");
    let deadline = now_ns() + timeout_ns;
    while h.filling() && now_ns() < deadline {
        eng.turn(Some(Duration::from_millis(10)), &mut h).map_err(Error::Poll)?;
        h.retry_due(&mut eng, now_ns());
        monitor.tick(now_ns());
        progress.update(h.rec.total.receipted, String::new);
    }
    progress.finish();
    let fill_end = now_ns();
    monitor.mark(fill_end);
    let receipted = h.rec.total.receipted;

    // Drain.
    h.draining = true;
    let drain_start = now_ns();
    for c in 0..users {
        if let Err(fault) = eng.connect(c, c, Auth::Auto) {
            h.rec.error(&fault.kind());
        }
    }
    let mut progress = Progress::new(receipted, "delivered");
    let deadline = now_ns() + timeout_ns;
    while h.rec.total.delivered < receipted && now_ns() < deadline {
        eng.turn(Some(Duration::from_millis(10)), &mut h).map_err(Error::Poll)?;
        monitor.tick(now_ns());
        progress.update(h.rec.total.delivered, String::new);
    }
    progress.finish();
    let drain_end = h.last_delivery.max(drain_start);
    monitor.mark(drain_end.max(now_ns()));
    if !eng.acks_settled() {
        settle(&mut eng, &mut h, Duration::from_millis(500))?;
    }
    monitor.tick(now_ns());
    ctx.save_accounts(&mut accounts, &[&eng])?;

    let mut correctness = Correctness::default();
    for (k, s) in h.senders.iter().enumerate() {
        correctness.lost += s.receipted.count_missing_from(&h.delivered[k]);
        correctness.delivered_unreceipted += h.delivered[k].count_missing_from(&s.receipted);
        correctness.unanswered_sends += s.pending.len() as u64;
    }
    correctness.duplicated = h.rec.duplicated;
    correctness.stale = h.rec.stale + est.stale;
    correctness.reconnects = h.reconnects.made;
    correctness.misrouted = h.misrouted;
    correctness.judge();

    for (c, done) in h.user_done_at.iter().enumerate() {
        if *done > 0 {
            h.rec.latency("inbox_drained", Line::Off, drain_start, *done);
        } else if h.user_received[c] > 0 {
            h.rec.error("inbox_not_drained");
        }
    }
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    let fill_seconds = secs(fill_end - origin);
    let drain_seconds = secs(drain_end - drain_start);
    let (fill_cpu_loadgen, fill_cpu_server) = monitor.cpu_between(0, 1);
    let details = serde_json::json!({
        "users": users,
        "senders": senders,
        "messages_per_user": args.messages,
        "fill_seconds": (fill_seconds * 1000.0).round() / 1000.0,
        "fill_receipted_per_sec": rate(receipted, fill_seconds),
        "fill_cpu_percent": { "loadgen": fill_cpu_loadgen, "server": fill_cpu_server },
        "drain_seconds": (drain_seconds * 1000.0).round() / 1000.0,
        "drain_delivered_per_sec": rate(rec.total.delivered, drain_seconds),
    });
    let phases_ns = [("fill", origin), ("drain", drain_start)];
    Ok(Report {
        measured_seconds: drain_seconds,
        sent_per_sec: rate(rec.total.sent, fill_seconds),
        receipted_per_sec: rate(rec.total.receipted, fill_seconds),
        delivered_per_sec: rate(rec.total.delivered, drain_seconds),
        correctness,
        cpu: cpu(monitor.cpu_between(1, 2)),
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases: vec![("fill", 0.0), ("drain", secs(drain_start - origin))],
        ..report(ctx, "offline", serde_json::to_value(args).unwrap_or_default(), &rec)
    })
}

#[derive(Default)]
struct SenderState {
    quota: u64,
    /// Messages started so far; message `j` (0-based) has sequence `j + 1`.
    started: u64,
    pending: HashMap<u32, u64>,
    receipted: BitSet,
    /// The connection dropped: the rest of its quota is abandoned.
    gone: bool,
}

struct Offline {
    run_id: u32,
    size: usize,
    users: usize,
    senders: Vec<SenderState>,
    /// Per sender: sequences delivered.
    delivered: Vec<BitSet>,
    rec: Recorder,
    draining: bool,
    last_delivery: u64,
    /// When each user had received everything its login said was waiting.
    user_done_at: Vec<u64>,
    user_received: Vec<u64>,
    reconnects: Reconnects,
    misrouted: u64,
    retry: Retries,
}

impl Offline {
    fn filling(&self) -> bool {
        self.senders.iter().any(|s| !s.gone && (s.started < s.quota || !s.pending.is_empty()))
    }

    fn send_next(&mut self, eng: &mut Engine, k: usize) {
        let s = &mut self.senders[k];
        if s.gone || s.started >= s.quota {
            return;
        }
        s.started += 1;
        let q = s.started as u32;
        let now = now_ns();
        s.pending.insert(q, now);
        self.queue_send(eng, k, q, now);
        self.rec.sent(now);
    }

    /// Sends again the rate-limited sends whose time has come.
    fn retry_due(&mut self, eng: &mut Engine, now: u64) {
        while let Some((k, q)) = self.retry.due(now) {
            if let Some(&sent_ns) = self.senders[k].pending.get(&q) {
                self.queue_send(eng, k, q, sent_ns);
            }
        }
    }

    /// Message `q` (1-based) of sender `k` is message `m = k + (q-1) * senders` overall,
    /// and goes to recipient `m mod users`.
    fn queue_send(&mut self, eng: &mut Engine, k: usize, q: u32, now: u64) {
        let m = k as u64 + u64::from(q - 1) * self.senders.len() as u64;
        let to = (m % self.users as u64) as usize;
        let stamp =
            Stamp { run: self.run_id, sender: (self.users + k) as u32, recipient: to as u32, seq: q, sent_ns: now };
        let target = Target::User(eng.accounts().name(to).to_string());
        eng.send(self.users + k, q, stored_send(target, &stamp, self.size));
    }
}

impl Handler for Offline {
    fn ready(&mut self, eng: &mut Engine, c: usize, now: u64) {
        if c < self.users && eng.conns[c].login_last_seq == eng.conns[c].login_acked {
            self.user_done_at[c] = now;
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        let Some(stamp) = this_run(&mut self.rec, &msg.content.body, self.run_id) else {
            return;
        };
        let Some(k) = (stamp.sender as usize).checked_sub(self.users).filter(|k| *k < self.senders.len()) else {
            self.rec.error("bad_stamp");
            return;
        };
        if stamp.recipient as usize != c || msg.from != eng.accounts().name(stamp.sender as usize) {
            self.misrouted += 1;
        }
        if !self.delivered[k].insert(stamp.seq) {
            self.rec.duplicated += 1;
            return;
        }
        self.rec.delivered(now);
        self.rec.latency("delivery", Line::Main, stamp.sent_ns, now);
        self.last_delivery = now;
        if c < self.users {
            self.user_received[c] += 1;
            if msg.seq >= eng.conns[c].login_last_seq && self.user_done_at[c] == 0 {
                self.user_done_at[c] = now;
            }
        }
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        let Some(k) = c.checked_sub(self.users) else {
            self.rec.error("unexpected:reply_to_recipient");
            return;
        };
        if let Some(code) = retryable(&reply).filter(|_| self.senders[k].pending.contains_key(&request_id)) {
            self.retry.later(&mut self.rec, code, now, eng.retry_after_ns, k, request_id);
            return;
        }
        let s = &mut self.senders[k];
        let Some(sent_ns) = s.pending.remove(&request_id) else {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        };
        match reply {
            Ok(Reply::Sent { .. }) => {
                receipt(&mut self.rec, &mut s.receipted, request_id, sent_ns, now);
            }
            Ok(_) => self.rec.error("unexpected:reply_to_send"),
            Err(code) => self.rec.error(&format!("send:{code:?}")),
        }
        self.send_next(eng, k);
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _now: u64) {
        self.rec.error(&fault.kind());
        if c >= self.users {
            // A sender gone mid-fill: its unanswered sends stay unanswered (reported).
            self.senders[c - self.users].gone = true;
        } else if self.draining {
            self.reconnects.try_again(eng, &mut self.rec, c, c);
        }
    }
}
