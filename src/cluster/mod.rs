//! Several confabd nodes over one NATS bus.
//!
//! Every user has a *home node*, chosen by rendezvous hashing of the (app-qualified)
//! username over the static node list ([`rendezvous`]); its account, inbox, positions,
//! tokens and sessions live there and nowhere else. A group is homed on the node that
//! created it (its id carries the node, see [`Membership::node_of_id`]).
//!
//! A node reaches another through [`bus`]: a thread of its own running a small tokio
//! runtime with the `async-nats` client, fed by the event loop and the workers through a
//! channel, and feeding them back through the loop's channel and waker and the workers'
//! queues. What travels is in [`wire`]. Which nodes answer is [`liveness`].
//!
//! Without `--cluster` none of this runs: no bus, no thread, ids and connection ids as on
//! a single node. docs/CLUSTER.md is the design in full.

pub mod bus;
pub mod figures;
pub mod liveness;
pub mod rendezvous;
pub mod wire;

pub use rendezvous::home_of;

use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// The cluster's name when none is given: NATS subjects start `confab.`.
pub const DEFAULT_NAME: &str = "confab";
/// How long a node waits for another's answer: a busy node commits in tens of ms, so
/// five seconds means it is stuck or gone; a person waits about that long before giving
/// up on a send anyway.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// One node of the static list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// 1..=255: it is carried in every id the node makes and every connection id it holds.
    pub id: u8,
    /// Where clients reach it: what a `Redirect` names.
    pub address: String,
}

/// The static node list, and which of its nodes this one is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Membership {
    pub me: u8,
    /// Sorted by id; ids unique.
    pub nodes: Vec<Node>,
}

/// What `--cluster` and its companions configure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    /// NATS servers to connect to (the client tries them all and reconnects by itself).
    pub urls: Vec<String>,
    /// Subject prefix, so that several clusters can share one bus.
    pub name: String,
    pub membership: Membership,
    /// How long a node waits for another's answer before telling its client
    /// `Unavailable`: longer than a busy node's commit (tens of ms) by far, shorter than
    /// a client's patience.
    pub timeout: Duration,
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum MembershipError {
    #[error("node entry `{0}` is not ID=ADDRESS (ID 1-255)")]
    Entry(String),
    #[error("node {0} is listed twice")]
    Duplicate(u8),
    #[error("this node ({0}) is not in the node list")]
    NotListed(u8),
    #[error("--node-id must be 1-255")]
    BadId,
    #[error("cannot read the node list: {0}")]
    File(String),
}

impl Membership {
    /// `list` is `1=host:port,2=host:port,...` (`--nodes`).
    pub fn parse(me: u32, list: &str) -> Result<Membership, MembershipError> {
        let entries = list.split(',').map(str::trim).filter(|e| !e.is_empty());
        Membership::from_entries(me, entries.map(|e| e.split_once('=').ok_or_else(|| MembershipError::Entry(e.into()))))
    }

    /// A node list file: one `ID ADDRESS` per line, `#` starts a comment.
    pub fn read_file(me: u32, path: &Path) -> Result<Membership, MembershipError> {
        let text =
            std::fs::read_to_string(path).map_err(|e| MembershipError::File(format!("{}: {e}", path.display())))?;
        let lines = text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty());
        Membership::from_entries(
            me,
            lines.map(|l| l.split_once(char::is_whitespace).ok_or_else(|| MembershipError::Entry(l.into()))),
        )
    }

    fn from_entries<'a>(
        me: u32,
        entries: impl Iterator<Item = Result<(&'a str, &'a str), MembershipError>>,
    ) -> Result<Membership, MembershipError> {
        let me = u8::try_from(me).ok().filter(|&id| id != 0).ok_or(MembershipError::BadId)?;
        let mut nodes = Vec::new();
        for entry in entries {
            let (id, address) = entry?;
            let (id, address) = (id.trim(), address.trim());
            let id = id.parse::<u8>().ok().filter(|&id| id != 0);
            let (Some(id), false) = (id, address.is_empty()) else {
                return Err(MembershipError::Entry(format!(
                    "{}={address}",
                    id.map_or(String::new(), |i| i.to_string())
                )));
            };
            if nodes.iter().any(|n: &Node| n.id == id) {
                return Err(MembershipError::Duplicate(id));
            }
            nodes.push(Node { id, address: address.to_string() });
        }
        nodes.sort_by_key(|n| n.id);
        if !nodes.iter().any(|n| n.id == me) {
            return Err(MembershipError::NotListed(me));
        }
        Ok(Membership { me, nodes })
    }

    pub fn ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| u32::from(n.id)).collect()
    }

    /// The home node of a user (by its app-qualified name).
    pub fn home_of(&self, username: &str) -> u8 {
        // The list is never empty (it holds this node), so there is always a home.
        home_of(username, &self.ids()).map_or(self.me, |id| id as u8)
    }

    /// The node that made `id` (a group's id: its home).
    pub fn node_of_id(id: u64) -> u8 {
        id as u8
    }

    pub fn address_of(&self, node: u8) -> Option<&str> {
        self.nodes.iter().find(|n| n.id == node).map(|n| n.address.as_str())
    }

    /// Every other node.
    pub fn others(&self) -> impl Iterator<Item = u8> + '_ {
        self.nodes.iter().map(|n| n.id).filter(move |&id| id != self.me)
    }
}

/// An id made on cluster node `node` from the store's counter value `counter`: the node in
/// the low byte, so ids made on different nodes never collide and a group's id says where
/// it lives.
pub fn node_id(counter: u64, node: u8) -> u64 {
    (counter << 8) | u64::from(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_list_parses_and_names_this_node() {
        let m = Membership::parse(2, "1=10.0.0.1:7420, 3=10.0.0.3:7420,2=10.0.0.2:7420").expect("valid");
        assert_eq!(m.ids(), vec![1, 2, 3]);
        assert_eq!(m.address_of(3), Some("10.0.0.3:7420"));
        assert_eq!(m.others().collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(Membership::parse(4, "1=a:1,2=b:2"), Err(MembershipError::NotListed(4)));
        assert_eq!(Membership::parse(1, "1=a:1,1=b:2"), Err(MembershipError::Duplicate(1)));
        assert!(matches!(Membership::parse(1, "1=a:1,x=b:2"), Err(MembershipError::Entry(_))));
        assert!(matches!(Membership::parse(1, "1=a:1,256=b:2"), Err(MembershipError::Entry(_))));
        assert!(matches!(Membership::parse(1, "1=a:1,2"), Err(MembershipError::Entry(_))));
        assert_eq!(Membership::parse(0, "1=a:1"), Err(MembershipError::BadId));
    }

    #[test]
    fn a_node_list_file_takes_comments() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nodes");
        std::fs::write(&path, "# the cluster\n1 10.0.0.1:7420\n2\t10.0.0.2:7420  # the second\n\n").expect("write");
        let m = Membership::read_file(1, &path).expect("valid");
        assert_eq!(
            m.nodes,
            vec![Node { id: 1, address: "10.0.0.1:7420".into() }, Node { id: 2, address: "10.0.0.2:7420".into() }]
        );
    }

    #[test]
    fn ids_carry_their_node() {
        let id = node_id(12345, 3);
        assert_eq!(Membership::node_of_id(id), 3);
        assert_ne!(node_id(1, 1), node_id(1, 2));
    }
}
