//! `least_conn`: the untried node with the fewest active connections per unit of weight, with
//! counters that outlive config snapshots.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::NodeSpec;

/// One active-connection counter per node, shared by every snapshot that has the same
/// `host:port`, so connections opened under an older snapshot keep counting until they close.
#[derive(Debug)]
pub(crate) struct Counters {
    by_node: Box<[Arc<AtomicUsize>]>,
}

impl Counters {
    /// Counters for `nodes`, reusing `previous`'s counter of every node with the same address.
    /// Nodes repeated within `nodes` share one counter: they are the same backend.
    pub(crate) fn new(nodes: &[NodeSpec], previous: Option<(&[NodeSpec], &Counters)>) -> Counters {
        let mut known: HashMap<String, Arc<AtomicUsize>> = HashMap::new();
        if let Some((old_nodes, old)) = previous {
            for (node, counter) in old_nodes.iter().zip(old.by_node.iter()) {
                known.insert(node.address(), Arc::clone(counter));
            }
        }
        let by_node = nodes
            .iter()
            .map(|node| Arc::clone(known.entry(node.address()).or_default()))
            .collect();
        Counters { by_node }
    }

    pub(crate) fn get(&self, index: usize) -> &Arc<AtomicUsize> {
        &self.by_node[index]
    }

    /// The `usable` (untried, healthy) member with weight > 0 and the lowest
    /// `(1 + active) / weight`; ties go to the lowest index. Scores are compared by
    /// cross-multiplication to stay exact.
    pub(crate) fn pick(
        &self,
        nodes: &[NodeSpec],
        members: &[usize],
        usable: impl Fn(usize) -> bool,
    ) -> Option<usize> {
        let mut best: Option<(usize, u128, u128)> = None;
        for &member in members {
            let weight = u128::from(nodes[member].weight);
            if weight == 0 || !usable(member) {
                continue;
            }
            let load = 1 + self.by_node[member].load(Ordering::Relaxed) as u128;
            let better = match best {
                None => true,
                Some((_, best_load, best_weight)) => load * best_weight < best_load * weight,
            };
            if better {
                best = Some((member, load, weight));
            }
        }
        best.map(|(member, _, _)| member)
    }
}

#[cfg(test)]
mod tests {
    use super::Counters;
    use crate::{NodeSpec, Tried};
    use std::sync::atomic::Ordering;

    fn node(host: &str, weight: u32) -> NodeSpec {
        NodeSpec {
            host: host.to_owned(),
            port: 80,
            weight,
            priority: 0,
        }
    }

    #[test]
    fn lowest_score_wins_with_weight() {
        let nodes = [node("a", 1), node("b", 3), node("c", 0)];
        let counters = Counters::new(&nodes, None);
        let members = [0, 1, 2];
        // b holds 2 connections: (1+2)/3 = 1 ties with a's (1+0)/1 -> lowest index.
        counters.get(1).store(2, Ordering::Relaxed);
        assert_eq!(counters.pick(&nodes, &members, |_| true), Some(0));
        counters.get(0).store(1, Ordering::Relaxed);
        assert_eq!(counters.pick(&nodes, &members, |_| true), Some(1));
        let mut tried = Tried::default();
        tried.insert(0);
        tried.insert(1);
        assert_eq!(
            counters.pick(&nodes, &members, |n| !tried.contains(n)),
            None,
            "weight 0 never"
        );
    }

    #[test]
    fn counters_carry_over_by_address() {
        let old_nodes = [node("a", 1), node("b", 1)];
        let old = Counters::new(&old_nodes, None);
        old.get(0).store(7, Ordering::Relaxed);
        let new_nodes = [node("c", 1), node("a", 5), node("a", 2)];
        let new = Counters::new(&new_nodes, Some((&old_nodes, &old)));
        assert_eq!(new.get(0).load(Ordering::Relaxed), 0);
        assert_eq!(new.get(1).load(Ordering::Relaxed), 7);
        assert!(std::sync::Arc::ptr_eq(new.get(1), old.get(0)));
        assert!(std::sync::Arc::ptr_eq(new.get(1), new.get(2)));
    }
}
