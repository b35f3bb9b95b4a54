//! Pieces every message scenario repeats: logging the accounts in, the report's common
//! fields, stamped stored sends, rate-limit retries, reconnects, push devices and the
//! end-of-run ack settling. Kept here so that a fix to one of them reaches every scenario
//! at once.

use super::sets::step_error;
use super::{answer_errors, call_all, establish, Ctx, Established, Slots};
use crate::accounts::Accounts;
use crate::clock::now_ns;
use crate::engine::{Auth, Engine, Handler};
use crate::error::Error;
use crate::payload::{Stamp, STAMP_LEN};
use crate::report::{rate, Correctness, Cpu, Report};
use crate::stats::{Line, Recorder};
use confab_proto::protocol::{ClientMsgId, Content, ErrorCode, MediaKind, PushPlatform, Reply, Request, Target};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

/// A send the server refused with RateLimited (or Unavailable) without saying how long to
/// wait is sent again (unchanged) this much later.
const RETRY_AFTER_NS: u64 = 20_000_000;
/// Reconnects allowed per client in one run: enough for a blip, not for a loop.
pub const RECONNECTS_PER_CLIENT: u8 = 3;

/// Logs the accounts `0..count` in on one engine and saves their tokens; the tokens are
/// saved before a failed login is reported, so the next run does not pay for them again.
pub fn log_in_all(
    ctx: &Ctx,
    eng: &mut Engine,
    accounts: &mut Accounts,
    count: usize,
    slots: Slots,
    label: &str,
) -> Result<Established, Error> {
    let all: Vec<usize> = (0..count).collect();
    let est = establish(eng, &all, Auth::Auto, slots, ctx.concurrency(), ctx.setup_deadline(), None, Some(label))?;
    ctx.save_accounts(accounts, &[eng])?;
    est.require_all()?;
    Ok(est)
}

/// Clients `0..count`, logged in, each register device "loadgen" with token "loadgen-`c`"
/// (registering it again in a later run only replaces it); every answer must be Done.
pub fn register_push_devices(eng: &mut Engine, count: usize, deadline: u64) -> Result<(), Error> {
    let calls = (0..count)
        .map(|c| {
            let token = format!("loadgen-{c}");
            (c, Request::SetPushDevice { device: "loadgen".into(), platform: PushPlatform::Fcm, token, previews: true })
        })
        .collect();
    let answers = call_all(eng, calls, deadline, Some("push devices registered"))?;
    let mut errors = answer_errors(&answers, &[]);
    let other = answers.iter().filter(|a| matches!(a, Some(Ok(reply)) if *reply != Reply::Done)).count();
    if other > 0 {
        errors.insert("an answer other than Done".into(), other as u64);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(step_error("registering push devices", count, &errors))
    }
}

/// The flags of the scenarios that send stamped messages in a closed or open loop.
pub fn check_traffic_flags(size: usize, window: u32, rate: Option<u64>) -> Result<(), Error> {
    if size < STAMP_LEN {
        return Err(Error::Usage(format!("--size must be at least {STAMP_LEN}")));
    }
    if window == 0 && rate.is_none() {
        return Err(Error::Usage("--window must be at least 1".into()));
    }
    if rate == Some(0) {
        return Err(Error::Usage("--rate must be positive".into()));
    }
    Ok(())
}

/// A report of what `rec` recorded, with no rates: scenarios that send nothing keep it so,
/// the others fill in the rest with struct update syntax.
pub fn report(ctx: &Ctx, scenario: &'static str, params: serde_json::Value, rec: &Recorder) -> Report {
    Report {
        scenario,
        server: ctx.server(),
        run_id: ctx.run_id,
        params,
        sent: rec.total.sent,
        receipted: rec.total.receipted,
        delivered: rec.total.delivered,
        measured_seconds: 0.0,
        sent_per_sec: 0.0,
        receipted_per_sec: 0.0,
        delivered_per_sec: 0.0,
        latency_ms: rec.percentiles(),
        errors: rec.errors.clone(),
        correctness: Correctness::default(),
        cpu: Cpu::default(),
        details: serde_json::Value::Null,
        per_second: Vec::new(),
        phases: Vec::new(),
    }
}

/// [`report`] with the rates of `rec`'s measured window of `seconds`.
pub fn measured_report(
    ctx: &Ctx,
    scenario: &'static str,
    params: serde_json::Value,
    rec: &Recorder,
    seconds: f64,
) -> Report {
    Report {
        measured_seconds: seconds,
        sent_per_sec: rate(rec.measured.sent, seconds),
        receipted_per_sec: rate(rec.measured.receipted, seconds),
        delivered_per_sec: rate(rec.measured.delivered, seconds),
        ..report(ctx, scenario, params, rec)
    }
}

/// The CPU of both processes, as `Monitor::cpu_between*` returns it.
pub fn cpu((loadgen, server): (Option<f64>, Option<f64>)) -> Cpu {
    Cpu { loadgen_percent: loadgen, server_percent: server }
}

/// A stored send of `stamp` with a client_msg_id derived from the run and the sequence, so
/// that a resend after a reconnect is recognised by the server and answered with the
/// original receipt.
pub fn stored_send(to: Target, stamp: &Stamp, size: usize) -> Request {
    Request::Send {
        to,
        client_msg_id: ClientMsgId((u64::from(stamp.run) << 32) | u64::from(stamp.seq)),
        transient: false,
        content: text(stamp, size),
    }
}

/// The body of every load-generator message: the stamp, padded to `size`.
pub fn text(stamp: &Stamp, size: usize) -> Content {
    Content { kind: MediaKind::Text, body: stamp.encode(size), media: None }
}

/// The stamp of a message of this run; anything else is counted (stale or foreign) and
/// yields None.
pub fn this_run(rec: &mut Recorder, body: &[u8], run_id: u32) -> Option<Stamp> {
    match Stamp::decode(body) {
        Some(stamp) if stamp.run == run_id => Some(stamp),
        Some(_) => {
            rec.stale += 1;
            None
        }
        None => {
            rec.error("foreign_message");
            None
        }
    }
}

/// Records a receipt of sequence `q` sent at `sent_ns` unless it was receipted before;
/// returns whether it was new.
pub fn receipt(rec: &mut Recorder, receipted: &mut crate::bitset::BitSet, q: u32, sent_ns: u64, now: u64) -> bool {
    let fresh = receipted.insert(q);
    if fresh {
        rec.receipted(now);
        rec.latency("receipt", Line::Receipt, sent_ns, now);
    }
    fresh
}

/// Whether a refused send is to be made again, unchanged, after the server's wait:
/// RateLimited, and a cluster's Unavailable (the recipient's home node is out of reach;
/// nothing was stored, and the same client_msg_id keeps the retry from storing it twice).
pub fn retryable(reply: &Result<Reply, ErrorCode>) -> Option<ErrorCode> {
    match reply {
        Err(code @ (ErrorCode::RateLimited | ErrorCode::Unavailable)) => Some(*code),
        _ => None,
    }
}

/// Sends refused for now ([`retryable`]), to repeat unchanged: (when, sender, sequence),
/// the soonest first (the server's waits differ, so refusals are not due in arrival order).
#[derive(Default)]
pub struct Retries(BinaryHeap<Reverse<(u64, usize, u32)>>);

impl Retries {
    /// Schedules sequence `q` of sender `l` again after the server's wait (`wait_ns`, from
    /// the refusal's retry_after_ms; a fixed pause if it gave none), and counts the refusal
    /// under its code, so that a cluster's Unavailable shows apart from rate limiting.
    pub fn later(&mut self, rec: &mut Recorder, code: ErrorCode, now: u64, wait_ns: u64, l: usize, q: u32) {
        rec.error(&format!("send:{code:?}(retried)"));
        self.0.push(Reverse((now + retry_wait(wait_ns, RETRY_AFTER_NS), l, q)));
    }

    /// The next retry whose time has come.
    pub fn due(&mut self, now: u64) -> Option<(usize, u32)> {
        if self.0.peek().is_some_and(|Reverse((due, _, _))| *due <= now) {
            self.0.pop().map(|Reverse((_, l, q))| (l, q))
        } else {
            None
        }
    }
}

/// The wait before a retry: the server's, or `fallback` when it gave none (a server that
/// speaks an older protocol, or a refusal without a retry time).
pub fn retry_wait(server_ns: u64, fallback: u64) -> u64 {
    if server_ns > 0 {
        server_ns
    } else {
        fallback
    }
}

/// A budget of reconnects per connection slot, and how many were made.
pub struct Reconnects {
    left: Vec<u8>,
    pub made: u64,
}

impl Reconnects {
    pub fn new(slots: usize) -> Self {
        Reconnects { left: vec![RECONNECTS_PER_CLIENT; slots], made: 0 }
    }

    /// Reconnects slot `c` as `account` if its budget allows; a failure to start is counted.
    pub fn try_again(&mut self, eng: &mut Engine, rec: &mut Recorder, c: usize, account: usize) {
        if self.left[c] > 0 {
            self.left[c] -= 1;
            self.made += 1;
            if let Err(fault) = eng.connect(c, account, Auth::Auto) {
                rec.error(&fault.kind());
            }
        }
    }
}

/// Turns the engine until every connection's acks are confirmed (or `within` passed), so
/// the next run finds the inboxes empty.
pub fn settle<H: Handler>(eng: &mut Engine, h: &mut H, within: Duration) -> Result<(), Error> {
    let until = now_ns() + within.as_nanos() as u64;
    loop {
        eng.turn(Some(Duration::from_millis(5)), h).map_err(Error::Poll)?;
        if eng.acks_settled() || now_ns() >= until {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limited_and_unavailable_sends_are_retried_other_refusals_not() {
        assert_eq!(retryable(&Err(ErrorCode::RateLimited)), Some(ErrorCode::RateLimited));
        assert_eq!(retryable(&Err(ErrorCode::Unavailable)), Some(ErrorCode::Unavailable));
        assert_eq!(retryable(&Err(ErrorCode::UnknownUser)), None);
        assert_eq!(retryable(&Ok(Reply::Done)), None);
    }

    #[test]
    fn retries_come_due_by_the_servers_wait_not_by_arrival() {
        let mut rec = Recorder::new(0, (0, u64::MAX));
        let mut retries = Retries::default();
        retries.later(&mut rec, ErrorCode::RateLimited, 0, 5_000_000, 1, 10);
        retries.later(&mut rec, ErrorCode::Unavailable, 0, 1_000_000, 2, 20);
        // No retry time from the server: the fixed pause.
        retries.later(&mut rec, ErrorCode::RateLimited, 0, 0, 3, 30);
        assert_eq!(rec.errors.get("send:RateLimited(retried)"), Some(&2));
        assert_eq!(rec.errors.get("send:Unavailable(retried)"), Some(&1), "counted apart");
        assert_eq!(retries.due(999_999), None);
        assert_eq!(retries.due(1_000_000), Some((2, 20)));
        assert_eq!(retries.due(10_000_000), Some((1, 10)));
        assert_eq!(retries.due(RETRY_AFTER_NS - 1), None);
        assert_eq!(retries.due(RETRY_AFTER_NS), Some((3, 30)));
    }
}
