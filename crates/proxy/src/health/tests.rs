//! Health tables across recompiles, health-aware picking and connect reports, the active
//! checker on virtual time, and the manager following a real store.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::{json, Value};
use sg_balancer::Tried;
use sg_model::Keyring;

use super::checker::run;
use super::*;
use crate::config::tls::TlsTable;
use crate::config::upstream::Upstream;
use crate::health::state::Status;

fn compile(conf: &Value, previous: Option<&Upstream>) -> Upstream {
    Upstream::compile(
        "upstreams/1".into(),
        &sg_model::decode(conf).unwrap(),
        previous,
        &TlsTable::default(),
        &Keyring::default(),
    )
    .unwrap()
}

fn checked(nodes: Value, checks: Value) -> Value {
    json!({"type": "chash", "key": "remote_addr", "nodes": nodes, "checks": checks})
}

fn active() -> Value {
    json!({"active": {"type": "tcp", "healthy": {"interval": 1, "successes": 2},
                      "unhealthy": {"interval": 3, "tcp_failures": 2}}})
}

fn fail_twice(up: &Upstream, index: usize) {
    report_connect(up, index, Outcome::TcpFailure);
    report_connect(up, index, Outcome::TcpFailure);
}

#[test]
fn health_survives_recompiles_by_node_address() {
    let nodes = json!({"127.0.0.1:1": 1, "127.0.0.2:1": 1});
    let first = compile(&checked(nodes, active()), None);
    fail_twice(&first, 1);
    let health = first.health.as_ref().unwrap();
    assert_eq!(health.targets()[1].health.status(), Status::Unhealthy);

    // Node 127.0.0.2:1 moves to index 0 and a new node joins: state follows the address.
    let second = compile(
        &checked(json!({"127.0.0.2:1": 1, "127.0.0.3:1": 1}), active()),
        Some(&first),
    );
    let moved = second.health.as_ref().unwrap();
    assert_eq!(moved.targets()[0].address(), "127.0.0.2:1");
    assert!(!moved.is_healthy(0));
    assert!(moved.is_healthy(1));
    assert!(Arc::ptr_eq(
        &moved.targets()[0].health,
        &health.targets()[1].health
    ));
    assert!(
        compile(&json!({"nodes": {"127.0.0.1:1": 1}}), Some(&second))
            .health
            .is_none()
    );
}

#[test]
fn picks_skip_unhealthy_nodes_until_all_are_down() {
    let up = compile(
        &checked(json!({"127.0.0.1:1": 1, "127.0.0.2:1": 1}), active()),
        None,
    );
    fail_twice(&up, 0);
    for key in ["a", "b", "c", "d", "e", "f"] {
        let pick = pick(&up, key.as_bytes(), &Tried::default()).unwrap();
        assert_eq!(pick.index, 1, "{key}");
    }
    // With node 1 tried, the unhealthy node 0 is still not used: APISIX's picker lacks it.
    let mut tried = Tried::default();
    tried.insert(1);
    assert!(pick(&up, b"a", &tried).is_none());

    fail_twice(&up, 1);
    let health = up.health.as_ref().unwrap();
    let owners: Vec<usize> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|key| pick(&up, key.as_bytes(), &Tried::default()).unwrap().index)
        .collect();
    assert!(
        owners.contains(&0) && owners.contains(&1),
        "all down: all used"
    );
    assert!(health.all_down_logged.load(Ordering::Relaxed));
}

#[test]
fn connect_reports_follow_the_passive_settings() {
    let nodes = json!({"127.0.0.1:1": 1, "127.0.0.2:1": 1});
    // Without `passive`, failures still count (lua-resty-healthcheck's 2 tcp failures) and
    // successes do not.
    let up = compile(&checked(nodes.clone(), active()), None);
    report_connect(&up, 0, Outcome::TcpFailure);
    report_connect(&up, 0, Outcome::Success);
    report_connect(&up, 0, Outcome::TcpFailure);
    assert_eq!(
        up.health.as_ref().unwrap().targets()[0].health.status(),
        Status::Unhealthy
    );

    let passive = json!({"active": {"type": "tcp"}, "passive": {"type": "tcp",
        "healthy": {"successes": 1}, "unhealthy": {"tcp_failures": 2, "timeouts": 1}}});
    let up = compile(&checked(nodes, passive), None);
    let node = &up.health.as_ref().unwrap().targets()[0].health;
    report_connect(&up, 0, Outcome::TcpFailure);
    report_connect(&up, 0, Outcome::Success);
    report_connect(&up, 0, Outcome::TcpFailure);
    assert_eq!(
        node.status(),
        Status::MostlyHealthy,
        "a success broke the streak"
    );
    report_connect(&up, 0, Outcome::Timeout);
    assert_eq!(node.status(), Status::Unhealthy);
    assert_eq!(node.counters().timeout_failure, 1);
}

/// A probe that answers from a switch, counting its calls.
fn switch_probe(up: Arc<AtomicBool>) -> impl Fn(usize) -> std::future::Ready<Outcome> + Clone {
    move |_| {
        std::future::ready(if up.load(Ordering::Relaxed) {
            Outcome::Success
        } else {
            Outcome::TcpFailure
        })
    }
}

#[tokio::test(start_paused = true)]
async fn active_checks_flip_nodes_on_their_intervals() {
    let up = compile(&checked(json!({"127.0.0.1:1": 1}), active()), None);
    let health = up.health.clone().unwrap();
    let alive = Arc::new(AtomicBool::new(false));
    let checker = tokio::spawn(run(health.clone(), switch_probe(alive.clone())));
    let node = health.targets()[0].health.clone();

    // Healthy nodes are probed every second: the second failure (t=2s) marks it unhealthy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(node.status(), Status::MostlyHealthy);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(node.status(), Status::Unhealthy);

    // Unhealthy nodes are probed every 3 s: successes at t=5s and t=8s bring it back.
    alive.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.status(), Status::MostlyUnhealthy);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(node.status(), Status::Healthy);
    checker.abort();
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let polled = tokio::time::timeout(Duration::from_secs(10), async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(polled.is_ok(), "timed out waiting until {what}");
}

#[tokio::test]
async fn the_manager_runs_checkers_for_the_published_upstreams() {
    use sg_store::{ConfigStore, EmbeddedStore};

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ConfigStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (live_addr, dead_addr) = (live.local_addr().unwrap(), dead.local_addr().unwrap());
    drop(dead);
    // Sub-second intervals (the schema wants whole seconds; the checker does not care).
    let checks = json!({"active": {"type": "tcp", "timeout": 1,
        "healthy": {"interval": 0.02}, "unhealthy": {"interval": 0.02}}});
    let conf = json!({"nodes": {live_addr.to_string(): 1, dead_addr.to_string(): 1},
                      "checks": checks});
    store.put("upstreams", "1", conf, None).await.unwrap();
    let snapshots = crate::run_compiler(store.clone(), Keyring::default())
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let manager = spawn_manager(snapshots.clone(), Arc::default(), stop_rx);

    let health = |snapshots: &crate::SnapshotHandle| -> Arc<UpstreamHealth> {
        let snapshot = snapshots.load();
        let up = snapshot.upstreams().next().unwrap();
        up.health.clone().unwrap()
    };
    let first = health(&snapshots);
    eventually("the closed port is unhealthy", || !first.is_healthy(1)).await;
    assert!(first.is_healthy(0));
    assert_eq!(first.targets()[1].health.counters().tcp_failure, 2);

    // Deleting the upstream stops its checker: nothing holds its health table any more.
    let weak: Weak<UpstreamHealth> = Arc::downgrade(&first);
    drop(first);
    let revision = store.delete("upstreams", "1").await.unwrap().unwrap();
    snapshots.wait_for(revision).await;
    eventually("the checker is released", || weak.upgrade().is_none()).await;

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), manager)
        .await
        .expect("the manager stops")
        .unwrap();
    drop(live);
}
