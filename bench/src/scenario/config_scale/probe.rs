//! The probe route and its clients: connections from 127.0.0.77, which only the probe route
//! matches, and two listeners of the bench between which the route's upstream alternates, so
//! the listener that accepts tells which version of the route served.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpSocket};

/// The probe clients' source address: no fill route matches it.
pub const PROBE_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);

/// The probe route's Admin API path.
pub const PROBE_ROUTE: &str = "stream_routes/scale-probe";

/// How long one client waits for its connection to reach a listener before another is tried
/// (a client that arrived before the route did may be closed, or held, by the gateway).
const ATTEMPT: Duration = Duration::from_secs(1);

/// Pause between two clients when the last found nothing, so that a gateway still starting is
/// not flooded; short against the figures measured (milliseconds).
const RETRY: Duration = Duration::from_micros(200);

pub struct Probe {
    listeners: [TcpListener; 2],
    gateway: SocketAddr,
}

impl Probe {
    /// Binds the two listeners; clients will connect to `gateway`.
    pub async fn bind(gateway: SocketAddr) -> Result<Probe> {
        let listeners = [
            TcpListener::bind("127.0.0.1:0").await?,
            TcpListener::bind("127.0.0.1:0").await?,
        ];
        Ok(Probe { listeners, gateway })
    }

    /// The probe route with its upstream on listener `target` (0 or 1). No plugin: the gateway
    /// connects upstream as soon as it accepts, without waiting for the client's bytes.
    pub fn route(&self, target: usize) -> Result<Value> {
        let node = self.listeners[target % 2].local_addr()?.to_string();
        Ok(json!({
            "remote_addr": PROBE_IP.to_string(),
            "upstream": {"type": "roundrobin", "nodes": {node: 1}}
        }))
    }

    /// Connects clients one after another until one reaches listener `target`; returns when
    /// that listener accepted. Clients that reach the other listener (the route's previous
    /// version) or that the gateway closes (no route yet) are dropped and another is tried.
    pub async fn until_served(&self, target: usize, patience: Duration) -> Result<Instant> {
        let deadline = Instant::now() + patience;
        let (wanted, other) = (
            &self.listeners[target % 2],
            &self.listeners[(target + 1) % 2],
        );
        loop {
            if Instant::now() > deadline {
                bail!("no client from {PROBE_IP} reached listener {target} within {patience:?}");
            }
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(IpAddr::V4(PROBE_IP), 0))?;
            // Refused while the gateway is not listening yet.
            let Ok(Ok(mut client)) =
                tokio::time::timeout(ATTEMPT, socket.connect(self.gateway)).await
            else {
                tokio::time::sleep(RETRY).await;
                continue;
            };
            let mut byte = [0u8; 1];
            tokio::select! {
                biased;
                accepted = wanted.accept() => {
                    accepted?;
                    return Ok(Instant::now());
                }
                _ = other.accept() => {}
                _ = client.read(&mut byte) => {}
                _ = tokio::time::sleep(ATTEMPT) => {}
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}
