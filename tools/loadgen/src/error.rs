//! What can go wrong: [`Error`] ends a run, [`Fault`] ends one connection and is counted
//! by kind in the results.

use confab_proto::frame::FrameError;
use confab_proto::protocol::ErrorCode;
use std::io;
use std::path::PathBuf;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    #[error("cannot read the accounts file {path}: {source}")]
    AccountsRead { path: PathBuf, source: io::Error },
    #[error("the accounts file {path} is not what this tool writes ({source}); delete it")]
    AccountsParse { path: PathBuf, source: serde_json::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("cannot set up the event loop: {0}")]
    Poll(io::Error),
    #[error("bad --source-addrs {spec:?}: {reason}")]
    SourceAddrs { spec: String, reason: &'static str },
    #[error("{0}")]
    Usage(String),
    #[error(
        "the open-file limit is {soft} but this run needs about {needed} descriptors; \
         raise it first (`ulimit -n {needed}`; the hard limit is {hard})"
    )]
    FdLimit { soft: u64, hard: u64, needed: u64 },
    #[error(
        "only {ready} of {wanted} connections logged in ({detail}); a login:RateLimited \
         the setup could not wait out means the server throttles this source address \
         after failed logins or limits registrations from it: wait, use other \
         --source-addrs, or raise the server's --register-rate"
    )]
    Setup { ready: usize, wanted: usize, detail: String },
    #[error("{step}: {failed} of {total} requests failed ({detail})")]
    Step { step: &'static str, failed: usize, total: usize, detail: String },
    #[error("cannot draw the plot: {0}")]
    Plot(String),
}

/// Why one connection ended or could not be set up.
#[derive(Debug, Error)]
pub enum Fault {
    #[error("connect failed: {0}")]
    Connect(io::Error),
    #[error("i/o error: {0}")]
    Io(io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("unreadable frame from the server: {0}")]
    Frame(FrameError),
    #[error("server error {0:?} during login")]
    Auth(ErrorCode),
    #[error("server error {0:?} on the connection")]
    Server(ErrorCode),
    #[error("unexpected reply: {0}")]
    Unexpected(&'static str),
}

impl Fault {
    /// The key this fault is counted under in the results.
    pub fn kind(&self) -> String {
        match self {
            Fault::Connect(e) => format!("connect:{:?}", e.kind()),
            Fault::Io(e) => format!("io:{:?}", e.kind()),
            Fault::Closed => "closed_by_server".into(),
            Fault::Frame(_) => "bad_frame".into(),
            Fault::Auth(code) => format!("login:{code:?}"),
            Fault::Server(code) => format!("server:{code:?}"),
            Fault::Unexpected(what) => format!("unexpected:{what}"),
        }
    }
}
