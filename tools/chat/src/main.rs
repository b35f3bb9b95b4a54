//! `confab-chat`: an interactive terminal client for confabd.
//!
//! It connects (to `--server`, default `127.0.0.1:7420`), registers or logs in as one of
//! the user's devices, remembers the device id, the resume token and the server that gave
//! it (`--token-file`, default `$HOME/.config/confab/token-NAME`), and then sends and shows direct and group
//! messages while the user types. The device id is chosen once per user (`--device NAME`,
//! or `chat-` and 8 random hex digits) and kept in the token file even after a logout, so
//! this client is always the same device to the server; what the user sends from other
//! devices shows here as sent copies. Stored messages (inbox and groups) are acked once
//! shown; messages that arrived while offline follow the login;
//! a dropped connection is re-established by itself, logging in again with the token and
//! rejoining the rooms and watches of the old connection. `--user NAME` logs in with a
//! remembered token at start. `--app APP` chats in that app (its users, groups and rooms;
//! the token file is then `token-APP-NAME`); without it, in the app `default`. `--device
//! NAME` sets the device id (one remembered for another device is not used).
//!
//! In a cluster of servers (protocol.md "Cluster") any node will do for `--server`: a
//! register or login on a node that is not the user's home is redirected there (a
//! `redirected` line), and the client stays on the home node. `--user NAME` without
//! `--server` connects to the home remembered with NAME's token.
//!
//! # Commands
//!
//! - Session: `/connect [ADDR]`, `/register NAME PASSWORD`, `/login NAME PASSWORD`,
//!   `/rename DISPLAY NAME`, `/logout` (this device), `/logout-all` (every device),
//!   `/devices`, `/device-remove NAME` (a lost phone: its session ends, its token is
//!   revoked), `/help`, `/quit`.
//! - Direct messages: `/to NAME`, `/msg NAME TEXT`, `/typing [NAME]`, `/who [AFTER]`. Any
//!   other line is a message to the peer chosen with `/to`; start it with `//` to send a
//!   text beginning with `/`. `/to NAME` opens the conversation: its last 5 messages are
//!   shown, and from then on it is read as its messages are shown.
//! - History and read state: `/history NAME [N]`, `/group history ID [N]` (the last N,
//!   default 20, at most 1000, oldest first; a group's since you joined), `/delete NAME
//!   [ID]` and `/group delete-message ID [MESSAGE]` (your message, for everyone; without an
//!   id the last one of yours this client knows there), `/clear NAME`, `/group clear ID`
//!   (hide the history from your own devices), `/read NAME`, `/group mark-read ID`,
//!   `/unread`, `/receipts on|off` (whether others learn that you read their messages),
//!   `/group read ID` (how far each member has read). A chat is marked read (on every
//!   device of yours) when its messages are shown: in the open conversation, in history,
//!   or with `/read`.
//! - Groups (stored): `/say ID TEXT`, `/groups`, `/groups open [AFTER]` (the groups anyone
//!   may join), `/members ID`, `/group create NAME
//!   [--open]`, `/group rename ID NAME`, `/group add ID USER`, `/group remove ID USER`,
//!   `/group role ID USER owner|admin|member`, `/group join ID`, `/group leave ID`,
//!   `/group delete ID`.
//! - Rooms and broadcast (live only): `/join ROOM`, `/leave ROOM`, `/room ROOM TEXT`,
//!   `/rooms [AFTER]`, `/room-members ROOM`, `/broadcast TEXT` (administrators).
//! - Customer support (stored): `/shop NAME TEXT` writes to a shop (its staff answer; their
//!   replies show as from the shop, naming the agent), `/support [SHOP]` lists a shop's
//!   conversations (staff), or without SHOP your own with shops; `/reply ID TEXT` writes in
//!   conversation ID (a staff member's reply claims it if nobody has), `/claim ID`,
//!   `/handover ID USER`, `/release ID` (staff).
//! - Presence: `/watch USER`, `/unwatch USER`.
//! - Push notifications (to your devices while you are offline; the apps on them register
//!   themselves): `/mute NAME [MINUTES]`, `/group mute ID [MINUTES]` (without MINUTES, or
//!   0: until unmuted), `/unmute NAME`, `/group unmute ID`, `/push` (your devices and
//!   mutes). A group is named by its id, as in every group command.
//! - `/stats` (administrators); `/resync [ID]` asks the server to deliver the inbox (or
//!   group ID) again after what was shown, should delivery ever seem stuck.
//!
//! # Line mode
//!
//! When stdin or stdout is not a terminal, or with `--plain`, commands are read one per
//! line from stdin and every event is printed as exactly one line on stdout: a keyword,
//! then `key=value` fields, then free text last. Free text is escaped so it stays on one
//! line (`\\`, `\n`, `\r`, `\t`, other control characters as `\u{1b}`). Lists of names
//! are comma-separated (names never contain commas, colons or spaces).
//!
//! ```text
//! connected ADDR                        the server accepted our Hello (after every (re)connect)
//! redirected node=N addr=ADDR           a cluster's node N at ADDR is the user's home: the
//!                                       register or login goes again there (connected follows)
//! registered NAME
//! logged-in NAME acked=N last=N device=D
//!                                       /login, or the token login of --user (acked, last:
//!                                       this device's place in the inbox); one unread line
//!                                       per chat with unread messages follows
//! reconnected NAME acked=N last=N device=D
//!                                       logged in again by itself after a drop
//! sent seq=N to=NAME id=ID              a direct message's receipt (+ " duplicate=true");
//!                                       seq is in NAME's inbox, ID the message's id
//! sent seq=N group=ID id=ID             a group message's receipt (+ " duplicate=true"); it
//!                                       is not pushed back to us
//! sent seq=N shop=NAME id=ID            /shop: the receipt (seq in our conversation with it)
//! sent seq=N support=ID id=ID           /reply: the receipt
//! sent-copy seq=N to=NAME at=MS id=ID text=T
//!                                       a message we sent to NAME from another device (seq:
//!                                       in our inbox; kind=K media=URL before text for
//!                                       non-text); not shown for a message this client sent
//! message-deleted seq=N id=ID by=NAME user=PEER
//!                                       NAME deleted message ID, in the chat with PEER
//!                                       (" user=PEER" only when known)
//! transient-sent to=NAME delivered=B    a /typing notice went out (B: recipient online)
//! room-sent room=R recipients=N         a /room message went to N others in the room
//! broadcast-sent recipients=N           a /broadcast went to N others online
//! message seq=N from=NAME at=MS id=ID text=T
//!                                       a stored message (at: server time, Unix ms;
//!                                       " group=ID" before text in a group,
//!                                       " name=T" after from when the sender's display
//!                                       name is not its username (spaces as \u{20}),
//!                                       " support=ID" before text in a support
//!                                       conversation, " staff=true" from a shop's
//!                                       staff (to its customer from=SHOP name=AGENT),
//!                                       " service=true" if a service sent it,
//!                                       " kind=K media=URL" before text for non-text)
//! group-event group=ID seq=N EVENT      a change in a group, stored in its sequence; EVENT:
//!                                         event=created by=NAME
//!                                         event=added user=NAME by=NAME
//!                                         event=joined user=NAME
//!                                         event=left user=NAME
//!                                         event=removed user=NAME by=NAME
//!                                         event=role user=NAME role=ROLE by=NAME
//!                                         event=renamed by=NAME name=T
//!                                         event=deleted by=NAME  (live only; seq is one past
//!                                         the group's last; the group is forgotten)
//!                                         event=message-deleted id=ID by=NAME
//! group-created id=ID                   /group create (the created event comes first)
//! done WHAT FIELDS                      a group, room, watch or mute request was carried out:
//!                                         done group-rename group=ID
//!                                         done group-add group=ID user=NAME
//!                                         done group-remove group=ID user=NAME
//!                                         done group-role group=ID user=NAME role=ROLE
//!                                         done group-join group=ID
//!                                         done group-leave group=ID
//!                                         done group-delete group=ID
//!                                         done join room=R
//!                                         done leave room=R
//!                                         done unwatch user=NAME
//!                                         done unmute user=NAME
//!                                         done unmute group=ID
//!                                         done claim support=ID
//!                                         done handover support=ID user=NAME
//!                                         done release support=ID
//!                                         done delete CHAT id=ID
//!                                         done clear CHAT up_to=N
//!                                         done receipts enabled=B
//!                                         done device-remove device=D
//! groups count=N                        /groups, followed by N lines:
//! group id=ID role=ROLE members=N unread=N open=B name=T
//!                                       (ROLE: owner, admin or member; unread: the
//!                                       group's last seq minus our ack)
//! members group=ID owner=NAME admins=A,B members=C,D online=A,C
//!                                       /members (each list may be empty)
//! rooms list=R:N,R:N more=B             one page of /rooms: name:members (next: /rooms LAST)
//! room-members room=R users=A,B         /room-members
//! open-groups count=N more=B            /groups open: this header, then one line per group
//! open-group id=ID members=N name=T       (next page: /groups open LAST-ID)
//! support count=N more=B               /support, followed by N lines:
//! conversation id=ID shop=S customer=NAME claimed_by=NAME unread=N last_at=MS
//!                                       (claimed_by: - when nobody holds it; unread: its
//!                                       last seq minus our ack; last_at: its last
//!                                       message's time, Unix ms)
//! claimed support=ID shop=S customer=NAME agent=NAME
//!                                       to staff: AGENT answers the conversation now
//!                                       (only it is sent its messages)
//! released support=ID shop=S customer=NAME
//!                                       to staff: every staff member answers it again
//! room-message room=R from=NAME text=T  a message in a room we are in
//! broadcast from=NAME text=T            a message to everyone online
//! watching NAME online=B                /watch; presence lines for NAME follow
//! presence NAME online=B                a watched user or group co-member came or went
//! stats uptime_secs=N connections=N logged_in=N rooms=N groups=N messages_received=N
//!   messages_delivered=N received_per_sec=N delivered_per_sec=N stored_messages=N
//!   outbound_bytes_queued=N storage_bytes=N log_syncs=N log_syncs_per_sec=N
//!   log_changes_per_commit=N log_commit_p50_us=N log_commit_p99_us=N log_commit_max_us=N
//!   log_bytes=N push_queued=N push_events=N push_dropped=N push_skipped=N
//!   version=V
//!                                       /stats (one line, wrapped here), then one
//!                                       app-stats line per app the server hosts
//! app-stats app=A users=N max_users=N logged_in=N max_connections=N groups=N max_groups=N
//!   rooms=N messages_received=N
//!                                       one app's figures (limits: 0 = none); the only
//!                                       /stats answer in an app other than default
//! muted CHAT until=MS                   /mute or /group mute took effect; also one line per
//!                                       mute after push-settings. CHAT: user=NAME, group=ID
//!                                       service=NAME (a service's stored messages, muted
//!                                       by another client: chat has no command for it)
//!                                       or support=ID (likewise);
//!                                       until: Unix ms, or never (until unmuted)
//! push-settings devices=N mutes=N       /push, followed by one push-device line per device,
//!                                       then one muted line per mute (the mutes that have
//!                                       not run out)
//! push-device device=D platform=P previews=B registered=MS
//!                                       a device registered for push notifications (P:
//!                                       apns, fcm, webpush or other; B: whether its
//!                                       notifications show the start of a message)
//! notice service=NAME text=T            a service's live message
//! push DEBUG                            a push this client cannot show yet
//! typing from=NAME                      a typing notice
//! transient from=NAME text=T            any other transient message
//! online users=A,B more=B               one page of /who (next page: /who LAST)
//! renamed DISPLAY NAME
//! acked up_to=N                         the server confirmed our (automatic) inbox ack
//! acked group=ID up_to=N                ... and a group's
//! acked support=ID up_to=N              ... and a support conversation's
//! resynced after=N last=N               the server redelivers the inbox after N (a gap was
//!                                       seen, or /resync)
//! resynced group=ID after=N last=N      ... and a group
//! resynced support=ID after=N last=N    ... and a support conversation
//! unread CHAT count=N read=N last=N     a chat's unread messages (from others), how far it
//!                                       is read and its newest seq; CHAT: user=NAME,
//!                                       group=ID, service=NAME or support=ID
//! read-state chats=N read_receipts=B    /unread, followed by one unread line per chat
//! history CHAT count=N more=B           /history (and /to): this header, then N lines,
//!                                       oldest first (more: older ones are kept):
//! history-message seq=N from=NAME at=MS id=ID text=T
//!                                         as a message line (our own too: from=us);
//!                                         " deleted=true" instead of the content when
//!                                         its sender deleted it
//! history-event group=ID seq=N EVENT      a group's event, as in group-event
//! read CHAT up_to=N unread=N            the server has our read mark (after the chat was
//!                                       shown, or /read); unread: what is left
//! read-mark CHAT up_to=N unread=N       we read the chat up to N on another device
//! read-receipt reader=NAME up_to=N id=ID
//!                                       NAME read our direct messages up to N (a seq of
//!                                       NAME's inbox, as on sent lines); ID: the newest
//!                                       of ours that reaches, when known
//! history-cleared CHAT up_to=N          we cleared the chat's history on another device
//! devices count=N                       /devices, followed by N lines:
//! device name=D online=B last_seen=MS this=B
//! read-positions group=ID readers=NAME:N,NAME:N
//!                                       /group read: how far each member has read
//! logged-out                            /logout, /logout-all
//! peer NAME                             /to
//! help USAGE -- TEXT                    one per command
//! error CODE: MESSAGE                   CODE is the server's (UnknownUser, WrongPassword,
//!                                       InvalidToken, Forbidden, NotAMember, ...) or the
//!                                       client's own: Usage, UnknownCommand, Invalid,
//!                                       Offline, NoToken, TokenFile, ConnectFailed,
//!                                       Disconnected, Timeout, Protocol, RedirectLoop;
//!                                       Unavailable (a cluster node is out of reach):
//!                                       "WHAT not carried out, try again: ... (retry in
//!                                       N s)", nothing was done or stored
//! kicked REASON                         another login of this device took the session, or
//!                                       the device was removed or logged out (no reconnect)
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
mod chats;
mod commands;
mod connection;
mod inbox;
mod link;
mod render;
mod table;
mod token;
mod tui;

use app::App;
use clap::Parser;
use confab_proto::protocol::{valid_app_name, DEFAULT_APP};
use connection::Connection;
use render::{Event, Output};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use token::{valid_device, TokenStore};

#[derive(Parser, Debug)]
#[command(name = "confab-chat", version, about = "Chat with other confabd users")]
struct Args {
    /// Server address, HOST:PORT (any node of a cluster) [default: the home remembered
    /// with --user's token, else 127.0.0.1:7420].
    #[arg(long, value_name = "ADDR")]
    server: Option<String>,
    /// The app to chat in (protocol.md "Apps"); `default` is the app of a plain Hello.
    #[arg(long, value_name = "APP", default_value = DEFAULT_APP)]
    app: String,
    /// Where to remember the resume token (default: $HOME/.config/confab/token-NAME, or
    /// token-APP-NAME in an app other than default).
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Log in as NAME with the remembered token at start, no password needed.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// This client's device id (1-64 printable characters, no spaces); by default the one
    /// the token file keeps, or a new random one (`chat-` and 8 hex digits) kept there.
    #[arg(long, value_name = "NAME")]
    device: Option<String>,
    /// Line mode even on a terminal: one command per input line, one event per output line.
    #[arg(long)]
    plain: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !valid_app_name(&args.app) {
        eprintln!("confab-chat: not a valid app name: {}", args.app);
        return ExitCode::FAILURE;
    }
    if let Some(device) = args.device.as_deref().filter(|d| !valid_device(d)) {
        eprintln!("confab-chat: not a valid device id (1-64 printable characters, no spaces): {device}");
        return ExitCode::FAILURE;
    }
    let tokens = TokenStore::new(args.token_file, &args.app);
    let server = args.server.unwrap_or_else(|| remembered_home(&tokens, args.user.as_deref()));
    let (net_tx, net_rx) = crossbeam_channel::unbounded();
    let mut conn = Connection::new(net_tx, app::random_u64());
    conn.set_app(&args.app);
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if args.plain || !terminal {
        let mut app = App::new(conn, PlainOutput, tokens, &server, args.user, args.device);
        app::run(&mut app, &net_rx, spawn_line_reader(), |app, line| app.input(&line), |_| {});
    } else {
        let app = App::new(conn, tui::Screen::default(), tokens, &server, args.user, args.device);
        if let Err(e) = tui::run(app, &net_rx) {
            eprintln!("confab-chat: terminal: {e} (--plain works without one)");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Where `--user`'s token was given (in a cluster, the user's home node: going there
/// saves a redirect), or the default address. A token file that cannot be read is
/// reported when the token is used.
fn remembered_home(tokens: &TokenStore, user: Option<&str>) -> String {
    user.and_then(|user| tokens.load(user).ok().flatten())
        .and_then(|saved| saved.home)
        .unwrap_or_else(|| commands::DEFAULT_ADDR.to_string())
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
