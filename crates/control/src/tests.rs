//! The control API through its router (no sockets), over snapshots compiled from a real store.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use sg_model::Keyring;
use sg_proxy::{Outcome, Source};
use sg_store::{ConfigStore, EmbeddedStore};
use tower::ServiceExt;

use crate::{router, ControlState};

struct Harness {
    state: ControlState,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ConfigStore> =
        Arc::new(EmbeddedStore::open(&dir.path().join("db")).unwrap());
    let checks = json!({"active": {"type": "tcp", "port": 1884}});
    let objects = [
        (
            "upstreams",
            "1",
            json!({"nodes": {"127.0.0.1:1883": 1, "[::1]:1883": 1}, "checks": checks}),
        ),
        ("upstreams", "2", json!({"nodes": {"127.0.0.1:1883": 1}})),
        (
            "stream_routes",
            "r",
            json!({"upstream": {"nodes": {"127.0.0.2:1883": 1},
            "checks": {"active": {"host": "probe.local"}}}}),
        ),
        // As etcdctl could write it: no Admin API check ran.
        (
            "upstreams",
            "bad",
            json!({"nodes": {"127.0.0.1:1883": "heavy"}}),
        ),
    ];
    for (dir, id, value) in objects {
        store.put(dir, id, value, None).await.unwrap();
    }
    let snapshots = sg_proxy::run_compiler(store, Keyring::default())
        .await
        .unwrap();
    Harness {
        state: ControlState {
            snapshots,
            prefix: "/apisix".into(),
        },
        _dir: dir,
    }
}

async fn get(h: &Harness, uri: &str) -> (StatusCode, Value) {
    let request = Request::get(uri).body(Body::empty()).unwrap();
    let response = router(h.state.clone()).oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(response.headers()["content-type"], "application/json");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test]
async fn lists_every_checked_upstream_in_apisix_shape() {
    let h = harness().await;
    let snapshot = h.state.snapshots.load();
    let checked = snapshot
        .upstreams()
        .find(|up| up.key == "upstreams/1")
        .unwrap();
    let health = checked.health.as_ref().unwrap();
    health.record(1, Outcome::TcpFailure, Source::Passive);
    health.record(1, Outcome::Timeout, Source::Passive);

    let (status, body) = get(&h, "/v1/healthcheck").await;
    assert_eq!(status, StatusCode::OK);
    let zero = json!({"success": 0, "tcp_failure": 0, "timeout_failure": 0, "http_failure": 0});
    assert_eq!(
        body,
        json!([
            {"name": "/apisix/stream_routes/r", "type": "http", "nodes": [
                {"ip": "127.0.0.2", "port": 1883, "hostname": "probe.local",
                 "status": "healthy", "counter": zero}]},
            {"name": "/apisix/upstreams/1", "type": "tcp", "nodes": [
                {"ip": "127.0.0.1", "port": 1884, "hostname": "127.0.0.1",
                 "status": "healthy", "counter": zero},
                {"ip": "::1", "port": 1884, "hostname": "::1", "status": "mostly_healthy",
                 "counter": {"success": 0, "tcp_failure": 1, "timeout_failure": 1,
                             "http_failure": 0}}]},
        ])
    );
}

#[tokio::test]
async fn answers_one_checker_or_apisix_errors() {
    let h = harness().await;
    let (status, body) = get(&h, "/v1/healthcheck/upstreams/1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "/apisix/upstreams/1");
    assert_eq!(body["nodes"].as_array().unwrap().len(), 2);
    let (status, body) = get(&h, "/v1/healthcheck/stream_routes/r").await;
    assert_eq!(
        (status, body["type"].as_str()),
        (StatusCode::OK, Some("http"))
    );

    for (uri, code, msg) in [
        (
            "/v1/healthcheck/upstreams/2",
            404,
            "no checker for upstreams[2]",
        ),
        ("/v1/healthcheck/upstreams/9", 404, "upstreams[9] not found"),
        ("/v1/healthcheck/routes/1", 404, "routes[1] not found"),
        ("/v1/healthcheck/ssls/1", 400, "invalid src type ssls"),
        (
            "/v1/healthcheck/upstreams",
            404,
            "missing src id for src type upstreams",
        ),
        ("/v1/nothing", 404, "404 Route Not Found"),
    ] {
        let (status, body) = get(&h, uri).await;
        assert_eq!(status.as_u16(), code, "{uri}");
        assert_eq!(body, json!({"error_msg": msg}), "{uri}");
    }
}

#[tokio::test]
async fn lists_the_objects_left_out() {
    let h = harness().await;
    let (status, body) = get(&h, "/v1/config/errors").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["total"], 1);
    let error = &body["errors"][0];
    assert_eq!(error["key"], "/apisix/upstreams/bad");
    assert_eq!(error["resource"], "upstreams");
    let reason = error["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("nodes: node 127.0.0.1:1883: weight: "),
        "{reason}"
    );
    // Everything else was compiled.
    assert_eq!(h.state.snapshots.load().upstreams().count(), 3);
}

#[tokio::test]
async fn stats_show_each_node_and_route() {
    let h = harness().await;
    let snapshot = h.state.snapshots.load();
    let plain = snapshot.upstream("upstreams/2").unwrap();
    let node = plain.node_metrics(0).unwrap();
    node.opened();
    node.closed(10, 20);
    node.opened();
    let checked = snapshot.upstream("upstreams/1").unwrap();
    checked.node_metrics(1).unwrap().connect_failures.inc();

    let (status, body) = get(&h, "/v1/stats").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["revision"], snapshot.revision);
    assert_eq!(
        body["routes"],
        json!([{"id": "r", "upstream": "stream_routes/r", "active_sessions": 0,
                "bytes_to_upstream": 0, "bytes_to_client": 0}])
    );
    let upstreams = body["upstreams"].as_array().unwrap();
    let keys: Vec<&str> = upstreams
        .iter()
        .map(|u| u["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["stream_routes/r", "upstreams/1", "upstreams/2"]);
    assert_eq!(
        upstreams[2],
        json!({"key": "upstreams/2", "resource": "upstreams", "id": "2", "checks": null,
               "nodes": [{"host": "127.0.0.1", "port": 1883, "weight": 1, "priority": 0,
                          "health": null, "active_sessions": 1, "sessions": 2,
                          "bytes_to_upstream": 10, "bytes_to_client": 20,
                          "connect_failures": 0, "retries": 0}]})
    );
    assert_eq!(
        upstreams[1]["checks"],
        json!({"active": true, "passive": false})
    );
    let node = &upstreams[1]["nodes"][1];
    assert_eq!(node["host"], "[::1]");
    assert_eq!(node["connect_failures"], 1);
    assert_eq!(node["health"]["status"], "healthy");
    // Series are made by traffic only: a configured node without any has none.
    let exposition = sg_proxy::METRICS.encode();
    assert!(exposition.contains(
        "streamgate_upstream_node_sessions_total{upstream=\"upstreams/2\",node=\"127.0.0.1:1883\"} 2"
    ));
    assert!(
        !exposition.contains("_sessions_total{upstream=\"stream_routes/r\""),
        "{exposition}"
    );
}
