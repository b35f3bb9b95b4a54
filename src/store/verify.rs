//! `confabd storage --verify` and the check at every start: the invariants the server
//! relies on, read from what is on disk. Each broken one is a line an operator can act on.
//!
//! - every record decodes;
//! - each log (inbox, group history) holds every sequence from just above its floor to its
//!   last, with no gap: a gap is a message lost;
//! - each membership names a group that lists the member (on a cluster node, each of its
//!   own groups: a membership of a group homed on another node is that node's to check);
//! - every inbox position and cleared mark decodes;
//! - every push setting, queued push event and read-state record decodes.
//!
//! What replaying the commit log cut at open is reported too.

use super::{decode, read_u64, SeqLog, Store, StoreResult};
use crate::protocol::GroupId;
use std::collections::HashMap;

/// What a verification found.
#[derive(Debug, Default)]
pub struct Report {
    pub accounts: u64,
    pub groups: u64,
    /// Messages above their logs' floors (history's acknowledged ones included).
    pub messages: u64,
    /// Push events not yet acknowledged by the gateway.
    pub push_events: u64,
    pub problems: Vec<String>,
}

impl Store {
    /// Checks every invariant; O(data).
    pub fn verify(&self) -> StoreResult<Report> {
        let mut report = Report::default();
        for cut in &self.log_cuts {
            report.problems.push(format!("commit log: {cut}"));
        }
        for entry in self.accounts.iter() {
            let (key, raw) = entry?;
            if let Err(e) = decode::<super::Account>("accounts", &raw) {
                report.problems.push(format!("account {}: {e}", String::from_utf8_lossy(&key)));
            }
            report.accounts += 1;
        }
        let mut members: HashMap<GroupId, Vec<String>> = HashMap::new();
        for entry in self.groups.iter() {
            let (key, raw) = entry?;
            let id = GroupId(read_u64("groups", &key)?);
            match decode::<super::GroupRecord>("groups", &raw) {
                Ok(record) => {
                    members.insert(id, record.members.into_iter().map(|m| m.username).collect());
                }
                Err(e) => report.problems.push(format!("group {id}: {e}")),
            }
            report.groups += 1;
        }
        check_log(&self.inbox, "inbox of user id", &mut report)?;
        check_log(&self.group_log, "history of group", &mut report)?;
        check_log(&self.support_log, "support conversation", &mut report)?;
        report.problems.extend(self.verify_support()?);
        report.problems.extend(self.verify_devices()?);
        report.problems.extend(self.verify_history()?);
        // A member's position beyond its group's last message is no damage: a member added
        // just before a crash that lost the newest messages (not yet durable, never
        // receipted); the server brings the position back to the history's end at load.
        for entry in self.group_acks.iter() {
            let (key, raw) = entry?;
            if key.len() < 8 || read_u64("group_acks", &raw).is_err() {
                report.problems.push(format!("a group position that does not decode: {key:?}"));
            }
        }
        let node = self.cluster_node()?;
        for entry in self.memberships.iter() {
            let (key, _) = entry?;
            let Some(split) = key.iter().position(|b| *b == 0) else {
                report.problems.push(format!("membership key without separator: {key:?}"));
                continue;
            };
            let name = String::from_utf8_lossy(&key[..split]);
            let id = GroupId(read_u64("memberships", &key[split + 1..])?);
            if node.is_some_and(|node| crate::cluster::Membership::node_of_id(id.get()) != node) {
                continue;
            }
            if !members.get(&id).is_some_and(|m| m.iter().any(|n| *n == name)) {
                report.problems.push(format!("{name} is listed in group {id}, which does not list them"));
            }
        }
        report.messages =
            self.inbox.count_messages()? + self.group_log.count_messages()? + self.support_log.count_messages()?;
        report.problems.extend(self.verify_push_prefs()?);
        report.problems.extend(self.verify_read_state()?);
        let queue = self.push_queue()?;
        report.push_events = queue.events.len() as u64;
        if queue.damaged > 0 {
            report.problems.push(format!("push queue: {} events do not decode", queue.damaged));
        }
        Ok(report)
    }
}

/// Checks one kind of log.
fn check_log(log: &SeqLog, what: &str, report: &mut Report) -> StoreResult<()> {
    let mut gaps = 0;
    log.for_each_owner(|owner, floor, seqs| {
        // Messages at or below the floor are garbage awaiting deletion: never read.
        let mut expected = floor.next();
        for (seq, decoded) in seqs.iter().copied().filter(|(s, _)| *s > floor) {
            if !decoded {
                report.problems.push(format!("{what} {owner}: message {seq} does not decode"));
            }
            if seq != expected {
                gaps += 1;
                if gaps <= 20 {
                    report.problems.push(format!(
                        "{what} {owner}: messages {expected} to {} are missing (floor {floor})",
                        seq - 1
                    ));
                }
            }
            expected = seq.next();
        }
    })?;
    if gaps > 20 {
        report.problems.push(format!("{what}: {} more gaps not listed", gaps - 20));
    }
    Ok(())
}
