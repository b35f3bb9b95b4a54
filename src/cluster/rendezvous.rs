//! Which node is a name's home: rendezvous (highest-random-weight) hashing over the node
//! list. Every node computes the same answer from the same list with no coordination, and
//! when a node is added only the names whose new top score is that node move (about one in
//! N), which is what makes adding a node a bounded migration rather than a reshuffle.

/// The home of `name` among `nodes` (node ids; the order does not matter). `None` only
/// when the list is empty.
pub fn home_of(name: &str, nodes: &[u32]) -> Option<u32> {
    // Ties (astronomically unlikely with 64-bit scores) go to the lower id, so the answer
    // never depends on the list's order.
    nodes.iter().copied().max_by_key(|&node| (score(name, node), std::cmp::Reverse(node)))
}

/// The name's weight on `node`: FNV-1a of the node id and the name, then a 64-bit
/// finaliser (FNV alone mixes its last bytes poorly, and the node id would be those).
fn score(name: &str, node: u32) -> u64 {
    let mut hash: u64 = 0xcbf29ce484222325;
    for b in node.to_be_bytes().iter().chain(name.as_bytes()) {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    mix(hash)
}

/// splitmix64's finaliser: every input bit affects every output bit.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58476d1ce4e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d049bb133111eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_of_the_list_does_not_matter() {
        for i in 0..200 {
            let name = format!("user{i}");
            assert_eq!(home_of(&name, &[1, 2, 3]), home_of(&name, &[3, 1, 2]));
        }
        assert_eq!(home_of("alice", &[]), None);
        assert_eq!(home_of("alice", &[7]), Some(7));
    }

    #[test]
    fn names_spread_over_the_nodes() {
        let mut counts = [0usize; 3];
        for i in 0..3000 {
            let home = home_of(&format!("user{i}"), &[1, 2, 3]).expect("a home");
            counts[home as usize - 1] += 1;
        }
        for count in counts {
            assert!((800..1200).contains(&count), "an uneven spread: {counts:?}");
        }
    }

    #[test]
    fn adding_a_node_moves_only_names_to_it() {
        let (mut moved, total) = (0, 4000);
        for i in 0..total {
            let name = format!("user{i}");
            let before = home_of(&name, &[1, 2, 3]).expect("a home");
            let after = home_of(&name, &[1, 2, 3, 4]).expect("a home");
            if before != after {
                assert_eq!(after, 4, "{name} moved between old nodes");
                moved += 1;
            }
        }
        assert!((800..1200).contains(&moved), "about a quarter should move, {moved} of {total} did");
    }
}
