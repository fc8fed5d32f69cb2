//! Health-aware picking (`Balancer::pick_where`): chash walks its ring past unhealthy nodes
//! exactly as a ring without them would send their keys, healthy keys never move, round robin
//! keeps weighted shares among healthy nodes, and priorities fall through unhealthy groups.

use proptest::prelude::*;
use sg_balancer::{Algorithm, Balancer, NodeSpec, Tried};

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
            host: format!("10.1.0.{}", i + 1),
            port: 1883,
            weight,
            priority,
        })
        .collect()
}

fn bit(mask: u16, i: usize) -> bool {
    mask & (1 << i) != 0
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// With equal weights (so removing nodes leaves every other node's points unchanged), a
    /// chash pick skipping the unhealthy nodes equals a pick on the ring built from the healthy
    /// nodes only (what APISIX's `fetch_health_nodes` builds), and a key whose node is healthy
    /// keeps it.
    #[test]
    fn chash_skip_equals_the_healthy_only_ring(
        count in 2usize..9,
        healthy in any::<u16>(),
        keys in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..24), 1..40),
    ) {
        let all = nodes(&vec![(1, 0); count]);
        let up: Vec<usize> = (0..count).filter(|&i| bit(healthy, i)).collect();
        prop_assume!(!up.is_empty());
        let full = Balancer::new(Algorithm::Chash, all.clone(), None);
        let subset: Vec<NodeSpec> = up.iter().map(|&i| all[i].clone()).collect();
        let healthy_only = Balancer::new(Algorithm::Chash, subset, None);
        for key in &keys {
            let skipping = full.pick_where(key, &Tried::default(), |i| bit(healthy, i)).unwrap();
            let rebuilt = healthy_only.pick(key, &Tried::default()).unwrap();
            prop_assert_eq!(skipping.index, up[rebuilt.index]);
            let owner = full.pick(key, &Tried::default()).unwrap().index;
            if bit(healthy, owner) {
                prop_assert_eq!(skipping.index, owner, "a healthy node lost its key");
            }
        }
    }

    /// No algorithm ever picks an unhealthy node, retries still visit each healthy eligible node
    /// once, and a fully unhealthy priority group gives way to the next one.
    #[test]
    fn unhealthy_nodes_are_never_picked(
        spec in prop::collection::vec((1u32..4, -1i32..2), 1..10),
        healthy in any::<u16>(),
        key in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        for algorithm in ALGORITHMS {
            let balancer = Balancer::new(algorithm, nodes(&spec), None);
            let mut tried = Tried::default();
            while let Some(pick) = balancer.pick_where(&key, &tried, |i| bit(healthy, i)) {
                prop_assert!(bit(healthy, pick.index), "{:?} picked an unhealthy node", algorithm);
                prop_assert!(!tried.contains(pick.index));
                tried.insert(pick.index);
            }
            let expected = (0..spec.len()).filter(|&i| bit(healthy, i)).count();
            prop_assert_eq!(tried.len(), expected, "{:?}", algorithm);
        }
    }
}

#[test]
fn roundrobin_keeps_weighted_shares_among_healthy_nodes() {
    let balancer = Balancer::new(
        Algorithm::RoundRobin,
        nodes(&[(2, 0), (1, 0), (3, 0)]),
        None,
    );
    let mut counts = [0; 3];
    // Node 2 (weight 3) is down: nodes 0 and 1 share 2:1 over whole cycles.
    for _ in 0..300 {
        let pick = balancer
            .pick_where(b"", &Tried::default(), |i| i != 2)
            .unwrap();
        counts[pick.index] += 1;
    }
    assert_eq!(counts, [200, 100, 0]);
}

#[test]
fn unhealthy_top_priority_group_falls_through_to_the_next() {
    for algorithm in ALGORITHMS {
        let balancer = Balancer::new(algorithm, nodes(&[(1, 1), (1, 1), (1, 0)]), None);
        let pick = balancer
            .pick_where(b"client", &Tried::default(), |i| i == 2)
            .unwrap();
        assert_eq!(pick.index, 2, "{algorithm:?}");
        assert!(balancer
            .pick_where(b"client", &Tried::default(), |_| false)
            .is_none());
    }
}

#[test]
fn lone_node_follows_the_predicate() {
    let balancer = Balancer::new(Algorithm::Chash, nodes(&[(1, 0)]), None);
    assert!(balancer
        .pick_where(b"k", &Tried::default(), |_| false)
        .is_none());
    assert_eq!(
        balancer
            .pick_where(b"k", &Tried::default(), |_| true)
            .unwrap()
            .index,
        0
    );
}
