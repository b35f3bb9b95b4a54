//! The full-screen terminal UI: a scrollback of events above a status bar and an input
//! line, drawn with ratatui. The [`App`] owns the [`Screen`] as its output, so the key
//! handler and the drawing both reach it through the app.
//!
//! Keys: Enter sends the line; Left/Right/Home/End (Ctrl-A/E) move; Backspace/Delete,
//! Ctrl-U (to the start) and Ctrl-W (a word) erase; Up/Down recall earlier lines;
//! PageUp/PageDown scroll; Ctrl-C, or Ctrl-D on an empty line, quits.

use crate::app::{self, App};
use crate::connection::NetEvent;
use crate::render::{self, Event, Output, Tone};
use crossbeam_channel::Receiver;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Position};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Paragraph, Wrap};
use ratatui::DefaultTerminal;
use std::collections::VecDeque;
use std::io;

/// Scrollback kept; older lines are dropped.
const MAX_LINES: usize = 5000;
const MAX_HISTORY: usize = 500;

/// What is on screen besides the status bar: the scrollback and the line being typed.
#[derive(Default)]
pub struct Screen {
    lines: VecDeque<(Tone, String)>,
    input: Vec<char>,
    /// Insertion point, in characters.
    cursor: usize,
    history: Vec<String>,
    /// Index into `history` while recalling with Up/Down.
    recalled: Option<usize>,
    /// Wrapped lines scrolled up from the bottom.
    scroll: usize,
}

impl Output for Screen {
    fn emit(&mut self, event: Event) {
        if render::is_housekeeping(&event) {
            return;
        }
        if self.lines.len() == MAX_LINES {
            self.lines.pop_front();
        }
        self.lines.push_back((render::tone(&event), render::pretty(&event)));
    }
}

/// Runs the UI until the user quits. Errors only if the terminal cannot be set up or drawn.
pub fn run(mut app: App<Screen>, net: &Receiver<NetEvent>) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    app.output_mut().emit(Event::Help { usage: "/help".into(), text: "lists the commands; Ctrl-C quits".into() });
    let keys = spawn_key_reader();
    let mut failure = None;
    app::run(&mut app, net, keys, handle, |app| {
        if failure.is_none() {
            if let Err(e) = draw(&mut terminal, app) {
                failure = Some(e);
                app.quit();
            }
        }
    });
    ratatui::try_restore()?;
    failure.map_or(Ok(()), Err)
}

/// Terminal events on their own thread; the channel closes if the terminal goes away.
fn spawn_key_reader() -> Receiver<TermEvent> {
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::spawn(move || {
        while let Ok(event) = event::read() {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

fn handle(app: &mut App<Screen>, event: TermEvent) {
    let TermEvent::Key(key) = event else {
        // Resizes and the like: the redraw after every event handles them.
        return;
    };
    if key.kind == KeyEventKind::Release {
        return;
    }
    if let Some(line) = edit(app.output_mut(), key) {
        app.input(&line);
    }
}

/// Applies one key to the screen's input line; returns a line to act on, if any.
fn edit(screen: &mut Screen, key: KeyEvent) -> Option<String> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    match key.code {
        KeyCode::Enter => {
            let line: String = screen.input.drain(..).collect();
            screen.cursor = 0;
            screen.recalled = None;
            screen.scroll = 0;
            let secret = secret_start(&line).is_some();
            if !secret && !line.trim().is_empty() && screen.history.last() != Some(&line) {
                if screen.history.len() == MAX_HISTORY {
                    screen.history.remove(0);
                }
                screen.history.push(line.clone());
            }
            return Some(line);
        }
        KeyCode::Char('c') if ctrl => return Some("/quit".into()),
        KeyCode::Char('d') if ctrl && screen.input.is_empty() => return Some("/quit".into()),
        KeyCode::Char('a') if ctrl => screen.cursor = 0,
        KeyCode::Char('e') if ctrl => screen.cursor = screen.input.len(),
        KeyCode::Char('u') if ctrl => {
            screen.input.drain(..screen.cursor);
            screen.cursor = 0;
        }
        KeyCode::Char('w') if ctrl => {
            let mut start = screen.cursor;
            while start > 0 && screen.input[start - 1] == ' ' {
                start -= 1;
            }
            while start > 0 && screen.input[start - 1] != ' ' {
                start -= 1;
            }
            screen.input.drain(start..screen.cursor);
            screen.cursor = start;
        }
        KeyCode::Char(c) if !ctrl => {
            screen.input.insert(screen.cursor, c);
            screen.cursor += 1;
        }
        KeyCode::Backspace if screen.cursor > 0 => {
            screen.cursor -= 1;
            screen.input.remove(screen.cursor);
        }
        KeyCode::Delete if screen.cursor < screen.input.len() => {
            screen.input.remove(screen.cursor);
        }
        KeyCode::Left => screen.cursor = screen.cursor.saturating_sub(1),
        KeyCode::Right => screen.cursor = (screen.cursor + 1).min(screen.input.len()),
        KeyCode::Home => screen.cursor = 0,
        KeyCode::End => screen.cursor = screen.input.len(),
        KeyCode::Up => recall(screen, -1),
        KeyCode::Down => recall(screen, 1),
        KeyCode::PageUp => screen.scroll += 10,
        KeyCode::PageDown => screen.scroll = screen.scroll.saturating_sub(10),
        _ => {}
    }
    None
}

/// Steps through earlier lines; stepping past the newest gives an empty line.
fn recall(screen: &mut Screen, step: isize) {
    let len = screen.history.len();
    let next = match (screen.recalled, step < 0) {
        (None, true) if len > 0 => Some(len - 1),
        (None, _) => None,
        (Some(i), true) => Some(i.saturating_sub(1)),
        (Some(i), false) if i + 1 < len => Some(i + 1),
        (Some(_), false) => None,
    };
    screen.recalled = next;
    screen.input = next.map_or_else(Vec::new, |i| screen.history[i].chars().collect());
    screen.cursor = screen.input.len();
}

fn draw(terminal: &mut DefaultTerminal, app: &mut App<Screen>) -> io::Result<()> {
    let status = status_line(app);
    let screen = app.output_mut();
    terminal.draw(|frame| {
        let [log_area, status_area, input_area] =
            Layout::vertical([Constraint::Min(1), Constraint::Length(1), Constraint::Length(1)]).areas(frame.area());

        let lines: Vec<Line> =
            screen.lines.iter().map(|(tone, text)| Line::styled(text.as_str(), style(*tone))).collect();
        let log = Paragraph::new(lines).wrap(Wrap { trim: false });
        let bottom = log.line_count(log_area.width).saturating_sub(usize::from(log_area.height));
        screen.scroll = screen.scroll.min(bottom);
        let top = u16::try_from(bottom - screen.scroll).unwrap_or(u16::MAX);
        frame.render_widget(log.scroll((top, 0)), log_area);

        let bar = Style::default().bg(Color::Blue).fg(Color::White);
        frame.render_widget(Paragraph::new(status).style(bar), status_area);

        // Keep the cursor in view on a line longer than the screen.
        let width = usize::from(input_area.width.saturating_sub(3)).max(1);
        let first = screen.cursor.saturating_sub(width);
        let hide_from = secret_start(&screen.input.iter().collect::<String>());
        let shown: String = (first..screen.input.len())
            .take(width + 1)
            .map(|i| match hide_from {
                Some(start) if i >= start => '*',
                _ => screen.input[i],
            })
            .collect();
        frame.render_widget(Paragraph::new(format!("> {shown}")), input_area);
        let x = input_area.x + 2 + u16::try_from(screen.cursor - first).unwrap_or(0);
        frame.set_cursor_position(Position::new(x, input_area.y));
    })?;
    Ok(())
}

/// Where the password starts (in characters) in a /login or /register line, so it is
/// neither shown nor kept in the history.
fn secret_start(line: &str) -> Option<usize> {
    let (command, rest) = line.split_once(' ')?;
    if command != "/login" && command != "/register" {
        return None;
    }
    let name_start = rest.len() - rest.trim_start().len();
    let name_end = rest[name_start..].find(' ').map_or(rest.len(), |i| name_start + i);
    Some(line[..command.len() + 1 + name_end].chars().count() + 1)
}

fn status_line(app: &App<Screen>) -> String {
    let status = app.status();
    let who = status.user.unwrap_or("not logged in");
    let peer = status.peer.map_or_else(|| " (/to NAME to pick a peer)".to_string(), |p| format!(" → {p}"));
    let link = if status.connected { "connected" } else { "offline" };
    format!(" {who}{peer} · {} {link}", status.addr)
}

fn style(tone: Tone) -> Style {
    match tone {
        Tone::Incoming => Style::default(),
        Tone::Own => Style::default().fg(Color::Cyan),
        Tone::Notice => Style::default().fg(Color::DarkGray),
        Tone::Alert => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn ctrl(c: char) -> KeyEvent {
        KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn typed(screen: &mut Screen, text: &str) {
        for c in text.chars() {
            assert_eq!(edit(screen, key(KeyCode::Char(c))), None);
        }
    }

    #[test]
    fn editing_and_history() {
        let mut screen = Screen::default();
        typed(&mut screen, "helo world");
        for _ in 0..7 {
            edit(&mut screen, key(KeyCode::Left));
        }
        typed(&mut screen, "l");
        assert_eq!(edit(&mut screen, key(KeyCode::Enter)), Some("hello world".into()));
        typed(&mut screen, "/msg bob hi there");
        edit(&mut screen, ctrl('w'));
        assert_eq!(screen.input.iter().collect::<String>(), "/msg bob hi ");
        edit(&mut screen, ctrl('u'));
        assert!(screen.input.is_empty());
        edit(&mut screen, key(KeyCode::Up));
        assert_eq!(screen.input.iter().collect::<String>(), "hello world");
        edit(&mut screen, key(KeyCode::Down));
        assert!(screen.input.is_empty());
        assert_eq!(edit(&mut screen, ctrl('d')), Some("/quit".into()));
    }

    #[test]
    fn passwords_are_masked_and_not_remembered() {
        assert_eq!(secret_start("/login alice hunter22"), Some(13));
        assert_eq!(secret_start("/register bob x"), Some(14));
        assert_eq!(secret_start("/msg bob hi"), None);
        assert_eq!(secret_start("/login"), None);
        let mut screen = Screen::default();
        typed(&mut screen, "/login alice hunter22");
        edit(&mut screen, key(KeyCode::Enter));
        assert!(screen.history.is_empty());
    }
}
