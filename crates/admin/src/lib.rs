//! The Admin API: APISIX's `/apisix/admin` paths, auth, envelopes and status codes for
//! `stream_routes`, `upstreams` and `ssls`. It validates, writes to the store and answers; it
//! never touches the data plane.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]
// Early answers travel as `Err(Response)`; one per request, so their size does not matter.
#![allow(clippy::result_large_err)]

mod auth;
mod body;
mod crud;
mod dispatch;
mod list;
mod meta;
mod patch;
mod reply;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use ipnet::IpNet;
use sg_model::settings::{AdminKey, Settings};
use sg_model::Keyring;
use sg_store::ConfigStore;
use tokio::net::TcpListener;

/// What the Admin API needs from the settings.
#[derive(Clone, Debug)]
pub struct AdminConfig {
    pub keys: Vec<AdminKey>,
    pub key_required: bool,
    pub allow: Vec<IpNet>,
    pub cors: bool,
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
}

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

/// The Admin API as an axum router. Requests need a `ConnectInfo<SocketAddr>` extension (added
/// by [`serve`]) for `allow_admin`.
pub fn router(state: AdminState) -> Router {
    Router::new().fallback(dispatch::handle).with_state(state)
}

/// Serves the Admin API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    state: AdminState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests;
