//! streamgate's live figures, as JSON for the dashboard and scripts: per route and per upstream
//! node (`GET /v1/stats`, the same handles the Prometheus series read) and the certificates of
//! the compiled SSL objects (`GET /v1/certificates`).

use axum::body::Body;
use axum::extract::State;
use axum::http::{Response, StatusCode};
use serde_json::{json, Value};
use sg_proxy::{CertificateInfo, UpstreamHealth};

use crate::{counter, reply, ControlState};

/// Every route's open sessions and bytes, and every upstream node's sessions, bytes, failed
/// connects and health.
pub(crate) async fn stats(State(state): State<ControlState>) -> Response<Body> {
    let snapshot = state.snapshots.load();
    let routes: Vec<Value> = snapshot
        .routes
        .iter()
        .map(|route| {
            json!({
                "id": route.id,
                "upstream": route.upstream.as_ref().map(|up| &up.key),
                "active_sessions": route.metrics.active.get(),
                "bytes_to_upstream": route.metrics.to_upstream.get(),
                "bytes_to_client": route.metrics.to_client.get(),
            })
        })
        .collect();
    let mut upstreams: Vec<_> = snapshot.upstreams().collect();
    upstreams.sort_by(|a, b| a.key.cmp(&b.key));
    let upstreams: Vec<Value> = upstreams
        .into_iter()
        .map(|up| {
            let (resource, id) = up.key.split_once('/').unwrap_or((&up.key, ""));
            let nodes: Vec<Value> = up
                .balancer
                .nodes()
                .iter()
                .enumerate()
                .map(|(index, node)| {
                    let figures = up.node_figures(index);
                    json!({
                        "host": node.host,
                        "port": node.port,
                        "weight": node.weight,
                        "priority": node.priority,
                        "health": up.health.as_deref().map(|h| health(h, index)),
                        "active_sessions": figures.active,
                        "sessions": figures.sessions,
                        "bytes_to_upstream": figures.to_upstream,
                        "bytes_to_client": figures.to_client,
                        "connect_failures": figures.connect_failures,
                        "retries": figures.retries,
                    })
                })
                .collect();
            json!({
                "key": up.key,
                "resource": resource,
                "id": id,
                "checks": up.health.as_deref().map(|h| json!({
                    "active": h.checks().active.is_some(),
                    "passive": h.checks().passive_configured,
                })),
                "nodes": nodes,
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        &json!({
            "revision": snapshot.revision,
            "routes": routes,
            "upstreams": upstreams,
        }),
    )
}

/// A checked node's state and counters, as `/v1/healthcheck` shows them.
fn health(health: &UpstreamHealth, index: usize) -> Value {
    let Some(target) = health.targets().get(index) else {
        return Value::Null;
    };
    json!({
        "status": target.health.status().as_str(),
        "counter": counter(&target.health),
    })
}

/// The compiled SSL objects with their SNIs and each chain's leaf certificate.
pub(crate) async fn certificates(State(state): State<ControlState>) -> Response<Body> {
    let snapshot = state.snapshots.load();
    let ssls: Vec<Value> = snapshot
        .tls
        .certificates()
        .into_iter()
        .map(|ssl| {
            let certificates: Vec<Value> = ssl.certificates.iter().map(certificate).collect();
            json!({
                "id": ssl.id,
                "type": ssl.kind,
                "snis": ssl.snis,
                "certificates": certificates,
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        &json!({"revision": snapshot.revision, "ssls": ssls}),
    )
}

fn certificate(info: &CertificateInfo) -> Value {
    json!({
        "subject": info.subject,
        "issuer": info.issuer,
        "not_before": info.not_before,
        "not_after": info.not_after,
    })
}
