//! Everything the gateway is told, with every default in one place and its reason.

use crate::backoff::RetryPolicy;
use std::fmt;
use std::time::Duration;

/// A POST that has not been answered by then is retried (`--timeout-ms`): long enough for
/// a webhook that calls APNs or FCM before it answers, short enough that a hung one does
/// not hold the queue for long.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait after a failure; the waits double from here (the spec's 500 ms).
pub const RETRY_BASE: Duration = Duration::from_millis(500);
/// POSTs in flight at once (`--concurrency`). One POST at a time delivers one event per
/// webhook round trip (10 a second for a 100 ms webhook), too slow for the burst a message
/// to a large group of offline members makes; eight keep a 100 ms webhook at 80 a second
/// without opening more connections than a small webhook wants to serve.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// No more POSTs in flight than this: the server sends at most 256 events not yet
/// acknowledged (protocol.md, "Push notifications"), so more would never be busy.
pub const MAX_CONCURRENCY: usize = 256;
/// The longest wait between tries (`--retry-max-ms`): a webhook back after an outage gets
/// its events within a minute, and a dead one costs one POST a minute.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(60);
/// How long a stopping gateway waits for the server to confirm its last ack, so that a
/// restart does not get delivered events again; the server answers in milliseconds.
pub const ACK_CONFIRM_WAIT: Duration = Duration::from_secs(2);
/// The heartbeat when the server's Hello announces none (0): the server's own default.
pub const FALLBACK_HEARTBEAT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct Config {
    /// confabd's address, HOST:PORT; resolved again at each connect.
    pub server: String,
    pub service: String,
    /// The service's token (secret: never logged, never in Debug).
    pub token: String,
    pub webhook: String,
    /// Bounds each POST as a whole.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// POSTs in flight at once, 1 to [`MAX_CONCURRENCY`]; 1 delivers strictly in order.
    pub concurrency: usize,
    pub ack_confirm_wait: Duration,
    /// The client name in Hello, and the webhook's User-Agent.
    pub client_name: String,
}

impl Config {
    /// The defaults for everything but what must be given.
    pub fn new(server: &str, service: &str, token: &str, webhook: &str) -> Config {
        Config {
            server: server.to_string(),
            service: service.to_string(),
            token: token.to_string(),
            webhook: webhook.to_string(),
            timeout: DEFAULT_TIMEOUT,
            retry: RetryPolicy { base: RETRY_BASE, max: DEFAULT_RETRY_MAX },
            concurrency: DEFAULT_CONCURRENCY,
            ack_confirm_wait: ACK_CONFIRM_WAIT,
            client_name: format!("confab-pushgw/{}", env!("CARGO_PKG_VERSION")),
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("service", &self.service)
            .field("token", &"<redacted>")
            .field("webhook", &self.webhook)
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("concurrency", &self.concurrency)
            .field("ack_confirm_wait", &self.ack_confirm_wait)
            .field("client_name", &self.client_name)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let config = Config::new("127.0.0.1:7420", "gw", "s3cret-token", "http://127.0.0.1:9/");
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret-token") && shown.contains("<redacted>"), "{shown}");
        assert_eq!(config.retry.base, Duration::from_millis(500));
    }
}
