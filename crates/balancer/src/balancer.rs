//! The per-upstream `Balancer`: priority groups, each with its precomputed picker, and the
//! APISIX `pick_server` rules that choose between them.

use std::sync::atomic::Ordering;

use crate::chash::Ring;
use crate::least_conn::Counters;
use crate::roundrobin::Schedule;
use crate::{Algorithm, NodeSpec, Pick, Tried};

/// The node picker of one upstream, immutable once built; shared state is atomic only.
#[derive(Debug)]
pub struct Balancer {
    algorithm: Algorithm,
    nodes: Vec<NodeSpec>,
    /// Priority groups, highest priority first.
    groups: Box<[Group]>,
    /// Present for `least_conn` only.
    counters: Option<Counters>,
}

#[derive(Debug)]
struct Group {
    /// Indexes into `Balancer::nodes`, in configured order.
    members: Box<[usize]>,
    picker: Picker,
}

#[derive(Debug)]
enum Picker {
    RoundRobin(Schedule),
    Chash(Ring),
    LeastConn,
}

impl Balancer {
    /// Builds the balancer of one upstream. `previous` is the balancer the upstream had in the
    /// previous snapshot: for `least_conn`, nodes with the same `host:port` keep its connection
    /// counters, so connections opened under it still count and still release the same counter.
    pub fn new(
        algorithm: Algorithm,
        nodes: Vec<NodeSpec>,
        previous: Option<&Balancer>,
    ) -> Balancer {
        let groups = priority_groups(&nodes)
            .into_iter()
            .map(|members| {
                let picker = match algorithm {
                    Algorithm::RoundRobin => Picker::RoundRobin(Schedule::new(&nodes, &members)),
                    Algorithm::Chash => Picker::Chash(Ring::new(&nodes, &members)),
                    Algorithm::LeastConn => Picker::LeastConn,
                };
                Group {
                    members: members.into_boxed_slice(),
                    picker,
                }
            })
            .collect();
        let counters = (algorithm == Algorithm::LeastConn).then(|| {
            let previous = previous.and_then(|p| Some((p.nodes.as_slice(), p.counters.as_ref()?)));
            Counters::new(&nodes, previous)
        });
        Balancer {
            algorithm,
            nodes,
            groups,
            counters,
        }
    }

    /// The nodes in the order given to [`Balancer::new`]; [`Pick::index`] indexes this.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The active-connection count of node `index`, for `least_conn` balancers (`None` for
    /// other algorithms or an out-of-range index).
    pub fn active_connections(&self, index: usize) -> Option<usize> {
        let counters = self.counters.as_ref()?;
        (index < self.nodes.len()).then(|| counters.get(index).load(Ordering::Relaxed))
    }

    /// Picks a node not in `tried`, as APISIX's `pick_server` does.
    ///
    /// `key` is only read by `chash` (the caller resolves it: the MQTT client id, else the
    /// client IP string). Groups are tried from the highest priority down; the first with an
    /// eligible untried node answers. `None` means every node was tried or is ineligible
    /// (weight 0, except a lone node or an all-zero round-robin group, as in APISIX).
    pub fn pick(&self, key: &[u8], tried: &Tried) -> Option<Pick> {
        self.pick_where(key, tried, |_| true)
    }

    /// Like [`Balancer::pick`], also skipping the nodes `eligible` rejects (unhealthy ones).
    ///
    /// `chash` walks its ring clockwise past them, so a key whose node is eligible keeps it and
    /// the others move to the next eligible node, as a ring without them would send them.
    /// `roundrobin` hands a skipped turn to the next eligible slot and consumes the skipped
    /// slots, so eligible nodes keep their weighted shares. A priority group with no eligible
    /// node gives way to the next group. Deciding what to do when no node at all is eligible
    /// (APISIX then uses all of them) is the caller's business.
    pub fn pick_where(
        &self,
        key: &[u8],
        tried: &Tried,
        eligible: impl Fn(usize) -> bool,
    ) -> Option<Pick> {
        let usable = |index: usize| !tried.contains(index) && eligible(index);
        // APISIX runs no picker for a lone node (not even hashing the key), except least_conn,
        // which must still count the connection.
        if self.nodes.len() == 1 && self.algorithm != Algorithm::LeastConn {
            return usable(0).then(|| Pick::plain(0));
        }
        self.groups.iter().find_map(|group| match &group.picker {
            Picker::RoundRobin(schedule) => schedule.pick(usable).map(Pick::plain),
            Picker::Chash(ring) => ring.pick(key, usable).map(Pick::plain),
            Picker::LeastConn => {
                let counters = self.counters.as_ref()?;
                let index = counters.pick(&self.nodes, &group.members, usable)?;
                Some(Pick::counted(index, counters.get(index)))
            }
        })
    }
}

/// Node indexes grouped by priority, highest priority first, each group in configured order.
fn priority_groups(nodes: &[NodeSpec]) -> Vec<Vec<usize>> {
    let mut priorities: Vec<i32> = nodes.iter().map(|n| n.priority).collect();
    priorities.sort_unstable_by(|a, b| b.cmp(a));
    priorities.dedup();
    priorities
        .into_iter()
        .map(|priority| {
            (0..nodes.len())
                .filter(|&i| nodes[i].priority == priority)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{priority_groups, Balancer};
    use crate::{Algorithm, NodeSpec, Tried};

    fn node(host: &str, weight: u32, priority: i32) -> NodeSpec {
        NodeSpec {
            host: host.to_owned(),
            port: 1980,
            weight,
            priority,
        }
    }

    #[test]
    fn groups_are_ordered_by_descending_priority() {
        let nodes = [
            node("a", 1, 0),
            node("b", 1, 5),
            node("c", 1, -1),
            node("d", 1, 5),
        ];
        assert_eq!(priority_groups(&nodes), [vec![1, 3], vec![0], vec![2]]);
        assert!(priority_groups(&[]).is_empty());
    }

    #[test]
    fn lone_node_is_returned_without_a_picker_unless_tried() {
        for algorithm in [Algorithm::RoundRobin, Algorithm::Chash] {
            let balancer = Balancer::new(algorithm, vec![node("a", 0, 0)], None);
            assert_eq!(balancer.pick(b"k", &Tried::default()).unwrap().index, 0);
            let mut tried = Tried::default();
            tried.insert(0);
            assert!(balancer.pick(b"k", &tried).is_none());
        }
    }

    #[test]
    fn lone_least_conn_node_is_counted() {
        let balancer = Balancer::new(Algorithm::LeastConn, vec![node("a", 1, 0)], None);
        let pick = balancer.pick(b"", &Tried::default()).unwrap();
        assert_eq!(balancer.active_connections(0), Some(1));
        drop(pick);
        assert_eq!(balancer.active_connections(0), Some(0));
        assert_eq!(balancer.active_connections(1), None);
    }

    #[test]
    fn no_nodes_means_no_pick() {
        for algorithm in [
            Algorithm::RoundRobin,
            Algorithm::Chash,
            Algorithm::LeastConn,
        ] {
            let balancer = Balancer::new(algorithm, Vec::new(), None);
            assert!(balancer.pick(b"k", &Tried::default()).is_none());
        }
    }

    #[test]
    fn other_algorithms_have_no_counters() {
        let balancer = Balancer::new(Algorithm::RoundRobin, vec![node("a", 1, 0)], None);
        assert_eq!(balancer.active_connections(0), None);
        assert_eq!(balancer.algorithm(), Algorithm::RoundRobin);
    }

    #[test]
    fn balancer_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Balancer>();
        check::<crate::Pick>();
    }
}
