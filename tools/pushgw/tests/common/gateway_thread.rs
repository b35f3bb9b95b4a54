//! The whole gateway (`gateway::run`) on a thread of the test, against a fake confabd,
//! with short retry waits; and waiting for it to end.

use crate::common::fake_confabd::{FakeConfabd, WAIT};
use crate::common::webhook_server::WebhookServer;
use confab_pushgw::backoff::RetryPolicy;
use confab_pushgw::config::Config;
use confab_pushgw::gateway::{self, Fatal};
use confab_pushgw::stop::{stop_signal, StopHandle};
use confab_pushgw::webhook::HttpWebhook;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SERVICE: &str = "gw";
pub const TOKEN: &str = "service-token";

/// The gateway on its own thread, with short retry waits.
pub fn start_gateway(fake: &FakeConfabd, webhook: &WebhookServer) -> (StopHandle, JoinHandle<Result<(), Fatal>>) {
    let mut config = Config::new(&fake.addr.to_string(), SERVICE, TOKEN, &webhook.url);
    config.retry = RetryPolicy { base: Duration::from_millis(50), max: Duration::from_millis(400) };
    let (handle, stop) = stop_signal();
    let thread = std::thread::spawn(move || {
        let webhook =
            HttpWebhook::new(&config.webhook, config.timeout, "pushgw-test", config.concurrency).expect("webhook URL");
        gateway::run(&config, &webhook, &stop)
    });
    (handle, thread)
}

/// Waits for the gateway's thread to end, within `WAIT`.
pub fn finished(thread: JoinHandle<Result<(), Fatal>>) -> Result<(), Fatal> {
    let deadline = Instant::now() + WAIT;
    while !thread.is_finished() {
        assert!(Instant::now() < deadline, "the gateway did not end within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().expect("the gateway's thread does not panic")
}
