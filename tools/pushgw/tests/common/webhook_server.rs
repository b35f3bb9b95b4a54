//! A webhook for the tests: an HTTP/1.1 server on 127.0.0.1 made of std's TcpListener,
//! answering each POST as its script says (a status, a slow 200, a hang longer than the
//! gateway's timeout, or a 200 with a body of its own) and 200 once the script is used up,
//! and reporting every request it read, with how many were under way at once. A test may
//! add to the script as it goes.
//!
//! One thread per connection: the gateway's HTTP client keeps connections alive, opens a
//! new one after a timeout, and one per POST in flight, so one connection must never wait
//! behind another.

use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How the webhook answers one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Status(u16),
    /// Holds the request this long, then 200 on the same connection: a webhook busy with
    /// APNs or FCM.
    Slow(Duration),
    /// Says nothing for this long, then 200 (to a client that has given up by then), and
    /// closes the connection.
    Hang(Duration),
    /// 200 with this body (`{"invalid_tokens":[...]}`, or anything else). `'static` so
    /// answers stay Copy; a test that builds one leaks it.
    Body(&'static str),
}

/// Which answer a request gets.
enum Script {
    /// The first requests, whatever their event, in the order they arrive.
    InArrivalOrder(VecDeque<Answer>),
    /// Each event's own POSTs, in order: concurrent POSTs arrive in no fixed order.
    PerEvent(HashMap<u64, VecDeque<Answer>>),
}

impl Script {
    fn answer(&mut self, seq: u64) -> Option<Answer> {
        match self {
            Script::InArrivalOrder(answers) => answers.pop_front(),
            Script::PerEvent(events) => events.get_mut(&seq).and_then(VecDeque::pop_front),
        }
    }
}

/// What the connections share.
struct Shared {
    script: Mutex<Script>,
    /// Requests read in full and not yet answered.
    in_flight: AtomicUsize,
    received: mpsc::Sender<Received>,
    arrivals: mpsc::Sender<u64>,
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
    /// Requests read in full and not yet answered when this one was read, itself
    /// included: the POSTs in flight at once, as the webhook saw them.
    pub in_flight: usize,
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
    shared: Arc<Shared>,
    received: mpsc::Receiver<Received>,
    arrivals: mpsc::Receiver<u64>,
}

impl WebhookServer {
    /// Listens on an ephemeral port; `script` answers the first requests, in order.
    pub fn start(script: Vec<Answer>) -> WebhookServer {
        Self::with_script(Script::InArrivalOrder(script.into()))
    }

    /// Listens on an ephemeral port; each event's POSTs get the answers `script` lists
    /// for its seq, in order, then 200.
    pub fn per_event(script: Vec<(u64, Vec<Answer>)>) -> WebhookServer {
        let events = script.into_iter().map(|(seq, answers)| (seq, VecDeque::from(answers))).collect();
        Self::with_script(Script::PerEvent(events))
    }

    fn with_script(script: Script) -> WebhookServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the webhook");
        let url = format!("http://{}/push", listener.local_addr().expect("local address"));
        let (received_tx, received) = mpsc::channel();
        let (arrivals_tx, arrivals) = mpsc::channel();
        let shared = Arc::new(Shared {
            script: Mutex::new(script),
            in_flight: AtomicUsize::new(0),
            received: received_tx,
            arrivals: arrivals_tx,
        });
        let accepting = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let shared = Arc::clone(&accepting);
                std::thread::spawn(move || serve(stream, &shared));
            }
        });
        WebhookServer { url, shared, received, arrivals }
    }

    /// The next request to arrive (after those the script holds) gets `answer`; for a
    /// script in arrival order only.
    pub fn answer_next(&self, answer: Answer) {
        match &mut *self.shared.script.lock().expect("script lock") {
            Script::InArrivalOrder(answers) => answers.push_back(answer),
            Script::PerEvent(_) => panic!("answer_next is for a script in arrival order"),
        }
    }

    /// The seq of the next request read in full, before it is answered, within `wait`.
    pub fn next_arrival(&self, wait: Duration) -> u64 {
        self.arrivals.recv_timeout(wait).unwrap_or_else(|_| panic!("no request arrived at the webhook within {wait:?}"))
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
fn serve(stream: TcpStream, shared: &Shared) {
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
        let body: Value = serde_json::from_slice(&body).expect("the body is JSON");
        let in_flight = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        let seq = body["seq"].as_u64().expect("the body has a seq");
        let _ = shared.arrivals.send(seq);
        let answer = shared.script.lock().expect("script lock").answer(seq).unwrap_or(Answer::Status(200));
        let (status, answer_body) = match answer {
            Answer::Status(status) => (status, "ok"),
            Answer::Slow(duration) | Answer::Hang(duration) => {
                std::thread::sleep(duration);
                (200, "ok")
            }
            Answer::Body(body) => (200, body),
        };
        let response =
            format!("HTTP/1.1 {status} Scripted\r\nContent-Length: {}\r\n\r\n{answer_body}", answer_body.len());
        // Counted out before the answer is written: the gateway may send its next POST
        // the moment it reads it, and that one must not count this one as in flight.
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        let answering = Instant::now();
        let written = writer.write_all(response.as_bytes()).and_then(|()| writer.flush());
        let _ = shared.received.send(Received { method, path, headers, body, answer, in_flight, arrived, answering });
        if written.is_err() || matches!(answer, Answer::Hang(_)) {
            return;
        }
    }
}
