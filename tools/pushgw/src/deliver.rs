//! Delivering one event: POST it until the webhook answers 2xx, waiting with exponential
//! backoff between tries, and take the dead tokens that answer lists. An event is never
//! skipped: a gateway that gave up on one would have to ack it (the feed is cumulative)
//! and the notification would be lost.

use crate::backoff::{Backoff, RetryPolicy};
use crate::dead_tokens::DeadTokens;
use crate::payload::Notification;
use crate::stop::Stop;
use crate::webhook::Webhook;
use confab_proto::protocol::PushEvent;
use log::{debug, info, warn};

/// How a delivery ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The webhook answered 2xx, on the `attempts`-th POST, listing these of the event's
    /// tokens as no longer valid.
    Delivered { attempts: u32, dead_tokens: Option<DeadTokens> },
    /// Stop was asked while waiting to try again; the event is not delivered.
    Stopped,
}

/// POSTs `event` to `webhook` until it is delivered or stop is asked. A POST under way is
/// never cut short by stop (it ends by itself, within the webhook's timeout), so a stop
/// never leaves the webhook wondering whether it answered in time.
pub fn deliver(event: &PushEvent, webhook: &dyn Webhook, retry: RetryPolicy, stop: &Stop) -> Delivery {
    let body = Notification::of(event).to_json();
    let mut backoff = Backoff::new(retry);
    let mut attempts = 0u32;
    loop {
        attempts = attempts.saturating_add(1);
        match webhook.post(event.seq, &body) {
            Ok(answer) => {
                if attempts > 1 {
                    info!("event {} delivered on attempt {attempts}", event.seq);
                } else {
                    debug!("event {} delivered", event.seq);
                }
                let dead_tokens = DeadTokens::from_answer(&answer, event);
                return Delivery::Delivered { attempts, dead_tokens };
            }
            Err(e) => {
                let (_, wait) = backoff.failed();
                warn!("event {}: attempt {attempts} failed ({e}); retrying in {} ms", event.seq, wait.as_millis());
                if stop.wait(wait) {
                    info!("event {} not delivered: stopping", event.seq);
                    return Delivery::Stopped;
                }
            }
        }
    }
}
