//! Wiring: store, snapshot compiler, stream listeners, health checkers, Admin and control APIs,
//! and the drain on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use sg_admin::{AdminConfig, AdminState};
use sg_model::settings::{ConfigProvider, WELL_KNOWN_ADMIN_KEY};
use sg_model::Settings;
use sg_proxy::drain::Drainer;
use sg_proxy::preread::PrereadLimits;
use sg_proxy::resolve::Resolver;
use sg_proxy::storm::StormGuard;
use sg_proxy::workers::Workers;
use sg_proxy::{Dataplane, Gateway};
use sg_store::{ConfigStore, EmbeddedStore};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::exporter;

/// Why start-up failed: a configuration the user must fix (exit 64), or anything else.
pub enum StartError {
    Usage(anyhow::Error),
    Fatal(anyhow::Error),
}

/// Raises the open-file limit to its hard maximum: every proxied session holds two sockets.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open file limit"),
        Err(e) => warn!(error = %e, "cannot raise the open file limit"),
    }
}

fn report(settings: &Settings) {
    for warning in &settings.warnings {
        warn!("{warning}");
    }
    for (name, key) in &settings.admin.generated {
        warn!(name, key, "generated an admin key for an empty `admin_key` entry (set one in config.yaml to keep it across restarts)");
    }
    if settings
        .admin
        .keys
        .iter()
        .any(|k| k.key == WELL_KNOWN_ADMIN_KEY)
    {
        warn!("the admin key {WELL_KNOWN_ADMIN_KEY} is published in APISIX's docs: change it before exposing the Admin API");
    }
    if !settings.proxy_mode.stream_enabled() {
        warn!("apisix.proxy_mode is http: stream routes are disabled and no stream port is opened");
    }
}

async fn open_store(settings: &Settings) -> Result<Arc<dyn ConfigStore>, StartError> {
    match settings.config_provider {
        ConfigProvider::Embedded => {
            let store = EmbeddedStore::open(&settings.embedded_path)
                .with_context(|| format!("opening the embedded store {}", settings.embedded_path.display()))
                .map_err(StartError::Fatal)?;
            info!(path = %settings.embedded_path.display(), "embedded config store open");
            Ok(Arc::new(store))
        }
        ConfigProvider::Etcd => {
            let store = sg_store::EtcdStore::connect(&settings.etcd, settings.keyring.clone())
                .await
                .with_context(|| format!("loading the configuration from etcd {}", settings.etcd.hosts.join(", ")))
                .map_err(StartError::Fatal)?;
            Ok(Arc::new(store))
        }
        ConfigProvider::Yaml if settings.role == sg_model::settings::Role::DataPlane => {
            let path = &settings.standalone_path;
            let store = sg_store::YamlStore::open(path, settings.keyring.clone())
                .await
                .with_context(|| format!("opening the standalone configuration {}", path.display()))
                .map_err(StartError::Fatal)?;
            info!(path = %path.display(), "standalone configuration file, no Admin API");
            Ok(Arc::new(store))
        }
        ConfigProvider::Yaml => Err(StartError::Usage(anyhow::anyhow!(
            "invalid configuration `config_provider`: yaml (a standalone apisix.yaml) needs `deployment.role: data_plane` with `role_data_plane.config_provider: yaml`"
        ))),
    }
}

/// Runs the gateway until SIGTERM or SIGINT, then drains.
pub async fn run(settings: Settings, workers: Arc<Workers>) -> Result<(), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    report(&settings);
    raise_file_limit();
    let store = open_store(&settings).await?;
    sg_model::schema::schemas();
    let snapshots = sg_proxy::run_compiler(store.clone(), settings.keyring.clone())
        .await
        .context("loading the configuration from the store")
        .map_err(StartError::Fatal)?;
    info!(revision = snapshots.load().revision, "configuration loaded");

    let listeners = if settings.proxy_mode.stream_enabled() {
        sg_proxy::listener::bind(&settings.stream_listeners)
            .await
            .map_err(|e| StartError::Fatal(e.into()))?
    } else {
        Vec::new()
    };
    let resolver = Arc::new(Resolver::default());
    let refresh = resolver.spawn_refresh(snapshots.clone());
    let preread = PrereadLimits {
        buffer: settings.preread_buffer,
        timeout: settings.preread_timeout,
    };
    let drainer = Drainer::new(settings.drain_rate);
    let drain_task = drainer.as_ref().map(|d| d.spawn(snapshots.clone()));
    let gateway = Arc::new(Gateway {
        snapshots: snapshots.clone(),
        resolver: resolver.clone(),
        preread,
        fallback_sni: settings
            .fallback_sni
            .as_deref()
            .map(sg_proxy::tls::normalize_sni),
        handshake_timeout: settings.handshake_timeout,
        storm: StormGuard::new(settings.storm),
        drainer: drainer.clone(),
    });
    let dataplane = Dataplane::start(listeners, gateway, workers);

    let (stop_tx, stop_rx) = watch::channel(false);
    let checkers = sg_proxy::health::spawn_manager(snapshots.clone(), resolver, stop_rx.clone());
    let mut servers = Vec::new();
    if settings.admin_enabled() {
        let state = AdminState {
            config: Arc::new(AdminConfig::from_settings(&settings)),
            store,
            applied: Some(snapshots.published()),
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
        let state = sg_control::ControlState {
            snapshots: snapshots.clone(),
            prefix: settings.etcd.prefix.trim_end_matches('/').to_owned(),
        };
        servers.push((
            "control API",
            tokio::spawn(sg_control::serve(listener, state, stopped(&stop_rx))),
        ));
    }

    wait_for_signal().await.map_err(StartError::Fatal)?;
    info!(drain_timeout = ?settings.drain_timeout, "shutting down: closing listeners");
    let _ = stop_tx.send(true);
    if let Some(drainer) = &drainer {
        drainer.drain_all();
    }
    let cut = dataplane.drain(settings.drain_timeout).await;
    if cut > 0 {
        warn!(
            sessions = cut,
            "drain timeout reached; closing the remaining sessions"
        );
    }
    refresh.abort();
    if let Some(task) = drain_task {
        task.abort();
    }
    if let Err(e) = checkers.await {
        warn!(error = %e, "health checker task failed");
    }
    for (name, task) in servers {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => warn!(error = %e, "{name} stopped with an error"),
            Err(e) => warn!(error = %e, "{name} task failed"),
        }
    }
    info!("stopped");
    Ok(())
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

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
