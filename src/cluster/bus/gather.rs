//! Listings gathered from every node (who is online, the rooms, the caller's groups, a
//! service's query, the statistics): this node's part at once, every other node's by a
//! request, merged when all are in; a node that cannot answer is left out.

use super::*;

impl<W: Workers> BusState<W> {
    /// Starts gathering a listing: this node's page now, every other node's by a request.
    /// A node that is down or does not answer in time leaves its part out: a listing of
    /// who is online is worth more partial than refused.
    pub(super) async fn gather(
        &mut self,
        client: &Client,
        conn: ConnId,
        request_id: u32,
        request: Request,
        user: Option<SessionUser>,
    ) {
        let query = match self.ends.workers.query_of(&request, user.as_ref()) {
            Ok(query) => query,
            Err((code, message)) => {
                let frame = ServerFrame::error(request_id, code, message);
                return self.frames_in(vec![(conn, frame::encode(&frame))]);
            }
        };
        let token = self.next_token;
        self.next_token += 1;
        let page = self.ends.workers.page(&query);
        let payload = wire::encode(&Envelope::Query(query.clone()));
        self.gathering.insert(token, Gathering { conn, request_id, query, pages: vec![page], waiting: 0 });
        let now = mono_ms();
        let targets: Vec<u8> = self
            .handle
            .membership
            .others()
            .filter(|&node| self.connected(client) && !self.handle.liveness.is_down(node, now))
            .filter(|_| self.pending.len() < MAX_PENDING)
            .collect();
        // Every part counted before any is asked for: one that fails at once must not
        // finish the listing before the others are in.
        if let Some(g) = self.gathering.get_mut(&token) {
            g.waiting = targets.len();
        }
        for node in targets {
            let part = self.next_token;
            self.next_token += 1;
            self.pending.insert(part, Pending { conn, request_id, node, gather: Some(token) });
            self.deadlines.push_back((Instant::now() + self.config.timeout, part));
            let reply = format!("{}.node.{}.reply.{part}", self.config.name, self.me());
            let sent = client.publish_with_reply(self.subject_in(node), reply, payload.clone().into());
            if !matches!(tokio::time::timeout(PUBLISH_WAIT, sent).await, Ok(Ok(()))) {
                self.pending.remove(&part);
                self.page_came(token, None);
            }
        }
        self.finish_if_done(token);
    }

    /// A node's page of listing `token` came (None: it will not come); the answer goes
    /// once every node's part is in.
    pub(super) fn page_came(&mut self, token: u64, page: Option<Page>) {
        let Some(g) = self.gathering.get_mut(&token) else { return };
        g.waiting = g.waiting.saturating_sub(1);
        g.pages.extend(page);
        self.finish_if_done(token);
    }

    pub(super) fn finish_if_done(&mut self, token: u64) {
        if self.gathering.get(&token).is_none_or(|g| g.waiting > 0) {
            return;
        }
        let Some(g) = self.gathering.remove(&token) else { return };
        let reply = answer_of(g.query, g.pages);
        let bytes = apps_wire::encode(ServerFrame::Reply { request_id: g.request_id, reply });
        self.frames_in(vec![(g.conn, bytes)]);
    }
}

/// The answer to a gathered listing, from every node's page (the asking node's first).
fn answer_of(query: Query, pages: Vec<Page>) -> Reply {
    if let Query::Stats { .. } = query {
        return stats_of(pages);
    }
    if let Query::Groups { ids, .. } = &query {
        // In the order the caller's home lists them (its memberships).
        let mut found: HashMap<GroupId, GroupInfo> = pages
            .into_iter()
            .flat_map(|p| p.entries)
            .filter_map(|(_, entry)| match entry {
                Entry::Group(info) => Some((info.group_id, info)),
                _ => None,
            })
            .collect();
        return Reply::Groups { groups: ids.iter().filter_map(|id| found.remove(id)).collect() };
    }
    let merged = wire::merge(pages, query.limit());
    match query {
        Query::Online { .. } => Reply::Online {
            users: merged
                .entries
                .into_iter()
                .filter_map(|(username, entry)| match entry {
                    Entry::DisplayName(display_name) => Some(OnlineUser { username, display_name }),
                    _ => None,
                })
                .collect(),
            more: merged.more,
        },
        Query::Status { users } => {
            let online: std::collections::HashSet<String> = merged.entries.into_iter().map(|(name, _)| name).collect();
            Reply::OnlineStatus { online: users.iter().map(|u| online.contains(u)).collect() }
        }
        Query::Rooms { .. } | Query::Stats { .. } | Query::Groups { .. } => Reply::Rooms {
            rooms: merged
                .entries
                .into_iter()
                .filter_map(|(name, entry)| match entry {
                    Entry::Members(members) => Some(RoomInfo { name, members }),
                    _ => None,
                })
                .collect(),
            more: merged.more,
        },
    }
}

/// The cluster's statistics from every node's page: the asking node's first (its version).
fn stats_of(pages: Vec<Page>) -> Reply {
    let entries = pages.into_iter().flat_map(|p| p.entries).map(|(_, entry)| entry);
    let (mut server, mut app) = (None::<ServerStats>, None::<AppFigures>);
    for entry in entries {
        match entry {
            Entry::Stats(stats) => {
                server = Some(match server {
                    Some(sum) => figures::merge(sum, *stats),
                    None => *stats,
                })
            }
            Entry::AppStats(figures) => {
                app = Some(match app {
                    Some(sum) => figures::merge_app(sum, figures),
                    None => figures,
                })
            }
            _ => {}
        }
    }
    match (server, app) {
        (Some(server), _) => Reply::Stats(server),
        (None, Some(app)) => Reply::AppStats(app),
        (None, None) => Reply::Stats(ServerStats::default()),
    }
}
