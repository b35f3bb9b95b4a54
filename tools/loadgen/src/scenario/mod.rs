//! Scenarios, one module each, and what they share: the run context and getting accounts
//! logged in ([`establish`]).
//!
//! A scenario is a function from its flags to a [`Report`]: it builds one or more
//! [`Engine`]s, drives them with a [`Handler`] of its own, and fills in the report. Adding
//! one means a new module here, a variant in `cli::Scenario`, and a line in `main`.
//! `group` and `room` share their driver, `fanout`; setup steps that are plain requests
//! and answers (creating groups, joining rooms: `sets`) go through [`call_all`]. What the message
//! scenarios repeat (logins, report fields, stamped sends, retries) lives in `common`, and
//! the multi-threaded frame `direct` and `fanout` share in `threaded`; which node of a
//! cluster each client is on, in `nodes`.

mod common;
pub mod connections;
pub mod direct;
mod fanout;
pub mod group;
pub mod login;
mod nodes;
pub mod offline;
pub mod room;
mod sets;
pub mod soak;
mod threaded;

use crate::accounts::Accounts;
use crate::cli::{source_addrs, Common};
use crate::clock::now_ns;
use crate::engine::{Auth, Engine, Handler};
use crate::error::{Error, Fault};
use crate::procfs;
use crate::progress::Progress;
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ErrorCode, Message, Reply, Request, DEFAULT_APP};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::time::Duration;

/// Request ids of setup calls ([`call_all`]) start here, apart from the per-sender
/// sequences scenarios use as the ids of their sends: a setup answer that arrives late is
/// never taken for a send's.
pub const SETUP_IDS: u32 = 0x4000_0000;
/// A call refused with RateLimited is made again this much later.
const CALL_RETRY_NS: u64 = 50_000_000;

/// What every scenario gets from `main`.
pub struct Ctx {
    pub common: Common,
    /// Tags this run's messages (and their client_msg_ids) apart from earlier runs'.
    pub run_id: u32,
    pub seed: u64,
}

impl Ctx {
    /// The accounts file's key for this run's accounts: the server, and the app unless it
    /// is `default` (the same names in two apps are two sets of accounts).
    /// A cluster's key is its addresses as given (a token is good on its user's home
    /// node; any other node of the same cluster redirects a resume there).
    pub fn server(&self) -> String {
        let addrs = self.common.targets().iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        match self.common.app.as_str() {
            DEFAULT_APP => addrs,
            app => format!("{addrs}/{app}"),
        }
    }

    /// The accounts `0..count`, with the tokens the accounts file has for this server.
    pub fn load_accounts(&self, count: usize) -> Result<Accounts, Error> {
        self.with_tokens(Accounts::new(&self.common.prefix, count))
    }

    /// The accounts `0..count`, each on `devices` devices (1: no device named), with the
    /// tokens the accounts file has for this server.
    pub fn load_device_accounts(&self, count: usize, devices: usize) -> Result<Accounts, Error> {
        self.with_tokens(Accounts::with_devices(&self.common.prefix, count, devices))
    }

    fn with_tokens(&self, mut accounts: Accounts) -> Result<Accounts, Error> {
        accounts.load(&self.common.accounts_file, &self.server())?;
        Ok(accounts)
    }

    /// Folds the engines' new and refused tokens into `accounts` and saves the file.
    pub fn save_accounts(&self, accounts: &mut Accounts, engines: &[&Engine]) -> Result<(), Error> {
        for eng in engines {
            for &i in &eng.token_changes {
                accounts.adopt(eng.accounts(), i);
            }
        }
        accounts.save(&self.common.accounts_file, &self.server())
    }

    /// An engine for up to `connections` sockets at once.
    pub fn engine(&self, accounts: Accounts, connections: usize) -> Result<Engine, Error> {
        let sources = source_addrs(&self.common.source_addrs, connections)?;
        Engine::new(self.common.targets(), &self.common.app, sources, accounts).map_err(Error::Poll)
    }

    /// Fails early, with the fix, when the open-file limit cannot hold the sockets.
    pub fn check_fd_limit(&self, sockets: usize) -> Result<(), Error> {
        let needed = sockets as u64 + 64;
        match procfs::fd_limits() {
            Some((soft, hard)) if soft < needed => Err(Error::FdLimit { soft, hard, needed }),
            _ => Ok(()),
        }
    }

    pub fn setup_deadline(&self) -> u64 {
        now_ns() + (self.common.setup_timeout.max(1.0) * 1e9) as u64
    }

    pub fn concurrency(&self) -> usize {
        self.common.setup_concurrency.max(1)
    }
}

/// Checks a seconds flag and turns it into nanoseconds.
pub fn seconds_flag(name: &str, value: f64, min: f64) -> Result<u64, Error> {
    if !(value >= min && value <= 3600.0) {
        return Err(Error::Usage(format!("--{name} must be between {min} and 3600 seconds")));
    }
    Ok((value * 1e9) as u64)
}

/// What [`establish`] achieved.
pub struct Established {
    pub ready: usize,
    pub failed: usize,
    /// Why connections failed, by kind.
    pub faults: BTreeMap<String, u64>,
    /// Messages of earlier runs that were still in the inboxes (received and acked).
    pub stale: u64,
    pub last_ready_ns: u64,
    pub recorder: Option<Recorder>,
}

impl Established {
    /// An error naming the commonest causes, if any connection failed.
    pub fn require_all(&self) -> Result<(), Error> {
        if self.failed == 0 {
            return Ok(());
        }
        let detail = self.faults.iter().map(|(k, n)| format!("{k}: {n}")).collect::<Vec<_>>().join(", ");
        Err(Error::Setup { ready: self.ready, wanted: self.ready + self.failed, detail })
    }
}

/// How [`establish`] uses connection slots.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Slots {
    /// Account `accounts[i]` stays logged in on slot `i`.
    KeepOpen,
    /// Log each account in, settle its inbox, close: only prepares the account and its
    /// token, reusing at most `concurrency` slots (so the server's connection table stays
    /// small and memory measured later is not inflated by it).
    Recycle,
}

/// Logs `accounts` in (registering them if needed) with at most `concurrency` setups in
/// flight; an account counts as done once whatever its inbox held at login has been
/// received and acknowledged, so later measurements start from empty inboxes.
#[allow(clippy::too_many_arguments)]
pub fn establish(
    eng: &mut Engine,
    accounts: &[usize],
    auth: Auth,
    slots: Slots,
    concurrency: usize,
    deadline: u64,
    recorder: Option<Recorder>,
    label: Option<&str>,
) -> Result<Established, Error> {
    let mut h = Establish {
        accounts: accounts.to_vec(),
        next: 0,
        slots,
        auth,
        job_of_slot: Vec::new(),
        attempts: vec![0; accounts.len()],
        probing: false,
        concurrency,
        finished: vec![false; accounts.len()],
        later: BinaryHeap::new(),
        in_flight: 0,
        out: Established { ready: 0, failed: 0, faults: BTreeMap::new(), stale: 0, last_ready_ns: 0, recorder },
    };
    let mut progress = match label {
        Some(label) => Progress::new(accounts.len() as u64, label),
        None => Progress::hidden(),
    };
    let width = match slots {
        Slots::KeepOpen => accounts.len(),
        Slots::Recycle => concurrency.min(accounts.len()),
    };
    eng.ensure_slots(width);
    h.job_of_slot = vec![usize::MAX; width];
    // With cached tokens, one account goes first: if the server refuses its token, the
    // file is from another server instance and every other token would fail too (each
    // refusal counting toward the server's per-address login throttle).
    h.probing = auth == Auth::Auto && accounts.first().is_some_and(|&a| eng.has_token(a));
    h.concurrency = concurrency;
    if h.probing {
        h.start_next(eng, 0);
    } else {
        for slot in 0..concurrency.min(accounts.len()) {
            h.start_next(eng, slot);
        }
    }
    loop {
        eng.turn(Some(Duration::from_millis(10)), &mut h).map_err(Error::Poll)?;
        h.retry_due(eng, now_ns());
        let done = h.out.ready + h.out.failed;
        progress.update(done as u64, || format!("{} failed", h.out.failed));
        if h.in_flight == 0 && h.next >= h.accounts.len() {
            break;
        }
        if now_ns() > deadline {
            let unfinished = h.accounts.len() - done;
            *h.out.faults.entry("setup_timeout".into()).or_default() += unfinished as u64;
            h.out.failed += unfinished;
            break;
        }
    }
    progress.finish();
    Ok(h.out)
}

struct Establish {
    accounts: Vec<usize>,
    next: usize,
    slots: Slots,
    auth: Auth,
    job_of_slot: Vec<usize>,
    attempts: Vec<u8>,
    /// The first account is being logged in alone, to test the cached tokens.
    probing: bool,
    concurrency: usize,
    finished: Vec<bool>,
    /// Logins and registrations the server refused for now (RateLimited with a retry
    /// time: failed logins to wait out, or its hashing queues full), soonest first:
    /// (due, slot, job).
    later: BinaryHeap<Reverse<(u64, usize, usize)>>,
    in_flight: usize,
    out: Established,
}

impl Establish {
    /// Starts the next job; in Recycle mode on `slot`, in KeepOpen mode on the job's own.
    fn start_next(&mut self, eng: &mut Engine, slot: usize) {
        if self.probing && self.next == 1 {
            // The probe is done: forget the tokens if it found them stale, then fan out.
            self.probing = false;
            if eng.stale_tokens > 0 {
                eng.forget_all_tokens(&self.accounts);
            }
            let free: Vec<usize> = std::iter::once(slot)
                .chain((0..self.job_of_slot.len()).filter(|&s| s != slot && self.job_of_slot[s] == usize::MAX))
                .collect();
            for i in 0..self.concurrency.min(self.accounts.len() - 1) {
                match (self.slots, free.get(i)) {
                    (Slots::KeepOpen, _) => self.start_one(eng, 0),
                    (Slots::Recycle, Some(&s)) => self.start_one(eng, s),
                    (Slots::Recycle, None) => break,
                }
            }
            return;
        }
        self.start_one(eng, slot);
    }

    fn start_one(&mut self, eng: &mut Engine, slot: usize) {
        if self.next >= self.accounts.len() {
            return;
        }
        let job = self.next;
        self.next += 1;
        let slot = match self.slots {
            Slots::KeepOpen => job,
            Slots::Recycle => slot,
        };
        self.job_of_slot[slot] = job;
        self.in_flight += 1;
        self.attempt(eng, slot, job);
    }

    fn attempt(&mut self, eng: &mut Engine, slot: usize, job: usize) {
        if let Err(fault) = eng.connect(slot, self.accounts[job], self.auth) {
            self.failed_attempt(eng, slot, job, fault);
        }
    }

    /// Attempts again what the server told to wait for, once the wait is over.
    fn retry_due(&mut self, eng: &mut Engine, now: u64) {
        while self.later.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
            if let Some(Reverse((_, slot, job))) = self.later.pop() {
                self.attempt(eng, slot, job);
            }
        }
    }

    /// Retries a few times: a full listen backlog or a racing close is not the account's
    /// fault. A refused login is, and is not retried, unless the server said when to try
    /// again (a busy server, failed logins to wait out, or in a cluster a home node out of
    /// reach): then after that wait, up to the setup deadline.
    fn failed_attempt(&mut self, eng: &mut Engine, slot: usize, job: usize, fault: Fault) {
        if let (Fault::Auth(code @ (ErrorCode::RateLimited | ErrorCode::Unavailable)), true) =
            (&fault, eng.retry_after_ns > 0)
        {
            *self.out.faults.entry(format!("retried:login:{code:?}")).or_default() += 1;
            self.later.push(Reverse((now_ns() + eng.retry_after_ns, slot, job)));
            return;
        }
        self.attempts[job] += 1;
        let permanent = matches!(
            fault,
            Fault::Auth(ErrorCode::WrongPassword | ErrorCode::InvalidName | ErrorCode::RateLimited)
                | Fault::Unexpected(_)
        );
        if !permanent && self.attempts[job] < 3 {
            self.attempt(eng, slot, job);
            return;
        }
        *self.out.faults.entry(fault.kind()).or_default() += 1;
        self.out.failed += 1;
        self.in_flight -= 1;
        self.start_next(eng, slot);
    }

    fn check_settled(&mut self, eng: &mut Engine, c: usize, now: u64) {
        let job = self.job_of_slot[c];
        if job == usize::MAX || self.finished[job] || !eng.conns[c].inbox_settled() {
            return;
        }
        self.finished[job] = true;
        self.out.ready += 1;
        self.out.last_ready_ns = now;
        self.in_flight -= 1;
        if let Some(rec) = self.out.recorder.as_mut() {
            rec.completed(now);
            rec.latency("setup", Line::Main, eng.conns[c].setup_started_ns, now);
        }
        if self.slots == Slots::Recycle {
            eng.close(c);
            self.job_of_slot[c] = usize::MAX;
        }
        self.start_next(eng, c);
    }
}

impl Handler for Establish {
    fn ready(&mut self, eng: &mut Engine, c: usize, now: u64) {
        self.check_settled(eng, c, now);
    }

    fn message(&mut self, _eng: &mut Engine, _c: usize, msg: Message, _now: u64) {
        // Nothing has been sent yet: whatever arrives is left over from an earlier run
        // (or from someone else); the engine acks it.
        let _ = msg;
        self.out.stale += 1;
    }

    fn sent_copy(&mut self, _eng: &mut Engine, _c: usize, _to: String, _msg: Message, _now: u64) {
        // A copy an earlier run's device did not ack (its own, never pushed to it).
        self.out.stale += 1;
    }

    fn reply(&mut self, eng: &mut Engine, _c: usize, _id: u32, _reply: Result<Reply, ErrorCode>, _now: u64) {
        eng.count("unexpected:reply_during_setup");
    }

    fn down(&mut self, eng: &mut Engine, c: usize, was_ready: bool, fault: Fault, _now: u64) {
        let job = self.job_of_slot[c];
        if job == usize::MAX {
            return;
        }
        if self.finished[job] {
            // Dropped after it was set up (KeepOpen): the scenario will notice; count it.
            *self.out.faults.entry(format!("dropped:{}", fault.kind())).or_default() += 1;
            return;
        }
        let _ = was_ready;
        self.failed_attempt(eng, c, job, fault);
    }

    fn acked(&mut self, eng: &mut Engine, c: usize) {
        self.check_settled(eng, c, now_ns());
    }
}

/// Turns the engine for `duration`, for a server to notice closes and the like.
pub fn idle_for<H: Handler>(eng: &mut Engine, h: &mut H, duration: Duration) -> Result<(), Error> {
    let until = now_ns() + duration.as_nanos() as u64;
    while now_ns() < until {
        eng.turn(Some(Duration::from_millis(10)), h).map_err(Error::Poll)?;
    }
    Ok(())
}

/// A handler for quiet moments: acks whatever arrives, counts everything else.
pub struct Quiet;

impl Handler for Quiet {
    fn ready(&mut self, _: &mut Engine, _: usize, _: u64) {}
    fn message(&mut self, _: &mut Engine, _: usize, _: Message, _: u64) {}
    fn reply(&mut self, eng: &mut Engine, _: usize, _: u32, _: Result<Reply, ErrorCode>, _: u64) {
        eng.count("unexpected:reply_while_idle");
    }
    fn down(&mut self, eng: &mut Engine, _: usize, was_ready: bool, fault: Fault, _: u64) {
        if was_ready {
            eng.count(&format!("dropped:{}", fault.kind()));
        }
    }
}

/// The answer to one call of [`call_all`]; None when its connection dropped or the
/// deadline passed first.
pub type Answer = Option<Result<Reply, ErrorCode>>;

/// Makes every call (connection slot, request) at once, pipelined, and waits for all the
/// answers (in the order of `calls`) until `deadline`. RateLimited and Unavailable
/// refusals are retried.
pub fn call_all(
    eng: &mut Engine,
    calls: Vec<(usize, Request)>,
    deadline: u64,
    label: Option<&str>,
) -> Result<Vec<Answer>, Error> {
    let mut h = Calls {
        answers: vec![None; calls.len()],
        calls,
        by_id: HashMap::new(),
        next_id: SETUP_IDS,
        open: 0,
        retry: VecDeque::new(),
    };
    h.open = h.calls.len();
    for i in 0..h.calls.len() {
        h.issue(eng, i);
    }
    let mut progress = match label {
        Some(label) => Progress::new(h.calls.len() as u64, label),
        None => Progress::hidden(),
    };
    while h.open > 0 && now_ns() < deadline {
        eng.turn(Some(Duration::from_millis(5)), &mut h).map_err(Error::Poll)?;
        let now = now_ns();
        while h.retry.front().is_some_and(|(due, _)| *due <= now) {
            if let Some((_, i)) = h.retry.pop_front() {
                h.issue(eng, i);
            }
        }
        eng.flush(&mut h);
        progress.update((h.calls.len() - h.open) as u64, String::new);
    }
    progress.finish();
    Ok(h.answers)
}

struct Calls {
    calls: Vec<(usize, Request)>,
    answers: Vec<Answer>,
    by_id: HashMap<u32, usize>,
    next_id: u32,
    /// Calls neither answered nor given up on.
    open: usize,
    /// Rate-limited calls to make again: (when, call).
    retry: VecDeque<(u64, usize)>,
}

impl Calls {
    /// Sends call `i`, or gives up on it if its connection is not logged in.
    fn issue(&mut self, eng: &mut Engine, i: usize) {
        let c = self.calls[i].0;
        if !eng.is_ready(c) {
            self.open -= 1;
            return;
        }
        self.next_id = if self.next_id >= 0x7fff_ffff { SETUP_IDS } else { self.next_id + 1 };
        self.by_id.insert(self.next_id, i);
        eng.send(c, self.next_id, self.calls[i].1.clone());
    }
}

impl Handler for Calls {
    fn ready(&mut self, _: &mut Engine, _: usize, _: u64) {}

    fn message(&mut self, _: &mut Engine, _: usize, _: Message, _: u64) {
        // Group events of the setup itself, or leftovers: the engine acknowledges them.
    }

    fn reply(&mut self, eng: &mut Engine, _c: usize, request_id: u32, reply: Result<Reply, ErrorCode>, now: u64) {
        let Some(i) = self.by_id.remove(&request_id) else {
            eng.count("unexpected:reply_during_setup");
            return;
        };
        if common::retryable(&reply).is_some() {
            // Soonest first, as the server's waits differ.
            let due = now + common::retry_wait(eng.retry_after_ns, CALL_RETRY_NS);
            let at = self.retry.partition_point(|(d, _)| *d <= due);
            self.retry.insert(at, (due, i));
            return;
        }
        self.open -= 1;
        self.answers[i] = Some(reply);
    }

    fn down(&mut self, eng: &mut Engine, c: usize, was_ready: bool, fault: Fault, _now: u64) {
        if was_ready {
            eng.count(&format!("dropped:{}", fault.kind()));
        }
        let calls = &self.calls;
        let before = self.by_id.len();
        self.by_id.retain(|_, i| calls[*i].0 != c);
        self.open -= before - self.by_id.len();
    }
}

/// How many answers were errors, by kind ("none" for no answer), skipping `ignore`d codes.
pub fn answer_errors(answers: &[Answer], ignore: &[ErrorCode]) -> BTreeMap<String, u64> {
    let mut errors = BTreeMap::new();
    for answer in answers {
        let kind = match answer {
            Some(Ok(_)) => continue,
            Some(Err(code)) if ignore.contains(code) => continue,
            Some(Err(code)) => format!("{code:?}"),
            None => "no answer".to_string(),
        };
        *errors.entry(kind).or_default() += 1;
    }
    errors
}

/// Percent-free rounding for the JSON details.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}
