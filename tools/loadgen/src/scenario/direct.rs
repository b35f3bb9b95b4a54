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
//!
//! Against a cluster (several `--addr`, or redirects to home nodes) every client's node is
//! noted after its setup ([`Homes`]); when they are on more than one, each delivery's
//! latency is also recorded as `same-node` or `cross-node`.
//!
//! With `--devices D` (more than 1) each client is a user on D connections, the named
//! devices `d0`.. (protocol.md "Devices"). A user's message number `q` goes out from device
//! `(q - 1) % D`, so every device sends. The exactly-once check is per device: every
//! receipted message must reach each of the recipient's D devices exactly once (a
//! delivery counts per device, and a closed-loop window slot frees once all D have it).
//! Sent copies are checked too: each receipted message must reach each of the sender's
//! other D - 1 devices exactly once as a `SentCopy`. A copy is appended to the sender's
//! inbox after the message is durable in the recipient's, so the only way to lose one is
//! a server crash between the two commits (protocol.md says so); this scenario never
//! crashes the server, so a copy missing at the end of the drain fails the run, as a lost
//! message does. The sending device itself gets its copy only when it was behind (not
//! caught up) at the time; those are counted apart and are not errors.

use super::common::{check_traffic_flags, cpu, measured_report, receipt, settle, stored_send, this_run};
use super::common::{retryable, Reconnects, Retries};
use super::nodes::{self, Homes};
use super::threaded::{drive, run_threads, supervise, Load, Pacer, Schedule, Shared, Timing};
use super::{establish, seconds_flag, Ctx, Slots};
use crate::bitset::BitSet;
use crate::cli::DirectArgs;
use crate::clock::{now_ns, secs, Rng};
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::payload::Stamp;
use crate::procfs::Monitor;
use crate::report::{Correctness, Report};
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ErrorCode, Message, Reply, Target};
use mio::Waker;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

/// After stopping, how long threads wait for their last acks to be confirmed, so the next
/// run finds the inboxes empty.
const ACK_SETTLE: Duration = Duration::from_millis(500);
/// `--devices` at most: the server's default `--max-devices` is 5.
const MAX_DEVICES: usize = 16;

/// The sent-copy figures of a run with devices (`details.sent_copies`).
#[derive(Serialize, Default)]
struct Copies {
    /// Receipted messages times the sender's other devices.
    expected: u64,
    /// Copies that reached a device other than the sending one (each once).
    received: u64,
    /// Owed and never received by the end of the drain.
    lost: u64,
    duplicated: u64,
    /// Copies that reached the sending device (it was behind when the copy was made).
    to_sending_device: u64,
    /// Copies of messages whose receipt never came (lost with a dropped connection).
    unreceipted: u64,
}

/// Everything the threads agree on before they start.
struct Plan {
    clients: usize,
    /// Connections (devices) per client.
    devices: usize,
    block: usize,
    window: u32,
    /// Messages per second for each thread (open loop).
    rate_per_thread: Option<f64>,
    size: usize,
    run_id: u32,
    timing: Timing,
    concurrency: usize,
    seed: u64,
}

struct Peer {
    credits: Sender<Vec<u32>>,
    waker: Arc<Waker>,
}

pub fn run(ctx: &Ctx, args: &DirectArgs) -> Result<Report, Error> {
    if args.clients < 2 {
        return Err(Error::Usage("--clients must be at least 2".into()));
    }
    check_traffic_flags(args.size, args.window, args.rate)?;
    if args.devices == 0 || args.devices > MAX_DEVICES {
        return Err(Error::Usage(format!("--devices must be between 1 and {MAX_DEVICES}")));
    }
    let threads = args.threads.clamp(1, args.clients);
    let plan = Plan {
        clients: args.clients,
        devices: args.devices,
        block: args.clients.div_ceil(threads),
        window: args.window,
        rate_per_thread: args.rate.map(|r| r as f64 / threads as f64),
        size: args.size,
        run_id: ctx.run_id,
        timing: Timing {
            warmup_ns: seconds_flag("warmup", args.warmup, 0.0)?,
            duration_ns: seconds_flag("duration", args.duration, 0.1)?,
            drain_ns: seconds_flag("drain", args.drain, 0.0)?,
            setup_deadline: ctx.setup_deadline(),
            setup_grace_ns: 5_000_000_000,
        },
        concurrency: ctx.concurrency().div_ceil(threads),
        seed: ctx.seed,
    };
    let connections = args.clients * args.devices;
    ctx.check_fd_limit(connections)?;
    let mut accounts = ctx.load_device_accounts(args.clients, args.devices)?;

    let mut engines = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..threads {
        let eng = ctx.engine(accounts.clone(), connections)?;
        let (tx, rx) = channel();
        peers.push(Peer { credits: tx, waker: eng.waker().map_err(Error::Poll)? });
        engines.push((eng, rx));
    }
    let shared = Shared::default();
    let homes = Homes::new(args.clients);
    let mut monitor = Monitor::new(ctx.common.server_pid);

    let (outs, schedule) = run_threads(
        engines,
        |t, (eng, inbox)| thread_main(t, eng, inbox, &peers, &shared, &homes, &plan),
        || {
            supervise(
                &plan.timing,
                &shared,
                threads,
                &mut monitor,
                // Each receipted message owes a delivery per device of its recipient and a
                // copy per other device of its sender.
                |s| s.receipted.load(Relaxed) * (2 * plan.devices as u64 - 1),
                |s| {
                    let (sent, receipted, delivered) =
                        (s.sent.load(Relaxed), s.receipted.load(Relaxed), s.delivered.load(Relaxed));
                    format!("{sent} sent, {receipted} receipted, {delivered} delivered")
                },
            )
        },
    );
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
    Ok(build_report(ctx, args, &plan, schedule, outs, &monitor, &homes))
}

/// What a thread hands back.
struct ThreadOut {
    engine: Engine,
    first: usize,
    rec: Recorder,
    /// Per local sender.
    receipted: Vec<BitSet>,
    /// Per device, per global sender: what this thread's clients' devices received.
    delivered: Vec<Vec<BitSet>>,
    /// Per device, per local sender: the copies of its own messages that device received
    /// (the sending device's own excepted).
    copies: Vec<Vec<BitSet>>,
    /// Copies that reached the device that sent the message (it was behind then).
    copies_to_sender: u64,
    copies_duplicated: u64,
    unanswered: u64,
    reconnects: u64,
    misrouted: u64,
    stale_at_setup: u64,
    pacer: Pacer,
    /// (ready, failed, faults) of the setup.
    setup: (usize, usize, BTreeMap<String, u64>),
}

fn thread_main(
    t: usize,
    mut eng: Engine,
    inbox: Receiver<Vec<u32>>,
    peers: &[Peer],
    shared: &Shared,
    homes: &Homes,
    plan: &Plan,
) -> Result<ThreadOut, Error> {
    let first = (t * plan.block).min(plan.clients);
    let last = ((t + 1) * plan.block).min(plan.clients);
    // Identities (account, device): connection slot j is identity first * D + j.
    let d = plan.devices;
    let mine: Vec<usize> = (first * d..last * d).collect();
    let label = (t == 0).then_some("clients logged in");
    let deadline = plan.timing.setup_deadline;
    let est = establish(&mut eng, &mine, Auth::Auto, Slots::KeepOpen, plan.concurrency, deadline, None, label);
    // Before the setup counts as over: the other threads read these once sending starts.
    for g in first..last {
        homes.set(g, eng.home(g));
    }
    let est = shared.setup_over(est, |est| est.failed)?;

    let mut h = Direct {
        plan,
        tid: t,
        first,
        senders: (first..last).map(|_| SenderState::default()).collect(),
        delivered: vec![vec![BitSet::default(); plan.clients]; d],
        copies: vec![vec![BitSet::default(); last - first]; d],
        copies_to_sender: 0,
        copies_duplicated: 0,
        rng: Rng::new(plan.seed ^ (t as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        rec: Recorder::new(0, (0, 0)),
        pacer: Pacer::new(plan.rate_per_thread, plan.window),
        credits_out: vec![Vec::new(); peers.len()],
        peers,
        inbox,
        deltas: [0; 4],
        reconnects: Reconnects::new((last - first) * d),
        misrouted: 0,
        retry: Retries::default(),
        homes,
        split: None,
    };
    drive(&mut eng, &mut h, shared, &plan.timing, None)?;
    h.pacer.sending = false;
    if !eng.acks_settled() {
        settle(&mut eng, &mut h, ACK_SETTLE)?;
    }
    let unanswered = h.senders.iter().map(|s| s.pending.len() as u64).sum();
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    Ok(ThreadOut {
        first,
        receipted: h.senders.into_iter().map(|s| s.receipted).collect(),
        delivered: h.delivered,
        copies: h.copies,
        copies_to_sender: h.copies_to_sender,
        copies_duplicated: h.copies_duplicated,
        unanswered,
        reconnects: h.reconnects.made,
        misrouted: h.misrouted,
        stale_at_setup: est.stale,
        pacer: h.pacer,
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
    /// Per device, per global sender.
    delivered: Vec<Vec<BitSet>>,
    /// Per device, per local sender.
    copies: Vec<Vec<BitSet>>,
    copies_to_sender: u64,
    copies_duplicated: u64,
    rng: Rng,
    rec: Recorder,
    pacer: Pacer,
    credits_out: Vec<Vec<u32>>,
    peers: &'a [Peer],
    inbox: Receiver<Vec<u32>>,
    /// sent, answered, receipted, delivered since the last publish.
    deltas: [u64; 4],
    reconnects: Reconnects,
    misrouted: u64,
    retry: Retries,
    homes: &'a Homes,
    /// Whether deliveries are recorded as same-node or cross-node too: decided at the
    /// start signal, when every thread has noted its clients' nodes.
    split: Option<bool>,
}

impl Load for Direct<'_> {
    fn timeout(&self, now: u64) -> Duration {
        self.pacer.timeout(now)
    }

    /// The start signal, the end of sending, the open loop's budget, and the credits
    /// owed to other threads' senders.
    fn tick(&mut self, eng: &mut Engine, start: u64, now: u64) {
        if start != 0 && self.split.is_none() {
            self.split = Some(self.homes.spread());
        }
        let n = self.senders.len();
        for l in self.pacer.senders_due(eng, &self.plan.timing, &mut self.rec, start, now, n) {
            self.send(eng, l);
        }
        while let Some((l, q)) = self.retry.due(now) {
            // Not ready: the reconnect resends everything pending anyway.
            let ready = eng.is_ready(self.plan.conn(l, q));
            if let (Some(&(to, sent_ns)), true) = (self.senders[l].pending.get(&q), ready) {
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

    fn deltas(&mut self) -> &mut [u64] {
        &mut self.deltas
    }
}

impl Direct<'_> {
    fn send(&mut self, eng: &mut Engine, l: usize) {
        if !eng.is_ready(self.plan.conn(l, self.senders[l].next_q + 1)) {
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

    /// Queues the Send of message `q`; also used to resend it unchanged after a reconnect.
    fn queue_send(&mut self, eng: &mut Engine, l: usize, q: u32, to: u32, sent_ns: u64) {
        let stamp = Stamp { run: self.plan.run_id, sender: (self.first + l) as u32, recipient: to, seq: q, sent_ns };
        let target = Target::User(eng.accounts().name(to as usize).to_string());
        eng.send(self.plan.conn(l, q), q, stored_send(target, &stamp, self.plan.size));
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
        if self.pacer.refill() {
            self.send(eng, l);
        }
    }
}

impl Handler for Direct<'_> {
    fn ready(&mut self, eng: &mut Engine, c: usize, _now: u64) {
        // Only reconnects get here (the first logins went through `establish`): resend
        // what this device sent and never got a receipt for, then use the window slots
        // freed meanwhile.
        let (l, device) = (c / self.plan.devices, c % self.plan.devices);
        let mut pending: Vec<(u32, (u32, u64))> = self.senders[l]
            .pending
            .iter()
            .filter(|(q, _)| self.plan.sending_device(**q) == device)
            .map(|(q, v)| (*q, *v))
            .collect();
        pending.sort_unstable();
        for (q, (to, sent_ns)) in pending {
            self.queue_send(eng, l, q, to, sent_ns);
        }
        let deferred = std::mem::take(&mut self.senders[l].deferred);
        if self.pacer.sending && self.pacer.rate.is_none() {
            for _ in 0..deferred {
                self.send(eng, l);
            }
        }
    }

    fn message(&mut self, eng: &mut Engine, c: usize, msg: Message, now: u64) {
        let Some(stamp) = this_run(&mut self.rec, &msg.content.body, self.plan.run_id) else {
            return;
        };
        let g = stamp.sender as usize;
        if g >= self.plan.clients {
            self.rec.error("bad_stamp");
            return;
        }
        let (l, device) = (c / self.plan.devices, c % self.plan.devices);
        if stamp.recipient as usize != self.first + l || msg.from != eng.accounts().name(g) {
            self.misrouted += 1;
        }
        if !self.delivered[device][g].insert(stamp.seq) {
            self.rec.duplicated += 1;
            return;
        }
        self.rec.delivered(now);
        self.rec.latency("delivery", Line::Main, stamp.sent_ns, now);
        if let Some(name) = self.split.filter(|split| *split).and_then(|_| self.homes.between(g, self.first + l)) {
            self.rec.latency(name, Line::Off, stamp.sent_ns, now);
        }
        self.deltas[3] += 1;
        // The window slot frees once every device of the recipient has the message.
        if self.delivered.iter().all(|per_device| per_device[g].contains(stamp.seq)) {
            self.credit(eng, g);
        }
    }

    fn sent_copy(&mut self, eng: &mut Engine, c: usize, to: String, msg: Message, now: u64) {
        let Some(stamp) = this_run(&mut self.rec, &msg.content.body, self.plan.run_id) else {
            return;
        };
        let (l, device) = (c / self.plan.devices, c % self.plan.devices);
        let g = self.first + l;
        let recipient = eng.accounts().name((stamp.recipient as usize).min(self.plan.clients - 1));
        if stamp.sender as usize != g || msg.from != eng.accounts().name(g) || to != recipient {
            self.misrouted += 1;
            return;
        }
        if self.plan.sending_device(stamp.seq) == device {
            self.copies_to_sender += 1;
            return;
        }
        if !self.copies[device][l].insert(stamp.seq) {
            self.copies_duplicated += 1;
            return;
        }
        self.rec.latency("copy", Line::Off, stamp.sent_ns, now);
        self.deltas[3] += 1;
    }

    fn reply(&mut self, eng: &mut Engine, c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        let l = c / self.plan.devices;
        if let Some(code) = retryable(&reply).filter(|_| self.senders[l].pending.contains_key(&request_id)) {
            self.retry.later(&mut self.rec, code, now, eng.retry_after_ns, l, request_id);
            return;
        }
        let s = &mut self.senders[l];
        let Some((_, sent_ns)) = s.pending.remove(&request_id) else {
            self.rec.error("unexpected:reply_to_unknown_send");
            return;
        };
        self.deltas[1] += 1;
        match reply {
            Ok(Reply::Sent { .. }) => {
                if receipt(&mut self.rec, &mut s.receipted, request_id, sent_ns, now) {
                    self.deltas[2] += 1;
                }
            }
            Ok(_) => {
                self.rec.error("unexpected:reply_to_send");
                self.credit_local(eng, l);
            }
            Err(code) => {
                self.rec.error(&format!("send:{code:?}"));
                self.credit_local(eng, l);
            }
        }
    }

    fn down(&mut self, eng: &mut Engine, c: usize, _was_ready: bool, fault: Fault, _now: u64) {
        self.rec.error(&fault.kind());
        if self.pacer.start != 0 {
            self.reconnects.try_again(eng, &mut self.rec, c, self.first * self.plan.devices + c);
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

impl Plan {
    /// The device (of `0..devices`) a client's message number `q` goes out from.
    fn sending_device(&self, q: u32) -> usize {
        q.saturating_sub(1) as usize % self.devices
    }

    /// The connection slot (of a thread) of local client `l`'s device sending message `q`.
    fn conn(&self, l: usize, q: u32) -> usize {
        l * self.devices + self.sending_device(q)
    }
}

fn build_report(
    ctx: &Ctx,
    args: &DirectArgs,
    plan: &Plan,
    schedule: Schedule,
    outs: Vec<ThreadOut>,
    monitor: &Monitor,
    homes: &Homes,
) -> Report {
    let devices = plan.devices;
    let mut delivered_all = vec![vec![BitSet::default(); plan.clients]; devices];
    for out in &outs {
        for (all, mine) in delivered_all.iter_mut().zip(&out.delivered) {
            for (g, set) in mine.iter().enumerate() {
                all[g].union_with(set);
            }
        }
    }
    let mut correctness = Correctness::default();
    let mut copies = Copies::default();
    let mut rec = Recorder::new(schedule.start, (schedule.measure, schedule.end));
    let mut pacer = Pacer::default();
    let mut stale_at_setup = 0;
    let mut redirects = 0;
    for out in outs {
        redirects += out.engine.redirects;
        for (l, receipted) in out.receipted.iter().enumerate() {
            let g = out.first + l;
            for per_device in &delivered_all {
                correctness.lost += receipted.count_missing_from(&per_device[g]);
                correctness.delivered_unreceipted += per_device[g].count_missing_from(receipted);
            }
            for (device, per_device) in out.copies.iter().enumerate() {
                let got = &per_device[l];
                let owed = receipted.ones().filter(|q| plan.sending_device(*q) != device);
                copies.lost += owed.filter(|q| !got.contains(*q)).count() as u64;
                copies.received += got.ones().count() as u64;
                copies.unreceipted += got.count_missing_from(receipted);
            }
            copies.expected += receipted.ones().count() as u64 * (devices as u64 - 1);
        }
        copies.to_sending_device += out.copies_to_sender;
        copies.duplicated += out.copies_duplicated;
        correctness.unanswered_sends += out.unanswered;
        correctness.reconnects += out.reconnects;
        correctness.misrouted += out.misrouted;
        pacer.max_lag_ns = pacer.max_lag_ns.max(out.pacer.max_lag_ns);
        pacer.skipped += out.pacer.skipped;
        stale_at_setup += out.stale_at_setup;
        rec.merge(out.rec);
    }
    correctness.duplicated = rec.duplicated;
    correctness.stale = rec.stale + stale_at_setup;
    correctness.judge();
    // A lost copy is as wrong as a lost message (see the module documentation); a
    // duplicate copy is excused by a reconnect, as a duplicate message is.
    if copies.lost > 0 || (copies.duplicated > 0 && correctness.reconnects == 0) {
        correctness.ok = false;
    }

    let (phases_ns, phases) = schedule.phases();
    let mut details = schedule.details(args.rate.map(|_| &pacer));
    details["clients"] = serde_json::json!(args.clients);
    details["devices"] = serde_json::json!(devices);
    details["threads"] = serde_json::json!(plan.clients.div_ceil(plan.block));
    if devices > 1 {
        details["sent_copies"] = serde_json::to_value(&copies).unwrap_or_default();
    }
    if let Some(cluster) = nodes::details(homes, redirects, &rec.errors) {
        details["cluster"] = cluster;
    }
    let params = serde_json::to_value(args).unwrap_or_default();
    Report {
        correctness,
        cpu: cpu(monitor.cpu_between_marks()),
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases,
        ..measured_report(ctx, "direct", params, &rec, secs(plan.timing.duration_ns))
    }
}
