//! The progress bar: on stderr, and only when stderr is a terminal, so logs and CI output
//! stay clean.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

pub struct Progress {
    bar: ProgressBar,
    last: Instant,
}

impl Progress {
    pub fn new(len: u64, unit: &str) -> Self {
        let bar = ProgressBar::with_draw_target(
            Some(len),
            if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
        );
        let template = format!("{{elapsed:>4}} [{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar, last: Instant::now() - Duration::from_secs(1) }
    }

    pub fn hidden() -> Self {
        Progress { bar: ProgressBar::hidden(), last: Instant::now() }
    }

    /// Updates at most ten times a second; the rest of the calls cost one clock read.
    pub fn update(&mut self, pos: u64, msg: impl FnOnce() -> String) {
        if self.last.elapsed() >= Duration::from_millis(100) {
            self.last = Instant::now();
            self.bar.set_position(pos);
            self.bar.set_message(msg());
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
