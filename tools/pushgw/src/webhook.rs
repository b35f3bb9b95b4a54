//! One POST to the webhook, and what came of it. [`Webhook`] is the seam the delivery
//! logic is tested through; [`HttpWebhook`] is the real one (ureq).

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
    /// POSTs one event's JSON; `seq` is its Idempotency-Key. Ok means a 2xx came back.
    fn post(&self, seq: u64, body: &[u8]) -> Result<(), PostError>;
}

/// The webhook over HTTP(S). Keeps connections alive between POSTs (ureq's pool), one
/// for each POST that may be in flight at once.
pub struct HttpWebhook {
    agent: ureq::Agent,
    url: Uri,
}

/// Bytes of a response body read so the connection can be reused; a longer body is cut
/// and its connection dropped.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

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
    fn post(&self, seq: u64, body: &[u8]) -> Result<(), PostError> {
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
        // Read what little body there is, so the connection goes back to the pool; what it
        // says is of no interest, and failing to read it does not undo the status.
        let mut sink = Vec::new();
        let _ = response.body_mut().as_reader().take(MAX_RESPONSE_BODY).read_to_end(&mut sink);
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(PostError::Status { status: status.as_u16() })
        }
    }
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
}
