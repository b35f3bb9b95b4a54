//! Which node of a cluster each client ended on (its home, protocol.md "Cluster"), so
//! that a delivery's latency can be told apart by whether sender and recipient share a
//! node (`same-node`) or the message crossed between nodes (`cross-node`), and the
//! report can say how the clients were spread. Against one server none of this shows.

use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

/// The latency of deliveries between clients on one node.
pub const SAME_NODE: &str = "same-node";
/// The latency of deliveries from a client on one node to a client on another.
pub const CROSS_NODE: &str = "cross-node";

/// Per client, its node's address: written once by the thread that set the client up,
/// read by every thread that delivers to or from it.
pub struct Homes(Vec<OnceLock<SocketAddr>>);

impl Homes {
    pub fn new(clients: usize) -> Self {
        Homes((0..clients).map(|_| OnceLock::new()).collect())
    }

    /// Client `g` is on `addr` for the rest of the run (reconnects go to the same home).
    pub fn set(&self, g: usize, addr: SocketAddr) {
        if let Some(slot) = self.0.get(g) {
            // Set once, after the client's setup; a second value cannot differ.
            let _ = slot.set(addr);
        }
    }

    /// The latency name for a message from client `a` to client `b`; None while either
    /// one's node is not known.
    pub fn between(&self, a: usize, b: usize) -> Option<&'static str> {
        let (a, b) = (self.0.get(a)?.get()?, self.0.get(b)?.get()?);
        Some(if a == b { SAME_NODE } else { CROSS_NODE })
    }

    /// Clients per node.
    pub fn census(&self) -> BTreeMap<SocketAddr, u64> {
        let mut nodes = BTreeMap::new();
        for addr in self.0.iter().filter_map(OnceLock::get) {
            *nodes.entry(*addr).or_default() += 1;
        }
        nodes
    }

    /// Whether the clients are on more than one node: only then are deliveries split.
    pub fn spread(&self) -> bool {
        self.census().len() > 1
    }
}

/// The report's `cluster` details, when the run met one (several nodes, or a redirect):
/// clients per node, redirects followed, and sends refused with `Unavailable` (each was
/// retried) out of the run's `errors`. None against one server, whose report stays as it was.
pub fn details(homes: &Homes, redirects: u64, errors: &BTreeMap<String, u64>) -> Option<Value> {
    let census = homes.census();
    if census.len() <= 1 && redirects == 0 {
        return None;
    }
    let unavailable: u64 = errors.iter().filter(|(kind, _)| kind.contains("Unavailable")).map(|(_, n)| n).sum();
    let nodes: BTreeMap<String, u64> = census.into_iter().map(|(addr, n)| (addr.to_string(), n)).collect();
    Some(json!({ "clients_per_node": nodes, "redirects": redirects, "unavailable": unavailable }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn deliveries_are_split_by_the_nodes_of_sender_and_recipient() {
        let homes = Homes::new(4);
        homes.set(0, addr(1));
        homes.set(1, addr(1));
        homes.set(2, addr(2));
        assert!(homes.spread());
        assert_eq!(homes.between(0, 1), Some(SAME_NODE));
        assert_eq!(homes.between(0, 2), Some(CROSS_NODE));
        assert_eq!(homes.between(2, 3), None, "3 was never set up");
        homes.set(2, addr(1));
        assert_eq!(homes.between(0, 2), Some(CROSS_NODE), "a home is set once");
        assert_eq!(homes.census(), BTreeMap::from([(addr(1), 2), (addr(2), 1)]));
    }

    #[test]
    fn one_server_adds_nothing_to_the_report() {
        let homes = Homes::new(2);
        homes.set(0, addr(1));
        homes.set(1, addr(1));
        assert!(!homes.spread());
        assert_eq!(details(&homes, 0, &BTreeMap::new()), None);
        let errors =
            BTreeMap::from([("send:Unavailable(retried)".to_string(), 3), ("send:RateLimited(retried)".into(), 5)]);
        let cluster = details(&homes, 2, &errors).expect("redirects show a cluster");
        assert_eq!(cluster["unavailable"], 3);
        assert_eq!(cluster["clients_per_node"]["127.0.0.1:1"], 2);
    }
}
