//! Which cluster node a data directory belongs to (`meta` key `cluster_node`), and the
//! node every id this store makes carries.
//!
//! A node's ids carry its node id (see `cluster::node_id`), so two nodes never make the
//! same user, group or message id, and a group's id says which node is its home. So a
//! data directory is one node's for good: started as another node it would make ids that
//! collide with that node's, and it would hold users that are not homed there. A
//! directory that already holds a single node's data cannot join a cluster either (its
//! ids carry no node); confabd refuses both at start and says why.

use super::{Store, StoreResult};
use crate::cluster::Membership;
use std::sync::atomic::Ordering;

const KEY: &[u8] = b"cluster_node";
const NODES: &[u8] = b"cluster_nodes";

impl Store {
    /// The cluster node this directory belongs to, if it has been one.
    pub fn cluster_node(&self) -> StoreResult<Option<u8>> {
        Ok(self.meta.get(KEY)?.and_then(|v| v.first().copied()))
    }

    /// Claims the directory for cluster node `node` (see the module's doc for what is
    /// refused), and makes every id from now on carry it.
    pub fn claim_for_node(&self, node: u8, membership: &Membership) -> Result<(), String> {
        let known = self.cluster_node().map_err(|e| e.to_string())?;
        match known {
            Some(known) if known == node => {}
            Some(known) => {
                return Err(format!(
                "this data directory belongs to cluster node {known}, not node {node}: start it with --node-id {known}"
            ))
            }
            None => {
                let holds_data = self.accounts.iter().next().is_some() || self.groups.iter().next().is_some();
                if holds_data {
                    return Err(format!(
                        "this data directory holds a single node's data, whose ids carry no node; \
                         start cluster node {node} on an empty directory"
                    ));
                }
                self.meta.insert(KEY, &[node]).map_err(|e| e.to_string())?;
                self.meta.flush().map_err(|e| e.to_string())?;
            }
        }
        // The node list as this node last ran with it: the administration commands read
        // it to tell whether a user belongs here.
        let list: Vec<String> = membership.nodes.iter().map(|n| format!("{}={}", n.id, n.address)).collect();
        self.meta.insert(NODES, list.join(",").as_bytes()).map_err(|e| e.to_string())?;
        self.id_node.store(node, Ordering::Relaxed);
        Ok(())
    }

    /// The cluster membership this directory's node last ran with, if it is a node's.
    pub fn cluster_membership(&self) -> StoreResult<Option<Membership>> {
        let (Some(node), Some(list)) = (self.cluster_node()?, self.meta.get(NODES)?) else {
            return Ok(None);
        };
        Ok(Membership::parse(u32::from(node), &String::from_utf8_lossy(&list)).ok())
    }
}
