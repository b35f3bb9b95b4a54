//! The command table and the parser that turns one typed line into an [`Action`].
//!
//! A command is a row of [`COMMANDS`]: its name, its arguments, its help text, and a
//! function that builds what it does (usually a protocol request) from the parsed
//! arguments. Adding a command is adding a row; `/help` and usage errors come from the
//! table. A line not starting with `/` is a message to the current peer (`//` escapes a
//! leading slash).

use crate::render::TYPING;
use confab::protocol::{valid_username, Content, Request, Target};
use std::fmt;

/// The server's address when neither `--server` nor `/connect ADDR` names one.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7420";
/// Who-is-online page size (the server caps it at 500).
const WHO_PAGE: u32 = 100;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A request for the server.
    Request(Request),
    Connect(String),
    /// Talk to this user from now on.
    Peer(String),
    Help,
    Quit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arg {
    /// One word.
    Word(&'static str),
    /// One word, or nothing.
    Optional(&'static str),
    /// The rest of the line, inner spaces included (a password may have them); must not
    /// be empty.
    Rest(&'static str),
}

/// What building an action may need besides the arguments.
pub struct Context<'a> {
    pub peer: Option<&'a str>,
    /// Fresh `client_msg_id`s, unique per sender.
    pub next_msg_id: &'a mut dyn FnMut() -> u64,
}

type Build = fn(&mut Context<'_>, &[&str]) -> Result<Action, ParseError>;

pub struct Command {
    pub name: &'static str,
    pub args: &'static [Arg],
    pub help: &'static str,
    /// Receives one string per entry of `args` ("" for a missing optional one).
    pub build: Build,
}

impl Command {
    pub fn usage(&self) -> String {
        let mut usage = format!("/{}", self.name);
        for arg in self.args {
            match arg {
                Arg::Word(name) | Arg::Rest(name) => usage = format!("{usage} {name}"),
                Arg::Optional(name) => usage = format!("{usage} [{name}]"),
            }
        }
        usage
    }
}

use Arg::{Optional, Rest, Word};

pub const COMMANDS: &[Command] = &[
    Command {
        name: "connect",
        args: &[Optional("ADDR")],
        help: "connect to a server (default 127.0.0.1:7420)",
        build: |_, a| {
            let addr = if a[0].is_empty() { DEFAULT_ADDR } else { a[0] };
            Ok(Action::Connect(addr.to_string()))
        },
    },
    Command {
        name: "register",
        args: &[Word("NAME"), Rest("PASSWORD")],
        help: "create an account (then /login)",
        build: |_, a| Ok(Action::Request(Request::Register { username: a[0].into(), password: a[1].into() })),
    },
    Command {
        name: "login",
        args: &[Word("NAME"), Rest("PASSWORD")],
        help: "log in; the resume token is remembered for --user",
        build: |_, a| Ok(Action::Request(Request::Login { username: a[0].into(), password: a[1].into() })),
    },
    Command {
        name: "to",
        args: &[Word("NAME")],
        help: "send the lines you type to NAME",
        build: |_, a| Ok(Action::Peer(username(a[0])?)),
    },
    Command {
        name: "msg",
        args: &[Word("NAME"), Rest("TEXT")],
        help: "send TEXT to NAME",
        build: |ctx, a| Ok(message(ctx, username(a[0])?, a[1])),
    },
    Command {
        name: "typing",
        args: &[Optional("NAME")],
        help: "tell NAME (default: your peer) you are typing",
        build: |ctx, a| {
            let to = if a[0].is_empty() { peer(ctx)? } else { username(a[0])? };
            Ok(Action::Request(Request::Send {
                to: Target::User(to),
                client_msg_id: (ctx.next_msg_id)(),
                transient: true,
                content: Content::text(TYPING),
            }))
        },
    },
    Command {
        name: "who",
        args: &[Optional("AFTER")],
        help: "list who is online (a page; /who LAST for the next)",
        build: |_, a| Ok(Action::Request(Request::ListOnline { after: a[0].into(), limit: WHO_PAGE })),
    },
    Command {
        name: "rename",
        args: &[Rest("DISPLAY NAME")],
        help: "change the name others see",
        build: |_, a| Ok(Action::Request(Request::Rename { display_name: a[0].into() })),
    },
    Command {
        name: "logout",
        args: &[],
        help: "log out and forget the resume token",
        build: |_, _| Ok(Action::Request(Request::Logout)),
    },
    Command { name: "help", args: &[], help: "this list", build: |_, _| Ok(Action::Help) },
    Command { name: "quit", args: &[], help: "finish what is under way and exit", build: |_, _| Ok(Action::Quit) },
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    UnknownCommand(String),
    /// Wrong arguments; carries the command's usage line.
    Usage(String),
    Invalid(String),
}

impl ParseError {
    /// The error code shown in line mode.
    pub fn code(&self) -> &'static str {
        match self {
            ParseError::UnknownCommand(_) => "UnknownCommand",
            ParseError::Usage(_) => "Usage",
            ParseError::Invalid(_) => "Invalid",
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::UnknownCommand(name) => write!(f, "no command /{name}; try /help"),
            ParseError::Usage(usage) => f.write_str(usage),
            ParseError::Invalid(why) => f.write_str(why),
        }
    }
}

/// Parses one line; `None` for a blank one.
pub fn parse(line: &str, ctx: &mut Context<'_>) -> Result<Option<Action>, ParseError> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(command_line) = line.strip_prefix('/').filter(|rest| !rest.starts_with('/')) else {
        // Plain text, or `//…` for text that starts with a slash.
        let text = line.strip_prefix('/').unwrap_or(line);
        let to = peer(ctx)?;
        return Ok(Some(message(ctx, to, text)));
    };
    let (name, rest) = split_word(command_line);
    let command =
        COMMANDS.iter().find(|c| c.name == name).ok_or_else(|| ParseError::UnknownCommand(name.to_string()))?;
    let args = split_args(command, rest).ok_or_else(|| ParseError::Usage(command.usage()))?;
    (command.build)(ctx, &args).map(Some)
}

/// One string per declared argument, or `None` when the words do not fit them.
fn split_args<'l>(command: &Command, mut rest: &'l str) -> Option<Vec<&'l str>> {
    let mut args = Vec::with_capacity(command.args.len());
    for arg in command.args {
        match arg {
            Word(_) => {
                let (word, tail) = split_word(rest);
                if word.is_empty() {
                    return None;
                }
                args.push(word);
                rest = tail;
            }
            Optional(_) => {
                let (word, tail) = split_word(rest);
                args.push(word);
                rest = tail;
            }
            Rest(_) => {
                let text = rest.trim();
                if text.is_empty() {
                    return None;
                }
                args.push(text);
                rest = "";
            }
        }
    }
    rest.trim().is_empty().then_some(args)
}

fn split_word(text: &str) -> (&str, &str) {
    let text = text.trim_start();
    match text.find(char::is_whitespace) {
        Some(end) => (&text[..end], &text[end..]),
        None => (text, ""),
    }
}

fn username(name: &str) -> Result<String, ParseError> {
    if valid_username(name) {
        Ok(name.to_string())
    } else {
        Err(ParseError::Invalid(format!("{name:?} is not a username (3-32 of a-z 0-9 _ . -)")))
    }
}

fn peer(ctx: &Context<'_>) -> Result<String, ParseError> {
    ctx.peer.map(str::to_string).ok_or_else(|| ParseError::Invalid("no peer yet: /to NAME or /msg NAME TEXT".into()))
}

fn message(ctx: &mut Context<'_>, to: String, text: &str) -> Action {
    Action::Request(Request::Send {
        to: Target::User(to),
        client_msg_id: (ctx.next_msg_id)(),
        transient: false,
        content: Content::text(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(line: &str, peer: Option<&str>) -> Result<Option<Action>, ParseError> {
        let mut next = 0;
        let mut ids = || {
            next += 1;
            next
        };
        let mut ctx = Context { peer, next_msg_id: &mut ids };
        parse(line, &mut ctx)
    }

    fn send(to: &str, id: u64, transient: bool, text: &str) -> Option<Action> {
        Some(Action::Request(Request::Send {
            to: Target::User(to.into()),
            client_msg_id: id,
            transient,
            content: Content::text(text),
        }))
    }

    #[test]
    fn messages_keep_their_spacing() {
        assert_eq!(run("/msg bob  hello   there ", None), Ok(send("bob", 1, false, "hello   there")));
        assert_eq!(run("hi  you", Some("bob")), Ok(send("bob", 1, false, "hi  you")));
        assert_eq!(run("//help is a path", Some("bob")), Ok(send("bob", 1, false, "/help is a path")));
    }

    #[test]
    fn optional_and_rest_arguments() {
        assert_eq!(run("/connect", None), Ok(Some(Action::Connect(DEFAULT_ADDR.into()))));
        assert_eq!(run("/connect 10.0.0.1:1", None), Ok(Some(Action::Connect("10.0.0.1:1".into()))));
        assert_eq!(
            run("/rename Alice A.", None),
            Ok(Some(Action::Request(Request::Rename { display_name: "Alice A.".into() })))
        );
        assert_eq!(run("/typing", Some("bob")), Ok(send("bob", 1, true, TYPING)));
        assert_eq!(
            run("/who carol", None),
            Ok(Some(Action::Request(Request::ListOnline { after: "carol".into(), limit: WHO_PAGE })))
        );
    }

    #[test]
    fn passwords_may_contain_spaces() {
        assert_eq!(
            run("/login alice correct horse", None),
            Ok(Some(Action::Request(Request::Login { username: "alice".into(), password: "correct horse".into() })))
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert_eq!(run("   ", None), Ok(None));
        assert_eq!(run("/nope", None), Err(ParseError::UnknownCommand("nope".into())));
        assert_eq!(run("/login alice", None), Err(ParseError::Usage("/login NAME PASSWORD".into())));
        assert_eq!(run("/logout now", None), Err(ParseError::Usage("/logout".into())));
        assert_eq!(run("/msg bob", None), Err(ParseError::Usage("/msg NAME TEXT".into())));
        assert!(matches!(run("hello", None), Err(ParseError::Invalid(_))));
        assert!(matches!(run("/to Bob", None), Err(ParseError::Invalid(_))));
    }

    #[test]
    fn every_command_has_help_and_a_unique_name() {
        for (i, command) in COMMANDS.iter().enumerate() {
            assert!(!command.help.is_empty(), "{}", command.name);
            assert!(COMMANDS[i + 1..].iter().all(|c| c.name != command.name));
        }
    }
}
