//! The driver `group` and `room` share: S sets (groups or rooms) of M members, every member
//! a client with its own connection, sending to its own set; each message reaches the
//! other M-1 members.
//!
//! Closed loop (`--window W`): every sender keeps W messages outstanding until it has the
//! answer (receipt or `Delivered`) and every other member has the message, so throughput is
//! what the server sustains. Open loop (`--rate R`): R sends per second in total over the
//! senders in turn. Warm-up, measured window, then a drain in which nothing new is sent.
//!
//! With `--threads T` the *sets* are split between T event loops, each set wholly on one:
//! a message's sender and all its recipients are on the same thread, so the closed loop's
//! window and the exactly-once check never cross threads.
//!
//! The check is per (message, recipient): every answered send must have reached each other
//! member exactly once. For rooms a member whose connection dropped is left out of it (a
//! room is live only: it misses what was sent while it was away) and its dropped state is
//! reported.

use super::common::{check_traffic_flags, cpu, measured_report, settle, stored_send, text, Reconnects, Retries};
use super::sets;
use super::threaded::{drive, run_threads, supervise, Load, Pacer, Schedule, Shared, Timing};
use super::{establish, seconds_flag, Ctx, Slots};
use crate::bitset::BitSet;
use crate::clock::{now_ns, secs};
use crate::engine::{Auth, Engine};
use crate::error::Error;
use crate::payload::Stamp;
use crate::procfs::Monitor;
use crate::report::{Correctness, Report};
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ClientMsgId, GroupId, Request, Target};
use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

mod receive;

/// How long setup's group events may take to be acknowledged, and the last acks at the end.
const ACK_SETTLE: Duration = Duration::from_millis(2000);
/// Pings go out well within the server's heartbeat (30 s by default).
const PING_IDLE_NS: u64 = 15_000_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Stored group messages: `Sent` receipts, `Message` pushes, acks per group.
    Group,
    /// Live room messages: `Delivered { recipients }`, `RoomMessage` pushes, nothing to ack.
    Room,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Group => "group",
            Kind::Room => "room",
        }
    }

    /// The latency name of a send's answer.
    fn answer(self) -> &'static str {
        match self {
            Kind::Group => "receipt",
            Kind::Room => "reply",
        }
    }
}

/// A group or room run's flags.
pub struct Spec {
    pub kind: Kind,
    pub sets: usize,
    pub members: usize,
    pub size: usize,
    pub window: u32,
    pub rate: Option<u64>,
    pub warmup: f64,
    pub duration: f64,
    pub drain: f64,
    pub threads: usize,
    pub params: serde_json::Value,
}

struct Plan {
    kind: Kind,
    sets: usize,
    members: usize,
    clients: usize,
    /// Sets per thread.
    block: usize,
    window: u32,
    /// Sends per second in total (open loop).
    rate: Option<f64>,
    size: usize,
    run_id: u32,
    timing: Timing,
    concurrency: usize,
}

pub fn run(ctx: &Ctx, spec: &Spec) -> Result<Report, Error> {
    let noun = match spec.kind {
        Kind::Group => "groups",
        Kind::Room => "rooms",
    };
    if spec.sets == 0 {
        return Err(Error::Usage(format!("--{noun} must be positive")));
    }
    if spec.members < 2 {
        return Err(Error::Usage("--members must be at least 2".into()));
    }
    check_traffic_flags(spec.size, spec.window, spec.rate)?;
    let clients = spec.sets * spec.members;
    let block = spec.sets.div_ceil(spec.threads.clamp(1, spec.sets));
    let threads = spec.sets.div_ceil(block);
    let plan = Plan {
        kind: spec.kind,
        sets: spec.sets,
        members: spec.members,
        clients,
        block,
        window: spec.window,
        rate: spec.rate.map(|r| r as f64),
        size: spec.size,
        run_id: ctx.run_id,
        timing: Timing {
            warmup_ns: seconds_flag("warmup", spec.warmup, 0.0)?,
            duration_ns: seconds_flag("duration", spec.duration, 0.1)?,
            drain_ns: seconds_flag("drain", spec.drain, 0.0)?,
            setup_deadline: ctx.setup_deadline(),
            setup_grace_ns: 10_000_000_000,
        },
        concurrency: ctx.concurrency().div_ceil(threads),
    };
    ctx.check_fd_limit(clients)?;
    let mut accounts = ctx.load_accounts(clients)?;
    let mut engines = Vec::new();
    for _ in 0..threads {
        engines.push(ctx.engine(accounts.clone(), clients)?);
    }
    let shared = Shared::default();
    let mut monitor = Monitor::new(ctx.common.server_pid);

    let (outs, schedule) = run_threads(
        engines,
        |t, eng| thread_main(t, eng, &shared, &plan),
        || {
            supervise(
                &plan.timing,
                &shared,
                threads,
                &mut monitor,
                |s| s.expected.load(Relaxed),
                |s| {
                    let (sent, answered) = (s.sent.load(Relaxed), s.receipted.load(Relaxed));
                    let (delivered, expected) = (s.delivered.load(Relaxed), s.expected.load(Relaxed));
                    format!("{sent} sent, {answered} answered, {delivered} of {expected} deliveries")
                },
            )
        },
    );
    // Tokens first, whatever else went wrong: the next run should not pay for logins again.
    let engines: Vec<&Engine> = outs.iter().filter_map(|o| o.as_ref().ok()).map(|o| &o.engine).collect();
    ctx.save_accounts(&mut accounts, &engines)?;
    let outs = outs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let Some(schedule) = schedule else {
        return Err(Error::Usage("setup did not finish in time (see --setup-timeout)".into()));
    };
    Ok(build_report(ctx, spec, &plan, schedule, outs, &monitor))
}

/// What a thread hands back; the exactly-once check is done on the thread (its sets are
/// its own).
struct ThreadOut {
    engine: Engine,
    rec: Recorder,
    correctness: Correctness,
    pacer: Pacer,
    events: u64,
    short_answers: u64,
    dropped_members: u64,
    stale_groups_removed: u64,
}

fn thread_main(t: usize, mut eng: Engine, shared: &Shared, plan: &Plan) -> Result<ThreadOut, Error> {
    let first_set = t * plan.block;
    let last_set = ((t + 1) * plan.block).min(plan.sets);
    let setup = setup_thread(&mut eng, plan, first_set, last_set, t == 0);
    let setup = shared.setup_over(setup, |_| 0)?;

    let m = plan.members;
    let n = (last_set - first_set) * m;
    let mut h = Fanout {
        plan,
        first_set,
        first: first_set * m,
        ids: setup.ids,
        rooms: setup.rooms,
        senders: (0..n).map(|_| SenderState::default()).collect(),
        delivered: vec![vec![BitSet::default(); m]; n],
        dropped: vec![false; n],
        rec: Recorder::new(0, (0, 0)),
        pacer: Pacer::new(plan.rate.map(|r| r * n as f64 / plan.clients as f64), plan.window),
        deltas: [0; 5],
        reconnects: Reconnects::new(n),
        misrouted: 0,
        events: 0,
        short_answers: 0,
        abandoned: 0,
        retry: Retries::default(),
    };
    drive(&mut eng, &mut h, shared, &plan.timing, Some(PING_IDLE_NS))?;
    h.pacer.sending = false;
    settle(&mut eng, &mut h, ACK_SETTLE)?;
    if plan.kind == Kind::Group && !h.ids.is_empty() {
        // Leave nothing behind: a user may be in at most 100 groups, and a later run must
        // not find this one's backlog.
        let owners: Vec<(usize, GroupId)> = h.ids.iter().enumerate().map(|(s, id)| (s * m, *id)).collect();
        sets::delete_groups(&mut eng, &owners, now_ns() + 5_000_000_000)?;
        settle(&mut eng, &mut h, ACK_SETTLE)?;
    }
    let correctness = h.check(setup.stale);
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    Ok(ThreadOut {
        rec,
        correctness,
        pacer: h.pacer,
        events: h.events,
        short_answers: h.short_answers,
        dropped_members: h.dropped.iter().filter(|d| **d).count() as u64,
        stale_groups_removed: setup.stale_groups_removed,
        engine: eng,
    })
}

struct Setup {
    stale: u64,
    ids: Vec<GroupId>,
    rooms: Vec<String>,
    stale_groups_removed: u64,
}

/// Logs the thread's clients in, then makes their groups or joins their rooms.
fn setup_thread(eng: &mut Engine, plan: &Plan, first_set: usize, last_set: usize, show: bool) -> Result<Setup, Error> {
    let m = plan.members;
    let mine: Vec<usize> = (first_set * m..last_set * m).collect();
    let label = show.then_some("clients logged in");
    let deadline = plan.timing.setup_deadline;
    let est = establish(eng, &mine, Auth::Auto, Slots::KeepOpen, plan.concurrency, deadline, None, label)?;
    est.require_all()?;
    let sets: Vec<Vec<usize>> = (0..last_set - first_set).map(|s| (s * m..(s + 1) * m).collect()).collect();
    let mut setup = Setup { stale: est.stale, ids: Vec::new(), rooms: Vec::new(), stale_groups_removed: 0 };
    match plan.kind {
        Kind::Group => {
            let names: Vec<String> = (first_set..last_set).map(|s| sets::group_name(plan.run_id, s)).collect();
            let made = sets::setup_groups(eng, &sets, &names, deadline, show)?;
            setup.ids = made.ids;
            setup.stale_groups_removed = made.stale_groups_removed;
        }
        Kind::Room => {
            setup.rooms = (first_set..last_set).map(|s| sets::room_name(plan.run_id, s)).collect();
            sets::join_rooms(eng, &sets, &setup.rooms, deadline, show)?;
        }
    }
    settle(eng, &mut super::Quiet, ACK_SETTLE)?;
    Ok(setup)
}

struct Pending {
    sent_ns: u64,
    /// Deliveries still to come.
    remaining: u32,
    /// The send's receipt (or `Delivered`) came.
    answered: bool,
}

#[derive(Default)]
struct SenderState {
    /// The last per-sender sequence used (also the request id of its Send).
    next_q: u32,
    /// Window slots freed while the connection was down, to use once it is back.
    deferred: u32,
    pending: HashMap<u32, Pending>,
    /// Sends answered with a receipt (groups) or `Delivered` (rooms).
    receipted: BitSet,
}

struct Fanout<'a> {
    plan: &'a Plan,
    first_set: usize,
    /// Global client index of local slot 0.
    first: usize,
    /// Group ids, per local set (groups only).
    ids: Vec<GroupId>,
    /// Room names, per local set (rooms only).
    rooms: Vec<String>,
    senders: Vec<SenderState>,
    /// Per local recipient, per member index of the sender in the set: sequences received.
    delivered: Vec<Vec<BitSet>>,
    /// Room members whose connection dropped (they left the room with it).
    dropped: Vec<bool>,
    rec: Recorder,
    pacer: Pacer,
    /// sent, answered, receipted, delivered, expected since the last publish.
    deltas: [u64; 5],
    reconnects: Reconnects,
    misrouted: u64,
    /// Group events received (membership changes share the group's sequence).
    events: u64,
    /// Room sends whose `Delivered` counted fewer than members-1 recipients.
    short_answers: u64,
    /// Room sends whose connection dropped before the answer (never resent: not idempotent).
    abandoned: u64,
    retry: Retries,
}

impl Load for Fanout<'_> {
    fn timeout(&self, now: u64) -> Duration {
        self.pacer.timeout(now)
    }

    fn tick(&mut self, eng: &mut Engine, start: u64, now: u64) {
        let n = self.senders.len();
        for l in self.pacer.senders_due(eng, &self.plan.timing, &mut self.rec, start, now, n) {
            self.send(eng, l);
        }
        while let Some((l, q)) = self.retry.due(now) {
            // Not ready: a reconnect resends everything unanswered anyway.
            let waiting = self.senders[l].pending.get(&q).filter(|p| !p.answered).map(|p| p.sent_ns);
            if let (Some(sent_ns), true) = (waiting, eng.is_ready(l)) {
                self.queue_send(eng, l, q, sent_ns);
            }
        }
    }

    fn deltas(&mut self) -> &mut [u64] {
        &mut self.deltas
    }
}

impl Fanout<'_> {
    fn send(&mut self, eng: &mut Engine, l: usize) {
        if !eng.is_ready(l) {
            if self.plan.kind == Kind::Group {
                self.senders[l].deferred += 1;
            }
            return;
        }
        let now = now_ns();
        let remaining = (self.plan.members - 1) as u32;
        let s = &mut self.senders[l];
        s.next_q += 1;
        let q = s.next_q;
        s.pending.insert(q, Pending { sent_ns: now, remaining, answered: false });
        self.queue_send(eng, l, q, now);
        self.rec.sent(now);
        self.deltas[0] += 1;
    }

    /// Queues the Send of message `q`; for a group also its resend after a reconnect (same
    /// client_msg_id, so the server answers with the original receipt if it has it).
    fn queue_send(&mut self, eng: &mut Engine, l: usize, q: u32, sent_ns: u64) {
        let set = l / self.plan.members;
        let stamp = Stamp {
            run: self.plan.run_id,
            sender: (self.first + l) as u32,
            recipient: (self.first_set + set) as u32,
            seq: q,
            sent_ns,
        };
        let request = match self.plan.kind {
            Kind::Group => stored_send(Target::Group(self.ids[set]), &stamp, self.plan.size),
            Kind::Room => Request::Send {
                to: Target::Room(self.rooms[set].clone()),
                client_msg_id: ClientMsgId::NONE,
                transient: true,
                content: text(&stamp, self.plan.size),
            },
        };
        eng.send(l, q, request);
    }

    /// Message `q` of local sender `l` has its answer and all its deliveries.
    fn maybe_complete(&mut self, eng: &mut Engine, l: usize, q: u32) {
        let done = self.senders[l].pending.get(&q).is_some_and(|p| p.answered && p.remaining == 0);
        if done {
            self.senders[l].pending.remove(&q);
            self.credit(eng, l);
        }
    }

    /// A window slot of sender `l` is free again.
    fn credit(&mut self, eng: &mut Engine, l: usize) {
        if self.pacer.refill() {
            self.send(eng, l);
        }
    }

    /// One message received by local client `c`, after the kind's own checks.
    fn delivery(&mut self, eng: &mut Engine, c: usize, stamp: Stamp, from: &str, now: u64) {
        let m = self.plan.members;
        let g = stamp.sender as usize;
        let me = self.first + c;
        let same_set = g >= self.first && g / m == me / m && g != me;
        if !same_set || stamp.recipient as usize != me / m || from != eng.accounts().name(g) {
            self.misrouted += 1;
            return;
        }
        let (sl, k) = (g - self.first, g % m);
        if !self.delivered[c][k].insert(stamp.seq) {
            self.rec.duplicated += 1;
            return;
        }
        self.rec.delivered(now);
        self.rec.latency("delivery", Line::Main, stamp.sent_ns, now);
        self.deltas[3] += 1;
        if let Some(p) = self.senders[sl].pending.get_mut(&stamp.seq) {
            p.remaining = p.remaining.saturating_sub(1);
            self.maybe_complete(eng, sl, stamp.seq);
        }
    }

    /// A body that is not this run's: from an earlier run, or not the load generator's.
    fn foreign(&mut self, body: &[u8]) {
        match Stamp::decode(body) {
            Some(stamp) if stamp.run == self.plan.run_id => self.misrouted += 1,
            Some(_) => self.rec.stale += 1,
            None => self.rec.error("foreign_message"),
        }
    }

    /// Every answered send against what each other member of its set received.
    fn check(&self, stale_at_setup: u64) -> Correctness {
        let m = self.plan.members;
        let mut c = Correctness::default();
        for (l, sender) in self.senders.iter().enumerate() {
            let set = l / m;
            let k = l % m;
            for r in set * m..(set + 1) * m {
                if r == l || (self.plan.kind == Kind::Room && self.dropped[r]) {
                    continue;
                }
                c.lost += sender.receipted.count_missing_from(&self.delivered[r][k]);
                c.delivered_unreceipted += self.delivered[r][k].count_missing_from(&sender.receipted);
            }
            c.unanswered_sends += sender.pending.values().filter(|p| !p.answered).count() as u64;
        }
        c.unanswered_sends += self.abandoned;
        c.duplicated = self.rec.duplicated;
        c.stale = self.rec.stale + stale_at_setup;
        c.reconnects = self.reconnects.made;
        c.misrouted = self.misrouted;
        c
    }
}

fn build_report(
    ctx: &Ctx,
    spec: &Spec,
    plan: &Plan,
    schedule: Schedule,
    outs: Vec<ThreadOut>,
    monitor: &Monitor,
) -> Report {
    let mut correctness = Correctness::default();
    let mut rec = Recorder::new(schedule.start, (schedule.measure, schedule.end));
    let mut pacer = Pacer::default();
    let (mut events, mut short, mut dropped, mut stale_groups) = (0, 0, 0, 0);
    let threads = outs.len();
    for out in outs {
        let c = &out.correctness;
        correctness.lost += c.lost;
        correctness.delivered_unreceipted += c.delivered_unreceipted;
        correctness.unanswered_sends += c.unanswered_sends;
        correctness.stale += c.stale;
        correctness.reconnects += c.reconnects;
        correctness.misrouted += c.misrouted;
        pacer.max_lag_ns = pacer.max_lag_ns.max(out.pacer.max_lag_ns);
        pacer.skipped += out.pacer.skipped;
        events += out.events;
        short += out.short_answers;
        dropped += out.dropped_members;
        stale_groups += out.stale_groups_removed;
        rec.merge(out.rec);
    }
    correctness.duplicated = rec.duplicated;
    correctness.judge();
    if plan.kind == Kind::Room && dropped > 0 {
        // A member that dropped out of its room cannot be checked: the run proves less.
        correctness.ok = false;
    }

    let (phases_ns, phases) = schedule.phases();
    let mut details = schedule.details(spec.rate.map(|_| &pacer));
    details["members"] = serde_json::json!(plan.members);
    details["clients"] = serde_json::json!(plan.clients);
    details["threads"] = serde_json::json!(threads);
    details["deliveries_per_send"] = serde_json::json!(plan.members - 1);
    match plan.kind {
        Kind::Group => {
            details["groups"] = serde_json::json!(plan.sets);
            details["group_events_skipped"] = serde_json::json!(events);
            if stale_groups > 0 {
                details["stale_groups_removed"] = serde_json::json!(stale_groups);
            }
        }
        Kind::Room => {
            details["rooms"] = serde_json::json!(plan.sets);
            details["short_delivered_answers"] = serde_json::json!(short);
            details["members_dropped"] = serde_json::json!(dropped);
        }
    }
    Report {
        correctness,
        cpu: cpu(monitor.cpu_between_marks()),
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases,
        ..measured_report(ctx, plan.kind.name(), spec.params.clone(), &rec, secs(plan.timing.duration_ns))
    }
}
