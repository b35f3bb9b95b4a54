//! The cluster's statistics from every node's: what `Stats` answers on a cluster node.
//!
//! Counts, gauges and rates add up (connections, messages, bytes, per-second figures); a
//! commit's latency is each node's own, so the cluster's percentile is the worst node's (a
//! sum or a mean would hide the slow node an operator is looking for); the uptime is the
//! youngest node's (the cluster has been whole since then), the version the answering
//! node's. An app's figures add up by app name (each node counts its own users and keeps
//! its own limits, so a limit adds up to the cluster's).

use crate::protocol::{AppFigures, ServerStats};

/// `a` and `b` (two nodes' statistics, or the cluster's so far and one more node's) as one.
pub fn merge(mut a: ServerStats, b: ServerStats) -> ServerStats {
    // Changes per commit: a mean over both nodes' commits (per second), not a sum.
    let commits = a.log_syncs_per_sec + b.log_syncs_per_sec;
    a.log_changes_per_commit = match commits {
        0 => a.log_changes_per_commit.max(b.log_changes_per_commit),
        _ => {
            (a.log_changes_per_commit * a.log_syncs_per_sec + b.log_changes_per_commit * b.log_syncs_per_sec) / commits
        }
    };
    a.uptime_secs = a.uptime_secs.min(b.uptime_secs);
    a.connections += b.connections;
    a.logged_in += b.logged_in;
    a.rooms += b.rooms;
    a.groups += b.groups;
    a.messages_received += b.messages_received;
    a.messages_delivered += b.messages_delivered;
    a.received_per_sec += b.received_per_sec;
    a.delivered_per_sec += b.delivered_per_sec;
    a.stored_messages += b.stored_messages;
    a.outbound_bytes_queued += b.outbound_bytes_queued;
    a.storage_bytes += b.storage_bytes;
    a.log_syncs += b.log_syncs;
    a.log_syncs_per_sec += b.log_syncs_per_sec;
    a.log_commit_p50_us = a.log_commit_p50_us.max(b.log_commit_p50_us);
    a.log_commit_p99_us = a.log_commit_p99_us.max(b.log_commit_p99_us);
    a.log_commit_max_us = a.log_commit_max_us.max(b.log_commit_max_us);
    a.log_bytes += b.log_bytes;
    a.push_queued += b.push_queued;
    a.push_events += b.push_events;
    a.push_dropped += b.push_dropped;
    a.push_skipped += b.push_skipped;
    for app in b.apps {
        match a.apps.iter_mut().find(|mine| mine.app == app.app) {
            Some(mine) => *mine = merge_app(mine.clone(), app),
            None => a.apps.push(app),
        }
    }
    a.apps.sort_by(|x, y| x.app.cmp(&y.app));
    a
}

/// One app's figures on two nodes as one.
pub fn merge_app(mut a: AppFigures, b: AppFigures) -> AppFigures {
    a.users += b.users;
    a.max_users += b.max_users;
    a.logged_in += b.logged_in;
    a.max_connections += b.max_connections;
    a.groups += b.groups;
    a.max_groups += b.max_groups;
    a.rooms += b.rooms;
    a.messages_received += b.messages_received;
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(name: &str, users: u64) -> AppFigures {
        AppFigures {
            app: name.into(),
            users,
            max_users: 100,
            logged_in: 1,
            max_connections: 0,
            groups: 2,
            max_groups: 0,
            rooms: 0,
            messages_received: 10,
        }
    }

    #[test]
    fn counts_add_up_latencies_take_the_worst_node() {
        let one = ServerStats {
            version: "1".into(),
            uptime_secs: 100,
            connections: 10,
            log_syncs_per_sec: 100,
            log_changes_per_commit: 4,
            log_commit_p99_us: 900,
            apps: vec![app("default", 3), app("acme", 1)],
            ..ServerStats::default()
        };
        let two = ServerStats {
            version: "2".into(),
            uptime_secs: 50,
            connections: 5,
            log_syncs_per_sec: 300,
            log_changes_per_commit: 8,
            log_commit_p99_us: 400,
            apps: vec![app("default", 4), app("zeta", 2)],
            ..ServerStats::default()
        };
        let both = merge(one, two);
        assert_eq!((both.version.as_str(), both.uptime_secs, both.connections), ("1", 50, 15));
        assert_eq!((both.log_syncs_per_sec, both.log_changes_per_commit, both.log_commit_p99_us), (400, 7, 900));
        let apps: Vec<(&str, u64, u64)> = both.apps.iter().map(|a| (a.app.as_str(), a.users, a.max_users)).collect();
        assert_eq!(apps, vec![("acme", 1, 100), ("default", 7, 200), ("zeta", 2, 100)]);
    }
}
