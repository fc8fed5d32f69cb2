//! Wiring: the control plane on its runtime, the stream listeners on the data plane's workers,
//! and the drain on SIGTERM/SIGINT.

use std::sync::Arc;

use anyhow::Context;
use sg_model::settings::{ConfigProvider, WELL_KNOWN_ADMIN_KEY};
use sg_model::Settings;
use sg_proxy::{Dataplane, Gateway, PrereadLimits, StormGuard, UdpBound, Workers};
use sg_store::{ConfigStore, EmbeddedStore};
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::control_plane::ControlPlane;

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

pub async fn open_store(settings: &Settings) -> Result<Arc<dyn ConfigStore>, StartError> {
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
                .map_err(|e| {
                    let misconfigured = e.is_misconfiguration();
                    let e = anyhow::Error::new(e).context(format!(
                        "loading the configuration from etcd {}",
                        settings.etcd.hosts.join(", ")
                    ));
                    // A wrong CA, certificate or password is a configuration error (exit 64).
                    if misconfigured {
                        StartError::Usage(e)
                    } else {
                        StartError::Fatal(e)
                    }
                })?;
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

/// Runs the gateway until SIGTERM or SIGINT, then drains. The control plane runs on `control`;
/// this future, on home, runs only the data plane's accept loops and the shutdown.
pub async fn run(
    settings: Settings,
    workers: Arc<Workers>,
    control: Handle,
) -> Result<(), StartError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    report(&settings);
    raise_file_limit();
    let settings = Arc::new(settings);
    let plane = control
        .spawn(ControlPlane::start(settings.clone()))
        .await
        .map_err(|e| StartError::Fatal(e.into()))??;

    let (listeners, udp) = if settings.proxy_mode.stream_enabled() {
        let tcp = sg_proxy::bind(&settings.stream_listeners)
            .await
            .map_err(|e| StartError::Fatal(e.into()))?;
        let udp = sg_proxy::bind_udp(&settings.udp_listeners, settings.udp_max_sessions)
            .map_err(|e| StartError::Fatal(e.into()))?;
        (tcp, udp)
    } else {
        (Vec::new(), UdpBound::none())
    };
    let preread = PrereadLimits {
        buffer: settings.preread_buffer,
        timeout: settings.preread_timeout,
    };
    let gateway = Arc::new(Gateway {
        snapshots: plane.snapshots.clone(),
        resolver: plane.resolver.clone(),
        preread,
        fallback_sni: settings
            .fallback_sni
            .as_deref()
            .map(sg_proxy::normalize_sni),
        handshake_timeout: settings.handshake_timeout,
        storm: StormGuard::new(settings.storm),
        drainer: plane.drainer.clone(),
    });
    let dataplane = Dataplane::start(listeners, udp, gateway, workers);

    wait_for_signal().await.map_err(StartError::Fatal)?;
    info!(drain_timeout = ?settings.drain_timeout, "shutting down: closing listeners");
    if let Some(drainer) = &plane.drainer {
        drainer.drain_all();
    }
    let cut = dataplane.drain(settings.drain_timeout).await;
    if cut > 0 {
        warn!(
            sessions = cut,
            "drain timeout reached; closing the remaining sessions"
        );
    }
    // The entries of the sessions that just ended, and those still batched, leave before the
    // process does (as APISIX's batch processors flush when a worker exits).
    if let Err(e) = control.spawn(sg_proxy::flush_syslog()).await {
        warn!(error = %e, "the syslog senders did not flush");
    }
    if let Err(e) = control.spawn(plane.stop()).await {
        warn!(error = %e, "the control plane did not stop cleanly");
    }
    info!("stopped");
    Ok(())
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
