//! Property tests of retries, priorities and least_conn accounting across picks and snapshots.

use proptest::prelude::*;
use sg_balancer::{Algorithm, Balancer, NodeSpec, Pick, Tried};

const ALGORITHMS: [Algorithm; 3] = [
    Algorithm::RoundRobin,
    Algorithm::Chash,
    Algorithm::LeastConn,
];

/// (weight, priority) per node.
fn nodes(spec: &[(u32, i32)]) -> Vec<NodeSpec> {
    spec.iter()
        .enumerate()
        .map(|(i, &(weight, priority))| NodeSpec {
            host: format!("192.168.1.{}", i + 1),
            port: 9000,
            weight,
            priority,
        })
        .collect()
}

/// Whether APISIX would ever pick node `i`: weight > 0, or a lone non-least_conn node, or (for
/// roundrobin) a node of a priority group whose weights are all 0.
fn eligible(algorithm: Algorithm, spec: &[(u32, i32)], i: usize) -> bool {
    let (weight, priority) = spec[i];
    let lone = spec.len() == 1 && algorithm != Algorithm::LeastConn;
    let zero_group = algorithm == Algorithm::RoundRobin
        && spec.iter().filter(|n| n.1 == priority).all(|n| n.0 == 0);
    weight > 0 || lone || zero_group
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Picking and marking tried visits every eligible node exactly once, highest priority
    /// first, then answers None.
    #[test]
    fn retries_visit_each_eligible_node_once_by_priority(
        spec in prop::collection::vec((0u32..4, -2i32..3), 1..10),
        key in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        for algorithm in ALGORITHMS {
            let balancer = Balancer::new(algorithm, nodes(&spec), None);
            let mut tried = Tried::default();
            let mut last_priority = i32::MAX;
            while let Some(pick) = balancer.pick(&key, &tried) {
                prop_assert!(!tried.contains(pick.index));
                prop_assert!(eligible(algorithm, &spec, pick.index));
                let priority = spec[pick.index].1;
                prop_assert!(priority <= last_priority, "{:?} went up in priority", algorithm);
                // Nothing eligible and untried may remain in a higher group.
                let skipped = (0..spec.len()).any(|i| {
                    spec[i].1 > priority && !tried.contains(i) && eligible(algorithm, &spec, i)
                });
                prop_assert!(!skipped, "{:?} skipped a higher priority node", algorithm);
                last_priority = priority;
                tried.insert(pick.index);
            }
            let expected = (0..spec.len()).filter(|&i| eligible(algorithm, &spec, i)).count();
            prop_assert_eq!(tried.len(), expected, "{:?}", algorithm);
        }
    }

    /// Every least_conn pick takes the lowest (1 + active) / weight (ties: lowest index), its
    /// count lasts exactly as long as the Pick, and counts survive a rebuild via `previous`.
    #[test]
    fn least_conn_counts_for_the_pick_lifetime_and_carries_over(
        weights in prop::collection::vec(1u32..5, 1..6),
        ops in prop::collection::vec(any::<Option<prop::sample::Index>>(), 1..40),
    ) {
        let spec: Vec<(u32, i32)> = weights.iter().map(|&w| (w, 0)).collect();
        let mut balancer = Balancer::new(Algorithm::LeastConn, nodes(&spec), None);
        let mut held: Vec<Pick> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            match op {
                Some(victim) if !held.is_empty() => drop(held.swap_remove(victim.index(held.len()))),
                _ => {
                    let active: Vec<u64> = (0..weights.len())
                        .map(|i| balancer.active_connections(i).unwrap() as u64)
                        .collect();
                    let best = (0..weights.len())
                        .min_by(|&a, &b| {
                            let sa = (1 + active[a]) * u64::from(weights[b]);
                            let sb = (1 + active[b]) * u64::from(weights[a]);
                            sa.cmp(&sb).then(a.cmp(&b))
                        })
                        .unwrap();
                    let pick = balancer.pick(b"", &Tried::default()).unwrap();
                    prop_assert_eq!(pick.index, best);
                    held.push(pick);
                }
            }
            // Rebuilding from the previous snapshot every few steps must not lose counts.
            if step % 3 == 2 {
                balancer = Balancer::new(Algorithm::LeastConn, nodes(&spec), Some(&balancer));
            }
            for i in 0..weights.len() {
                let expected = held.iter().filter(|p| p.index == i).count();
                prop_assert_eq!(balancer.active_connections(i), Some(expected));
            }
        }
        drop(held);
        for i in 0..weights.len() {
            prop_assert_eq!(balancer.active_connections(i), Some(0));
        }
    }
}

#[test]
fn least_conn_counters_follow_addresses_across_reordered_snapshots() {
    let old = Balancer::new(Algorithm::LeastConn, nodes(&[(1, 0), (1, 0), (1, 0)]), None);
    let held = old.pick(b"", &Tried::default()).unwrap();
    assert_eq!(held.index, 0);
    // The new snapshot drops node 2, adds a fresh node first and moves node 0 last.
    let mut fresh = old.nodes()[2].clone();
    fresh.host = "192.168.1.77".to_owned();
    let reordered = vec![fresh, old.nodes()[1].clone(), old.nodes()[0].clone()];
    let new = Balancer::new(Algorithm::LeastConn, reordered, Some(&old));
    let moved = 2;
    assert_eq!(new.active_connections(moved), Some(1));
    // The busy node is avoided under the new snapshot too.
    let picks: Vec<Pick> = (0..3)
        .map(|_| new.pick(b"", &Tried::default()).unwrap())
        .collect();
    assert!(picks.iter().all(|p| p.index != moved));
    drop(held);
    assert_eq!(new.active_connections(moved), Some(0));
}

#[test]
fn a_failed_connect_releases_its_count_before_the_retry() {
    let balancer = Balancer::new(Algorithm::LeastConn, nodes(&[(1, 0), (1, 0)]), None);
    let mut tried = Tried::default();
    let first = balancer.pick(b"", &tried).unwrap();
    tried.insert(first.index);
    drop(first);
    let second = balancer.pick(b"", &tried).unwrap();
    assert_ne!(second.index, 0);
    assert_eq!(balancer.active_connections(0), Some(0));
    assert_eq!(balancer.active_connections(1), Some(1));
}
