//! The Admin API: APISIX's `/apisix/admin` paths, auth, envelopes and status codes for
//! `stream_routes`, `upstreams` and `ssls`. It validates, writes to the store and answers; it
//! never touches the data plane.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Early answers travel as `Err(Response)`; one per request, so their size does not matter.
#![allow(clippy::result_large_err)]

mod auth;
mod body;
mod cors;
mod crud;
mod list;
mod meta;
mod patch;
mod path;
mod reply;
mod routes;
mod target;
mod ui;

pub use routes::router;
pub use ui::CONTROL_PREFIX;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use ipnet::IpNet;
use sg_model::settings::{AdminKey, Settings};
use sg_model::Keyring;
use sg_store::ConfigStore;
use tokio::net::TcpListener;
use tower::ServiceExt;

/// What the Admin API needs from the settings.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub keys: Vec<AdminKey>,
    pub key_required: bool,
    pub allow: Vec<IpNet>,
    pub cors: bool,
    /// `enable_admin_ui`: serve the dashboard at `/ui/`.
    pub ui: bool,
    /// `apisix.proxy_mode` includes stream: stream routes may be managed.
    pub stream_enabled: bool,
    pub keyring: Keyring,
    /// The key prefix shown in responses (`/apisix`).
    pub prefix: String,
}

impl AdminConfig {
    /// The Admin API part of the settings.
    pub fn from_settings(settings: &Settings) -> Self {
        AdminConfig {
            keys: settings.admin.keys.clone(),
            key_required: settings.admin.key_required,
            allow: settings.admin.allow.clone(),
            cors: settings.admin.cors,
            ui: settings.admin.ui,
            stream_enabled: settings.proxy_mode.stream_enabled(),
            keyring: settings.keyring.clone(),
            prefix: settings.etcd.prefix.trim_end_matches('/').to_owned(),
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct AdminState {
    pub config: Arc<AdminConfig>,
    pub store: Arc<dyn ConfigStore>,
    /// The store revision the local data plane has published; when set, a write is answered
    /// only once it reaches new connections (bounded by [`APPLY_WAIT`]).
    pub applied: Option<tokio::sync::watch::Receiver<u64>>,
    /// The control API, which the dashboard reads under [`CONTROL_PREFIX`] with an admin key.
    pub control: Option<axum::Router>,
}

/// A request's query arguments, decoded, in their order.
type QueryArgs = Vec<(String, String)>;

/// The longest a write's answer waits for the local data plane to publish it.
pub const APPLY_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

impl AdminState {
    /// Waits (bounded) until the data plane has published `revision`.
    pub(crate) async fn wait_applied(&self, revision: u64) {
        if let Some(applied) = &self.applied {
            let mut applied = applied.clone();
            let _ = tokio::time::timeout(APPLY_WAIT, applied.wait_for(|r| *r >= revision)).await;
        }
    }
}

/// How long a client may take to send a request's headers, and how long an idle keep-alive
/// connection is kept.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves the Admin API on `listener` until `shutdown` resolves, then lets open requests finish.
///
/// `axum::serve` would add the `ConnectInfo` itself, but it cannot bound the time a client takes
/// to send its headers; hyper's connection builder can, so the accept loop stays here.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state);
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    tokio::pin!(shutdown);
    loop {
        let (stream, client) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "Admin API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(client));
                request
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %client, "Admin API connection ended");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests;
