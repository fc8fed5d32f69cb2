//! The `chash` ring, built exactly as APISIX + lua-resty-balancer build it (spec §3.3), so a key
//! lands on the same node as under APISIX.

use std::fmt;

use crate::weights;
use crate::NodeSpec;

/// Points per unit of weight (resty.chash's `CONSISTENT_POINTS`).
const POINTS_PER_UNIT: usize = 160;

/// Weight units a ring may hold before weights are scaled down (2.6M points, ~21 MB). APISIX has
/// no cap; this only protects against absurd weights, and every realistic upstream is below it,
/// where the ring is exact.
const UNIT_BUDGET: u64 = 1 << 14;

#[derive(Clone, Copy)]
struct Point {
    hash: u32,
    /// Index of the owning node in `Balancer::nodes`.
    node: u32,
}

/// The sorted hash ring of one priority group.
pub(crate) struct Ring {
    points: Box<[Point]>,
}

impl Ring {
    /// Builds the ring over `members` (indexes into `nodes`). Weight-0 nodes get no points.
    pub(crate) fn new(nodes: &[NodeSpec], members: &[usize]) -> Ring {
        let weights: Vec<u32> = members.iter().map(|&m| nodes[m].weight).collect();
        let units = weights::units(&weights, UNIT_BUDGET);
        let total: usize = units.iter().map(|&u| u as usize * POINTS_PER_UNIT).sum();
        let mut points = Vec::with_capacity(total);
        for (&member, &unit) in members.iter().zip(&units) {
            let node = u32::try_from(member).expect("node index fits in u32");
            let hashes = point_hashes(&node_id(&nodes[member]), unit as usize * POINTS_PER_UNIT);
            points.extend(hashes.map(|hash| Point { hash, node }));
        }
        // Stable, so equal hashes keep node order: APISIX's order for ties is its unspecified
        // table order, and a real CRC collision is the only case where this can differ.
        points.sort_by_key(|p| p.hash);
        Ring {
            points: points.into_boxed_slice(),
        }
    }

    /// The node owning the first point at or after CRC32(`key`), wrapping around; when that
    /// node is not `usable` (tried, or unhealthy), the next usable node clockwise from there (a
    /// walk bounded by the ring size).
    pub(crate) fn pick(&self, key: &[u8], usable: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.points.len();
        let hash = crc32fast::hash(key);
        let start = match self.points.partition_point(|p| p.hash < hash) {
            i if i == len => 0,
            i => i,
        };
        (0..len)
            .map(|step| self.points[(start + step) % len].node as usize)
            .find(|&node| usable(node))
    }
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("points", &self.points.len())
            .finish()
    }
}

/// APISIX's node id: `host:port` with every `:` (also those of an IPv6 host) replaced by NUL.
fn node_id(node: &NodeSpec) -> Vec<u8> {
    node.address()
        .bytes()
        .map(|b| if b == b':' { 0 } else { b })
        .collect()
}

/// The `count` point hashes of a node: `h_i = CRC32(id ‖ le_u32(h_{i-1}))`, with `h_{-1} = 0`.
fn point_hashes(id: &[u8], count: usize) -> impl Iterator<Item = u32> {
    let mut after_id = crc32fast::Hasher::new();
    after_id.update(id);
    let mut prev = 0u32;
    (0..count).map(move |_| {
        let mut hasher = after_id.clone();
        hasher.update(&prev.to_le_bytes());
        prev = hasher.finalize();
        prev
    })
}

#[cfg(test)]
mod tests {
    use super::{node_id, point_hashes, Ring};
    use crate::{NodeSpec, Tried};

    fn node(host: &str, port: u16, weight: u32) -> NodeSpec {
        NodeSpec {
            host: host.to_owned(),
            port,
            weight,
            priority: 0,
        }
    }

    #[test]
    fn node_id_replaces_every_colon() {
        assert_eq!(node_id(&node("127.0.0.1", 1995, 1)), b"127.0.0.1\x001995");
        assert_eq!(node_id(&node("[::1]", 80, 1)), b"[\0\x001]\x0080");
    }

    #[test]
    fn first_points_match_the_spec() {
        let points: Vec<u32> = point_hashes(b"127.0.0.1\x001995", 3).collect();
        assert_eq!(points, [0xe4a1_976a, 0x581d_85b1, 0x3c4d_d224]);
    }

    #[test]
    fn apisix_pair_lands_on_the_documented_ring_slots() {
        let nodes = [node("0.0.0.0", 1995, 1), node("127.0.0.1", 1995, 1)];
        let ring = Ring::new(&nodes, &[0, 1]);
        assert_eq!(ring.points.len(), 320);
        for (key, crc, slot, owner) in [
            ("f", 0x76d3_2be0, 152, 0),
            ("g", 0x01d4_1b76, 4, 1),
            ("127.0.0.1", 0xd7b7_e7a8, 276, 1),
        ] {
            assert_eq!(crc32fast::hash(key.as_bytes()), crc, "{key}");
            assert_eq!(ring.points.partition_point(|p| p.hash < crc), slot, "{key}");
            assert_eq!(ring.pick(key.as_bytes(), |_| true), Some(owner));
        }
    }

    #[test]
    fn ring_is_sorted_and_sized_by_reduced_weight() {
        let nodes = [node("a", 1, 2), node("b", 1, 4), node("c", 1, 0)];
        let ring = Ring::new(&nodes, &[0, 1, 2]);
        assert_eq!(ring.points.len(), (1 + 2) * 160);
        assert!(ring.points.windows(2).all(|w| w[0].hash <= w[1].hash));
        assert!(
            ring.points.iter().all(|p| p.node != 2),
            "weight 0 has no points"
        );
    }

    #[test]
    fn retry_walks_to_the_next_untried_node_and_ends() {
        let nodes = [node("a", 1, 1), node("b", 1, 1), node("c", 1, 1)];
        let ring = Ring::new(&nodes, &[0, 1, 2]);
        let mut tried = Tried::default();
        let mut seen = Vec::new();
        while let Some(n) = ring.pick(b"key", |n| !tried.contains(n)) {
            seen.push(n);
            tried.insert(n);
        }
        seen.sort_unstable();
        assert_eq!(seen, [0, 1, 2]);
    }

    #[test]
    fn empty_ring_picks_nothing() {
        let nodes = [node("a", 1, 0)];
        assert_eq!(Ring::new(&nodes, &[0]).pick(b"k", |_| true), None);
    }
}
