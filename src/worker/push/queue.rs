//! The push queue: one owner (on the worker of [`Owner::PushQueue`]) turns notes from
//! every worker into push events, keeps them durable until the push gateway acknowledges
//! them, and feeds them to the gateway in order.
//!
//! - **Coalescing**: the first note for a recipient opens an event whose window closes
//!   `--push-window-ms` later; notes for the same recipient meanwhile update it (count, the
//!   latest message's details, the badge). An event is sent once its window has closed.
//! - **Durable**: a new event, its final state when its window closes (if a later note
//!   changed it), and every rise of the acknowledged position go through this worker's
//!   commit log (see `store::push`), so events survive a restart until acknowledged. Notes
//!   within a window change memory only: a burst to a thousand offline members costs two
//!   writes per member, not one per message. A crash inside a window keeps the event as
//!   first written.
//! - **Bounded**: beyond `--push-queue-max` events the oldest is dropped, counted and
//!   logged.
//! - **The feed**: one gateway at a time, at most [`IN_FLIGHT`] unacknowledged events.
//!   An event whose recipient came online, or has no device any more, is skipped when it
//!   comes due. Everything below the oldest event still held is done, so that is the
//!   queue's acknowledged position: acks, skips and drops all move it the same way.

use super::notes::PushNote;
use crate::metrics::Metrics;
use crate::protocol::{Chat, ErrorCode, Push, PushEvent, PushTarget, Reply, UserId};
use crate::route::{ConnId, SessionUser};
use crate::store::{PushMessage, PushRecord, Store};
use crate::worker::context::Ctx;
use crate::worker::refusal::{Handled, Refusal};
use log::{error, info, warn};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Events sent to the gateway and not yet acknowledged, at most: enough to keep a
/// gateway that posts them concurrently busy, few enough to bound what a slow one holds.
pub const IN_FLIGHT: u64 = 256;

/// Chats per recipient counted in the badge at most (the memory bound of the counts).
const MAX_BADGE_CHATS: usize = 64;

/// How often at most a full queue's drops (or notes a full disk refused) are logged.
const DROP_LOG_EVERY: Duration = Duration::from_secs(10);

/// An event as the queue holds it: its latest message shared with the note that brought
/// it (a note changes a pointer, not a copy); [`Queued::record`] is its stored form.
struct Queued {
    recipient: Arc<str>,
    uid: UserId,
    message: Arc<PushMessage>,
    count: u32,
    unread: u64,
    /// When its coalescing window closes and it may be sent.
    due: Instant,
    /// Changed by a note since it was written.
    dirty: bool,
}

impl Queued {
    fn record(&self) -> PushRecord {
        PushRecord {
            recipient: self.recipient.to_string(),
            recipient_uid: self.uid,
            message: (*self.message).clone(),
            count: self.count,
            unread: self.unread,
        }
    }
}

/// The gateway subscribed now.
struct Gateway {
    conn: ConnId,
    /// Events up to here were sent (or skipped) to it.
    sent_upto: u64,
}

#[derive(Default)]
pub struct PushQueue {
    /// Everything at or below is acknowledged, skipped or dropped.
    floor: u64,
    last_seq: u64,
    events: BTreeMap<u64, Queued>,
    /// The event each recipient's window is open on...
    open: HashMap<UserId, u64>,
    /// ...and the open windows by closing time (the window is one length for all, so
    /// opening order is closing order).
    windows: VecDeque<(Instant, u64)>,
    /// Each offline recipient's unread count per chat, for the badge; cleared at login.
    unread: HashMap<UserId, HashMap<Chat, u64>>,
    gateway: Option<Gateway>,
    dropped_unlogged: u64,
    last_drop_log: Option<Instant>,
    /// Notes lost to a store that refused them (a full disk), and when that was logged.
    lost_unlogged: u64,
    last_loss_log: Option<Instant>,
}

impl PushQueue {
    /// What the last run left: the events not yet acknowledged, all due now.
    pub fn load(store: &Store, metrics: &Metrics) -> Self {
        let mut queue = PushQueue::default();
        match store.push_queue() {
            Ok(state) => {
                queue.floor = state.floor;
                queue.last_seq = state.last_seq;
                let now = Instant::now();
                let queued = |(seq, record): (u64, PushRecord)| {
                    let PushRecord { recipient, recipient_uid, message, count, unread } = record;
                    let (recipient, message) = (recipient.into(), Arc::new(message));
                    (seq, Queued { recipient, uid: recipient_uid, message, count, unread, due: now, dirty: false })
                };
                queue.events = state.events.into_iter().map(queued).collect();
                if !queue.events.is_empty() {
                    info!("{} push events wait for the gateway", queue.events.len());
                }
                if state.damaged > 0 {
                    error!("{} push events in the data directory are damaged and were left out", state.damaged);
                }
            }
            // The messages themselves are safe; only their notifications are lost.
            Err(e) => error!("the push queue cannot be read ({e}); starting with an empty one"),
        }
        metrics.push_queued.store(queue.events.len() as u64, Ordering::Relaxed);
        queue
    }

    /// Notes from a conversation's worker: each opens an event or joins its recipient's
    /// open one.
    pub fn notes(&mut self, ctx: &mut Ctx, notes: Vec<PushNote>) {
        let now = Instant::now();
        ctx.shared.push.notes_taken(notes.len());
        for note in notes {
            if let Err(e) = self.note(ctx, note, now) {
                // Once per DROP_LOG_EVERY at most: a full disk refuses every note.
                self.lost_unlogged += 1;
                if self.last_loss_log.is_none_or(|at| now.duration_since(at) >= DROP_LOG_EVERY) {
                    warn!("{} push notifications were not recorded: {e}", self.lost_unlogged);
                    self.lost_unlogged = 0;
                    self.last_loss_log = Some(now);
                }
            }
        }
        self.drop_beyond_limit(ctx);
        ctx.shared.metrics.push_queued.store(self.events.len() as u64, Ordering::Relaxed);
        self.pump(ctx);
    }

    fn note(&mut self, ctx: &mut Ctx, note: PushNote, now: Instant) -> Result<(), crate::store::StoreError> {
        let badge = self.badge(&note);
        if let Some(seq) = self.open.get(&note.uid).copied() {
            if let Some(queued) = self.events.get_mut(&seq).filter(|q| q.due > now) {
                queued.count = queued.count.saturating_add(1);
                (queued.message, queued.unread) = (note.message, badge);
                queued.dirty = true;
                return Ok(());
            }
        }
        if ctx.partition.is_full() {
            return Err(crate::store::StoreError::Full);
        }
        let seq = self.last_seq + 1;
        let due = now + ctx.config().push.window;
        let PushNote { recipient, uid, message, .. } = note;
        let queued = Queued { recipient, uid, message, count: 1, unread: badge, due, dirty: false };
        ctx.partition.push_event(seq, &queued.record())?;
        self.last_seq = seq;
        self.events.insert(seq, queued);
        self.open.insert(uid, seq);
        self.windows.push_back((due, seq));
        Metrics::add(&ctx.shared.metrics.push_events, 1);
        Ok(())
    }

    /// The recipient's badge with this note's chat counted as of now.
    fn badge(&mut self, note: &PushNote) -> u64 {
        let chats = self.unread.entry(note.uid).or_default();
        if chats.len() < MAX_BADGE_CHATS || chats.contains_key(&note.message.chat) {
            chats.insert(note.message.chat.clone(), note.unread);
        }
        chats.values().sum::<u64>().max(note.unread)
    }

    /// The user logged in: its counts start again from its next offline message, and no
    /// open window takes further messages.
    pub fn online(&mut self, uid: UserId) {
        self.unread.remove(&uid);
        self.open.remove(&uid);
    }

    fn drop_beyond_limit(&mut self, ctx: &mut Ctx) {
        let max = ctx.config().push.queue_max;
        let mut dropped = 0;
        while self.events.len() > max {
            let Some((seq, queued)) = self.events.pop_first() else { break };
            if self.open.get(&queued.uid) == Some(&seq) {
                self.open.remove(&queued.uid);
            }
            dropped += 1;
        }
        if dropped == 0 {
            return;
        }
        Metrics::add(&ctx.shared.metrics.push_dropped, dropped);
        self.dropped_unlogged += dropped;
        let now = Instant::now();
        if self.last_drop_log.is_none_or(|at| now.duration_since(at) >= DROP_LOG_EVERY) {
            warn!(
                "push queue full ({max} events waiting for the gateway): dropped the {} oldest",
                self.dropped_unlogged
            );
            self.dropped_unlogged = 0;
            self.last_drop_log = Some(now);
        }
        self.settle(ctx);
    }

    /// Raises the acknowledged position to just below the oldest event still held.
    fn settle(&mut self, ctx: &mut Ctx) {
        let floor = self.events.keys().next().map_or(self.last_seq, |seq| seq - 1);
        if floor > self.floor {
            if let Err(e) = ctx.partition.push_floor(floor) {
                warn!("push queue position: {e}");
            }
            self.floor = floor;
        }
        if let Some(gateway) = self.gateway.as_mut() {
            gateway.sent_upto = gateway.sent_upto.max(self.floor);
        }
        ctx.shared.metrics.push_queued.store(self.events.len() as u64, Ordering::Relaxed);
    }

    /// A service asks to be the push gateway.
    pub fn subscribe(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, service: &SessionUser) -> Handled {
        if !service.service || !ctx.shared.store.is_push_gateway(&service.name)? {
            return Err(Refusal::new(ErrorCode::Forbidden, "this service has no push permission"));
        }
        match &self.gateway {
            Some(gateway) if gateway.conn != conn => {
                return Err(Refusal::new(ErrorCode::LimitReached, "another gateway holds the push feed"))
            }
            _ => {}
        }
        self.gateway = Some(Gateway { conn, sent_upto: self.floor });
        let reply = Reply::PushSubscribed { acked: self.floor, last_seq: self.last_seq };
        ctx.batch.reply(conn, request_id, reply, false);
        self.pump(ctx);
        Ok(())
    }

    /// The gateway handled everything up to `up_to`.
    pub fn ack(&mut self, ctx: &mut Ctx, conn: ConnId, request_id: u32, up_to: u64) -> Handled {
        let Some(gateway) = self.gateway.as_ref().filter(|g| g.conn == conn) else {
            return Err(Refusal::new(ErrorCode::BadRequest, "subscribe to the push feed first"));
        };
        if up_to > gateway.sent_upto {
            return Err(Refusal::new(ErrorCode::BadRequest, "up_to is beyond the last push event sent"));
        }
        while let Some(entry) = self.events.first_entry() {
            if *entry.key() > up_to {
                break;
            }
            entry.remove();
        }
        self.settle(ctx);
        ctx.batch.reply(conn, request_id, Reply::PushAcked { up_to: self.floor }, true);
        self.pump(ctx);
        Ok(())
    }

    /// The connection closed: if it was the gateway, the feed waits for the next one.
    pub fn closed(&mut self, conn: ConnId) {
        if self.gateway.as_ref().is_some_and(|g| g.conn == conn) {
            self.gateway = None;
        }
    }

    /// When a window closes next, or the next event comes due for the gateway.
    pub fn next_due(&self) -> Option<Instant> {
        let window = self.windows.front().map(|(due, _)| *due);
        let feed = self.next_for_gateway().map(|(_, due)| due);
        window.into_iter().chain(feed).min()
    }

    /// The next event the gateway may be sent, due or not: the first after what it was
    /// sent, if within the in-flight bound. One rule for `pump` and `next_due`, so the run
    /// loop never wakes for an event `pump` will not send.
    fn next_for_gateway(&self) -> Option<(u64, Instant)> {
        let gateway = self.gateway.as_ref()?;
        let (&seq, queued) = self.events.range(gateway.sent_upto + 1..).next()?;
        (seq - self.floor <= IN_FLIGHT).then_some((seq, queued.due))
    }

    /// Closes the windows whose time is up, writing the final state of events that notes
    /// changed, then feeds the gateway.
    pub fn due(&mut self, ctx: &mut Ctx) {
        self.close_windows(ctx, Some(Instant::now()));
        self.pump(ctx);
    }

    /// Closes the windows due by `now` (every window when None: shutdown).
    pub fn close_windows(&mut self, ctx: &mut Ctx, now: Option<Instant>) {
        while let Some(&(due, seq)) = self.windows.front() {
            if now.is_some_and(|now| due > now) {
                break;
            }
            self.windows.pop_front();
            if let Some(queued) = self.events.get_mut(&seq) {
                if self.open.get(&queued.uid) == Some(&seq) {
                    self.open.remove(&queued.uid);
                }
                if std::mem::take(&mut queued.dirty) {
                    if let Err(e) = ctx.partition.push_event(seq, &queued.record()) {
                        warn!("a push event's final count was not recorded: {e}");
                    }
                }
            }
        }
    }

    /// Sends the gateway what is due, in order, within the in-flight bound.
    pub fn pump(&mut self, ctx: &mut Ctx) {
        let now = Instant::now();
        self.close_windows(ctx, Some(now));
        loop {
            let mut skipped = false;
            while let Some((seq, due)) = self.next_for_gateway() {
                let (Some(gateway), Some(queued)) = (self.gateway.as_mut(), self.events.get(&seq)) else { break };
                if due > now {
                    break;
                }
                let devices = targets(ctx, queued);
                let online = ctx.shared.directory.is_online(&queued.recipient);
                gateway.sent_upto = seq;
                if online || devices.is_empty() {
                    self.events.remove(&seq);
                    Metrics::add(&ctx.shared.metrics.push_skipped, 1);
                    skipped = true;
                    continue;
                }
                ctx.batch.push(gateway.conn, Push::PushEvent(event(seq, queued, devices)), true);
            }
            // Skipped events at the head raise the acknowledged position, which may let
            // more through the in-flight bound.
            if !skipped {
                return;
            }
            self.settle(ctx);
        }
    }
}

/// The recipient's devices now, each with the preview only if it shows previews.
fn targets(ctx: &Ctx, queued: &Queued) -> Vec<PushTarget> {
    let Some(prefs) = ctx.shared.push.get(queued.uid) else { return Vec::new() };
    prefs
        .devices
        .iter()
        .map(|d| PushTarget {
            device: d.device.clone(),
            platform: d.platform,
            token: d.token.clone(),
            preview: queued.message.preview.clone().filter(|_| d.previews),
        })
        .collect()
}

fn event(seq: u64, queued: &Queued, devices: Vec<PushTarget>) -> PushEvent {
    let message = &queued.message;
    PushEvent {
        seq,
        recipient: queued.recipient.to_string(),
        devices,
        chat: message.chat.clone(),
        chat_name: message.chat_name.clone(),
        sender: message.sender.clone(),
        sender_name: message.sender_name.clone(),
        sender_kind: message.sender_kind,
        message_id: message.message_id,
        kind: message.kind,
        count: queued.count,
        unread: queued.unread,
        timestamp_ms: message.timestamp_ms,
    }
}
