//! `soak`: mixed traffic for a long time (`--duration`, 600 s by default, any length), with
//! clients coming and going; at the end, every receipted message must have reached its
//! recipient(s) exactly once, and the server's memory over the whole run is reported.
//!
//! 1. Log in `--clients` clients; the first `--groups` × `--group-members` of them form
//!    groups (as in `group`). With `--push-devices` every client registers a push device
//!    (protocol.md "Push notifications") once, after this first login: from then on, what
//!    is stored for a client while it is away also goes to the server's push queue.
//! 2. Traffic, open loop: `--rate` direct messages per second from random connected
//!    clients to random other clients (connected or not: stored either way), and
//!    `--group-rate` group messages per second from random connected members.
//! 3. Churn: `--churn` times per second a random connected client drops its connection
//!    without a goodbye (an RST) and comes back after a random time up to `--away`
//!    seconds, logging in with its resume token. Half of the drops happen right after a
//!    message arrives, before it is acknowledged, so that redelivery is exercised. A sender resends what had no receipt yet
//!    with the same client_msg_id. Connections the server drops are reconnected too (and
//!    counted as errors).
//! 4. Drain: traffic and churn stop, every client reconnects, and the run waits (at most
//!    `--drain` seconds) until everything receipted has arrived.
//!
//! Against a cluster whose nodes the clients ended on (several `--addr`, or redirects to
//! home nodes), direct deliveries are also recorded as `same-node` or `cross-node`.
//!
//! Redeliveries: after a reconnect the server pushes again what the client had not
//! acknowledged. A repeat counts as a redelivery when it comes in a later session than the
//! first copy, with a sequence the client had received before that session ended and above
//! every ack the server had confirmed by then; any other repeat is a duplicate and fails
//! the run, as does a loss.

use super::common::{cpu, log_in_all, measured_report, register_push_devices, settle, stored_send, Retries};
use super::nodes::{self, Homes};
use super::sets::{self, group_name};
use super::{round3, seconds_flag, Ctx, Slots};
use crate::bitset::BitSet;
use crate::cli::SoakArgs;
use crate::clock::{now_ns, secs, Rng};
use crate::engine::{Auth, Engine};
use crate::error::Error;
use crate::payload::{Stamp, STAMP_LEN};
use crate::procfs::Monitor;
use crate::progress::Progress;
use crate::report::{Correctness, Report};
use crate::stats::Recorder;
use confab_proto::protocol::{GroupId, Seq, Target};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

mod receive;

use receive::Track;

/// How long acks may take to be confirmed after setup and at the end.
const ACK_SETTLE: Duration = Duration::from_secs(2);
const PING_IDLE_NS: u64 = 15_000_000_000;
/// The longest run accepted: a month.
const MAX_DURATION: f64 = 30.0 * 24.0 * 3600.0;
/// Random picks of a connected sender before giving up on one send.
const PICKS: usize = 32;
/// How the backoff after a failed reconnect grows: 100 ms doubling, at most this.
const MAX_BACKOFF_NS: u64 = 5_000_000_000;

pub fn run(ctx: &Ctx, args: &SoakArgs) -> Result<Report, Error> {
    let members = args.groups * args.group_members;
    if args.clients < 2 {
        return Err(Error::Usage("--clients must be at least 2".into()));
    }
    if args.groups > 0 && (args.group_members < 2 || members > args.clients) {
        return Err(Error::Usage("--group-members must be at least 2, and groups × members at most --clients".into()));
    }
    if args.size < STAMP_LEN {
        return Err(Error::Usage(format!("--size must be at least {STAMP_LEN}")));
    }
    if !(args.duration > 0.0 && args.duration <= MAX_DURATION) {
        return Err(Error::Usage(format!("--duration must be between 0 and {MAX_DURATION} seconds")));
    }
    if !(args.churn >= 0.0 && args.churn <= 10_000.0) {
        return Err(Error::Usage("--churn must be between 0 and 10000 per second".into()));
    }
    let duration_ns = (args.duration * 1e9) as u64;
    let drain_ns = seconds_flag("drain", args.drain, 0.0)?;
    let away_ns = seconds_flag("away", args.away, 0.0)?;
    let clients = args.clients;
    ctx.check_fd_limit(clients)?;
    let mut accounts = ctx.load_accounts(clients)?;
    let mut eng = ctx.engine(accounts.clone(), clients)?;
    let setup_started = now_ns();
    let est = log_in_all(ctx, &mut eng, &mut accounts, clients, Slots::KeepOpen, "clients logged in")?;
    let homes = Homes::new(clients);
    for c in 0..clients {
        homes.set(c, eng.home(c));
    }
    if args.push_devices {
        register_push_devices(&mut eng, clients, ctx.setup_deadline())?;
    }
    let gm = args.group_members.max(1);
    let sets: Vec<Vec<usize>> = (0..args.groups).map(|s| (s * gm..(s + 1) * gm).collect()).collect();
    let names: Vec<String> = (0..args.groups).map(|s| group_name(ctx.run_id, s)).collect();
    let made = if sets.is_empty() {
        sets::Made { ids: Vec::new(), stale_groups_removed: 0 }
    } else {
        sets::setup_groups(&mut eng, &sets, &names, ctx.setup_deadline(), true)?
    };
    settle(&mut eng, &mut super::Quiet, ACK_SETTLE)?;
    let setup_seconds = secs(now_ns() - setup_started);

    let mut monitor = Monitor::new(ctx.common.server_pid);
    let start = now_ns();
    let end = start + duration_ns;
    monitor.start(start);
    monitor.mark(start);
    let mut h = Soak {
        run_id: ctx.run_id,
        size: args.size,
        gm,
        members,
        ids: made.ids,
        clients: (0..clients)
            .map(|c| Client {
                from_members: if c < members { vec![BitSet::default(); gm] } else { Vec::new() },
                session_started_ns: start,
                ..Client::default()
            })
            .collect(),
        rng: Rng::new(ctx.seed),
        rec: Recorder::new(start, (start, end)),
        start,
        traffic: true,
        direct_rate: args.rate as f64,
        group_rate: if args.groups > 0 { args.group_rate as f64 } else { 0.0 },
        churn: args.churn,
        away_ns,
        direct_sent: 0,
        group_sent: 0,
        churned: 0,
        next_overdue: 0,
        counts: Counts::default(),
        comebacks: BinaryHeap::new(),
        retry: Retries::default(),
        split: homes.spread(),
        homes,
    };

    // Traffic.
    let total_ms = duration_ns / 1_000_000;
    let mut progress = Progress::new(total_ms, "ms");
    let mut next_second = start;
    while now_ns() < end {
        eng.turn(Some(Duration::from_millis(2)), &mut h).map_err(Error::Poll)?;
        let now = now_ns();
        h.tick(&mut eng, now.min(end));
        if now >= next_second {
            next_second = now + 1_000_000_000;
            eng.ping_idle(PING_IDLE_NS, now);
            monitor.tick(now);
            h.rec.compact_before(now.saturating_sub(2_000_000_000));
        }
        eng.flush(&mut h);
        progress.update((now - start) / 1_000_000, || {
            let away = (0..clients).filter(|&c| !eng.is_ready(c)).count();
            format!(
                "{} sent, {} receipted, {} delivered, {away} away",
                h.rec.total.sent, h.rec.total.receipted, h.rec.total.delivered
            )
        });
    }
    progress.finish();
    monitor.mark(end);

    // Drain: everyone back, nothing new.
    h.traffic = false;
    let drain_start = now_ns();
    h.comebacks.clear();
    for c in 0..clients {
        h.clients[c].drop_on_message = 0;
        h.comeback(&mut eng, c);
    }
    let deadline = drain_start + drain_ns;
    let mut missing = h.missing();
    let mut progress = Progress::new(missing, "missing deliveries drained");
    let initial_missing = missing;
    let mut next_check = 0;
    loop {
        eng.turn(Some(Duration::from_millis(5)), &mut h).map_err(Error::Poll)?;
        let now = now_ns();
        h.tick(&mut eng, now);
        eng.flush(&mut h);
        monitor.tick(now);
        if now >= next_check {
            next_check = now + 100_000_000;
            missing = h.missing();
            let unanswered = h.unanswered();
            progress.update(initial_missing.saturating_sub(missing), || format!("{unanswered} sends unanswered"));
            if missing == 0 && unanswered == 0 && h.all_back(&eng) {
                break;
            }
        }
        if now >= deadline {
            break;
        }
    }
    progress.finish();
    let drain_end = now_ns();
    settle(&mut eng, &mut h, ACK_SETTLE)?;
    if !h.ids.is_empty() {
        let owners: Vec<(usize, GroupId)> = h.ids.iter().enumerate().map(|(s, id)| (s * gm, *id)).collect();
        sets::delete_groups(&mut eng, &owners, now_ns() + 5_000_000_000)?;
    }
    monitor.tick(now_ns());
    ctx.save_accounts(&mut accounts, &[&eng])?;

    let mut correctness = h.check();
    correctness.stale += est.stale;
    correctness.judge_strict();
    let mut rec = h.rec;
    rec.add_errors(&eng.errors);
    let seconds = secs(duration_ns);
    let c = &h.counts;
    let mut details = serde_json::json!({
        "clients": clients,
        "groups": args.groups,
        "group_members": args.group_members,
        "setup_seconds": round3(setup_seconds),
        "disconnects": c.disconnects,
        "disconnects_before_ack": c.disconnects_unacked,
        "reconnects": c.reconnects,
        "server_drops": c.server_drops,
        "failed_reconnects": c.failed_reconnects,
        "direct": { "sent": c.direct_sent, "receipted": c.direct_receipted, "delivered": c.direct_delivered },
        "group": { "sent": c.group_sent, "receipted": c.group_receipted, "deliveries": c.group_delivered },
        "duplicate_receipts": c.duplicate_receipts,
        "group_events_skipped": c.events,
        "sends_skipped_no_sender": c.no_sender,
        "drain_seconds": round3(secs(drain_end - drain_start)),
    });
    if made.stale_groups_removed > 0 {
        details["stale_groups_removed"] = serde_json::json!(made.stale_groups_removed);
    }
    if let Some(rss) = monitor.rss_summary() {
        details["server_rss_kib"] = serde_json::to_value(rss).unwrap_or_default();
    }
    if let Some(cluster) = nodes::details(&h.homes, eng.redirects, &rec.errors) {
        details["cluster"] = cluster;
    }
    let phases_ns = [("traffic", start), ("drain", end)];
    Ok(Report {
        correctness,
        cpu: cpu(monitor.cpu_between_marks()),
        details,
        per_second: rec.seconds(&phases_ns, &monitor.per_second()),
        phases: vec![("traffic", 0.0), ("drain", secs(duration_ns))],
        ..measured_report(ctx, "soak", serde_json::to_value(args).unwrap_or_default(), &rec, seconds)
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dest {
    User(u32),
    Group,
}

#[derive(Default)]
struct Client {
    /// The last per-sender sequence used (the request id of its Send).
    next_q: u32,
    /// Sends without a receipt yet: sequence → (destination, first send time).
    pending: HashMap<u32, (Dest, u64)>,
    receipted_direct: BitSet,
    receipted_group: BitSet,
    /// As a sender: which of its direct messages arrived.
    delivered_direct: BitSet,
    /// As a group member: per member index of the sender, the sequences received.
    from_members: Vec<BitSet>,
    /// Inbox, group.
    tracks: [Track; 2],
    session_started_ns: u64,
    /// Consecutive failed (re)connects, for the backoff.
    failures: u32,
    /// Drop the connection as soon as a message arrives (before acking it), or at this
    /// time if none does; 0 when not planned.
    drop_on_message: u64,
}

#[derive(Default)]
struct Counts {
    direct_sent: u64,
    direct_receipted: u64,
    direct_delivered: u64,
    group_sent: u64,
    group_receipted: u64,
    group_delivered: u64,
    duplicate_receipts: u64,
    redelivered: u64,
    duplicated: u64,
    misrouted: u64,
    events: u64,
    no_sender: u64,
    disconnects: u64,
    disconnects_unacked: u64,
    reconnects: u64,
    server_drops: u64,
    failed_reconnects: u64,
}

struct Soak {
    run_id: u32,
    size: usize,
    /// Members per group.
    gm: usize,
    /// Clients in groups (the first ones).
    members: usize,
    ids: Vec<GroupId>,
    clients: Vec<Client>,
    rng: Rng,
    rec: Recorder,
    start: u64,
    /// Sending and churning (false during the drain).
    traffic: bool,
    direct_rate: f64,
    group_rate: f64,
    churn: f64,
    away_ns: u64,
    direct_sent: u64,
    group_sent: u64,
    churned: u64,
    next_overdue: u64,
    counts: Counts,
    /// Clients to reconnect: (when, client).
    comebacks: BinaryHeap<Reverse<(u64, usize)>>,
    retry: Retries,
    /// Each client's node, and whether they are on more than one (then direct deliveries
    /// are recorded as same-node or cross-node too).
    homes: Homes,
    split: bool,
}

impl Soak {
    fn tick(&mut self, eng: &mut Engine, now: u64) {
        if self.traffic {
            let elapsed = now.saturating_sub(self.start) as f64 / 1e9;
            let due = budget(&mut self.direct_sent, elapsed * self.direct_rate, self.direct_rate);
            for _ in 0..due {
                self.send_direct(eng);
            }
            let due = budget(&mut self.group_sent, elapsed * self.group_rate, self.group_rate);
            for _ in 0..due {
                self.send_group(eng);
            }
            let due = budget(&mut self.churned, elapsed * self.churn, self.churn);
            for _ in 0..due {
                self.disconnect_one(eng, now);
            }
        }
        if now >= self.next_overdue {
            // Planned drops that no message came for.
            self.next_overdue = now + 100_000_000;
            for c in 0..self.clients.len() {
                let due = self.clients[c].drop_on_message;
                if due != 0 && due <= now {
                    if eng.is_ready(c) {
                        self.disconnect(eng, c, now);
                    } else {
                        self.clients[c].drop_on_message = 0;
                    }
                }
            }
        }
        while self.comebacks.peek().is_some_and(|Reverse((due, _))| *due <= now) {
            if let Some(Reverse((_, c))) = self.comebacks.pop() {
                self.comeback(eng, c);
            }
        }
        while let Some((c, q)) = self.retry.due(now) {
            if let (Some(&(dest, sent_ns)), true) = (self.clients[c].pending.get(&q), eng.is_ready(c)) {
                self.queue_send(eng, c, q, dest, sent_ns);
            }
        }
    }

    /// A random connected client among `from..to`, if one is found quickly.
    fn pick_ready(&mut self, eng: &Engine, from: usize, to: usize) -> Option<usize> {
        (0..PICKS).map(|_| from + self.rng.below((to - from) as u64) as usize).find(|&c| eng.is_ready(c))
    }

    fn send_direct(&mut self, eng: &mut Engine) {
        let n = self.clients.len();
        let Some(from) = self.pick_ready(eng, 0, n) else {
            self.counts.no_sender += 1;
            return;
        };
        let mut to = self.rng.below(n as u64 - 1) as usize;
        if to >= from {
            to += 1;
        }
        self.counts.direct_sent += 1;
        self.send(eng, from, Dest::User(to as u32));
    }

    fn send_group(&mut self, eng: &mut Engine) {
        let set = self.rng.below(self.ids.len() as u64) as usize;
        let Some(from) = self.pick_ready(eng, set * self.gm, (set + 1) * self.gm) else {
            self.counts.no_sender += 1;
            return;
        };
        self.counts.group_sent += 1;
        self.send(eng, from, Dest::Group);
    }

    fn send(&mut self, eng: &mut Engine, c: usize, dest: Dest) {
        let now = now_ns();
        let client = &mut self.clients[c];
        client.next_q += 1;
        let q = client.next_q;
        client.pending.insert(q, (dest, now));
        self.queue_send(eng, c, q, dest, now);
        self.rec.sent(now);
    }

    /// Queues the Send of message `q`; also its resend after a reconnect (same
    /// client_msg_id: the server answers with the original receipt if it stored it).
    fn queue_send(&mut self, eng: &mut Engine, c: usize, q: u32, dest: Dest, sent_ns: u64) {
        let (to, recipient) = match dest {
            Dest::User(to) => (Target::User(eng.accounts().name(to as usize).to_string()), to),
            Dest::Group => {
                let set = c / self.gm;
                (Target::Group(self.ids[set]), set as u32)
            }
        };
        let stamp = Stamp { run: self.run_id, sender: c as u32, recipient, seq: q, sent_ns };
        eng.send(c, q, stored_send(to, &stamp, self.size));
    }

    fn disconnect_one(&mut self, eng: &mut Engine, now: u64) {
        let n = self.clients.len();
        let Some(c) = self.pick_ready(eng, 0, n) else {
            return;
        };
        if self.rng.below(2) == 0 && self.clients[c].drop_on_message == 0 {
            self.clients[c].drop_on_message = now + 1_000_000_000;
        } else {
            self.disconnect(eng, c, now);
        }
    }

    fn disconnect(&mut self, eng: &mut Engine, c: usize, now: u64) {
        self.clients[c].drop_on_message = 0;
        self.session_ended(eng, c);
        eng.close(c);
        self.counts.disconnects += 1;
        let back = now + self.rng.below(self.away_ns.max(1));
        self.comebacks.push(Reverse((back, c)));
    }

    /// Reconnects client `c` unless it is connected or connecting.
    fn comeback(&mut self, eng: &mut Engine, c: usize) {
        if eng.conns.get(c).is_some_and(|conn| conn.state != crate::engine::State::Idle) {
            return;
        }
        if let Err(fault) = eng.connect(c, c, Auth::Auto) {
            self.rec.error(&fault.kind());
            self.retry_later(c, now_ns());
        }
    }

    fn retry_later(&mut self, c: usize, now: u64) {
        let client = &mut self.clients[c];
        client.failures += 1;
        self.counts.failed_reconnects += 1;
        let backoff = (100_000_000u64 << client.failures.min(16)).min(MAX_BACKOFF_NS);
        self.comebacks.push(Reverse((now + backoff, c)));
    }

    /// The session of `c` is over: remember what it received and what the server confirmed.
    fn session_ended(&mut self, eng: &Engine, c: usize) {
        let conn = &eng.conns[c];
        let group = self.group_of(c).and_then(|set| conn.group(self.ids[set])).map_or(Seq::ZERO, |g| g.ack_confirmed);
        let client = &mut self.clients[c];
        for (track, confirmed) in client.tracks.iter_mut().zip([conn.ack_confirmed, group]) {
            track.session_ended(confirmed);
        }
    }

    fn group_of(&self, c: usize) -> Option<usize> {
        (c < self.members).then_some(c / self.gm)
    }

    /// Receipted deliveries not (yet) made: direct, then each other member of a group.
    fn missing(&self) -> u64 {
        let mut missing = 0;
        for (g, client) in self.clients.iter().enumerate() {
            missing += client.receipted_direct.count_missing_from(&client.delivered_direct);
            if let Some(set) = self.group_of(g) {
                for r in set * self.gm..(set + 1) * self.gm {
                    if r != g {
                        missing +=
                            client.receipted_group.count_missing_from(&self.clients[r].from_members[g % self.gm]);
                    }
                }
            }
        }
        missing
    }

    fn unanswered(&self) -> u64 {
        self.clients.iter().map(|c| c.pending.len() as u64).sum()
    }

    fn all_back(&self, eng: &Engine) -> bool {
        (0..self.clients.len()).all(|c| eng.is_ready(c))
    }

    fn check(&self) -> Correctness {
        let mut c = Correctness { lost: self.missing(), ..Correctness::default() };
        for (g, client) in self.clients.iter().enumerate() {
            c.delivered_unreceipted += client.delivered_direct.count_missing_from(&client.receipted_direct);
            if let Some(set) = self.group_of(g) {
                for r in set * self.gm..(set + 1) * self.gm {
                    if r != g {
                        let got = &self.clients[r].from_members[g % self.gm];
                        c.delivered_unreceipted += got.count_missing_from(&client.receipted_group);
                    }
                }
            }
        }
        c.unanswered_sends = self.unanswered();
        c.duplicated = self.counts.duplicated;
        c.redelivered = self.counts.redelivered;
        c.misrouted = self.counts.misrouted;
        c.stale = self.rec.stale;
        c.reconnects = self.counts.reconnects;
        c
    }
}

/// How many events of a steady `rate` are due by now, given `done` so far; more than a
/// second behind, the backlog is skipped rather than burst.
fn budget(done: &mut u64, due: f64, rate: f64) -> u64 {
    let due = due as u64;
    let limit = rate.max(1.0) as u64;
    if due > *done + limit {
        *done = due - limit;
    }
    let n = due.saturating_sub(*done);
    *done += n;
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_paces_and_skips_a_long_backlog() {
        let mut done = 0;
        assert_eq!(budget(&mut done, 2.5, 10.0), 2);
        assert_eq!(budget(&mut done, 2.9, 10.0), 0);
        assert_eq!(budget(&mut done, 100.0, 10.0), 10, "more than a second behind: one second's worth");
        assert_eq!(done, 100);
    }
}
