//! The Prometheus exporter: `GET /apisix/prometheus/metrics` on `plugin_attr.prometheus.export_addr`.

use std::future::Future;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use sg_proxy::METRICS;
use tokio::net::TcpListener;

/// The path APISIX serves its metrics on.
pub const METRICS_PATH: &str = "/apisix/prometheus/metrics";

/// Serves the metrics until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        METRICS_PATH,
        get(|| async {
            (
                [(
                    header::CONTENT_TYPE,
                    "text/plain; version=0.0.4; charset=utf-8",
                )],
                METRICS.encode(),
            )
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
