//! Live statistics: answered to administrators and services, and logged by worker 0 at a
//! configurable interval. The server's own figures are the operator's: they go to the app
//! `default`; any other app's administrators and services get their app's figures only.

use super::context::Ctx;
use super::refusal::{Handled, Refusal};
use super::Shared;
use crate::apps::{app_of, AppEntry, DEFAULT_APP};
use crate::cluster::wire::Entry;
use crate::metrics::Metrics;
use crate::protocol::{AppFigures, ErrorCode, Reply, ServerStats};
use crate::route::{ConnId, SessionUser};
use crate::stats::StatsLine;
use log::info;

pub fn stats(ctx: &mut Ctx, conn: ConnId, request_id: u32, user: &SessionUser) -> Handled {
    if !(user.admin || user.service) {
        return Err(Refusal::new(ErrorCode::Forbidden, "statistics are for administrators and services"));
    }
    let app = app_of(&user.name);
    let reply = match app {
        DEFAULT_APP => Reply::Stats(collect(ctx.shared)?),
        app => {
            let entry = ctx.shared.apps.get(app).ok_or_else(|| Refusal::new(ErrorCode::Internal, "no app"))?;
            Reply::AppStats(figures(ctx.shared, entry))
        }
    };
    ctx.batch.reply(conn, request_id, reply, false);
    Ok(())
}

/// This node's statistics for the app `app`, as a cluster's gathered answer takes them
/// (none when they cannot be read, or the app is not hosted here).
pub fn page(shared: &Shared, app: &str) -> Option<Entry> {
    match app {
        DEFAULT_APP => collect(shared).ok().map(|stats| Entry::Stats(Box::new(stats))),
        app => shared.apps.get(app).map(|entry| Entry::AppStats(figures(shared, entry))),
    }
}

/// One app's figures now.
pub fn figures(shared: &Shared, app: &AppEntry) -> AppFigures {
    let limits = &app.limits;
    AppFigures {
        app: app.name.clone(),
        users: app.users(),
        max_users: limits.max_users,
        logged_in: app.sessions(),
        max_connections: limits.max_connections,
        groups: app.groups(),
        max_groups: limits.max_groups,
        rooms: shared.rooms.count_in(&app.name) as u64,
        messages_received: app.messages(),
    }
}

pub fn collect(shared: &Shared) -> Result<ServerStats, Refusal> {
    let metrics = &shared.metrics;
    let (received_per_sec, delivered_per_sec) = metrics.rates();
    let log = metrics.log_rates();
    Ok(ServerStats {
        version: env!("CARGO_PKG_VERSION").to_string(),
        uptime_secs: metrics.uptime().as_secs(),
        connections: Metrics::get(&metrics.connections),
        logged_in: shared.directory.count() as u64,
        rooms: shared.rooms.count() as u64,
        groups: shared.store.group_count(),
        messages_received: Metrics::get(&metrics.received),
        messages_delivered: Metrics::get(&metrics.delivered),
        received_per_sec,
        delivered_per_sec,
        stored_messages: metrics.stored_now(),
        outbound_bytes_queued: Metrics::get(&metrics.outbound_bytes),
        storage_bytes: shared.store.size_on_disk()?,
        log_syncs: Metrics::get(&metrics.log.syncs),
        log_syncs_per_sec: log.syncs_per_sec,
        log_changes_per_commit: log.changes_per_commit,
        log_commit_p50_us: log.commit_p50_us,
        log_commit_p99_us: log.commit_p99_us,
        log_commit_max_us: log.commit_max_us,
        log_bytes: metrics.log.bytes_on_disk(),
        push_queued: Metrics::get(&metrics.push_queued),
        push_events: Metrics::get(&metrics.push_events),
        push_dropped: Metrics::get(&metrics.push_dropped),
        push_skipped: Metrics::get(&metrics.push_skipped),
        apps: shared.apps.iter().map(|app| figures(shared, app)).collect(),
    })
}

/// The periodic one-line summary.
pub fn log_line(shared: &Shared) {
    if let Ok(s) = collect(shared) {
        info!("stats: {}", StatsLine(&s));
    }
}
