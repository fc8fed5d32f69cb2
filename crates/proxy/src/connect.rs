//! Reaching an upstream: pick a node, resolve it, connect within `timeout.connect` (and TLS when
//! the upstream's scheme is `tls`), retrying the next untried node on failure as APISIX does.

use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use sg_balancer::{Pick, Tried};
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tracing::{info, warn};

use crate::health::{self, Outcome};
use crate::metrics::{NodeLabels, METRICS};
use crate::resolve::Resolver;
use crate::upstream::Upstream;
use crate::vars::{key_buf, ConnVars};

/// The SNI sent to TLS upstreams when the client sent none, as APISIX does.
const DEFAULT_UPSTREAM_SNI: &str = "apisix_backend";

/// The upstream side of a session.
pub type UpstreamIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// Why no upstream connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
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
pub struct Connected {
    pub stream: UpstreamIo,
    pub addr: SocketAddr,
    pub pick: Pick,
}

/// Connects one node: TCP, then TLS if the upstream asks for it.
async fn connect_node(
    up: &Upstream,
    addr: SocketAddr,
    sni: Option<&str>,
) -> Result<UpstreamIo, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let Some(config) = &up.tls else {
        return Ok(Either::Left(tcp));
    };
    let name = ServerName::try_from(sni.unwrap_or(DEFAULT_UPSTREAM_SNI).to_owned())
        .map_err(|e| format!("invalid upstream SNI: {e}"))?;
    let tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake with the upstream failed: {e}"))?;
    Ok(Either::Right(Box::new(tls)))
}

/// Tries nodes until one accepts: the first pick plus `retries` more, each bounded by the
/// connect timeout, and all of them by `retry_timeout` when set.
pub async fn connect(
    up: &Upstream,
    vars: &ConnVars,
    sni: Option<&str>,
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
        let Some(pick) = health::pick(up, key, &tried) else {
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
        // Labels are built only off the common path (a retry or a failure), never per session.
        let labels = || NodeLabels {
            upstream: up.key.clone(),
            node: node.address(),
        };
        if attempt > 0 {
            METRICS.retries.get_or_create(&labels()).inc();
        }
        info!("proxy request to {addr}");
        let connected = timeout(up.connect_timeout, connect_node(up, addr, sni)).await;
        let (error, outcome) = match connected {
            Ok(Ok(stream)) => {
                health::report_connect(up, pick.index, Outcome::Success);
                return Ok(Connected { stream, addr, pick });
            }
            Ok(Err(error)) => (error, Outcome::TcpFailure),
            Err(_) => ("timed out".to_owned(), Outcome::Timeout),
        };
        health::report_connect(up, pick.index, outcome);
        METRICS.connect_failures.get_or_create(&labels()).inc();
        last_error = ConnectError::Connect { addr, error };
        warn!("{last_error}");
    }
    Err(last_error)
}
