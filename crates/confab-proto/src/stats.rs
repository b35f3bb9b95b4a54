//! The figures of a Stats reply as text, written once: the one-line summary the server
//! logs and clients show, and one named figure per line for scripts.

use crate::protocol::{AppFigures, ServerStats};
use std::fmt;

/// The figures of a Stats reply as text, written once for the server's log line, `confabd stats`
/// and clients (tools/chat). `{}` is the one-line summary logged every `--stats-interval`; `{:#}` is
/// one `name<TAB>value` line per figure, named as the fields of [`ServerStats`], for
/// scripts.
pub struct StatsLine<'a>(pub &'a ServerStats);

impl fmt::Display for StatsLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        if f.alternate() {
            return self.write_figures(f);
        }
        write!(
            f,
            "up {}s, {} connections, {} logged in, {} rooms, {} groups, received {} ({}/s), delivered {} ({}/s), \
             {} stored undelivered, {} B queued out, {} B on disk; commit log: {} syncs/s, {} changes per commit, \
             commit p50/p99/max {}/{}/{} us, {} B of segments; push: {} queued, {} made, {} dropped, {} skipped",
            s.uptime_secs,
            s.connections,
            s.logged_in,
            s.rooms,
            s.groups,
            s.messages_received,
            s.received_per_sec,
            s.messages_delivered,
            s.delivered_per_sec,
            s.stored_messages,
            s.outbound_bytes_queued,
            s.storage_bytes,
            s.log_syncs_per_sec,
            s.log_changes_per_commit,
            s.log_commit_p50_us,
            s.log_commit_p99_us,
            s.log_commit_max_us,
            s.log_bytes,
            s.push_queued,
            s.push_events,
            s.push_dropped,
            s.push_skipped
        )?;
        // A server may host many apps: the summary line names the first few; the
        // alternate form lists every one.
        for app in s.apps.iter().take(SUMMARY_APPS) {
            write!(f, "; {}", AppLine(app))?;
        }
        if s.apps.len() > SUMMARY_APPS {
            write!(f, "; {} more apps", s.apps.len() - SUMMARY_APPS)?;
        }
        Ok(())
    }
}

/// Apps named in the one-line summary at most (it is logged every `--stats-interval`).
const SUMMARY_APPS: usize = 10;

/// One app's figures as text: `{}` is a summary (a limit shows as `/N`), `{:#}` one
/// `app.NAME.figure<TAB>value` line per figure, for scripts.
pub struct AppLine<'a>(pub &'a AppFigures);

impl fmt::Display for AppLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        if f.alternate() {
            for (name, value) in a.figures() {
                writeln!(f, "app.{}.{name}\t{value}", a.app)?;
            }
            return Ok(());
        }
        let limit = |max: u64| if max == 0 { String::new() } else { format!("/{max}") };
        write!(
            f,
            "app {}: {}{} users, {}{} logged in, {}{} groups, {} rooms, received {}",
            a.app,
            a.users,
            limit(a.max_users),
            a.logged_in,
            limit(a.max_connections),
            a.groups,
            limit(a.max_groups),
            a.rooms,
            a.messages_received
        )
    }
}

impl AppFigures {
    /// Every figure but the name, by its field name, in the order of the fields.
    pub fn figures(&self) -> [(&'static str, u64); 8] {
        let a = self;
        [
            ("users", a.users),
            ("max_users", a.max_users),
            ("logged_in", a.logged_in),
            ("max_connections", a.max_connections),
            ("groups", a.groups),
            ("max_groups", a.max_groups),
            ("rooms", a.rooms),
            ("messages_received", a.messages_received),
        ]
    }
}

impl StatsLine<'_> {
    fn write_figures(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "version\t{}", self.0.version)?;
        for (name, value) in self.0.figures() {
            writeln!(f, "{name}\t{value}")?;
        }
        for app in &self.0.apps {
            write!(f, "{:#}", AppLine(app))?;
        }
        Ok(())
    }
}

impl ServerStats {
    /// Every figure but the version, by its field name, in the order of the fields.
    pub fn figures(&self) -> [(&'static str, u64); 23] {
        let s = self;
        [
            ("uptime_secs", s.uptime_secs),
            ("connections", s.connections),
            ("logged_in", s.logged_in),
            ("rooms", s.rooms),
            ("groups", s.groups),
            ("messages_received", s.messages_received),
            ("messages_delivered", s.messages_delivered),
            ("received_per_sec", s.received_per_sec),
            ("delivered_per_sec", s.delivered_per_sec),
            ("stored_messages", s.stored_messages),
            ("outbound_bytes_queued", s.outbound_bytes_queued),
            ("storage_bytes", s.storage_bytes),
            ("log_syncs", s.log_syncs),
            ("log_syncs_per_sec", s.log_syncs_per_sec),
            ("log_changes_per_commit", s.log_changes_per_commit),
            ("log_commit_p50_us", s.log_commit_p50_us),
            ("log_commit_p99_us", s.log_commit_p99_us),
            ("log_commit_max_us", s.log_commit_max_us),
            ("log_bytes", s.log_bytes),
            ("push_queued", s.push_queued),
            ("push_events", s.push_events),
            ("push_dropped", s.push_dropped),
            ("push_skipped", s.push_skipped),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The figures of protocol.md's `stats-reply` vector.
    fn sample_stats() -> ServerStats {
        ServerStats {
            version: "0.1.0".into(),
            uptime_secs: 3600,
            connections: 4,
            logged_in: 3,
            rooms: 1,
            groups: 2,
            messages_received: 1000,
            messages_delivered: 2500,
            received_per_sec: 3,
            delivered_per_sec: 7,
            stored_messages: 12,
            outbound_bytes_queued: 0,
            storage_bytes: 1048576,
            log_syncs: 5000,
            log_syncs_per_sec: 250,
            log_changes_per_commit: 4,
            log_commit_p50_us: 200,
            log_commit_p99_us: 900,
            log_commit_max_us: 2000,
            log_bytes: 33554432,
            push_queued: 5,
            push_events: 40,
            push_dropped: 0,
            push_skipped: 12,
            apps: vec![AppFigures {
                app: "acme".into(),
                users: 40,
                max_users: 100,
                logged_in: 3,
                max_connections: 50,
                groups: 2,
                max_groups: 0,
                rooms: 1,
                messages_received: 600,
            }],
        }
    }

    #[test]
    fn the_stats_line_reads_every_figure_in_its_place() {
        assert_eq!(
            StatsLine(&sample_stats()).to_string(),
            "up 3600s, 4 connections, 3 logged in, 1 rooms, 2 groups, received 1000 (3/s), delivered 2500 (7/s), \
             12 stored undelivered, 0 B queued out, 1048576 B on disk; commit log: 250 syncs/s, 4 changes per \
             commit, commit p50/p99/max 200/900/2000 us, 33554432 B of segments; push: 5 queued, 40 made, 0 dropped, 12 \
             skipped; app acme: 40/100 users, 3/50 logged in, 2 groups, 1 rooms, received 600"
        );
    }

    #[test]
    fn the_summary_names_a_few_apps_and_counts_the_rest() {
        let mut stats = sample_stats();
        let app = stats.apps[0].clone();
        stats.apps = (0..12).map(|i| AppFigures { app: format!("app{i:02}"), ..app.clone() }).collect();
        let line = StatsLine(&stats).to_string();
        assert!(line.contains("; app app09: ") && !line.contains("app app10"), "{line}");
        assert!(line.ends_with("; 2 more apps"), "{line}");
        assert_eq!(format!("{:#}", StatsLine(&stats)).matches(".users\t").count(), 12, "the alternate form lists all");
    }

    #[test]
    fn the_alternate_form_is_one_named_figure_a_line() {
        let table = format!("{:#}", StatsLine(&sample_stats()));
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 32, "{table}");
        assert_eq!(lines[..3], ["version\t0.1.0", "uptime_secs\t3600", "connections\t4"]);
        assert_eq!(lines[19], "log_bytes\t33554432");
        assert_eq!(lines[22], "push_dropped\t0");
        assert_eq!(lines[23], "push_skipped\t12");
        assert_eq!(lines[24], "app.acme.users\t40");
        assert_eq!(lines[31], "app.acme.messages_received\t600");
        assert!(table.ends_with('\n'));
    }
}
