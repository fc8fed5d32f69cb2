//! Property tests of how picks spread: exact round-robin shares per cycle, chash shares by
//! weight, and chash stability when a node joins.

use proptest::prelude::*;
use sg_balancer::{Algorithm, Balancer, NodeSpec, Tried};

fn nodes(weights: &[u32]) -> Vec<NodeSpec> {
    weights
        .iter()
        .enumerate()
        .map(|(i, &weight)| NodeSpec {
            host: format!("10.0.{}.{}", i / 200, i % 200 + 1),
            port: 1883,
            weight,
            priority: 0,
        })
        .collect()
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn pick_index(balancer: &Balancer, key: &[u8]) -> usize {
    balancer.pick(key, &Tried::default()).unwrap().index
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Over whole cycles, each node is picked exactly weight/gcd times per cycle, weight-0 nodes
    /// never (unless all are 0, then evenly), whatever the random start.
    #[test]
    fn roundrobin_is_exactly_proportional(
        weights in prop::collection::vec(0u32..12, 1..8),
        factor in 1u32..4,
        cycles in 1usize..4,
    ) {
        let weights: Vec<u32> = weights.iter().map(|w| w * factor).collect();
        let balancer = Balancer::new(Algorithm::RoundRobin, nodes(&weights), None);
        let expected: Vec<usize> = if weights.len() == 1 || weights.iter().all(|&w| w == 0) {
            vec![1; weights.len()]
        } else {
            let g = weights.iter().copied().fold(0, gcd);
            weights.iter().map(|&w| (w / g) as usize).collect()
        };
        let cycle: usize = expected.iter().sum();
        let mut counts = vec![0; weights.len()];
        for _ in 0..cycle * cycles {
            counts[pick_index(&balancer, b"ignored")] += 1;
        }
        let expected: Vec<usize> = expected.iter().map(|e| e * cycles).collect();
        prop_assert_eq!(counts, expected);
    }

    /// Many distinct keys spread over chash nodes roughly in proportion to weight (a ring of 160
    /// points per unit deviates by well under half of a node's share).
    #[test]
    fn chash_spreads_keys_by_weight(
        weights in prop::collection::vec(1u32..6, 2..7),
        salt in any::<u64>(),
    ) {
        let balancer = Balancer::new(Algorithm::Chash, nodes(&weights), None);
        const KEYS: usize = 6000;
        let mut counts = vec![0usize; weights.len()];
        for k in 0..KEYS {
            counts[pick_index(&balancer, format!("{salt}-{k}").as_bytes())] += 1;
        }
        let total: u32 = weights.iter().sum();
        for (i, (&count, &weight)) in counts.iter().zip(&weights).enumerate() {
            let share = count as f64 / KEYS as f64;
            let expected = f64::from(weight) / f64::from(total);
            prop_assert!(
                (share - expected).abs() < expected * 0.5,
                "node {} weight {} got {:.3}, expected {:.3}", i, weight, share, expected
            );
        }
    }

    /// Adding one node moves only about 1/(n+1) of the keys, and only onto the new node.
    #[test]
    fn chash_adding_a_node_moves_few_keys_and_only_to_it(
        n in 1usize..12,
        salt in any::<u64>(),
    ) {
        let before = Balancer::new(Algorithm::Chash, nodes(&vec![1; n]), None);
        let after = Balancer::new(Algorithm::Chash, nodes(&vec![1; n + 1]), None);
        const KEYS: usize = 4000;
        let mut moved = 0;
        for k in 0..KEYS {
            let key = format!("client-{salt}-{k}");
            let (old, new) = (pick_index(&before, key.as_bytes()), pick_index(&after, key.as_bytes()));
            if old != new {
                prop_assert_eq!(new, n, "key {} moved between old nodes", key);
                moved += 1;
            }
        }
        let fraction = moved as f64 / KEYS as f64;
        prop_assert!(fraction < 2.0 / (n as f64 + 1.0) + 0.02, "moved {:.3} with n = {}", fraction, n);
        prop_assert!(moved > 0);
    }
}
