//! Heartbeats and what they tell: which nodes are down, which restarted (and so took their
//! connections with them), and when to tell a node again which sessions are online in its
//! groups.

use super::*;

impl<W: Workers> BusState<W> {
    /// This node's heartbeat to every other node, on their `in` subjects: in order with
    /// everything else this node sends them, so a node's first envelope of a run is its
    /// beat, before any session of the run is announced.
    pub(super) async fn send_beats(&mut self, client: &Client) {
        if !self.connected(client) {
            return;
        }
        let payload = wire::encode(&Envelope::Beat { node: self.me(), run: self.boot });
        for node in self.handle.membership.others().collect::<Vec<_>>() {
            publish(client, self.subject_in(node), payload.clone()).await;
        }
    }

    /// Beats at once when the bus connection has just come (back) up.
    pub(super) async fn beat_if_owed(&mut self, client: &Client) {
        if self.connected(client) && self.beat_owed.swap(false, Ordering::Relaxed) {
            self.send_beats(client).await;
        }
    }

    /// Another node's heartbeat. A node heard again after it was down, or in a new run, lost
    /// what it held for this node's sessions: the workers tell it again. A new run also
    /// means its last run's connections are gone, even if it came back too quickly to be
    /// seen down: what is held here for them goes first (its beat comes before anything of
    /// the new run, so nothing held now is the new run's).
    pub(super) async fn beat(&mut self, client: &Client, node: u8, run: u64) {
        let now = mono_ms();
        if node == self.me() {
            return;
        }
        let was_down = self.handle.liveness.is_down(node, now);
        let restarted = self.boots.get(&node).is_some_and(|&known| known != run);
        self.boots.insert(node, run);
        self.handle.liveness.heard(node, now);
        if restarted && !was_down && !self.down.contains(&node) {
            info!("cluster node {node} restarted: letting go of its last run's connections");
            self.let_go_of(client, node).await;
        }
        if was_down || restarted {
            info!("cluster node {node} is back");
            self.ends.workers.reannounce(Some(node));
        }
    }

    /// Everything held here for the connections of `node` (down, or in a new run) goes.
    pub(super) async fn let_go_of(&mut self, client: &Client, node: u8) {
        self.ends.workers.node_down(node);
        let sessions = self.ends.workers.sessions_on(node);
        if !sessions.is_empty() {
            info!("ending the {} sessions of node {node}'s users held here", sessions.len());
        }
        for (conn, user) in sessions {
            self.ends.workers.session_ended(conn);
            for index in 0..self.ends.workers.count() {
                let inbound = Inbound::Closed { conn, user: user.clone(), reason: "its node is down" };
                self.hand_to_worker(client, index, inbound).await;
            }
        }
    }

    /// Once a second: a node newly known to be down took its connections with it, so the
    /// sessions of those kept here end, as if it had said so (its members' cursors stop
    /// pushing into the void, and its users count offline in the groups here). If it was
    /// only cut off, it tells again which sessions are online once it is back.
    pub(super) async fn end_sessions_of_down_nodes(&mut self, client: &Client) {
        if self.down_checked.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.down_checked = Instant::now();
        let now = mono_ms();
        let others: Vec<u8> = self.handle.membership.others().collect();
        self.down.retain(|node| self.handle.liveness.is_down(*node, now));
        for node in others {
            if self.down.contains(&node) || !self.handle.liveness.is_down(node, now) {
                continue;
            }
            self.down.push(node);
            self.let_go_of(client, node).await;
        }
    }
}

/// A number for this run of this node, told in its heartbeats: random, so a restart shows
/// however quick, whatever the clocks say.
pub(super) fn run_id() -> u64 {
    let mut bytes = [0u8; 8];
    match getrandom::getrandom(&mut bytes) {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => crate::clock::now_ms(),
    }
}
