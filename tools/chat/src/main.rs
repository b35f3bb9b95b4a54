//! `confab-chat`: an interactive terminal client for confabd.
//!
//! It connects (to `--server`, default `127.0.0.1:7420`), registers or logs in, remembers
//! the resume token (`--token-file`, default `$HOME/.config/confab/token-NAME`), and then
//! sends and shows direct messages while the user types. Stored messages are acked once
//! shown; messages that arrived while offline follow the login; a dropped connection is
//! re-established by itself, logging in again with the token. `--user NAME` logs in with
//! a remembered token at start.
//!
//! # Commands
//!
//! `/connect [ADDR]`, `/register NAME PASSWORD`, `/login NAME PASSWORD`, `/to NAME`,
//! `/msg NAME TEXT`, `/typing [NAME]`, `/who [AFTER]`, `/rename DISPLAY NAME`, `/logout`,
//! `/help`, `/quit`. Any other line is a message to the peer chosen with `/to`; start it
//! with `//` to send a text beginning with `/`.
//!
//! # Line mode
//!
//! When stdin or stdout is not a terminal, or with `--plain`, commands are read one per
//! line from stdin and every event is printed as exactly one line on stdout: a keyword,
//! then `key=value` fields, then free text last. Free text is escaped so it stays on one
//! line (`\\`, `\n`, `\r`, `\t`, other control characters as `\u{1b}`).
//!
//! ```text
//! connected ADDR                        the server accepted our Hello (after every (re)connect)
//! registered NAME
//! logged-in NAME acked=N last=N         /login, or the token login of --user
//! reconnected NAME acked=N last=N       logged in again by itself after a drop
//! sent seq=N to=NAME                    a stored message's receipt (+ " duplicate=true")
//! transient-sent to=NAME delivered=B    a /typing notice went out (B: recipient online)
//! message seq=N from=NAME at=MS text=T  a stored message (at: server time, Unix ms;
//!                                       " group=ID" before text in a group,
//!                                       " service=true" if a service sent it,
//!                                       " kind=K media=URL" before text for non-text)
//! room-message room=R from=NAME text=T  (pushes the server already has, but no command
//! broadcast from=NAME text=T             of this client asks for yet)
//! presence NAME online=B
//! notice service=NAME text=T            a service's live message
//! push DEBUG                            a push this client cannot show yet
//! typing from=NAME                      a typing notice
//! transient from=NAME text=T            any other transient message
//! online users=A,B more=B               one page of /who (next page: /who LAST)
//! renamed DISPLAY NAME
//! acked up_to=N                         the server confirmed our (automatic) ack
//! resynced after=N last=N               a gap was seen; the server redelivers after N
//! logged-out
//! peer NAME                             /to
//! help USAGE -- TEXT                    one per command
//! error CODE: MESSAGE                   CODE is the server's (UnknownUser, WrongPassword,
//!                                       InvalidToken, ...) or the client's own: Usage,
//!                                       UnknownCommand, Invalid, Offline, NoToken,
//!                                       TokenFile, ConnectFailed, Disconnected, Timeout,
//!                                       Protocol
//! kicked REASON                         another login took the session (no reconnect)
//! shutting-down                         the server is stopping
//! disconnected REASON
//! reconnecting attempt=N in_ms=N
//! ```
//!
//! Commands wait their turn: while the connection is coming up, and after a register,
//! login or logout until its reply, so a whole script can be piped in at once. At the end
//! of input (or `/quit`) the client waits up to 5 s for the commands still queued and the
//! replies still owed, including its last ack; prints an `error Offline` or `error
//! Timeout` line for each that did not make it; and exits 0.
//!
//! # Terminal mode
//!
//! On a terminal the client is full-screen: the conversation scrolls above a status bar
//! (who you are, your peer, the link) and the input line. Messages show their time (UTC)
//! and sender; see `tui.rs` for the keys.

mod app;
mod backoff;
mod commands;
mod connection;
mod inbox;
mod link;
mod render;
mod token;
mod tui;

use app::App;
use clap::Parser;
use connection::Connection;
use render::{Event, Output};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use token::TokenStore;

#[derive(Parser, Debug)]
#[command(name = "confab-chat", version, about = "Chat with other confabd users")]
struct Args {
    /// Server address, HOST:PORT.
    #[arg(long, value_name = "ADDR", default_value = commands::DEFAULT_ADDR)]
    server: String,
    /// Where to remember the resume token (default: $HOME/.config/confab/token-NAME).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Log in as NAME with the remembered token at start, no password needed.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// Line mode even on a terminal: one command per input line, one event per output line.
    #[arg(long)]
    plain: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tokens = TokenStore::new(args.token_file);
    let (net_tx, net_rx) = crossbeam_channel::unbounded();
    let conn = Connection::new(net_tx, app::random_u64());
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if args.plain || !terminal {
        let mut app = App::new(conn, PlainOutput, tokens, &args.server, args.user);
        app::run(&mut app, &net_rx, spawn_line_reader(), |app, line| app.input(&line), |_| {});
    } else {
        let app = App::new(conn, tui::Screen::default(), tokens, &args.server, args.user);
        if let Err(e) = tui::run(app, &net_rx) {
            eprintln!("confab-chat: terminal: {e} (--plain works without one)");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Stdin, line by line, on its own thread; the channel closes at end of input.
fn spawn_line_reader() -> crossbeam_channel::Receiver<String> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut stdin = stdin.lock();
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match stdin.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    // A stray invalid byte costs one character, not the whole line.
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

struct PlainOutput;

impl Output for PlainOutput {
    fn emit(&mut self, event: Event) {
        // A closed stdout leaves nobody to tell; the client still finishes its work.
        let _ = writeln!(std::io::stdout().lock(), "{}", render::plain(&event));
    }
}
