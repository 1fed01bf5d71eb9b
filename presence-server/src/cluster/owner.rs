//! Which live node is responsible for a tenant's background duties (the
//! history keeper): rendezvous hashing of (tenant, node) over the nodes of
//! the last heartbeat, so every node that sees the same members picks the
//! same owner, and a node joining or leaving moves only its own share.
//!
//! Nodes are named by their claim name (`ClusterHandle::node`, unique per
//! start), the name the heartbeat lists, never by the configured node id.

use std::hash::{Hash, Hasher};

use crate::hub::Hub;

/// The owner of `tid` among `nodes` (none when there is no node).
pub(crate) fn owner_among<'a>(
    tid: &str,
    nodes: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let weight = |node: &str| {
        // SipHash with fixed keys: the same on every node of one build.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (tid, node).hash(&mut h);
        h.finish()
    };
    nodes.into_iter().max_by_key(|n| (weight(n), *n))
}

/// Whether this node owns `tid` now: always on a single node; in a
/// cluster, among itself and the nodes not yet taken for dead (last
/// heartbeat at most `DEAD_AFTER_MS` old).
pub(crate) fn is_owner(hub: &Hub, tid: &str) -> bool {
    let fresh_ms = crate::cluster::tasks::DEAD_AFTER_MS;
    let Some(handle) = hub.cluster_handle() else {
        return true;
    };
    let me: &str = &handle.node;
    let now = hub.now_ms();
    let nodes = hub.cluster_nodes();
    let live = nodes
        .iter()
        .filter(|(_, beat)| now.saturating_sub(*beat) <= fresh_ms)
        .map(|(n, _)| n.as_str())
        .chain([me]);
    owner_among(tid, live) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_view_of_the_same_members_picks_the_same_owner_and_a_leaver_moves_only_its_share() {
        let nodes = ["a#1", "b#2", "c#3", "d#4"];
        let tenants: Vec<String> = (0..1_000).map(|i| format!("t{i}")).collect();
        let mut per_node = std::collections::HashMap::new();
        for t in &tenants {
            let o = owner_among(t, nodes).unwrap();
            // Listed in another order, with a repeat: the same owner.
            assert_eq!(owner_among(t, ["d#4", "c#3", "a#1", "b#2", "a#1"]), Some(o));
            *per_node.entry(o).or_insert(0) += 1;
        }
        // Spread: every node owns a fair share.
        assert!(
            per_node.values().all(|n| (150..350).contains(n)),
            "{per_node:?}"
        );
        // c leaves: only c's tenants move.
        for t in &tenants {
            let before = owner_among(t, nodes).unwrap();
            let after = owner_among(t, ["a#1", "b#2", "d#4"]).unwrap();
            assert!(
                before == "c#3" || before == after,
                "{t}: {before} -> {after}"
            );
        }
        assert_eq!(owner_among("t", std::iter::empty()), None);
    }
}
