//! `confab-pushgw`: flags → Config → run (see the library's doc for what it does).
//!
//! Exit status: 0 after SIGTERM or SIGINT; 1 when the server refuses for good (a wrong
//! token, a service without the push permission); 2 for bad flags or no token.

use clap::Parser;
use confab_pushgw::config::Config;
use confab_pushgw::stop::stop_signal;
use confab_pushgw::token::{read_token, TOKEN_ENV};
use confab_pushgw::webhook::HttpWebhook;
use confab_pushgw::{gateway, logger};
use log::{error, info, LevelFilter};
use signal_hook::consts::{SIGINT, SIGTERM};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "confab-pushgw",
    version,
    about = "Deliver confabd's push notifications to a webhook",
    after_help = "The service token is read from --token-file, else the CONFAB_SERVICE_TOKEN environment \
                  variable, else one line of standard input. Create the service with \
                  `confabd service add NAME --push`."
)]
struct Args {
    /// confabd's address, HOST:PORT.
    #[arg(long, value_name = "ADDR")]
    server: String,
    /// The service to log in as; it needs the push permission.
    #[arg(long, value_name = "NAME")]
    service: String,
    /// Where each event is POSTed as JSON (http:// or https://).
    #[arg(long, value_name = "URL")]
    webhook: String,
    /// A file holding the service token.
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// A POST not answered within this is retried.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(confab_pushgw::config::DEFAULT_TIMEOUT),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// The longest wait between retries (they start at 500 ms and double).
    #[arg(long, value_name = "MS", default_value_t = duration_ms(confab_pushgw::config::DEFAULT_RETRY_MAX),
          value_parser = clap::value_parser!(u64).range(1..))]
    retry_max_ms: u64,
    /// POSTs in flight at once, 1 to 256. Each event is retried on its own until a 2xx,
    /// so the webhook may see events out of order; acks stay in order (an event is acked
    /// only once it and every earlier one are delivered). 1 POSTs strictly in order.
    #[arg(long, value_name = "N", default_value_t = confab_pushgw::config::DEFAULT_CONCURRENCY,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new()
              .range(1..=confab_pushgw::config::MAX_CONCURRENCY as u64))]
    concurrency: usize,
    /// What to log: info has the lifecycle and every failure, debug every event and ack.
    #[arg(long, value_name = "LEVEL", value_enum, default_value_t = LogLevel::Info)]
    log_level: LogLevel,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> LevelFilter {
        match level {
            LogLevel::Error => LevelFilter::Error,
            LogLevel::Warn => LevelFilter::Warn,
            LogLevel::Info => LevelFilter::Info,
            LogLevel::Debug => LevelFilter::Debug,
            LogLevel::Trace => LevelFilter::Trace,
        }
    }
}

fn duration_ms(duration: Duration) -> u64 {
    duration.as_millis() as u64
}

fn main() -> ExitCode {
    let args = Args::parse();
    logger::init(args.log_level.into());
    let token =
        match read_token(args.token_file.as_deref(), std::env::var(TOKEN_ENV).ok(), &mut std::io::stdin().lock()) {
            Ok(token) => token,
            Err(e) => {
                error!("{e}");
                return ExitCode::from(2);
            }
        };
    let mut config = Config::new(&args.server, &args.service, &token, &args.webhook);
    config.timeout = Duration::from_millis(args.timeout_ms);
    config.retry.max = Duration::from_millis(args.retry_max_ms);
    config.concurrency = args.concurrency;
    let webhook = match HttpWebhook::new(&config.webhook, config.timeout, &config.client_name, config.concurrency) {
        Ok(webhook) => webhook,
        Err(e) => {
            error!("--webhook {}: {e}", config.webhook);
            return ExitCode::from(2);
        }
    };
    // Installed before the first connection, so a signal at any moment stops cleanly.
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (stop_handle, stop) = stop_signal();
    std::thread::spawn(move || {
        let mut signals = signals.forever();
        if let Some(signal) = signals.next() {
            info!("signal {signal}: stopping after the POSTs under way");
            stop_handle.stop();
        }
        // Someone who asks twice does not want to wait for a slow webhook; the events
        // under way were not acked, so they come again to the next gateway.
        if let Some(signal) = signals.next() {
            info!("signal {signal} again: exiting now");
            std::process::exit(0);
        }
    });
    info!(
        "{} for service {} to the webhook at {}, {} POSTs at once at most",
        config.client_name,
        config.service,
        webhook.origin(),
        config.concurrency
    );
    match gateway::run(&config, &webhook, &stop) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_parse_with_the_documented_defaults() {
        Args::command().debug_assert();
        let args = Args::parse_from(["pushgw", "--server", "h:1", "--service", "gw", "--webhook", "http://w/"]);
        assert_eq!((args.timeout_ms, args.retry_max_ms, args.log_level), (10_000, 60_000, LogLevel::Info));
        assert_eq!(args.concurrency, 8);
        assert!(args.token_file.is_none());
        let with = |concurrency: &str| {
            let flags =
                ["pushgw", "--server", "h:1", "--service", "gw", "--webhook", "u", "--concurrency", concurrency];
            Args::try_parse_from(flags).map(|args| args.concurrency)
        };
        assert_eq!((with("1").ok(), with("256").ok()), (Some(1), Some(256)));
        assert!(with("0").is_err() && with("257").is_err() && with("-1").is_err());
        assert!(Args::try_parse_from(["pushgw", "--server", "h:1", "--service", "gw"]).is_err());
        assert!(Args::try_parse_from([
            "pushgw",
            "--server",
            "h:1",
            "--service",
            "gw",
            "--webhook",
            "u",
            "--timeout-ms",
            "0"
        ])
        .is_err());
    }
}
