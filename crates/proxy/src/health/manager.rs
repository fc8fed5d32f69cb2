//! Follows snapshot publications and keeps one active checker running per upstream with
//! `checks.active`: started when the upstream appears, restarted when what it probes changes,
//! stopped when it goes away.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use super::checker::{run, tcp_probe};
use super::UpstreamHealth;
use crate::config::compiler::SnapshotHandle;
use crate::config::resolve::Resolver;
use crate::config::snapshot::Snapshot;

/// A running checker; dropping it stops the checker.
struct Running {
    health: Arc<UpstreamHealth>,
    task: JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn start(health: Arc<UpstreamHealth>, resolver: Arc<Resolver>) -> Running {
    info!(upstream = %health.key, "create new checker");
    let probed = health.clone();
    let probe = move |index: usize| {
        let (health, resolver) = (probed.clone(), resolver.clone());
        async move {
            let target = &health.targets[index];
            let limit = health.checks.active.as_ref().map(|a| a.timeout.get());
            tcp_probe(
                &resolver,
                &target.host,
                target.port,
                limit.unwrap_or_default(),
            )
            .await
        }
    };
    Running {
        task: tokio::spawn(run(health.clone(), probe)),
        health,
    }
}

/// Brings the running checkers in line with `snapshot`.
fn reconcile(
    snapshot: &Snapshot,
    running: &mut HashMap<String, Running>,
    resolver: &Arc<Resolver>,
) {
    let wanted: HashMap<&str, &Arc<UpstreamHealth>> = snapshot
        .checked_upstreams()
        .filter_map(|up| up.health.as_ref())
        .map(|health| (health.key.as_str(), health))
        .collect();
    running.retain(|key, checker| {
        let keep = wanted
            .get(key.as_str())
            .is_some_and(|health| checker.health.same_probes(health));
        if !keep {
            info!(upstream = %key, "release checker");
        }
        keep
    });
    for (key, health) in wanted {
        if !running.contains_key(key) {
            running.insert(key.to_owned(), start(health.clone(), resolver.clone()));
        }
    }
}

/// Spawns the task that runs the active checkers of the published snapshots until `stop` turns
/// true (or the compiler is gone).
pub fn spawn_manager(
    snapshots: SnapshotHandle,
    resolver: Arc<Resolver>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut published = snapshots.published();
        let mut running = HashMap::new();
        loop {
            published.borrow_and_update();
            reconcile(&snapshots.load(), &mut running, &resolver);
            tokio::select! {
                changed = published.changed() => if changed.is_err() { break },
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
        }
        // Dropping `running` stops every checker.
    })
}
