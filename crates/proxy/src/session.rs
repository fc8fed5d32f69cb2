//! One client connection: match a route on the snapshot loaded at accept time, pick and connect
//! a node with APISIX's retry rules, replay pre-read bytes, copy, and log the session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sg_balancer::{Pick, Tried};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tracing::{info, warn, Instrument};

use crate::compiler::SnapshotHandle;
use crate::copy::{self, Transfer};
use crate::resolve::Resolver;
use crate::upstream::Upstream;
use crate::vars::{key_buf, ConnVars};

/// What every connection shares.
pub struct Gateway {
    pub snapshots: SnapshotHandle,
    pub resolver: Arc<Resolver>,
}

/// Why no upstream connection could be made.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("all upstream servers tried")]
    AllTried,
    #[error("proxy retry timeout, retry count: {0}")]
    RetryTimeout(usize),
    #[error("failed to parse domain: {host}, error: {error}")]
    Domain { host: String, error: std::io::Error },
    #[error("connect() failed ({error}) while connecting to upstream, upstream: {addr}")]
    Connect { addr: SocketAddr, error: String },
}

/// An established upstream connection and the pick that chose it (held for the session's life).
struct Connected {
    stream: TcpStream,
    addr: SocketAddr,
    _pick: Pick,
}

/// Tries nodes until one accepts: the first pick plus `retries` more, each bounded by the
/// connect timeout, and all of them by `retry_timeout` when set.
async fn connect(
    up: &Upstream,
    vars: &ConnVars,
    resolver: &Resolver,
) -> Result<Connected, ConnectError> {
    let started = Instant::now();
    let mut tried = Tried::default();
    let mut last_error = ConnectError::AllTried;
    for attempt in 0..=up.retries {
        if attempt > 0
            && up
                .retry_timeout
                .is_some_and(|limit| started.elapsed() >= limit)
        {
            return Err(ConnectError::RetryTimeout(attempt));
        }
        let mut buf = key_buf();
        let key = vars.hash_key(up.hash_var, &mut buf);
        let Some(pick) = up.balancer.pick(key, &tried) else {
            break;
        };
        tried.insert(pick.index);
        let node = &up.balancer.nodes()[pick.index];
        let ip = match resolver.resolve(&node.host).await {
            Ok(ip) => ip,
            Err(error) => {
                last_error = ConnectError::Domain {
                    host: node.host.clone(),
                    error,
                };
                warn!("{last_error}");
                continue;
            }
        };
        let addr = SocketAddr::new(ip, node.port);
        info!("proxy request to {addr}");
        match timeout(up.connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                return Ok(Connected {
                    stream,
                    addr,
                    _pick: pick,
                })
            }
            Ok(Err(e)) => {
                last_error = ConnectError::Connect {
                    addr,
                    error: e.to_string(),
                }
            }
            Err(_) => {
                last_error = ConnectError::Connect {
                    addr,
                    error: "timed out".to_owned(),
                }
            }
        }
        warn!("{last_error}");
    }
    Err(last_error)
}

/// Closes a refused connection with a reset, as nginx does when it leaves bytes unread.
fn reject(client: TcpStream) {
    let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
    drop(client);
}

/// Serves one accepted client connection to its end.
pub async fn serve(gateway: Arc<Gateway>, client: TcpStream, remote: SocketAddr) {
    let server = match client.local_addr() {
        Ok(addr) => addr,
        Err(_) => return,
    };
    let span = tracing::info_span!("conn", client = %remote, server = %server);
    async move {
        let snapshot = gateway.snapshots.load();
        let Some(route) = snapshot.routes.find(None, remote, server).cloned() else {
            info!("not hit any route");
            return reject(client);
        };
        let vars = ConnVars {
            remote,
            server,
            mqtt_client_id: None,
        };
        let preread: Vec<u8> = Vec::new();
        let Some(upstream) = route.upstream.clone() else {
            warn!(route = %route.id, "no valid upstream node: the route's upstream does not exist");
            return reject(client);
        };
        drop(snapshot);
        let started = Instant::now();
        let connected = match connect(&upstream, &vars, &gateway.resolver).await {
            Ok(connected) => connected,
            Err(e) => {
                warn!(route = %route.id, "failed to connect to an upstream: {e}");
                return reject(client);
            }
        };
        let _ = client.set_nodelay(true);
        let _ = connected.stream.set_nodelay(true);
        let mut stream = connected.stream;
        if !preread.is_empty() {
            if let Err(e) = stream.write_all(&preread).await {
                warn!(route = %route.id, error = %e, "failed to replay the pre-read bytes");
                return reject(client);
            }
        }
        drop(preread);
        let Transfer {
            to_upstream,
            to_client,
            end,
        } = copy::proxy(&client, &stream, upstream.idle_timeout).await;
        info!(
            route = %route.id,
            node = %connected.addr,
            sent = to_upstream,
            received = to_client,
            duration_ms = started.elapsed().as_millis() as u64,
            end = %end,
            "session closed"
        );
    }
    .instrument(span)
    .await
}
