//! One POST to the webhook, and what came of it. [`Webhook`] is the seam the delivery
//! logic is tested through; [`HttpWebhook`] is the real one (ureq).

use log::debug;
use std::io::Read;
use std::time::Duration;
use thiserror::Error;
use ureq::http::Uri;

/// Why a POST did not deliver. Every one of them is retried.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PostError {
    /// Any status but 2xx, redirects included.
    #[error("webhook answered {status}")]
    Status { status: u16 },
    #[error("no answer within the timeout")]
    Timeout,
    /// Could not connect, TLS failed, the connection broke, the answer was not HTTP...
    #[error("{0}")]
    Transport(String),
}

/// Where events go. Shared by the delivery threads, which POST at the same time.
pub trait Webhook: Sync {
    /// POSTs one event's JSON; `seq` is its Idempotency-Key. Ok means a 2xx came back,
    /// with its body ([`crate::dead_tokens`] reads it): at most [`MAX_RESPONSE_BODY`]
    /// bytes, and empty when it was longer or could not be read, as the body says
    /// nothing about whether the event was delivered.
    fn post(&self, seq: u64, body: &[u8]) -> Result<Vec<u8>, PostError>;
}

/// The webhook over HTTP(S). Keeps connections alive between POSTs (ureq's pool), one
/// for each POST that may be in flight at once.
pub struct HttpWebhook {
    agent: ureq::Agent,
    url: Uri,
}

/// Bytes of a response body read, for its `invalid_tokens` and so the connection can be
/// reused: a list of dead tokens for one user's devices (10 at most, of 1 KiB at most)
/// fits many times over. A longer body is ignored whole (a list cut short is not JSON)
/// and its connection dropped; the gateway never holds more of a webhook's answer.
pub const MAX_RESPONSE_BODY: u64 = 64 * 1024;

/// A bad `--webhook`.
#[derive(Debug, Error)]
pub enum UrlError {
    #[error("not a URL: {0}")]
    Invalid(String),
    #[error("the webhook URL must start with http:// or https://")]
    Scheme,
}

impl HttpWebhook {
    /// `timeout` bounds each POST as a whole: resolving, connecting, sending, and the
    /// answer's head. `concurrency` POSTs may be in flight at once.
    pub fn new(url: &str, timeout: Duration, user_agent: &str, concurrency: usize) -> Result<Self, UrlError> {
        let url: Uri = url.parse().map_err(|e: ureq::http::uri::InvalidUri| UrlError::Invalid(e.to_string()))?;
        if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
            return Err(UrlError::Scheme);
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            // A status is an answer to judge, not an error to unwrap.
            .http_status_as_error(false)
            // Following a redirect would turn the POST into a GET (301/302) or repeat it
            // somewhere unchecked; the spec says only a 2xx delivers.
            .max_redirects(0)
            // ureq keeps 3 idle connections per host by default: with more POSTs in
            // flight, the others would be a new connection (and TLS handshake) each time.
            .max_idle_connections(concurrency.max(1))
            .max_idle_connections_per_host(concurrency.max(1))
            .user_agent(user_agent)
            .build()
            .new_agent();
        Ok(HttpWebhook { agent, url })
    }
}

impl HttpWebhook {
    /// Scheme, host and port, for the log: a webhook's path or query often holds a secret.
    pub fn origin(&self) -> String {
        let scheme = self.url.scheme_str().unwrap_or("http");
        let host = self.url.host().unwrap_or("");
        match self.url.port_u16() {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        }
    }
}

impl Webhook for HttpWebhook {
    fn post(&self, seq: u64, body: &[u8]) -> Result<Vec<u8>, PostError> {
        let response = self
            .agent
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", seq.to_string())
            .send(body);
        let mut response = match response {
            Ok(response) => response,
            Err(ureq::Error::Timeout(_)) => return Err(PostError::Timeout),
            Err(e) => return Err(PostError::Transport(e.to_string())),
        };
        // Read what little body there is, so the connection goes back to the pool; failing
        // to read it, or a body too long, does not undo the status.
        let answer = read_limited(&mut response.body_mut().as_reader(), MAX_RESPONSE_BODY);
        let status = response.status();
        if !status.is_success() {
            return Err(PostError::Status { status: status.as_u16() });
        }
        Ok(answer.unwrap_or_else(|| {
            debug!("event {seq}: the webhook's answer is longer than {MAX_RESPONSE_BODY} bytes or unreadable; ignored");
            Vec::new()
        }))
    }
}

/// Reads `reader` to its end if that is at most `max` bytes; None if it is longer (only
/// `max` + 1 bytes are read to know) or a read fails.
fn read_limited(reader: &mut dyn Read, max: u64) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    reader.take(max.saturating_add(1)).read_to_end(&mut body).ok()?;
    (body.len() as u64 <= max).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_http_and_https_urls_are_webhooks() {
        let timeout = Duration::from_secs(1);
        assert!(HttpWebhook::new("http://127.0.0.1:9/push", timeout, "t", 1).is_ok());
        assert!(HttpWebhook::new("https://push.example.com/hook?x=1", timeout, "t", 8).is_ok());
        assert!(matches!(HttpWebhook::new("ftp://example.com/", timeout, "t", 1), Err(UrlError::Scheme)));
        assert!(matches!(HttpWebhook::new("/just/a/path", timeout, "t", 1), Err(UrlError::Scheme)));
        assert!(matches!(HttpWebhook::new("http://exa mple.com/", timeout, "t", 1), Err(UrlError::Invalid(_))));
        let secret = HttpWebhook::new("https://hooks.example.com:8443/T0/s3cret?key=s3cret", timeout, "t", 1).unwrap();
        assert_eq!(secret.origin(), "https://hooks.example.com:8443");
    }

    #[test]
    fn an_answer_longer_than_the_limit_is_not_read_whole() {
        let limit = MAX_RESPONSE_BODY as usize;
        let read = |len: usize| read_limited(&mut std::io::Cursor::new(vec![b'x'; len]), MAX_RESPONSE_BODY);
        assert_eq!(read(0), Some(Vec::new()));
        assert_eq!(read(limit).map(|body| body.len()), Some(limit));
        assert_eq!(read(limit + 1), None);
        // An endless body is not read to its end.
        assert_eq!(read_limited(&mut std::io::repeat(b'x'), MAX_RESPONSE_BODY), None);
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other("connection reset"))
            }
        }
        assert_eq!(read_limited(&mut Broken, MAX_RESPONSE_BODY), None);
    }
}
