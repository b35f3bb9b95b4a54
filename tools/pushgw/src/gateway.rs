//! The gateway's life: connect and subscribe, pump the feed, and when the connection is
//! lost connect again; while another gateway holds the feed, stand by and try again;
//! until stop is asked or trying again cannot help.

use crate::backoff::Backoff;
use crate::config::Config;
use crate::feed::{pump, DeliveredMark};
use crate::link::{Link, OpenError};
use crate::stop::Stop;
use crate::webhook::Webhook;
use log::{debug, info, warn};
use thiserror::Error;

/// The gateway cannot work until the operator acts (the message says how).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Fatal(pub String);

/// Runs until stop is asked (Ok) or a fatal refusal.
pub fn run(config: &Config, webhook: &dyn Webhook, stop: &Stop) -> Result<(), Fatal> {
    // One schedule for reconnects and the standby's tries: a success resets it.
    let mut backoff = Backoff::new(config.retry);
    let mut mark = DeliveredMark::default();
    let mut standing_by = false;
    while !stop.is_stopped() {
        let wait = match Link::open(config) {
            Ok((mut link, subscribed)) => {
                standing_by = false;
                backoff.reset();
                info!(
                    "subscribed to the push feed of {}: acked {}, last {}",
                    config.server, subscribed.acked, subscribed.last_seq
                );
                mark.check_queue(subscribed.last_seq);
                let pumped = pump(&mut link, webhook, config.retry, config.concurrency, stop, &mut mark);
                link.close();
                match pumped {
                    Ok(()) => break,
                    Err(e) => warn!("lost the push feed: {e}"),
                }
                backoff.failed().1
            }
            Err(OpenError::Busy(reason)) => {
                let (attempt, wait) = backoff.failed();
                if standing_by {
                    debug!("still standing by (try {attempt}); next try in {} ms", wait.as_millis());
                } else {
                    info!("{reason}: standing by, trying again with backoff up to {} ms", config.retry.max.as_millis());
                    standing_by = true;
                }
                wait
            }
            Err(OpenError::Fatal(reason)) => return Err(Fatal(reason)),
            Err(OpenError::Retry { reason, after }) => {
                let (attempt, wait) = backoff.failed();
                let wait = after.map_or(wait, |after| after.max(wait));
                warn!("{reason}; try {attempt} failed, next in {} ms", wait.as_millis());
                wait
            }
        };
        if stop.wait(wait) {
            break;
        }
    }
    info!("stopped");
    Ok(())
}
