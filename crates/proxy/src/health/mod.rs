//! Upstream health checks (`upstream.checks`, spec §3.7): per-node health that survives snapshot
//! recompiles, active TCP probes run by background checkers, failed (and, with `passive`,
//! successful) connects counted as passive reports, and picking that skips unhealthy nodes.
//!
//! Every check `type` is probed with a TCP connect: stream upstreams speak no HTTP, so `http`
//! and `https` (APISIX's default type) behave as `tcp` here.

mod checker;
mod manager;
mod state;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use sg_balancer::{NodeSpec, Pick, Tried};
use tracing::{debug, info, warn};

pub use manager::spawn_manager;
pub use sg_model::resource::{Checks, Thresholds};
pub use state::{NodeHealth, Outcome};

use crate::config::upstream::Upstream;
use crate::metrics::{NodeLabels, METRICS};

/// One checked node of an upstream.
#[derive(Debug)]
pub struct Target {
    /// The node's host as configured (an IP, a bracketed IPv6 address or a domain).
    pub host: String,
    /// The node's own port (`host:port` is its identity).
    pub node_port: u16,
    /// Where probes go: `checks.active.port`, else the node's port.
    pub port: u16,
    pub health: Arc<NodeHealth>,
}

impl Target {
    /// `host:port` of the node, as logs and the balancer name it.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.node_port)
    }
}

/// The health of every node of one upstream, indexed like its balancer's nodes.
#[derive(Debug)]
pub struct UpstreamHealth {
    /// `upstreams/<id>` or `stream_routes/<id>`.
    key: String,
    checks: Checks,
    targets: Box<[Target]>,
    /// Set once "all upstream nodes is unhealthy" was logged, until a node is healthy again.
    all_down_logged: AtomicBool,
}

/// Where a report comes from, for the thresholds and the logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Active,
    Passive,
}

impl UpstreamHealth {
    /// The health table of an upstream with `checks` (`None` without). Nodes the `previous`
    /// table also had (same `host:port`) keep their health and counters, as APISIX keeps a
    /// checker's target states across configuration changes.
    pub fn new(
        key: &str,
        checks: Option<&Checks>,
        nodes: &[NodeSpec],
        previous: Option<&UpstreamHealth>,
    ) -> Option<UpstreamHealth> {
        let checks = checks?.clone();
        let probe_port = checks.active.as_ref().and_then(|a| a.port);
        let targets = nodes
            .iter()
            .map(|node| {
                let health = previous
                    .and_then(|p| {
                        p.targets
                            .iter()
                            .find(|t| t.host == node.host && t.node_port == node.port)
                    })
                    .map_or_else(Arc::default, |t| Arc::clone(&t.health));
                Target {
                    host: node.host.clone(),
                    node_port: node.port,
                    port: probe_port.unwrap_or(node.port),
                    health,
                }
            })
            .collect();
        let health = UpstreamHealth {
            key: key.to_owned(),
            checks,
            targets,
            all_down_logged: AtomicBool::new(false),
        };
        health
            .targets
            .iter()
            .for_each(|target| health.publish(target));
        Some(health)
    }

    /// Shows `target`'s health in `streamgate_upstream_node_healthy`.
    fn publish(&self, target: &Target) {
        let labels = NodeLabels {
            upstream: self.key.clone(),
            node: target.address(),
        };
        METRICS
            .node_healthy
            .get_or_create(&labels)
            .set(i64::from(target.health.is_healthy()));
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn checks(&self) -> &Checks {
        &self.checks
    }

    pub fn targets(&self) -> &[Target] {
        &self.targets
    }

    /// Whether node `index` may be picked (unknown indexes are).
    pub fn is_healthy(&self, index: usize) -> bool {
        self.targets
            .get(index)
            .is_none_or(|t| t.health.is_healthy())
    }

    /// Whether an active checker for `other` would probe exactly what this one's does.
    pub(crate) fn same_probes(&self, other: &UpstreamHealth) -> bool {
        self.checks.active == other.checks.active
            && self.targets.len() == other.targets.len()
            && self.targets.iter().zip(other.targets.iter()).all(|(a, b)| {
                a.host == b.host && a.port == b.port && Arc::ptr_eq(&a.health, &b.health)
            })
    }

    /// Counts one outcome for node `index` and logs a change of health.
    pub fn record(&self, index: usize, outcome: Outcome, source: Source) {
        let Some(target) = self.targets.get(index) else {
            return;
        };
        let thresholds = match (source, &self.checks.active) {
            (Source::Active, Some(active)) => &active.thresholds,
            (Source::Active, None) => return,
            (Source::Passive, _) => &self.checks.passive,
        };
        let Some(change) = target.health.report(outcome, thresholds) else {
            return;
        };
        self.publish(target);
        let node = target.address();
        let source = match source {
            Source::Active => "active",
            Source::Passive => "passive",
        };
        match (change.from.is_healthy(), change.to.is_healthy()) {
            (true, false) => {
                warn!(upstream = %self.key, %node, check = source, "node is unhealthy: {change}")
            }
            (false, true) => {
                info!(upstream = %self.key, %node, check = source, "node is healthy again: {change}")
            }
            _ => debug!(upstream = %self.key, %node, check = source, "node health: {change}"),
        }
    }
}

/// Picks a node of `up` not in `tried`, skipping unhealthy nodes when it has health checks. If
/// no node is healthy, every node may be picked, with APISIX's warning.
pub fn pick(up: &Upstream, key: &[u8], tried: &Tried) -> Option<Pick> {
    let Some(health) = &up.health else {
        return up.balancer.pick(key, tried);
    };
    if health.targets.iter().any(|t| t.health.is_healthy()) {
        if health.all_down_logged.load(Ordering::Relaxed) {
            health.all_down_logged.store(false, Ordering::Relaxed);
        }
        return up
            .balancer
            .pick_where(key, tried, |index| health.is_healthy(index));
    }
    // A lone node is used whatever its health, as APISIX does, without a warning.
    if health.targets.len() > 1 && !health.all_down_logged.swap(true, Ordering::Relaxed) {
        warn!(upstream = %up.key, "all upstream nodes is unhealthy, use default");
    }
    up.balancer.pick(key, tried)
}

/// Reports a connect attempt to node `index` of `up`: failures count against the passive
/// thresholds whenever the upstream has checks (as APISIX reports failed tries), successes only
/// when `checks.passive` is configured.
pub fn report_connect(up: &Upstream, index: usize, outcome: Outcome) {
    if let Some(health) = &up.health {
        if outcome != Outcome::Success || health.checks.passive_configured {
            health.record(index, outcome, Source::Passive);
        }
    }
}

#[cfg(test)]
mod tests;
