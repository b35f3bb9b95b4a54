//! A webhook for the tests: an HTTP/1.1 server on 127.0.0.1 made of std's TcpListener,
//! answering each POST as its script says (a status, or a hang longer than the gateway's
//! timeout) and 200 once the script is used up, and reporting every request it read.
//!
//! One thread per connection: the gateway's HTTP client keeps connections alive and opens
//! a new one after a timeout, so one connection must never wait behind another.

use serde_json::Value;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How the webhook answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Says nothing for this long, then 200 (to a client that has given up by then).
    Hang(Duration),
}

/// One request as the webhook read it, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub answer: Answer,
    /// When its first line arrived, and when the answer began to be written: nothing that
    /// depends on the answer can have happened before `answering`.
    pub arrived: Instant,
    pub answering: Instant,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn seq(&self) -> u64 {
        self.body["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {}", self.body))
    }
}

pub struct WebhookServer {
    pub url: String,
    received: mpsc::Receiver<Received>,
}

impl WebhookServer {
    /// Listens on an ephemeral port; `script` answers the first requests, in order.
    pub fn start(script: Vec<Answer>) -> WebhookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
        let url = format!("http://{}/push", listener.local_addr().expect("local address"));
        let script = Arc::new(Mutex::new(VecDeque::from(script)));
        let (tx, received) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (script, tx) = (Arc::clone(&script), tx.clone());
                std::thread::spawn(move || serve(stream, &script, &tx));
            }
        });
        WebhookServer { url, received }
    }

    /// The next request (in the order the answers were written), within `wait`.
    pub fn next(&self, wait: Duration) -> Received {
        self.received.recv_timeout(wait).unwrap_or_else(|_| panic!("no request to the webhook within {wait:?}"))
    }

    /// A request within `wait`, if any.
    pub fn try_next(&self, wait: Duration) -> Option<Received> {
        self.received.recv_timeout(wait).ok()
    }
}

/// Requests on one connection until the client closes it.
fn serve(stream: TcpStream, script: &Mutex<VecDeque<Answer>>, tx: &mpsc::Sender<Received>) {
    let mut writer = stream.try_clone().expect("clone the webhook's connection");
    let mut reader = BufReader::new(stream);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let arrived = Instant::now();
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').expect("a header line has a colon");
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(name, _)| name == "content-length")
            .map(|(_, value)| value.parse().expect("a numeric Content-Length"))
            .expect("the gateway sends Content-Length");
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let body = serde_json::from_slice(&body).expect("the body is JSON");
        let answer = script.lock().expect("script lock").pop_front().unwrap_or(Answer::Status(200));
        let status = match answer {
            Answer::Status(status) => status,
            Answer::Hang(duration) => {
                std::thread::sleep(duration);
                200
            }
        };
        let response = format!("HTTP/1.1 {status} Scripted\r\nContent-Length: 2\r\n\r\nok");
        let answering = Instant::now();
        let written = writer.write_all(response.as_bytes()).and_then(|()| writer.flush());
        let _ = tx.send(Received { method, path, headers, body, answer, arrived, answering });
        if written.is_err() || matches!(answer, Answer::Hang(_)) {
            return;
        }
    }
}
