//! `roundrobin`: APISIX's interleaved (LVS-style) weighted round robin, precomputed as one cycle
//! of picks that a shared atomic cursor walks.

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::weights;
use crate::NodeSpec;

/// Longest cycle kept. Past it, weights are scaled down proportionally (see `weights::units`),
/// so the long-run shares become approximate only for extreme weight spreads.
const SLOT_BUDGET: u64 = 1 << 16;

/// One round-robin cycle of a priority group.
#[derive(Debug)]
pub(crate) struct Schedule {
    /// Node indexes (into `Balancer::nodes`) in pick order.
    slots: Box<[u32]>,
    cursor: AtomicUsize,
}

impl Schedule {
    /// Builds the cycle over `members`. Weight-0 nodes are left out, unless every weight is 0:
    /// then APISIX rotates over all of them equally.
    pub(crate) fn new(nodes: &[NodeSpec], members: &[usize]) -> Schedule {
        let mut weights: Vec<u32> = members.iter().map(|&m| nodes[m].weight).collect();
        if weights.iter().all(|&w| w == 0) {
            weights.fill(1);
        }
        let units = weights::units(&weights, SLOT_BUDGET);
        let slots = interleave(members, &units);
        // APISIX starts each picker at a random node so that workers do not move in lockstep.
        let start = RandomState::new().hash_one(slots.len()) as usize % slots.len().max(1);
        Schedule {
            slots: slots.into_boxed_slice(),
            cursor: AtomicUsize::new(start),
        }
    }

    /// The next slot's node; when it is not `usable` (tried, or unhealthy), the first usable
    /// node from there (bounded by the cycle length, which contains every eligible node). The
    /// skipped slots are consumed too, so that usable nodes keep their weighted shares instead
    /// of the node after a skipped one taking its turns.
    pub(crate) fn pick(&self, usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let (skipped, node) = (0..len)
            .map(|step| (step, self.slots[start.wrapping_add(step) % len] as usize))
            .find(|&(_, node)| usable(node))?;
        if skipped > 0 {
            self.cursor.fetch_add(skipped, Ordering::Relaxed);
        }
        Some(node)
    }
}

/// One cycle of interleaved WRR: the current weight runs from the largest unit count down to 1,
/// and each round picks, in configured order, every node whose units reach it. A node with `u`
/// units is therefore picked `u` times per cycle, spread over the cycle's last `u` rounds.
fn interleave(members: &[usize], units: &[u32]) -> Vec<u32> {
    let mut by_units: Vec<usize> = (0..members.len()).collect();
    by_units.sort_by_key(|&i| std::cmp::Reverse(units[i]));
    let max = units.iter().copied().max().unwrap_or(0);
    let mut slots = Vec::with_capacity(units.iter().map(|&u| u as usize).sum());
    // Positions (into `members`) taking part in the current round, kept in configured order.
    let mut active: Vec<usize> = Vec::new();
    let mut joined = 0;
    for current in (1..=max).rev() {
        while joined < by_units.len() && units[by_units[joined]] >= current {
            let position = by_units[joined];
            let at = active.partition_point(|&p| p < position);
            active.insert(at, position);
            joined += 1;
        }
        slots.extend(active.iter().map(|&p| members[p] as u32));
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::{interleave, Schedule};
    use crate::{NodeSpec, Tried};

    fn nodes(weights: &[u32]) -> Vec<NodeSpec> {
        (0..weights.len())
            .map(|i| NodeSpec {
                host: format!("10.0.0.{i}"),
                port: 80,
                weight: weights[i],
                priority: 0,
            })
            .collect()
    }

    #[test]
    fn interleaves_like_lvs_wrr() {
        // Weights 4, 3, 2 (gcd 1): current weight 4 -> a; 3 -> a b; 2 -> a b c; 1 -> a b c.
        assert_eq!(
            interleave(&[0, 1, 2], &[4, 3, 2]),
            [0, 0, 1, 0, 1, 2, 0, 1, 2]
        );
        // Configured order decides the order inside a round, not the weight.
        assert_eq!(interleave(&[0, 1], &[1, 2]), [1, 0, 1]);
        assert_eq!(interleave(&[5, 7], &[0, 1]), [7]);
    }

    #[test]
    fn one_cycle_picks_each_node_by_reduced_weight() {
        let nodes = nodes(&[2, 4, 6, 0]);
        let schedule = Schedule::new(&nodes, &[0, 1, 2, 3]);
        let mut counts = [0; 4];
        for _ in 0..6 {
            counts[schedule.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [1, 2, 3, 0]);
    }

    #[test]
    fn all_zero_weights_rotate_evenly() {
        let nodes = nodes(&[0, 0, 0]);
        let schedule = Schedule::new(&nodes, &[0, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..30 {
            counts[schedule.pick(|_| true).unwrap()] += 1;
        }
        assert_eq!(counts, [10, 10, 10]);
    }

    #[test]
    fn retries_skip_tried_nodes_then_give_up() {
        let nodes = nodes(&[5, 1]);
        let schedule = Schedule::new(&nodes, &[0, 1]);
        let mut tried = Tried::default();
        tried.insert(0);
        for _ in 0..10 {
            assert_eq!(schedule.pick(|n| !tried.contains(n)), Some(1));
        }
        tried.insert(1);
        assert_eq!(schedule.pick(|n| !tried.contains(n)), None);
    }

    #[test]
    fn skipped_nodes_give_their_turns_away_in_proportion() {
        // Weights 3, 2, 1 with node 0 unusable: over whole cycles nodes 1 and 2 keep 2:1,
        // instead of node 1 also taking node 0's three turns.
        let nodes = nodes(&[3, 2, 1]);
        let schedule = Schedule::new(&nodes, &[0, 1, 2]);
        let mut counts = [0; 3];
        for _ in 0..300 {
            counts[schedule.pick(|n| n != 0).unwrap()] += 1;
        }
        assert_eq!(counts, [0, 200, 100]);
    }
}
