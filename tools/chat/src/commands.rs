//! The parser that turns one typed line into an [`Action`], using the command table.
//!
//! A command is a row of [`COMMANDS`] (in `table.rs`): its name, its arguments, its help
//! text, and a function that builds what it does (usually a protocol request) from the
//! parsed arguments. Adding a command is adding a row; `/help` and usage errors come from
//! the table. A name may be two words (`group create`): the first word then names a family
//! of commands. A line not starting with `/` is a message to the current peer (`//` escapes
//! a leading slash).

pub use crate::table::{COMMANDS, DEFAULT_ADDR};
use confab_proto::protocol::{valid_username, Chat, ClientMsgId, Content, Conversation, MessageId, Request, Target};
use std::fmt;

/// What a line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A request for the server.
    Request(Request),
    Connect(String),
    /// Talk to this user from now on: the conversation opens (its last messages are shown
    /// and it is marked read).
    Peer(String),
    /// Show up to `count` of the chat's newest messages, oldest first.
    History {
        chat: Chat,
        count: u32,
    },
    /// Delete our message `message_id` in the chat for everyone (None: the last one of
    /// ours this client knows there).
    Delete {
        chat: Chat,
        message_id: Option<MessageId>,
    },
    /// Hide the chat's history, up to its newest message, from our devices.
    Clear(Chat),
    /// Mark the chat read up to the newest message seen in it.
    Read(Chat),
    /// Ask the server to deliver this conversation again after what was shown (the
    /// position is the app's to know).
    Resync(Conversation),
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
    /// This exact word at the end of the line, or nothing; given as the word or "".
    Flag(&'static str),
}

/// What building an action may need besides the arguments.
pub struct Context<'a> {
    pub peer: Option<&'a str>,
    /// Fresh `client_msg_id`s, unique per sender.
    pub next_msg_id: &'a mut dyn FnMut() -> ClientMsgId,
    /// The time the line was typed, Unix ms: `/mute NAME MINUTES` counts from it.
    pub now_ms: u64,
}

type Build = fn(&mut Context<'_>, &[&str]) -> Result<Action, ParseError>;

pub struct Command {
    pub name: &'static str,
    pub args: &'static [Arg],
    pub help: &'static str,
    /// Receives one string per entry of `args` ("" for a missing optional one).
    pub build: Build,
}

use Arg::{Flag, Optional, Rest, Word};

impl Command {
    pub fn usage(&self) -> String {
        let mut usage = format!("/{}", self.name);
        for arg in self.args {
            match arg {
                Arg::Word(name) | Arg::Rest(name) => usage = format!("{usage} {name}"),
                Arg::Optional(name) | Arg::Flag(name) => usage = format!("{usage} [{name}]"),
            }
        }
        usage
    }
}

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
    let (command, rest) = find_command(command_line)?;
    let args = split_args(command, rest).ok_or_else(|| ParseError::Usage(command.usage()))?;
    (command.build)(ctx, &args).map(Some)
}

/// The command a line names, by its first word or its first two, and the rest of the line.
fn find_command(line: &str) -> Result<(&'static Command, &str), ParseError> {
    let (first, rest) = split_word(line);
    let (second, tail) = split_word(rest);
    // Two words first: `/groups open` is a command of its own, `/groups` another.
    if let Some(command) = COMMANDS.iter().find(|c| c.name.split_once(' ') == Some((first, second))) {
        return Ok((command, tail));
    }
    if let Some(command) = COMMANDS.iter().find(|c| c.name == first) {
        return Ok((command, rest));
    }
    let family: Vec<&Command> =
        COMMANDS.iter().filter(|c| c.name.split_once(' ').map(|n| n.0) == Some(first)).collect();
    if let Some(command) = family.iter().find(|c| c.name.split_once(' ').map(|n| n.1) == Some(second)) {
        return Ok((command, tail));
    }
    if family.is_empty() {
        return Err(ParseError::UnknownCommand(first.to_string()));
    }
    let words: Vec<&str> = family.iter().filter_map(|c| c.name.split_once(' ').map(|n| n.1)).collect();
    Err(ParseError::Usage(format!("/{first} {} ... (see /help)", words.join("|"))))
}

/// One string per declared argument, or `None` when the words do not fit them.
fn split_args<'l>(command: &Command, mut rest: &'l str) -> Option<Vec<&'l str>> {
    // Flags come off the end first, so a Rest argument before them does not swallow them.
    let mut flags: Vec<&'static str> = Vec::new();
    loop {
        let trimmed = rest.trim_end();
        let (before, last) = trimmed.rsplit_once(char::is_whitespace).unwrap_or(("", trimmed));
        let flag = command.args.iter().find_map(|a| match a {
            Flag(word) if *word == last && !flags.contains(word) => Some(*word),
            _ => None,
        });
        match flag {
            Some(word) => {
                flags.push(word);
                rest = before;
            }
            None => break,
        }
    }
    let mut args = Vec::with_capacity(command.args.len());
    for arg in command.args {
        match arg {
            Flag(word) => args.push(if flags.contains(word) { *word } else { "" }),
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

pub fn username(name: &str) -> Result<String, ParseError> {
    if valid_username(name) {
        Ok(name.to_string())
    } else {
        Err(ParseError::Invalid(format!("{name:?} is not a username (3-32 of a-z 0-9 _ . -)")))
    }
}

pub fn peer(ctx: &Context<'_>) -> Result<String, ParseError> {
    ctx.peer.map(str::to_string).ok_or_else(|| ParseError::Invalid("no peer yet: /to NAME or /msg NAME TEXT".into()))
}

/// A stored message to a user.
pub fn message(ctx: &mut Context<'_>, to: String, text: &str) -> Action {
    stored(ctx, Target::User(to), text)
}

/// A stored message to a user or a group, with a fresh `client_msg_id`.
pub fn stored(ctx: &mut Context<'_>, to: Target, text: &str) -> Action {
    Action::Request(Request::Send {
        to,
        client_msg_id: (ctx.next_msg_id)(),
        transient: false,
        content: Content::text(text),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::TYPING;
    use crate::table::PAGE;
    use confab_proto::protocol::{Chat, GroupId, Role};

    fn run(line: &str, peer: Option<&str>) -> Result<Option<Action>, ParseError> {
        let mut next = 0;
        let mut ids = || {
            next += 1;
            ClientMsgId(next)
        };
        let mut ctx = Context { peer, next_msg_id: &mut ids, now_ms: NOW };
        parse(line, &mut ctx)
    }

    /// The clock the tests' lines are typed at.
    const NOW: u64 = 1_700_000_000_000;

    /// A send to `to`, with the id the test's counter gives the first message (or none).
    fn send(to: &str, id: u64, transient: bool, text: &str) -> Option<Action> {
        Some(Action::Request(Request::Send {
            to: Target::User(to.into()),
            client_msg_id: ClientMsgId(id),
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
            Ok(Some(Action::Request(Request::ListOnline { after: "carol".into(), limit: PAGE })))
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

    fn request(line: &str) -> Request {
        match run(line, None) {
            Ok(Some(Action::Request(request))) => request,
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn group_commands() {
        assert_eq!(request("/group create Book club"), Request::CreateGroup { name: "Book club".into(), open: false });
        assert_eq!(
            request("/group create Book club --open "),
            Request::CreateGroup { name: "Book club".into(), open: true }
        );
        assert_eq!(run("/group create --open", None), Err(ParseError::Usage("/group create NAME [--open]".into())));
        assert_eq!(
            request("/group rename 7 New  name"),
            Request::RenameGroup { group_id: GroupId(7), name: "New  name".into() }
        );
        assert_eq!(
            request("/group role 7 bob admin"),
            Request::SetRole { group_id: GroupId(7), username: "bob".into(), role: Role::Admin }
        );
        assert_eq!(request("/group leave 7"), Request::LeaveGroup { group_id: GroupId(7) });
        assert_eq!(request("/members 7"), Request::GroupMembers { group_id: GroupId(7) });
        assert_eq!(request("/groups"), Request::ListGroups);
        assert_eq!(request("/groups open"), Request::ListOpenGroups { after: GroupId(0), limit: 100 });
        assert_eq!(request("/groups open 42"), Request::ListOpenGroups { after: GroupId(42), limit: 100 });
        assert_eq!(
            request("/say 7 hello  all"),
            Request::Send {
                to: Target::Group(GroupId(7)),
                client_msg_id: ClientMsgId(1),
                transient: false,
                content: Content::text("hello  all")
            }
        );
        assert!(matches!(run("/group role 7 bob boss", None), Err(ParseError::Invalid(_))));
        assert!(matches!(run("/say seven hi", None), Err(ParseError::Invalid(_))));
        assert!(matches!(run("/group", None), Err(ParseError::Usage(u)) if u.starts_with("/group create|rename|")));
        assert!(matches!(run("/group frob 1", None), Err(ParseError::Usage(_))));
    }

    #[test]
    fn room_presence_and_admin_commands() {
        let live = |to, text: &str| Request::Send {
            to,
            client_msg_id: ClientMsgId::NONE,
            transient: true,
            content: Content::text(text),
        };
        assert_eq!(request("/join lobby"), Request::JoinRoom { room: "lobby".into() });
        assert_eq!(request("/room lobby hi  there"), live(Target::Room("lobby".into()), "hi  there"));
        assert_eq!(request("/broadcast hear ye"), live(Target::Everyone, "hear ye"));
        assert_eq!(request("/rooms"), Request::ListRooms { after: String::new(), limit: PAGE });
        assert_eq!(request("/watch bob"), Request::SubscribePresence { username: "bob".into() });
        assert_eq!(request("/stats"), Request::Stats);
        assert!(matches!(run("/join Lobby!", None), Err(ParseError::Invalid(_))));
        assert_eq!(run("/resync", None), Ok(Some(Action::Resync(Conversation::Inbox))));
        assert_eq!(run("/resync 4", None), Ok(Some(Action::Resync(Conversation::Group(GroupId(4))))));
    }

    #[test]
    fn push_commands() {
        let mute = |chat, until_ms| Request::Mute { chat, until_ms };
        let bob = || Chat::User("bob".into());
        assert_eq!(request("/mute bob"), mute(bob(), 0));
        assert_eq!(request("/mute bob 0"), mute(bob(), 0));
        assert_eq!(request("/mute bob 00"), mute(bob(), 0));
        assert_eq!(request("/mute bob 90"), mute(bob(), NOW + 90 * 60_000));
        assert_eq!(request("/group mute 7 5"), mute(Chat::Group(GroupId(7)), NOW + 5 * 60_000));
        assert_eq!(request("/group mute 7"), mute(Chat::Group(GroupId(7)), 0));
        assert_eq!(request("/unmute bob"), Request::Unmute { chat: bob() });
        assert_eq!(request("/group unmute 7"), Request::Unmute { chat: Chat::Group(GroupId(7)) });
        assert_eq!(request("/push"), Request::PushSettings);

        assert_eq!(run("/mute", None), Err(ParseError::Usage("/mute NAME [MINUTES]".into())));
        assert_eq!(run("/mute bob 5 more", None), Err(ParseError::Usage("/mute NAME [MINUTES]".into())));
        assert_eq!(run("/unmute", None), Err(ParseError::Usage("/unmute NAME".into())));
        assert_eq!(run("/group mute", None), Err(ParseError::Usage("/group mute ID [MINUTES]".into())));
        assert_eq!(run("/push now", None), Err(ParseError::Usage("/push".into())));
        for line in ["/mute Bob", "/unmute Bob", "/mute bob soon", "/mute bob -5", "/mute bob 1.5", "/group mute seven"]
        {
            assert!(matches!(run(line, None), Err(ParseError::Invalid(_))), "{line}");
        }
        // Too far to count in milliseconds since the epoch, before or after multiplying.
        assert!(matches!(run("/mute bob 99999999999999999999", None), Err(ParseError::Invalid(_))));
        assert!(matches!(run(&format!("/mute bob {}", u64::MAX / 60_000), None), Err(ParseError::Invalid(_))));
        // A number is a username to /mute (usernames may be all digits); a short one, which
        // cannot be, was probably meant as a group.
        assert_eq!(request("/mute 123"), mute(Chat::User("123".into()), 0));
        assert!(
            matches!(run("/mute 7", None), Err(ParseError::Invalid(why)) if why.ends_with("; for group 7: /group mute 7"))
        );
        assert!(
            matches!(run("/unmute 42", None), Err(ParseError::Invalid(why)) if why.ends_with(": /group unmute 42"))
        );
    }

    #[test]
    fn support_commands() {
        use confab_proto::protocol::SupportId;
        let list = |shop: &str| Request::ListSupport { shop: shop.into(), after: SupportId(0), limit: PAGE };
        assert_eq!(
            request("/shop acme where is  it?"),
            Request::Send {
                to: Target::Shop("acme".into()),
                client_msg_id: ClientMsgId(1),
                transient: false,
                content: Content::text("where is  it?")
            }
        );
        assert_eq!(request("/support acme"), list("acme"));
        assert_eq!(request("/support"), list(""));
        assert_eq!(
            request("/reply 30 on its way"),
            Request::Send {
                to: Target::Support(SupportId(30)),
                client_msg_id: ClientMsgId(1),
                transient: false,
                content: Content::text("on its way")
            }
        );
        assert_eq!(request("/claim 30"), Request::ClaimSupport { conversation: SupportId(30) });
        assert_eq!(
            request("/handover 30 carol"),
            Request::HandOverSupport { conversation: SupportId(30), to: "carol".into() }
        );
        assert_eq!(request("/release 30"), Request::ReleaseSupport { conversation: SupportId(30) });
        assert_eq!(run("/shop acme", None), Err(ParseError::Usage("/shop NAME TEXT".into())));
        for line in ["/shop Acme! hi", "/claim thirty", "/reply x hi", "/handover 30 Carol", "/support A"] {
            assert!(matches!(run(line, None), Err(ParseError::Invalid(_))), "{line}");
        }
    }

    #[test]
    fn history_read_and_device_commands() {
        use crate::table::HISTORY_DEFAULT;
        use confab_proto::protocol::GroupId;
        let bob = || Chat::User("bob".into());
        let action = |line| run(line, None).expect(line).expect(line);
        assert_eq!(action("/history bob"), Action::History { chat: bob(), count: HISTORY_DEFAULT });
        assert_eq!(action("/history bob 5"), Action::History { chat: bob(), count: 5 });
        assert_eq!(action("/group history 9 50"), Action::History { chat: Chat::Group(GroupId(9)), count: 50 });
        assert_eq!(action("/delete bob"), Action::Delete { chat: bob(), message_id: None });
        assert_eq!(action("/delete bob 78"), Action::Delete { chat: bob(), message_id: Some(MessageId(78)) });
        assert_eq!(
            action("/group delete-message 9 80"),
            Action::Delete { chat: Chat::Group(GroupId(9)), message_id: Some(MessageId(80)) }
        );
        assert_eq!(action("/clear bob"), Action::Clear(bob()));
        assert_eq!(action("/group clear 9"), Action::Clear(Chat::Group(GroupId(9))));
        assert_eq!(action("/read bob"), Action::Read(bob()));
        assert_eq!(action("/group mark-read 9"), Action::Read(Chat::Group(GroupId(9))));
        assert_eq!(request("/unread"), Request::ReadState);
        assert_eq!(request("/receipts off"), Request::SetReadReceipts { enabled: false });
        assert_eq!(request("/receipts on"), Request::SetReadReceipts { enabled: true });
        assert_eq!(request("/group read 9"), Request::ReadPositions { group_id: GroupId(9) });
        assert_eq!(request("/devices"), Request::ListDevices);
        assert_eq!(request("/device-remove phone"), Request::RemoveDevice { device: "phone".into() });
        assert_eq!(request("/logout-all"), Request::LogoutEverywhere);
        for line in ["/history bob 0", "/history bob 1001", "/history Bob", "/delete bob x", "/receipts maybe"] {
            assert!(matches!(run(line, None), Err(ParseError::Invalid(_))), "{line}");
        }
        assert_eq!(run("/clear", None), Err(ParseError::Usage("/clear NAME".into())));
        assert_eq!(run("/history bob 5 6", None), Err(ParseError::Usage("/history NAME [N]".into())));
    }

    #[test]
    fn every_command_has_help_and_a_unique_name() {
        for (i, command) in COMMANDS.iter().enumerate() {
            assert!(!command.help.is_empty(), "{}", command.name);
            assert!(COMMANDS[i + 1..].iter().all(|c| c.name != command.name));
        }
    }
}
