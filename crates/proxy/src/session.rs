//! One client connection: match a route on the snapshot loaded at accept time, pick and connect
//! a node with APISIX's retry rules, replay pre-read bytes, copy, and log the session.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use sg_balancer::{Pick, Tried};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tracing::{info, warn, Instrument};

use crate::compiler::SnapshotHandle;
use crate::copy::{Relay, Transfer};
use crate::resolve::Resolver;
use crate::route::Route;
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
    pick: Pick,
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
            Ok(Ok(stream)) => return Ok(Connected { stream, addr, pick }),
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

pin_project! {
    /// A session whose upstream is connected: exactly what the long copy phase keeps.
    struct Established {
        #[pin]
        relay: Relay,
        node: SocketAddr,
        route: Arc<Route>,
        started: Instant,
        span: tracing::Span,
        _pick: Pick,
    }
}

impl Future for Established {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        let _in_span = this.span.enter();
        let Transfer {
            to_upstream,
            to_client,
            end,
        } = ready!(this.relay.poll(cx));
        info!(
            route = %this.route.id,
            node = %this.node,
            sent = to_upstream,
            received = to_client,
            duration_ms = this.started.elapsed().as_millis() as u64,
            end = %end,
            "session closed"
        );
        Poll::Ready(())
    }
}

/// Opens the connection's span, then sets the session up inside it.
async fn establish(
    gateway: Arc<Gateway>,
    client: TcpStream,
    remote: SocketAddr,
) -> Option<Established> {
    let server = client.local_addr().ok()?;
    let span = tracing::info_span!("conn", client = %remote, server = %server);
    set_up(gateway, client, remote, server, span.clone())
        .instrument(span)
        .await
}

/// Matches the route, runs the pre-read phase and connects the upstream. `None`: the client
/// was refused (and its connection closed).
async fn set_up(
    gateway: Arc<Gateway>,
    client: TcpStream,
    remote: SocketAddr,
    server: SocketAddr,
    span: tracing::Span,
) -> Option<Established> {
    let snapshot = gateway.snapshots.load();
    let Some(route) = snapshot.routes.find(None, remote, server).cloned() else {
        info!("not hit any route");
        reject(client);
        return None;
    };
    drop(snapshot);
    let vars = ConnVars {
        remote,
        server,
        mqtt_client_id: None,
    };
    let preread: Vec<u8> = Vec::new();
    let Some(upstream) = route.upstream.clone() else {
        warn!(route = %route.id, "no valid upstream node: the route's upstream does not exist");
        reject(client);
        return None;
    };
    let started = Instant::now();
    let connected = match connect(&upstream, &vars, &gateway.resolver).await {
        Ok(connected) => connected,
        Err(e) => {
            warn!(route = %route.id, "failed to connect to an upstream: {e}");
            reject(client);
            return None;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = connected.stream.set_nodelay(true);
    let mut stream = connected.stream;
    if !preread.is_empty() {
        if let Err(e) = stream.write_all(&preread).await {
            warn!(route = %route.id, error = %e, "failed to replay the pre-read bytes");
            reject(client);
            return None;
        }
    }
    Some(Established {
        relay: Relay::new(client, stream, upstream.idle_timeout),
        node: connected.addr,
        route,
        started,
        span,
        _pick: connected.pick,
    })
}

type SetUp = Pin<Box<dyn Future<Output = Option<Established>> + Send>>;

pin_project! {
    /// One client connection, from accept to close: a boxed set-up phase (freed once the
    /// upstream is connected), then the relay, held inline.
    #[project = SessionProj]
    pub enum Session {
        SettingUp { set_up: SetUp },
        Relaying { #[pin] established: Established },
    }
}

impl Future for Session {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            match self.as_mut().project() {
                SessionProj::SettingUp { set_up } => match ready!(set_up.as_mut().poll(cx)) {
                    Some(established) => self.set(Session::Relaying { established }),
                    None => return Poll::Ready(()),
                },
                SessionProj::Relaying { established } => return established.poll(cx),
            }
        }
    }
}

/// The session task of one accepted client connection.
pub fn serve(gateway: Arc<Gateway>, client: TcpStream, remote: SocketAddr) -> Session {
    Session::SettingUp {
        set_up: Box::pin(establish(gateway, client, remote)),
    }
}
