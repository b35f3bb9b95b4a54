//! `direct`: N clients, each one connection and one inbox, send 1:1 messages to random
//! other clients.
//!
//! Closed loop (`--window W`): every sender keeps W messages outstanding until they are
//! *delivered*, the way peers.md's peers were driven, so throughput is what the server
//! sustains and latency is mostly queueing. Open loop (`--rate R`): R messages per second
//! in total, budgeted per 1 ms tick over the senders in turn, whatever the server does; the
//! latency anchor. A warm-up, a measured window, then a drain of at most `--drain` seconds
//! in which nothing new is sent and everything receipted must arrive.
//!
//! With `--threads T` the clients are split into T blocks, each driven by its own event
//! loop. A delivery on one thread may free a window slot of a sender on another: those
//! credits travel in one batch per loop turn over a channel plus a mio `Waker`.

use super::{establish, seconds_flag, Ctx, Slots};
use crate::bitset::BitSet;
use crate::cli::DirectArgs;
use crate::clock::{now_ns, secs, Rng};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::payload::{Stamp, STAMP_LEN};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{rate, Correctness, Cpu, Report};
use crate::stats::{Line, Recorder};
use confab::protocol::{Content, ErrorCode, MediaKind, Message, Reply, Request, Target};
use mio::Waker;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// Reconnects allowed per client in one run: enough for a blip, not for a loop.
const RECONNECTS_PER_CLIENT: u8 = 3;
/// A send the server refused with RateLimited is sent again (unchanged) this much later.
const RETRY_AFTER_NS: u64 = 20_000_000;
/// After stopping, how long threads wait for their last acks to be confirmed, so the next
/// run finds the inboxes empty.
const ACK_SETTLE: Duration = Duration::from_millis(500);

/// Everything the threads agree on before they start.
struct Plan {
    clients: usize,
    block: usize,
    window: u32,
    /// Messages per second for each thread (open loop).
    rate_per_thread: Option<f64>,
    size: usize,
    run_id: u32,
    warmup_ns: u64,
    duration_ns: u64,
    drain_ns: u64,
    concurrency: usize,
    setup_deadline: u64,
    seed: u64,
}

/// What threads and the main thread share: the start signal and running totals.
#[derive(Default)]
struct Shared {
    setup_done: AtomicUsize,
    setup_failed: AtomicUsize,
    /// Zero until every thread is set up; then when sending starts.
    start_ns: AtomicU64,
    abort: AtomicBool,
    stop: AtomicBool,
    sent: AtomicU64,
    /// Sends answered, by a receipt or an error.
    answered: AtomicU64,
    receipted: AtomicU64,
    delivered: AtomicU64,
}

struct Peer {
    credits: Sender<Vec<u32>>,
    waker: Arc<Waker>,
}

pub fn run(ctx: &Ctx, args: &DirectArgs) -> Result<Report, Error> {
    if args.clients < 2 {
        return Err(Error::Usage("--clients must be at least 2".into()));
    }
    if args.size < STAMP_LEN {
        return Err(Error::Usage(format!("--size must be at least {STAMP_LEN}")));
    }
    if args.window == 0 && args.rate.is_none() {
        return Err(Error::Usage("--window must be at least 1".into()));
    }
    if args.rate == Some(0) {
        return Err(Error::Usage("--rate must be positive".into()));
    }
    let threads = args.threads.clamp(1, args.clients);
    let plan = Plan {
        clients: args.clients,
        block: args.clients.div_ceil(threads),
        window: args.window,
        rate_per_thread: args.rate.map(|r| r as f64 / threads as f64),
        size: args.size,
        run_id: ctx.run_id,
        warmup_ns: seconds_flag("warmup", args.warmup, 0.0)?,
        duration_ns: seconds_flag("duration", args.duration, 0.1)?,
        drain_ns: seconds_flag("drain", args.drain, 0.0)?,
        concurrency: ctx.concurrency().div_ceil(threads),
        setup_deadline: ctx.setup_deadline(),
        seed: ctx.seed,
    };
    ctx.check_fd_limit(args.clients)?;
    let mut accounts = ctx.load_accounts(args.clients)?;

    let mut engines = Vec::new();
    let mut peers = Vec::new();
    let mut inboxes = Vec::new();
    for _ in 0..threads {
        let eng = ctx.engine(accounts.clone(), args.clients)?;
        let (tx, rx) = channel();
        peers.push(Peer { credits: tx, waker: eng.waker().map_err(Error::Poll)? });
        inboxes.push(rx);
        engines.push(eng);
    }
    let shared = Shared::default();
    let mut monitor = Monitor::new(ctx.common.server_pid);

    let (outs, schedule) = std::thread::scope(|scope| {
        let handles: Vec<_> = engines
            .into_iter()
            .zip(inboxes)
            .enumerate()
            .map(|(t, (eng, inbox))| {
                let (plan, peers, shared) = (&plan, &peers, &shared);
                std::thread::Builder::new()
                    .name(format!("loadgen-{t}"))
                    .spawn_scoped(scope, move || thread_main(t, eng, inbox, peers, shared, plan))
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
    let outs = outs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let engines: Vec<&Engine> = outs.iter().map(|o| &o.engine).collect();
    ctx.save_accounts(&mut accounts, &engines)?;

    let Some(schedule) = schedule else {
        let mut faults = BTreeMap::new();
        let (mut ready, mut failed) = (0, 0);
        for out in &outs {
            ready += out.setup.0;
            failed += out.setup.1;
            for (k, n) in &out.setup.2 {
                *faults.entry(k.clone()).or_insert(0) += n;
            }
        }
        let detail = faults.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
        return Err(Error::Setup {
            ready,
            wanted: ready + failed,
            detail: if detail.is_empty() { "setup timed out".into() } else { detail },
        });
    };
    Ok(build_report(ctx, args, &plan, schedule, outs, &monitor))
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
/// shows progress, and ends the drain when everything receipted has arrived.
fn supervise(plan: &Plan, shared: &Shared, threads: usize, monitor: &mut Monitor) -> Option<Schedule> {
    let setup_started = now_ns();
    while shared.setup_done.load(Relaxed) < threads {
        if now_ns() > plan.setup_deadline + 5_000_000_000 {
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
    let schedule_setup = secs(start - setup_started);
    shared.start_ns.store(start, Relaxed);
    monitor.start(start);
    let mut marked = 0;
    let total_ms = (end - start) / 1_000_000;
    let mut progress = Progress::new(total_ms, "ms");
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
        let (sent, answered, receipted, delivered) = (
            shared.sent.load(Relaxed),
            shared.answered.load(Relaxed),
            shared.receipted.load(Relaxed),
            shared.delivered.load(Relaxed),
        );
        let phase = if now < measure {
            "warm-up"
        } else if now < end {
            "measuring"
        } else {
            "draining"
        };
        progress.update(now.saturating_sub(start).min(end - start) / 1_000_000, || {
            format!("{phase}: {sent} sent, {receipted} receipted, {delivered} delivered")
        });
        let all_in = sent == answered && delivered >= receipted;
        if now >= end && (all_in || now >= end + plan.drain_ns) {
            shared.stop.store(true, Relaxed);
            progress.finish();
            return Some(Schedule { start, measure, end, stopped: now, setup_seconds: schedule_setup });
        }
    }
}

/// What a thread hands back.
struct ThreadOut {
    engine: Engine,
    first: usize,
    rec: Recorder,
    /// Per local sender.
    receipted: Vec<BitSet>,
    /// Per global sender: what this thread's clients received.
    delivered: Vec<BitSet>,
    unanswered: u64,
    reconnects: u64,
    misrouted: u64,
    stale_at_setup: u64,
    max_lag_ns: u64,
    skipped: u64,
    /// (ready, failed, faults) of the setup.
    setup: (usize, usize, BTreeMap<String, u64>),
}

fn thread_main(
    t: usize,
    mut eng: Engine,
    inbox: Receiver<Vec<u32>>,
    peers: &[Peer],
    shared: &Shared,
    plan: &Plan,
) -> Result<ThreadOut, Error> {
    let first = (t * plan.block).min(plan.clients);
    let last = ((t + 1) * plan.block).min(plan.clients);
    let mine: Vec<usize> = (first..last).collect();
    let label = (t == 0).then_some("clients logged in");
    let est =
        establish(&mut eng, &mine, Auth::Auto, Slots::KeepOpen, plan.concurrency, plan.setup_deadline, None, label);
    let est = match est {
        Ok(est) => est,
        Err(e) => {
            shared.setup_failed.fetch_add(1, Relaxed);
            shared.setup_done.fetch_add(1, Relaxed);
            return Err(e);
        }
    };
    shared.setup_failed.fetch_add(est.failed, Relaxed);
    shared.setup_done.fetch_add(1, Relaxed);

    let mut h = Direct {
        plan,
        tid: t,
        first,
        senders: (first..last).map(|_| SenderState::default()).collect(),
        delivered: vec![BitSet::default(); plan.clients],
        rng: Rng::new(plan.seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        rec: Recorder::new(0, (0, 0)),
        start: 0,
        end: 0,
        sending: false,
        open_sent: 0,
        rr: 0,
        max_lag_ns: 0,
        skipped: 0,
        credits_out: vec![Vec::new(); peers.len()],
        peers,
        inbox,
        deltas: [0; 4],
        reconnects_left: vec![RECONNECTS_PER_CLIENT; last - first],
        reconnects: 0,
        misrouted: 0,
        retry: VecDeque::new(),
    };
    loop {
        if shared.abort.load(Relaxed) {
            break;
        }
        let start = shared.start_ns.load(Relaxed);
        let now = now_ns();
        if start == 0 && now > plan.setup_deadline + 10_000_000_000 {
            break;
        }
        let timeout = h.timeout(now);
        eng.turn(Some(timeout), &mut h).map_err(Error::Poll)?;
        let now = now_ns();
        h.tick(&mut eng, start, now);
        eng.flush(&mut h);
        h.publish(shared);
        if shared.stop.load(Relaxed) {
            break;
        }
        // A hard deadline of our own, whatever the main thread does.
        if start != 0 && now > start + plan.warmup_ns + plan.duration_ns + plan.drain_ns + 2_000_000_000 {
            break;
        }
    }
    let until = now_ns() + ACK_SETTLE.as_nanos() as u64;
    h.sending = false;
    while !eng.acks_settled() && now_ns() < until {
        eng.turn(Some(Duration::from_millis(5)), &mut h).map_err(Error::Poll)?;
    }
    let unanswered = h.senders.iter().map(|s| s.pending.len() as u64).sum();
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    Ok(ThreadOut {
        first,
        receipted: h.senders.into_iter().map(|s| s.receipted).collect(),
        delivered: h.delivered,
        unanswered,
        reconnects: h.reconnects,
        misrouted: h.misrouted,
        stale_at_setup: est.stale,
        max_lag_ns: h.max_lag_ns,
        skipped: h.skipped,
        setup: (est.ready, est.failed, est.faults),
        rec,
        engine: eng,
    })
}

#[derive(Default)]
struct SenderState {
    /// The last per-sender sequence used (also the request id of its Send).
    next_q: u32,
    /// Sent and neither delivered nor refused (closed loop).
    inflight: u32,
    /// Window slots freed while the connection was down, to use once it is back.
    deferred: u32,
    /// Sends awaiting their receipt: sequence → (recipient, send time).
    pending: HashMap<u32, (u32, u64)>,
    receipted: BitSet,
}

struct Direct<'a> {
    plan: &'a Plan,
    tid: usize,
    first: usize,
    senders: Vec<SenderState>,
    delivered: Vec<BitSet>,
    rng: Rng,
    rec: Recorder,
    start: u64,
    end: u64,
    sending: bool,
    open_sent: u64,
    rr: usize,
    max_lag_ns: u64,
    skipped: u64,
    credits_out: Vec<Vec<u32>>,
    peers: &'a [Peer],
    inbox: Receiver<Vec<u32>>,
    /// sent, answered, receipted, delivered since the last publish.
    deltas: [u64; 4],
    reconnects_left: Vec<u8>,
    reconnects: u64,
    misrouted: u64,
    /// Rate-limited sends to repeat: (when, sender, sequence).
    retry: VecDeque<(u64, usize, u32)>,
}

impl Direct<'_> {
    fn timeout(&self, now: u64) -> Duration {
        match (self.plan.rate_per_thread, self.sending) {
            (Some(rate), true) => {
                let next = self.start + ((self.open_sent + 1) as f64 / rate * 1e9) as u64;
                Duration::from_nanos(next.saturating_sub(now).min(10_000_000))
            }
            _ if self.start == 0 => Duration::from_millis(2),
            _ => Duration::from_millis(10),
        }
    }

    /// The start signal, the end of sending, and the open loop's budget.
    fn tick(&mut self, eng: &mut Engine, start: u64, now: u64) {
        if self.start == 0 && start != 0 && now >= start {
            self.start = start;
            let measure = start + self.plan.warmup_ns;
            self.end = measure + self.plan.duration_ns;
            self.rec.set_window(start, (measure, self.end));
            self.sending = true;
            if self.plan.rate_per_thread.is_none() {
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
        if let (Some(rate), true) = (self.plan.rate_per_thread, self.sending) {
            self.open_loop(eng, rate, now);
        }
        while self.retry.front().is_some_and(|(due, _, _)| *due <= now) {
            let Some((_, l, q)) = self.retry.pop_front() else {
                break;
            };
            // Not ready: the reconnect resends everything pending anyway.
            if let (Some(&(to, sent_ns)), true) = (self.senders[l].pending.get(&q), eng.is_ready(l)) {
                self.queue_send(eng, l, q, to, sent_ns);
            }
        }
        for (t, credits) in self.credits_out.iter_mut().enumerate() {
            if !credits.is_empty() {
                let batch = std::mem::take(credits);
                // A closed channel means that thread has finished; its credits are moot.
                if self.peers[t].credits.send(batch).is_ok() {
                    let _ = self.peers[t].waker.wake();
                }
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
        // More than a second behind: skip ahead rather than burst (and say so).
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
            self.senders[l].deferred += 1;
            return;
        }
        let g = self.first + l;
        let mut to = self.rng.below(self.plan.clients as u64 - 1) as usize;
        if to >= g {
            to += 1;
        }
        let now = now_ns();
        let s = &mut self.senders[l];
        s.next_q += 1;
        s.inflight += 1;
        let q = s.next_q;
        s.pending.insert(q, (to as u32, now));
        self.queue_send(eng, l, q, to as u32, now);
        self.rec.sent(now);
        self.deltas[0] += 1;
    }

    /// Queues the Send of message `q`; also used to resend it unchanged after a reconnect
    /// (same client_msg_id, so the server answers with the original receipt if it has it).
    fn queue_send(&mut self, eng: &mut Engine, l: usize, q: u32, to: u32, sent_ns: u64) {
        let stamp = Stamp { run: self.plan.run_id, sender: (self.first + l) as u32, recipient: to, seq: q, sent_ns };
        let request = Request::Send {
            to: Target::User(eng.accounts().name(to as usize).to_string()),
            client_msg_id: (u64::from(self.plan.run_id) << 32) | u64::from(q),
            transient: false,
            content: Content { kind: MediaKind::Text, body: stamp.encode(self.plan.size), media: None },
        };
        eng.send(l, q, request);
    }

    /// A window slot of global sender `g` is free again.
    fn credit(&mut self, eng: &mut Engine, g: usize) {
        let owner = g / self.plan.block;
        if owner == self.tid {
            self.credit_local(eng, g - self.first);
        } else {
            self.credits_out[owner].push(g as u32);
        }
    }

    fn credit_local(&mut self, eng: &mut Engine, l: usize) {
        let s = &mut self.senders[l];
        s.inflight = s.inflight.saturating_sub(1);
        if self.sending && self.plan.rate_per_thread.is_none() && now_ns() < self.end {
            self.send(eng, l);
        }
    }

    fn publish(&mut self, shared: &Shared) {
        let counters = [&shared.sent, &shared.answered, &shared.receipted, &shared.delivered];
        for (delta, counter) in self.deltas.iter_mut().zip(counters) {
            if *delta > 0 {
                counter.fetch_add(*delta, Relaxed);
                *delta = 0;
            }
        }
    }
}

impl Handler for Direct<'_> {
    fn ready(&mut self, eng: &mut Engine, c: usize, _now: u64) {
        // Only reconnects get here (the first logins went through `establish`): resend
        // what was never receipted, then use the window slots freed meanwhile.
        let mut pending: Vec<(u32, (u32, u64))> = self.senders[c].pending.iter().map(|(q, v)| (*q, *v)).collect();
        pending.sort_unstable();
        for (q, (to, sent_ns)) in pending {
            self.queue_send(eng, c, q, to, sent_ns);
        }
        let deferred = std::mem::take(&mut self.senders[c].deferred);
        if self.sending && self.plan.rate_per_thread.is_none() {
            for _ in 0..deferred {
                self.send(eng, c);
            }
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        let Some(stamp) = Stamp::decode(&msg.content.body) else {
            self.rec.error("foreign_message");
            return;
        };
        if stamp.run != self.plan.run_id {
            self.rec.stale += 1;
            return;
        }
        let g = stamp.sender as usize;
        if g >= self.plan.clients {
            self.rec.error("bad_stamp");
            return;
        }
        if stamp.recipient as usize != self.first + c || msg.from != eng.accounts().name(g) {
            self.misrouted += 1;
        }
        if !self.delivered[g].insert(stamp.seq) {
            self.rec.duplicated += 1;
            return;
        }
        self.rec.delivered(now);
        self.rec.latency("delivery", Line::Main, stamp.sent_ns, now);
        self.deltas[3] += 1;
        self.credit(eng, g);
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        if reply == Err(ErrorCode::RateLimited) && self.senders[c].pending.contains_key(&request_id) {
            self.rec.error("send:RateLimited(retried)");
            self.retry.push_back((now + RETRY_AFTER_NS, c, request_id));
            return;
        }
        let s = &mut self.senders[c];
        let Some((_, sent_ns)) = s.pending.remove(&request_id) else {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        };
        self.deltas[1] += 1;
        match reply {
            Ok(Reply::Sent { .. }) => {
                if s.receipted.insert(request_id) {
                    self.rec.receipted(now);
                    self.rec.latency("receipt", Line::Receipt, sent_ns, now);
                    self.deltas[2] += 1;
                }
            }
            Ok(_) => {
                self.rec.error("unexpected:reply_to_send");
                self.credit_local(eng, c);
            }
            Err(code) => {
                self.rec.error(&format!("send:{code:?}"));
                self.credit_local(eng, c);
            }
        }
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _now: u64) {
        self.rec.error(&fault.kind());
        if self.start != 0 && self.reconnects_left[c] > 0 {
            self.reconnects_left[c] -= 1;
            self.reconnects += 1;
            if let Err(fault) = eng.connect(c, self.first + c, Auth::Auto) {
                self.rec.error(&fault.kind());
            }
        }
    }

    fn woken(&mut self, eng: &mut Engine, _now: u64) {
        while let Ok(batch) = self.inbox.try_recv() {
            for g in batch {
                self.credit_local(eng, g as usize - self.first);
            }
        }
    }
}

fn build_report(
    ctx: &Ctx,
    args: &DirectArgs,
    plan: &Plan,
    schedule: Schedule,
    outs: Vec<ThreadOut>,
    monitor: &Monitor,
) -> Report {
    let mut delivered_all = vec![BitSet::default(); plan.clients];
    for out in &outs {
        for (g, set) in out.delivered.iter().enumerate() {
            delivered_all[g].union_with(set);
        }
    }
    let mut correctness = Correctness::default();
    let mut rec = Recorder::new(schedule.start, (schedule.measure, schedule.end));
    let (mut max_lag_ns, mut skipped, mut stale_at_setup) = (0, 0, 0);
    for out in outs {
        for (l, receipted) in out.receipted.iter().enumerate() {
            let g = out.first + l;
            correctness.lost += receipted.count_missing_from(&delivered_all[g]);
            correctness.delivered_unreceipted += delivered_all[g].count_missing_from(receipted);
        }
        correctness.unanswered_sends += out.unanswered;
        correctness.reconnects += out.reconnects;
        correctness.misrouted += out.misrouted;
        max_lag_ns = max_lag_ns.max(out.max_lag_ns);
        skipped += out.skipped;
        stale_at_setup += out.stale_at_setup;
        rec.merge(out.rec);
    }
    correctness.duplicated = rec.duplicated;
    correctness.stale = rec.stale + stale_at_setup;
    correctness.judge();

    let seconds = secs(plan.duration_ns);
    let (loadgen_cpu, server_cpu) = monitor.cpu_between_marks();
    let phases_ns = [("warm-up", schedule.start), ("measured", schedule.measure), ("drain", schedule.end)];
    let phases: Vec<(&'static str, f64)> = phases_ns
        .iter()
        .filter(|(name, t)| *name != "warm-up" || *t < schedule.measure)
        .map(|(name, t)| (*name, secs(t - schedule.start)))
        .collect();
    let mut details = serde_json::json!({
        "mode": if args.rate.is_some() { "open loop" } else { "closed loop" },
        "clients": args.clients,
        "threads": outs_threads(plan),
        "setup_seconds": round3(schedule.setup_seconds),
        "drain_seconds": round3(secs(schedule.stopped.saturating_sub(schedule.end))),
    });
    if args.rate.is_some() {
        details["open_loop_max_lag_ms"] = serde_json::json!(round3(max_lag_ns as f64 / 1e6));
        details["open_loop_skipped"] = serde_json::json!(skipped);
    }
    Report {
        scenario: "direct",
        server: ctx.server(),
        run_id: ctx.run_id,
        params: serde_json::to_value(args).unwrap_or_default(),
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

fn outs_threads(plan: &Plan) -> usize {
    plan.clients.div_ceil(plan.block)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
