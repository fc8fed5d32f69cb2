//! Upstream node selection with APISIX's semantics: `chash` (the exact lua-resty-balancer ring),
//! interleaved weighted `roundrobin`, `least_conn`, node priorities and per-connection retries.
//!
//! A [`Balancer`] is built once per upstream when a config snapshot is compiled; everything a
//! pick needs (rings, schedules, counters) is precomputed then, so [`Balancer::pick`] only reads
//! immutable tables and touches atomics. It never allocates and never locks.
//! [`Balancer::pick_where`] also skips nodes the caller rejects (the unhealthy ones): `chash`
//! walks its ring past them, so keys whose node is eligible never move.
//!
//! ```
//! use sg_balancer::{Algorithm, Balancer, NodeSpec, Tried};
//!
//! let node = |host: &str, priority| NodeSpec { host: host.into(), port: 1883, weight: 1, priority };
//! let nodes = vec![node("10.0.0.1", 0), node("10.0.0.2", 0), node("10.0.0.3", -1)];
//! let balancer = Balancer::new(Algorithm::Chash, nodes, None);
//! // One `Tried` per connection; a failed connect marks the node and picks again.
//! let mut tried = Tried::default();
//! let first = balancer.pick(b"mqtt-client-id", &tried).unwrap();
//! tried.insert(first.index);
//! let retry = balancer.pick(b"mqtt-client-id", &tried).unwrap();
//! assert_ne!(retry.index, first.index);
//! assert_ne!(retry.index, 2, "the priority -1 node is only used once priority 0 is exhausted");
//! ```
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod balancer;
mod chash;
mod least_conn;
mod pick;
mod roundrobin;
mod tried;
mod weights;

pub use balancer::Balancer;
pub use pick::Pick;
pub use tried::Tried;

/// One upstream node as configured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct NodeSpec {
    /// The configured host string: an IPv4 address, a bracketed IPv6 address (`[::1]`) or a
    /// domain. It is hashed as-is by `chash`, so it must already be in APISIX's form.
    pub host: String,
    pub port: u16,
    pub weight: u32,
    /// Higher priorities are tried first; APISIX's default is 0.
    pub priority: i32,
}

impl NodeSpec {
    /// The node's `host:port` identity, as APISIX keys its pickers and counters.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// The upstream `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    Chash,
    LeastConn,
}
