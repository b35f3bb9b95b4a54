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

use super::{establish, round3, seconds_flag, Ctx, Slots, SETUP_IDS};
use super::{group, room};
use crate::bitset::BitSet;
use crate::clock::{now_ns, secs};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::payload::{Stamp, STAMP_LEN};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{rate, Correctness, Cpu, Report};
use crate::stats::{Line, Recorder};
use confab::protocol::{Content, Conversation, ErrorCode, MediaKind, Message, Push, Reply, Request, Target};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

const RECONNECTS_PER_CLIENT: u8 = 3;
/// A send the server refused with RateLimited is sent again (unchanged) this much later.
const RETRY_AFTER_NS: u64 = 20_000_000;
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
    warmup_ns: u64,
    duration_ns: u64,
    drain_ns: u64,
    concurrency: usize,
    setup_deadline: u64,
}

#[derive(Default)]
struct Shared {
    setup_done: AtomicUsize,
    setup_failed: AtomicUsize,
    start_ns: AtomicU64,
    abort: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    answered: AtomicU64,
    receipted: AtomicU64,
    delivered: AtomicU64,
    /// Deliveries owed by the answered sends (M-1 each, or the room's `recipients`).
    expected: AtomicU64,
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
    if spec.size < STAMP_LEN {
        return Err(Error::Usage(format!("--size must be at least {STAMP_LEN}")));
    }
    if spec.window == 0 && spec.rate.is_none() {
        return Err(Error::Usage("--window must be at least 1".into()));
    }
    if spec.rate == Some(0) {
        return Err(Error::Usage("--rate must be positive".into()));
    }
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
        warmup_ns: seconds_flag("warmup", spec.warmup, 0.0)?,
        duration_ns: seconds_flag("duration", spec.duration, 0.1)?,
        drain_ns: seconds_flag("drain", spec.drain, 0.0)?,
        concurrency: ctx.concurrency().div_ceil(threads),
        setup_deadline: ctx.setup_deadline(),
    };
    ctx.check_fd_limit(clients)?;
    let mut accounts = ctx.load_accounts(clients)?;
    let mut engines = Vec::new();
    for _ in 0..threads {
        engines.push(ctx.engine(accounts.clone(), clients)?);
    }
    let shared = Shared::default();
    let mut monitor = Monitor::new(ctx.common.server_pid);

    let (outs, schedule) = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .into_iter()
            .enumerate()
            .map(|(t, eng)| {
                let (plan, shared) = (&plan, &shared);
                std::thread::Builder::new()
                    .name(format!("loadgen-{t}"))
                    .spawn_scoped(scope, move || thread_main(t, eng, shared, plan))
            })
            .collect();
        let schedule = supervise(&plan, &shared, threads, &mut monitor);
        let outs: Vec<_> = handles
            .into_iter()
            .map(|h| match h {
                Ok(h) => h.join().unwrap_or_else(|_| Err(Error::Usage("a load thread panicked".into()))),
                Err(e) => Err(Error::Poll(e)),
            })
            .collect();
        (outs, schedule)
    });
    // Tokens first, whatever else went wrong: the next run should not pay for logins again.
    let engines: Vec<&Engine> = outs.iter().filter_map(|o| o.as_ref().ok()).map(|o| &o.engine).collect();
    ctx.save_accounts(&mut accounts, &engines)?;
    let outs = outs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let Some(schedule) = schedule else {
        return Err(Error::Usage("setup did not finish in time (see --setup-timeout)".into()));
    };
    Ok(build_report(ctx, spec, &plan, schedule, outs, &monitor))
}

#[derive(Clone, Copy)]
struct Schedule {
    start: u64,
    measure: u64,
    end: u64,
    stopped: u64,
    setup_seconds: f64,
}

/// The main thread: waits for every thread's setup, gives the start signal, samples CPU,
/// shows progress, and ends the drain once every answered send has reached its recipients.
fn supervise(plan: &Plan, shared: &Shared, threads: usize, monitor: &mut Monitor) -> Option<Schedule> {
    let setup_started = now_ns();
    while shared.setup_done.load(Relaxed) < threads {
        if now_ns() > plan.setup_deadline + 10_000_000_000 {
            shared.abort.store(true, Relaxed);
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    if shared.setup_failed.load(Relaxed) > 0 {
        shared.abort.store(true, Relaxed);
        return None;
    }
    let start = now_ns() + 10_000_000;
    let measure = start + plan.warmup_ns;
    let end = measure + plan.duration_ns;
    let setup_seconds = secs(start - setup_started);
    shared.start_ns.store(start, Relaxed);
    monitor.start(start);
    let mut marked = 0;
    let mut progress = Progress::new((end - start) / 1_000_000, "ms");
    loop {
        std::thread::sleep(Duration::from_millis(5));
        let now = now_ns();
        monitor.tick(now);
        if marked == 0 && now >= measure {
            monitor.mark(now);
            marked = 1;
        }
        if marked == 1 && now >= end {
            monitor.mark(now);
            marked = 2;
        }
        let (sent, answered, delivered, expected) = (
            shared.sent.load(Relaxed),
            shared.answered.load(Relaxed),
            shared.delivered.load(Relaxed),
            shared.expected.load(Relaxed),
        );
        let phase = if now < measure {
            "warm-up"
        } else if now < end {
            "measuring"
        } else {
            "draining"
        };
        progress.update(now.saturating_sub(start).min(end - start) / 1_000_000, || {
            let receipted = shared.receipted.load(Relaxed);
            format!("{phase}: {sent} sent, {receipted} answered, {delivered} of {expected} deliveries")
        });
        let all_in = sent == answered && delivered >= expected;
        if now >= end && (all_in || now >= end + plan.drain_ns) {
            shared.stop.store(true, Relaxed);
            progress.finish();
            return Some(Schedule { start, measure, end, stopped: now, setup_seconds });
        }
    }
}

/// What a thread hands back; the exactly-once check is done on the thread (its sets are
/// its own).
struct ThreadOut {
    engine: Engine,
    rec: Recorder,
    correctness: Correctness,
    max_lag_ns: u64,
    skipped: u64,
    events: u64,
    short_answers: u64,
    dropped_members: u64,
    stale_groups_removed: u64,
}

fn thread_main(t: usize, mut eng: Engine, shared: &Shared, plan: &Plan) -> Result<ThreadOut, Error> {
    let first_set = t * plan.block;
    let last_set = ((t + 1) * plan.block).min(plan.sets);
    let setup = setup_thread(&mut eng, plan, first_set, last_set, t == 0);
    let setup = match setup {
        Ok(setup) => setup,
        Err(e) => {
            shared.setup_failed.fetch_add(1, Relaxed);
            shared.setup_done.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    shared.setup_done.fetch_add(1, Relaxed);

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
        start: 0,
        end: 0,
        sending: false,
        rate: plan.rate.map(|r| r * n as f64 / plan.clients as f64),
        open_sent: 0,
        rr: 0,
        max_lag_ns: 0,
        skipped: 0,
        deltas: [0; 5],
        reconnects_left: vec![RECONNECTS_PER_CLIENT; n],
        reconnects: 0,
        misrouted: 0,
        events: 0,
        short_answers: 0,
        abandoned: 0,
        retry: VecDeque::new(),
    };
    let mut next_ping = 0;
    loop {
        if shared.abort.load(Relaxed) {
            break;
        }
        let start = shared.start_ns.load(Relaxed);
        let now = now_ns();
        if start == 0 && now > plan.setup_deadline + 20_000_000_000 {
            break;
        }
        eng.turn(Some(h.timeout(now)), &mut h).map_err(Error::Poll)?;
        let now = now_ns();
        h.tick(&mut eng, start, now);
        if now >= next_ping {
            eng.ping_idle(PING_IDLE_NS, now);
            next_ping = now + 1_000_000_000;
        }
        eng.flush(&mut h);
        h.publish(shared);
        if shared.stop.load(Relaxed) {
            break;
        }
        if start != 0 && now > start + plan.warmup_ns + plan.duration_ns + plan.drain_ns + 2_000_000_000 {
            break;
        }
    }
    h.sending = false;
    settle(&mut eng, &mut h)?;
    if plan.kind == Kind::Group && !h.ids.is_empty() {
        // Leave nothing behind: a user may be in at most 100 groups, and a later run must
        // not find this one's backlog.
        let owners: Vec<(usize, u64)> = h.ids.iter().enumerate().map(|(s, id)| (s * m, *id)).collect();
        group::delete_groups(&mut eng, &owners, now_ns() + 5_000_000_000)?;
        settle(&mut eng, &mut h)?;
    }
    let correctness = h.check(setup.stale);
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    Ok(ThreadOut {
        rec,
        correctness,
        max_lag_ns: h.max_lag_ns,
        skipped: h.skipped,
        events: h.events,
        short_answers: h.short_answers,
        dropped_members: h.dropped.iter().filter(|d| **d).count() as u64,
        stale_groups_removed: setup.stale_groups_removed,
        engine: eng,
    })
}

/// Turns the engine until every connection's acks are confirmed (or a while passed).
fn settle<H: Handler>(eng: &mut Engine, h: &mut H) -> Result<(), Error> {
    let until = now_ns() + ACK_SETTLE.as_nanos() as u64;
    loop {
        eng.turn(Some(Duration::from_millis(5)), h).map_err(Error::Poll)?;
        if eng.acks_settled() || now_ns() >= until {
            return Ok(());
        }
    }
}

struct Setup {
    stale: u64,
    ids: Vec<u64>,
    rooms: Vec<String>,
    stale_groups_removed: u64,
}

/// Logs the thread's clients in, then makes their groups or joins their rooms.
fn setup_thread(eng: &mut Engine, plan: &Plan, first_set: usize, last_set: usize, show: bool) -> Result<Setup, Error> {
    let m = plan.members;
    let mine: Vec<usize> = (first_set * m..last_set * m).collect();
    let label = show.then_some("clients logged in");
    let est = establish(eng, &mine, Auth::Auto, Slots::KeepOpen, plan.concurrency, plan.setup_deadline, None, label)?;
    est.require_all()?;
    let sets: Vec<Vec<usize>> = (0..last_set - first_set).map(|s| (s * m..(s + 1) * m).collect()).collect();
    let mut setup = Setup { stale: est.stale, ids: Vec::new(), rooms: Vec::new(), stale_groups_removed: 0 };
    match plan.kind {
        Kind::Group => {
            let names: Vec<String> = (first_set..last_set).map(|s| group::group_name(plan.run_id, s)).collect();
            let made = group::setup_groups(eng, &sets, &names, plan.setup_deadline, show)?;
            setup.ids = made.ids;
            setup.stale_groups_removed = made.stale_groups_removed;
        }
        Kind::Room => {
            setup.rooms = (first_set..last_set).map(|s| room::room_name(plan.run_id, s)).collect();
            room::join_rooms(eng, &sets, &setup.rooms, plan.setup_deadline, show)?;
        }
    }
    settle(eng, &mut super::Quiet)?;
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
    ids: Vec<u64>,
    /// Room names, per local set (rooms only).
    rooms: Vec<String>,
    senders: Vec<SenderState>,
    /// Per local recipient, per member index of the sender in the set: sequences received.
    delivered: Vec<Vec<BitSet>>,
    /// Room members whose connection dropped (they left the room with it).
    dropped: Vec<bool>,
    rec: Recorder,
    start: u64,
    end: u64,
    sending: bool,
    /// Sends per second for this thread (open loop).
    rate: Option<f64>,
    open_sent: u64,
    rr: usize,
    max_lag_ns: u64,
    skipped: u64,
    /// sent, answered, receipted, delivered, expected since the last publish.
    deltas: [u64; 5],
    reconnects_left: Vec<u8>,
    reconnects: u64,
    misrouted: u64,
    /// Group events received (membership changes share the group's sequence).
    events: u64,
    /// Room sends whose `Delivered` counted fewer than members-1 recipients.
    short_answers: u64,
    /// Room sends whose connection dropped before the answer (never resent: not idempotent).
    abandoned: u64,
    /// Rate-limited sends to repeat: (when, sender, sequence).
    retry: VecDeque<(u64, usize, u32)>,
}

impl Fanout<'_> {
    fn timeout(&self, now: u64) -> Duration {
        match (self.rate, self.sending) {
            (Some(rate), true) => {
                let next = self.start + ((self.open_sent + 1) as f64 / rate * 1e9) as u64;
                Duration::from_nanos(next.saturating_sub(now).min(10_000_000))
            }
            _ if self.start == 0 => Duration::from_millis(2),
            _ => Duration::from_millis(10),
        }
    }

    fn tick(&mut self, eng: &mut Engine, start: u64, now: u64) {
        if self.start == 0 && start != 0 && now >= start {
            self.start = start;
            let measure = start + self.plan.warmup_ns;
            self.end = measure + self.plan.duration_ns;
            self.rec.set_window(start, (measure, self.end));
            self.sending = true;
            if self.rate.is_none() {
                for l in 0..self.senders.len() {
                    for _ in 0..self.plan.window {
                        self.send(eng, l);
                    }
                }
            }
        }
        if self.sending && now >= self.end {
            self.sending = false;
        }
        if let (Some(rate), true) = (self.rate, self.sending) {
            self.open_loop(eng, rate, now);
        }
        while self.retry.front().is_some_and(|(due, _, _)| *due <= now) {
            let Some((_, l, q)) = self.retry.pop_front() else {
                break;
            };
            // Not ready: a reconnect resends everything unanswered anyway.
            let waiting = self.senders[l].pending.get(&q).filter(|p| !p.answered).map(|p| p.sent_ns);
            if let (Some(sent_ns), true) = (waiting, eng.is_ready(l)) {
                self.queue_send(eng, l, q, sent_ns);
            }
        }
    }

    fn open_loop(&mut self, eng: &mut Engine, rate: f64, now: u64) {
        let due = ((now - self.start) as f64 * rate / 1e9) as u64;
        if due <= self.open_sent {
            return;
        }
        let intended = self.start + (self.open_sent as f64 / rate * 1e9) as u64;
        self.max_lag_ns = self.max_lag_ns.max(now.saturating_sub(intended));
        let limit = rate.max(1.0) as u64;
        if due - self.open_sent > limit {
            self.skipped += due - self.open_sent - limit;
            self.open_sent = due - limit;
        }
        let n = self.senders.len();
        while self.open_sent < due {
            let mut tries = 0;
            while !eng.is_ready(self.rr) && tries < n {
                self.rr = (self.rr + 1) % n;
                tries += 1;
            }
            if tries == n {
                break;
            }
            let l = self.rr;
            self.rr = (self.rr + 1) % n;
            self.send(eng, l);
            self.open_sent += 1;
        }
    }

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
        let content = Content { kind: MediaKind::Text, body: stamp.encode(self.plan.size), media: None };
        let request = match self.plan.kind {
            Kind::Group => Request::Send {
                to: Target::Group(self.ids[set]),
                client_msg_id: (u64::from(self.plan.run_id) << 32) | u64::from(q),
                transient: false,
                content,
            },
            Kind::Room => {
                Request::Send { to: Target::Room(self.rooms[set].clone()), client_msg_id: 0, transient: true, content }
            }
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
        if self.sending && self.rate.is_none() && now_ns() < self.end {
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

    fn publish(&mut self, shared: &Shared) {
        let counters = [&shared.sent, &shared.answered, &shared.receipted, &shared.delivered, &shared.expected];
        for (delta, counter) in self.deltas.iter_mut().zip(counters) {
            if *delta > 0 {
                counter.fetch_add(*delta, Relaxed);
                *delta = 0;
            }
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
        c.reconnects = self.reconnects;
        c.misrouted = self.misrouted;
        c
    }
}

impl Handler for Fanout<'_> {
    fn ready(&mut self, eng: &mut Engine, c: usize, _now: u64) {
        // Only a group member's reconnect gets here: resend what was never answered, then
        // use the window slots freed meanwhile.
        let mut unanswered: Vec<(u32, u64)> =
            self.senders[c].pending.iter().filter(|(_, p)| !p.answered).map(|(q, p)| (*q, p.sent_ns)).collect();
        unanswered.sort_unstable();
        for (q, sent_ns) in unanswered {
            self.queue_send(eng, c, q, sent_ns);
        }
        let deferred = std::mem::take(&mut self.senders[c].deferred);
        if self.sending && self.rate.is_none() {
            for _ in 0..deferred {
                self.send(eng, c);
            }
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        let set = c / self.plan.members;
        match (self.plan.kind, msg.conversation) {
            (Kind::Group, Conversation::Group(id)) if id == self.ids[set] => {
                if msg.event.is_some() {
                    // Membership changes live in the same sequence; not our traffic.
                    self.events += 1;
                    return;
                }
                match Stamp::decode(&msg.content.body) {
                    Some(stamp) if stamp.run == self.plan.run_id => self.delivery(eng, c, stamp, &msg.from, now),
                    _ => self.foreign(&msg.content.body),
                }
            }
            _ if msg.event.is_some() => self.events += 1,
            _ => self.foreign(&msg.content.body),
        }
    }

    fn push(&mut self, eng: &mut Engine, c: usize, push: Push, now: u64) {
        let Push::RoomMessage { room, from, content } = push else {
            // Presence of fellow members coming and going, and the like.
            return;
        };
        let set = c / self.plan.members;
        match Stamp::decode(&content.body) {
            Some(stamp) if stamp.run == self.plan.run_id => {
                if self.plan.kind != Kind::Room || room != self.rooms[set] {
                    self.misrouted += 1;
                    return;
                }
                self.delivery(eng, c, stamp, &from, now);
            }
            _ => self.foreign(&content.body),
        }
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        if request_id >= SETUP_IDS {
            self.rec.error("late_setup_answer");
            return;
        }
        let waiting = self.senders[c].pending.get(&request_id).is_some_and(|p| !p.answered);
        if !waiting {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        }
        if reply == Err(ErrorCode::RateLimited) {
            self.rec.error("send:RateLimited(retried)");
            self.retry.push_back((now + RETRY_AFTER_NS, c, request_id));
            return;
        }
        self.deltas[1] += 1;
        let others = (self.plan.members - 1) as u32;
        let kind = self.plan.kind;
        let s = &mut self.senders[c];
        let Some(p) = s.pending.get_mut(&request_id) else {
            return;
        };
        let sent_ns = p.sent_ns;
        let recipients = match (kind, reply) {
            (Kind::Group, Ok(Reply::Sent { seq, .. })) => {
                let group = self.ids[c / self.plan.members];
                eng.group_own(c, group, seq);
                others
            }
            (Kind::Room, Ok(Reply::Delivered { recipients })) => {
                if recipients < others {
                    // Members that are not there get nothing; the check leaves out members
                    // whose connection dropped, and a short count without a drop is a loss.
                    p.remaining = p.remaining.saturating_sub(others - recipients);
                    self.short_answers += 1;
                }
                recipients
            }
            (_, answer) => {
                match answer {
                    Ok(_) => self.rec.error("unexpected:reply_to_send"),
                    Err(code) => self.rec.error(&format!("send:{code:?}")),
                }
                s.pending.remove(&request_id);
                self.credit(eng, c);
                return;
            }
        };
        p.answered = true;
        if s.receipted.insert(request_id) {
            self.rec.receipted(now);
            self.rec.latency(kind.answer(), Line::Receipt, sent_ns, now);
            self.deltas[2] += 1;
            self.deltas[4] += u64::from(recipients);
        }
        self.maybe_complete(eng, c, request_id);
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _now: u64) {
        self.rec.error(&fault.kind());
        match self.plan.kind {
            Kind::Group => {
                if self.reconnects_left[c] > 0 {
                    self.reconnects_left[c] -= 1;
                    self.reconnects += 1;
                    if let Err(fault) = eng.connect(c, self.first + c, Auth::Auto) {
                        self.rec.error(&fault.kind());
                    }
                }
            }
            Kind::Room => {
                // The connection's room membership ended with it: it is out of the check,
                // and its unanswered sends are given up (a room send is not idempotent).
                self.dropped[c] = true;
                let s = &mut self.senders[c];
                let before = s.pending.len();
                s.pending.retain(|_, p| p.answered);
                let abandoned = (before - s.pending.len()) as u64;
                self.abandoned += abandoned;
                self.deltas[1] += abandoned;
            }
        }
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
    let (mut max_lag_ns, mut skipped, mut events, mut short, mut dropped, mut stale_groups) = (0, 0, 0, 0, 0, 0);
    let threads = outs.len();
    for out in outs {
        let c = &out.correctness;
        correctness.lost += c.lost;
        correctness.delivered_unreceipted += c.delivered_unreceipted;
        correctness.unanswered_sends += c.unanswered_sends;
        correctness.stale += c.stale;
        correctness.reconnects += c.reconnects;
        correctness.misrouted += c.misrouted;
        max_lag_ns = max_lag_ns.max(out.max_lag_ns);
        skipped += out.skipped;
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

    let seconds = secs(plan.duration_ns);
    let (loadgen_cpu, server_cpu) = monitor.cpu_between_marks();
    let phases_ns = [("warm-up", schedule.start), ("measured", schedule.measure), ("drain", schedule.end)];
    let phases: Vec<(&'static str, f64)> = phases_ns
        .iter()
        .filter(|(name, t)| *name != "warm-up" || *t < schedule.measure)
        .map(|(name, t)| (*name, secs(t - schedule.start)))
        .collect();
    let mut details = serde_json::json!({
        "mode": if spec.rate.is_some() { "open loop" } else { "closed loop" },
        "members": plan.members,
        "clients": plan.clients,
        "threads": threads,
        "deliveries_per_send": plan.members - 1,
        "setup_seconds": round3(schedule.setup_seconds),
        "drain_seconds": round3(secs(schedule.stopped.saturating_sub(schedule.end))),
    });
    let sets_key = match plan.kind {
        Kind::Group => "groups",
        Kind::Room => "rooms",
    };
    details[sets_key] = serde_json::json!(plan.sets);
    match plan.kind {
        Kind::Group => {
            details["group_events_skipped"] = serde_json::json!(events);
            if stale_groups > 0 {
                details["stale_groups_removed"] = serde_json::json!(stale_groups);
            }
        }
        Kind::Room => {
            details["short_delivered_answers"] = serde_json::json!(short);
            details["members_dropped"] = serde_json::json!(dropped);
        }
    }
    if spec.rate.is_some() {
        details["open_loop_max_lag_ms"] = serde_json::json!(round3(max_lag_ns as f64 / 1e6));
        details["open_loop_skipped"] = serde_json::json!(skipped);
    }
    Report {
        scenario: plan.kind.name(),
        server: ctx.server(),
        run_id: ctx.run_id,
        params: spec.params.clone(),
        sent: rec.total.sent,
        receipted: rec.total.receipted,
        delivered: rec.total.delivered,
        measured_seconds: seconds,
        sent_per_sec: rate(rec.measured.sent, seconds),
        receipted_per_sec: rate(rec.measured.receipted, seconds),
        delivered_per_sec: rate(rec.measured.delivered, seconds),
        latency_ms: rec.percentiles(),
        errors: rec.errors.clone(),
        correctness,
        cpu: Cpu { loadgen_percent: loadgen_cpu, server_percent: server_cpu },
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases,
    }
}
