//! The control plane: the store, the snapshot compiler, the resolver, the health checkers, the
//! paced drainer and the Admin, Prometheus and control APIs. It runs on a runtime of its own,
//! so that configuration work never delays the data plane's workers; it reaches them only
//! through the published snapshot.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sg_admin::{AdminConfig, AdminState};
use sg_model::Settings;
use sg_proxy::{Drainer, Resolver, SnapshotHandle};
use tokio::net::TcpListener;
use tokio::runtime::{Builder, Runtime};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::app::{open_store, StartError};
use crate::exporter;

/// The control plane's runtime: one thread, named so in `top -H`.
pub fn runtime() -> std::io::Result<Runtime> {
    Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sg-control")
        .enable_all()
        .build()
}

/// What the data plane takes from the control plane, and the tasks to stop at shutdown.
pub struct ControlPlane {
    pub snapshots: SnapshotHandle,
    pub resolver: Arc<Resolver>,
    pub drainer: Option<Arc<Drainer>>,
    stop: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    servers: Vec<(&'static str, JoinHandle<std::io::Result<()>>)>,
}

impl ControlPlane {
    /// Opens the store, publishes the first snapshot and starts every control task. Runs on
    /// the control runtime: the tasks it spawns stay there.
    pub async fn start(settings: Arc<Settings>) -> Result<ControlPlane, StartError> {
        let store = open_store(&settings).await?;
        sg_model::schema::schemas();
        let compile = sg_proxy::CompileSettings {
            keyring: settings.keyring.clone(),
            session_tickets: settings.ssl_session_tickets,
        };
        let snapshots = sg_proxy::run_compiler(store.clone(), compile)
            .await
            .context("loading the configuration from the store")
            .map_err(StartError::Fatal)?;
        info!(revision = snapshots.load().revision, "configuration loaded");
        let resolver = Arc::new(Resolver::default());
        let mut background = vec![resolver.spawn_refresh(snapshots.clone())];
        let drainer = Drainer::new(settings.drain_rate);
        background.extend(drainer.as_ref().map(|d| d.spawn(snapshots.clone())));
        let (stop, stop_rx) = watch::channel(false);
        background.push(sg_proxy::spawn_manager(
            snapshots.clone(),
            resolver.clone(),
            stop_rx.clone(),
        ));
        let control = sg_control::ControlState {
            snapshots: snapshots.clone(),
            prefix: settings.etcd.prefix.trim_end_matches('/').to_owned(),
        };
        let mut servers = Vec::new();
        if settings.admin_enabled() {
            let state = AdminState {
                config: Arc::new(AdminConfig::from_settings(&settings)),
                store,
                applied: Some(snapshots.published()),
                control: Some(sg_control::router(control.clone())),
            };
            let listener = bind("Admin API", settings.admin.listen).await?;
            servers.push((
                "Admin API",
                tokio::spawn(sg_admin::serve(listener, state, stopped(&stop_rx))),
            ));
        }
        let listener = bind("Prometheus exporter", settings.prometheus_addr).await?;
        servers.push((
            "Prometheus exporter",
            tokio::spawn(exporter::serve(listener, stopped(&stop_rx))),
        ));
        if let Some(listener) = bind_control(&settings).await? {
            servers.push((
                "control API",
                tokio::spawn(sg_control::serve(listener, control, stopped(&stop_rx))),
            ));
        }
        Ok(ControlPlane {
            snapshots,
            resolver,
            drainer,
            stop,
            background,
            servers,
        })
    }

    /// Stops the servers and the background tasks, and waits for the servers to finish.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.background {
            task.abort();
        }
        for (name, task) in self.servers {
            match task.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!(error = %e, "{name} stopped with an error"),
                Err(e) => warn!(error = %e, "{name} task failed"),
            }
        }
    }
}

/// Binds an HTTP server's listener.
async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding the {what} on {addr}"))
        .map_err(StartError::Fatal)?;
    info!(%addr, "{what} listening");
    Ok(listener)
}

/// The control API's listener. Its default address (127.0.0.1:9090) may be taken by another
/// gateway on the host: then it is not served, with a warning; a configured one must bind.
async fn bind_control(settings: &Settings) -> Result<Option<TcpListener>, StartError> {
    let Some(control) = &settings.control else {
        return Ok(None);
    };
    if control.configured {
        return bind("control API", control.listen).await.map(Some);
    }
    match TcpListener::bind(control.listen).await {
        Ok(listener) => {
            info!(addr = %control.listen, "control API listening");
            Ok(Some(listener))
        }
        Err(e) => {
            warn!(addr = %control.listen, error = %e, "the control API is not served: its default address is taken (set apisix.control to move it)");
            Ok(None)
        }
    }
}

/// Resolves once the stop signal is given.
fn stopped(stop: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + Send + 'static {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}
