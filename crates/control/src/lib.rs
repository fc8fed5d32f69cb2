//! APISIX's control API, on `apisix.control` (127.0.0.1:9090 by default): the health of the
//! nodes of every upstream with `checks`, as `GET /v1/healthcheck` and
//! `GET /v1/healthcheck/{upstreams|stream_routes}/<id>` answer under APISIX, and streamgate's
//! `GET /v1/config/errors`: the stored objects the data plane could not use, `GET /v1/stats`:
//! sessions and bytes per route and upstream node, and `GET /v1/certificates`: the SSL objects'
//! certificates.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod stats;

use std::future::Future;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use sg_proxy::SnapshotHandle;
use sg_proxy::{NodeHealth, UpstreamHealth};
use tokio::net::TcpListener;

/// What the handlers read.
#[derive(Clone)]
pub struct ControlState {
    pub snapshots: SnapshotHandle,
    /// The key prefix of checker names (`/apisix`, as `deployment.etcd.prefix`).
    pub prefix: String,
}

/// The control API as an axum router.
pub fn router(state: ControlState) -> Router {
    Router::new()
        .route("/v1/healthcheck", get(all_checkers))
        .route("/v1/healthcheck/{src_type}", get(missing_id))
        .route("/v1/healthcheck/{src_type}/{src_id}", get(one_checker))
        .route("/v1/config/errors", get(config_errors))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/certificates", get(stats::certificates))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 Route Not Found") })
        .with_state(state)
}

/// Serves the control API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: ControlState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    reply(status, &json!({ "error_msg": msg.into() }))
}

/// One checker as APISIX shows it: `name`, `type` and the `nodes` with their counters.
fn checker_info(prefix: &str, health: &UpstreamHealth) -> Value {
    let hostname = health
        .checks()
        .active
        .as_ref()
        .and_then(|a| a.host.as_deref());
    let nodes: Vec<Value> = health
        .targets()
        .iter()
        .map(|target| {
            let ip = target.host.trim_start_matches('[').trim_end_matches(']');
            json!({
                "ip": ip,
                "port": target.port,
                "hostname": hostname.unwrap_or(ip),
                "status": target.health.status().as_str(),
                "counter": counter(&target.health),
            })
        })
        .collect();
    json!({
        "name": format!("{prefix}/{}", health.key()),
        "type": health.checks().kind.as_str(),
        "nodes": nodes,
    })
}

/// A node's current streaks, as APISIX's control API shows them.
fn counter(health: &NodeHealth) -> Value {
    let counters = health.counters();
    json!({
        "success": counters.success,
        "tcp_failure": counters.tcp_failure,
        "timeout_failure": counters.timeout_failure,
        "http_failure": counters.http_failure,
    })
}

async fn all_checkers(State(state): State<ControlState>) -> Response<Body> {
    let snapshot = state.snapshots.load();
    let mut checkers: Vec<&UpstreamHealth> = snapshot
        .upstreams()
        .filter_map(|up| up.health.as_deref())
        .collect();
    checkers.sort_by(|a, b| a.key().cmp(b.key()));
    let infos: Vec<Value> = checkers
        .into_iter()
        .map(|health| checker_info(&state.prefix, health))
        .collect();
    reply(StatusCode::OK, &Value::Array(infos))
}

/// The stored objects the data plane leaves out (or whose upstream it cannot use), and why.
async fn config_errors(State(state): State<ControlState>) -> Response<Body> {
    let snapshot = state.snapshots.load();
    let errors: Vec<Value> = snapshot
        .errors()
        .iter()
        .map(|e| {
            json!({
                "key": format!("{}/{}/{}", state.prefix, e.kind.dir(), e.id),
                "resource": e.kind.dir(),
                "id": e.id,
                "reason": e.reason,
            })
        })
        .collect();
    reply(
        StatusCode::OK,
        &json!({"revision": snapshot.revision, "total": errors.len(), "errors": errors}),
    )
}

async fn missing_id(Path(src_type): Path<String>) -> Response<Body> {
    error(
        StatusCode::NOT_FOUND,
        format!("missing src id for src type {src_type}"),
    )
}

async fn one_checker(
    State(state): State<ControlState>,
    Path((src_type, src_id)): Path<(String, String)>,
) -> Response<Body> {
    // APISIX's kinds, plus the stream routes whose inline upstream has checks.
    if !matches!(
        src_type.as_str(),
        "routes" | "services" | "upstreams" | "stream_routes"
    ) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("invalid src type {src_type}"),
        );
    }
    let key = format!("{src_type}/{src_id}");
    let snapshot = state.snapshots.load();
    let Some(upstream) = snapshot.upstream(&key) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("{src_type}[{src_id}] not found"),
        );
    };
    match upstream.health.as_deref() {
        Some(health) => reply(StatusCode::OK, &checker_info(&state.prefix, health)),
        None => error(
            StatusCode::NOT_FOUND,
            format!("no checker for {src_type}[{src_id}]"),
        ),
    }
}

#[cfg(test)]
mod tests;
