use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use sg_model::resource::MAX_DURATION;

use super::*;

fn put(kind: Kind, id: &str, value: Value) -> Change {
    Change::Put(kind, id.to_owned(), value)
}

fn route_for(snapshot: &Snapshot, remote: &str) -> Option<Arc<Route>> {
    let remote: SocketAddr = remote.parse().unwrap();
    let server: SocketAddr = "127.0.0.1:9100".parse().unwrap();
    snapshot.routes.find(None, remote, server).cloned()
}

fn errors(snapshot: &Snapshot) -> Vec<(Kind, &str)> {
    snapshot
        .errors()
        .iter()
        .map(|e| (e.kind, e.id.as_str()))
        .collect()
}

#[test]
fn extreme_numbers_compile_capped() {
    let mut compilation = Compilation::new(Keyring::default());
    compilation.apply(vec![put(
        Kind::StreamRoute,
        "1",
        json!({"upstream": {"nodes": {"127.0.0.1:1883": 1}, "retries": 1e300,
            "retry_timeout": 1e300, "timeout": {"connect": 1e300, "send": 1, "read": 1e300},
            "checks": {"active": {"timeout": 1e300, "healthy": {"interval": 1e300}}}},
            "plugins": {"limit-conn": {"conn": 18446744073709551615u64, "burst": 1e300,
                "default_conn_delay": 1e300, "key": "remote_addr"}}}),
    )]);
    let snapshot = compilation.snapshot(1);
    assert!(snapshot.errors().is_empty(), "{:?}", snapshot.errors());
    let up = route_for(&snapshot, "127.0.0.1:1")
        .unwrap()
        .upstream
        .clone()
        .unwrap();
    assert_eq!(up.connect_timeout, MAX_DURATION);
    assert_eq!(up.idle_timeout, MAX_DURATION);
    assert_eq!(up.retry_timeout, Some(MAX_DURATION));
    assert_eq!(up.retries, usize::MAX);
}

#[test]
fn a_bad_object_hurts_only_itself_until_fixed() {
    let mut compilation = Compilation::new(Keyring::default());
    compilation.apply(vec![
        put(
            Kind::Upstream,
            "good",
            json!({"nodes": {"127.0.0.1:1883": 1}}),
        ),
        put(
            Kind::Upstream,
            "bad",
            json!({"nodes": {"127.0.0.1:1883": 1}, "timeout": {"connect": "soon"}}),
        ),
        put(
            Kind::StreamRoute,
            "1",
            json!({"remote_addr": "127.0.0.1", "upstream_id": "bad"}),
        ),
        put(
            Kind::StreamRoute,
            "2",
            json!({"remote_addr": "127.0.0.2", "upstream_id": "good"}),
        ),
        put(
            Kind::StreamRoute,
            "3",
            json!({"remote_addr": "127.0.0.3", "plugins": {"nope": {}}}),
        ),
        put(
            Kind::StreamRoute,
            "4",
            json!({"remote_addr": "127.0.0.4", "upstream_id": "gone"}),
        ),
    ]);
    let snapshot = compilation.snapshot(1);
    assert_eq!(
        errors(&snapshot),
        [
            (Kind::StreamRoute, "1"),
            (Kind::StreamRoute, "3"),
            (Kind::StreamRoute, "4"),
            (Kind::Upstream, "bad")
        ]
    );
    let reasons: Vec<&str> = snapshot
        .errors()
        .iter()
        .map(|e| e.reason.as_str())
        .collect();
    assert!(reasons[3].starts_with("timeout.connect: "), "{reasons:?}");
    assert!(reasons[1].contains("unknown plugin [nope]"), "{reasons:?}");
    assert_eq!(reasons[0], "upstream [bad] is rejected");
    assert_eq!(
        reasons[2],
        "failed to fetch upstream info by upstream id [gone]"
    );
    // The good route serves; a route whose upstream is unusable still matches (and closes its
    // connections, as in APISIX); a route that cannot be decoded is left out.
    assert!(route_for(&snapshot, "127.0.0.2:1")
        .unwrap()
        .upstream
        .is_some());
    assert!(route_for(&snapshot, "127.0.0.1:1")
        .unwrap()
        .upstream
        .is_none());
    assert!(route_for(&snapshot, "127.0.0.3:1").is_none());

    compilation.apply(vec![put(
        Kind::Upstream,
        "bad",
        json!({"nodes": {"127.0.0.1:1884": 1}}),
    )]);
    let snapshot = compilation.snapshot(2);
    assert_eq!(
        errors(&snapshot),
        [(Kind::StreamRoute, "3"), (Kind::StreamRoute, "4")]
    );
    let fixed = route_for(&snapshot, "127.0.0.1:1").unwrap();
    assert_eq!(
        fixed.upstream.as_ref().unwrap().balancer.nodes()[0].port,
        1884
    );

    compilation.apply(vec![
        Change::Delete(Kind::StreamRoute, "3".into()),
        put(
            Kind::Upstream,
            "gone",
            json!({"nodes": {"127.0.0.1:1885": 1}}),
        ),
    ]);
    assert!(compilation.snapshot(3).errors().is_empty());
}

#[test]
fn unchanged_objects_keep_their_compilation() {
    let mut compilation = Compilation::new(Keyring::default());
    let chash = json!({"type": "chash", "key": "remote_addr",
        "nodes": {"127.0.0.1:1": 1, "127.0.0.1:2": 1, "127.0.0.1:3": 1}});
    compilation.reload(vec![
        (Kind::Upstream, "u".into(), chash.clone()),
        (
            Kind::StreamRoute,
            "1".into(),
            json!({"remote_addr": "127.0.0.1", "upstream_id": "u"}),
        ),
        (
            Kind::StreamRoute,
            "2".into(),
            json!({"remote_addr": "127.0.0.2", "upstream": chash}),
        ),
    ]);
    let before = compilation.snapshot(1);
    compilation.apply(vec![put(
        Kind::StreamRoute,
        "3",
        json!({"remote_addr": "127.0.0.3"}),
    )]);
    let after = compilation.snapshot(2);
    for remote in ["127.0.0.1:1", "127.0.0.2:1"] {
        let (old, new) = (
            route_for(&before, remote).unwrap(),
            route_for(&after, remote).unwrap(),
        );
        assert!(Arc::ptr_eq(&old, &new), "{remote} was recompiled");
    }
    // Changing the named upstream recompiles the routes that name it, and only those.
    compilation.apply(vec![put(
        Kind::Upstream,
        "u",
        json!({"nodes": {"127.0.0.1:9": 1}}),
    )]);
    let changed = compilation.snapshot(3);
    let named = route_for(&changed, "127.0.0.1:1").unwrap();
    assert_eq!(named.upstream.as_ref().unwrap().balancer.nodes()[0].port, 9);
    let inline = route_for(&changed, "127.0.0.2:1").unwrap();
    assert!(Arc::ptr_eq(
        &inline,
        &route_for(&after, "127.0.0.2:1").unwrap()
    ));
    // A reload of the same objects compiles nothing anew.
    compilation.reload(vec![
        (
            Kind::Upstream,
            "u".into(),
            json!({"nodes": {"127.0.0.1:9": 1}}),
        ),
        (
            Kind::StreamRoute,
            "1".into(),
            json!({"remote_addr": "127.0.0.1", "upstream_id": "u"}),
        ),
    ]);
    let reloaded = compilation.snapshot(4);
    assert!(Arc::ptr_eq(
        &named,
        &route_for(&reloaded, "127.0.0.1:1").unwrap()
    ));
    assert!(route_for(&reloaded, "127.0.0.2:1").is_none());
}

#[test]
fn a_panicking_compilation_becomes_an_error() {
    let outcome: Result<(), CompileError> = guarded(|| panic!("boom"));
    assert_eq!(outcome.unwrap_err().to_string(), "compilation failed: boom");
    let overflow: Result<Duration, CompileError> =
        guarded(|| Ok(Duration::from_secs(u64::MAX) + Duration::from_secs(1)));
    assert!(overflow
        .unwrap_err()
        .to_string()
        .starts_with("compilation failed: "));
}

#[test]
fn deleted_routes_and_departed_nodes_leave_no_metric_series() {
    let mut compilation = Compilation::new(Keyring::default());
    let route = |nodes: Value| json!({"remote_addr": "127.0.0.1", "upstream": {"nodes": nodes}});
    compilation.apply(vec![put(
        Kind::StreamRoute,
        "forgotten",
        route(json!({"127.0.0.1:41001": 1, "127.0.0.1:41002": 1})),
    )]);
    let snapshot = compilation.snapshot(1);
    let compiled = route_for(&snapshot, "127.0.0.1:1").unwrap();
    compiled.metrics.active.inc();
    for port in [41001, 41002] {
        METRICS
            .connect_failures
            .get_or_create(&crate::metrics::NodeLabels {
                upstream: "stream_routes/forgotten".into(),
                node: format!("127.0.0.1:{port}"),
            })
            .inc();
    }
    let text = METRICS.encode();
    assert!(text.contains("route=\"forgotten\""), "{text}");
    assert!(text.contains("node=\"127.0.0.1:41002\""), "{text}");

    compilation.apply(vec![put(
        Kind::StreamRoute,
        "forgotten",
        route(json!({"127.0.0.1:41001": 1})),
    )]);
    let text = METRICS.encode();
    assert!(!text.contains("node=\"127.0.0.1:41002\""), "{text}");
    assert!(text.contains("node=\"127.0.0.1:41001\""), "{text}");

    compilation.apply(vec![Change::Delete(Kind::StreamRoute, "forgotten".into())]);
    let text = METRICS.encode();
    assert!(!text.contains("route=\"forgotten\""), "{text}");
    assert!(!text.contains("node=\"127.0.0.1:41001\""), "{text}");
}
