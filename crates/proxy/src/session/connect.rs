//! Reaching an upstream: pick a node, resolve it, connect within `timeout.connect` (and TLS when
//! the upstream's scheme is `tls`), hand it the pre-read bytes, and on failure retry the next
//! untried node as APISIX does.

use std::io;
use std::net::SocketAddr;

use rustls::pki_types::ServerName;
use sg_balancer::{NodeSpec, Pick, Tried};
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{timeout, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;
use tokio_util::either::Either;
use tracing::{info, warn};

use crate::config::resolve::Resolver;
use crate::config::upstream::Upstream;
use crate::health::{self, Outcome};
use crate::metrics::logs::{self, LogKind};
use crate::session::error::{Error, ErrorKind};
use crate::session::vars::{key_buf, ConnVars};

/// The SNI sent to TLS upstreams when the client sent none, as APISIX does.
const DEFAULT_UPSTREAM_SNI: &str = "apisix_backend";

/// The upstream side of a session.
pub type UpstreamIo = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// An established upstream connection and the pick that chose it (held for the session's life).
pub struct Connected {
    pub stream: UpstreamIo,
    pub addr: SocketAddr,
    pub pick: Pick,
}

/// Connects one node (TCP, then TLS if the upstream asks for it) and sends it `proxy_header`
/// (when the listener sends the PROXY protocol), then `early`, the client's pre-read bytes. A
/// node that refuses them counts as a failed connect.
async fn connect_node(
    up: &Upstream,
    addr: SocketAddr,
    sni: Option<&str>,
    proxy_header: &[u8],
    early: &[u8],
) -> Result<UpstreamIo, Error> {
    let failed = |e: io::Error| Error::new(ErrorKind::of_connect(&e)).on(addr).because(e);
    let Some(config) = &up.tls else {
        let tcp = if proxy_header.is_empty() {
            connect_sending(addr, early).await
        } else {
            connect_sending(addr, &[proxy_header, early].concat()).await
        };
        return Ok(Either::Left(tcp.map_err(failed)?));
    };
    // The PROXY header travels in the clear, before the TLS handshake.
    let tcp = connect_sending(addr, proxy_header).await.map_err(failed)?;
    let tls_failed = || Error::new(ErrorKind::UpstreamTls).on(addr);
    let name = ServerName::try_from(sni.unwrap_or(DEFAULT_UPSTREAM_SNI).to_owned())
        .map_err(|e| tls_failed().because(e))?;
    let mut tls = TlsConnector::from(config.clone())
        .connect(name, tcp)
        .await
        .map_err(|e| tls_failed().because(e))?;
    tls.write_all(early).await.map_err(failed)?;
    Ok(Either::Right(Box::new(tls)))
}

/// Opens a TCP connection and sends `early` on it. The bytes are offered right after
/// `connect()`, before waiting for writability: on loopback and other fast paths the handshake
/// has completed by then, which saves a readiness round trip per session (a socket still
/// connecting answers EAGAIN, and the wait below follows).
async fn connect_sending(addr: SocketAddr, early: &[u8]) -> io::Result<TcpStream> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if !early.is_empty() {
        // Delayed-ACK mode: Linux then holds back the handshake's last ACK so that it rides on
        // the first bytes sent below (one segment fewer, and the peer accepts and reads in one
        // wake-up). Quick ACKs are restored once they are sent.
        socket.set_tcp_quickack(false)?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let sent = if early.is_empty() {
        0
    } else {
        match socket.send(early) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        }
    };
    let mut stream = TcpStream::from_std(socket.into())?;
    if sent == 0 {
        // Not known to be connected yet: wait as `TcpStream::connect` does.
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    stream.write_all(&early[sent..]).await?;
    if !early.is_empty() {
        // A delayed ACK of the peer's first reply would stall its next small packet for up
        // to 40 ms when the peer uses Nagle (mosquitto does by default).
        SockRef::from(&stream).set_tcp_quickack(true)?;
    }
    Ok(stream)
}

/// Tries nodes until one accepts: the first pick plus `retries` more, each bounded by the
/// connect timeout, and all of them by `retry_timeout` when set.
/// `early` (the pre-read bytes) reaches the chosen node before this returns.
///
/// `answers`: the server answers `early` at once (MQTT's CONNACK). A node then takes at most
/// [`crate::config::upstream::PENDING_PER_NODE`] such sessions until their first answer (over plain
/// TCP; a TLS handshake already shows that the node took the connection); the others wait for
/// a turn within the connect timeout.
pub async fn connect(
    up: &Upstream,
    vars: &ConnVars,
    sni: Option<&str>,
    proxy_header: &[u8],
    early: &[u8],
    answers: bool,
    resolver: &Resolver,
) -> Result<Connected, Error> {
    let started = Instant::now();
    let mut tried = Tried::default();
    let mut last_error = Error::new(ErrorKind::AllTried);
    for attempt in 0..=up.retries {
        if attempt > 0
            && up
                .retry_timeout
                .is_some_and(|limit| started.elapsed() >= limit)
        {
            return Err(Error::new(ErrorKind::RetryTimeout).on(attempt));
        }
        let Some((pick, node)) = next_node(up, vars, &mut tried) else {
            break;
        };
        let ip = match resolver.resolve(&node.host).await {
            Ok(ip) => ip,
            Err(error) => {
                last_error = unresolved(node, error);
                continue;
            }
        };
        let addr = SocketAddr::new(ip, node.port);
        if attempt > 0 {
            if let Some(node) = up.node_metrics(pick.index) {
                node.retries.inc();
            }
        }
        info!("proxy request to {addr}");
        let attempt = async {
            let turn = if answers {
                up.pending[pick.index].acquire().await.ok()
            } else {
                None
            };
            let stream = connect_node(up, addr, sni, proxy_header, early).await?;
            if let (Some(_), Either::Left(tcp)) = (&turn, &stream) {
                tcp.readable()
                    .await
                    .map_err(|e| Error::new(ErrorKind::of_connect(&e)).on(addr).because(e))?;
            }
            Ok::<_, Error>(stream)
        };
        let connected = timeout(up.connect_timeout, attempt).await;
        let (error, outcome) = match connected {
            Ok(Ok(stream)) => {
                health::report_connect(up, pick.index, Outcome::Success);
                return Ok(Connected { stream, addr, pick });
            }
            Ok(Err(error)) => (error, Outcome::TcpFailure),
            Err(_) => (
                Error::new(ErrorKind::ConnectTimedOut).on(addr),
                Outcome::Timeout,
            ),
        };
        attempt_failed(up, &pick, outcome, &error);
        last_error = error;
    }
    Err(last_error)
}

/// The next node a session tries: the balancer's pick for the session's hash key among the
/// nodes not tried yet (healthy ones first), then counted as tried.
pub(crate) fn next_node<'u>(
    up: &'u Upstream,
    vars: &ConnVars,
    tried: &mut Tried,
) -> Option<(Pick, &'u NodeSpec)> {
    let mut buf = key_buf();
    let key = vars.hash_key(up.hash_var, &mut buf);
    let pick = health::pick(up, key, tried)?;
    tried.insert(pick.index);
    let node = &up.balancer.nodes()[pick.index];
    Some((pick, node))
}

/// The error of a node whose name did not resolve, logged (rate-limited).
pub(crate) fn unresolved(
    node: &NodeSpec,
    cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    let error = Error::new(ErrorKind::Resolve).on(&node.host).because(cause);
    if logs::allow(LogKind::Upstream) {
        warn!("{error}");
    }
    error
}

/// Reports a failed attempt on the node `pick` chose to its passive health check, counts it
/// and logs it (rate-limited).
pub(crate) fn attempt_failed(up: &Upstream, pick: &Pick, outcome: Outcome, error: &Error) {
    health::report_connect(up, pick.index, outcome);
    if let Some(node) = up.node_metrics(pick.index) {
        node.connect_failures.inc();
    }
    if logs::allow(LogKind::Upstream) {
        warn!("{error}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use serde_json::json;
    use sg_model::Keyring;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;
    use tokio::task::JoinSet;

    use super::*;
    use crate::config::tls::TlsTable;
    use crate::config::upstream::PENDING_PER_NODE;

    /// `sessions` connects at once to the node at `addr`, each sending one byte.
    fn connecting(addr: SocketAddr, sessions: usize, answers: bool) -> JoinSet<SocketAddr> {
        let conf = json!({"nodes": {addr.to_string(): 1}, "timeout": {"connect": 30}});
        let up = Upstream::compile(
            "upstreams/1".into(),
            &sg_model::decode(&conf).unwrap(),
            None,
            &TlsTable::default(),
            &Keyring::default(),
        )
        .unwrap();
        let (up, resolver) = (Arc::new(up), Arc::new(Resolver::default()));
        let mut connecting = JoinSet::new();
        for _ in 0..sessions {
            let (up, resolver) = (up.clone(), resolver.clone());
            connecting.spawn(async move {
                let vars = ConnVars {
                    remote: addr,
                    server: addr,
                    proxy_protocol: None,
                    mqtt_client_id: None,
                };
                let connected = connect(&up, &vars, None, b"", b"\x10", answers, &resolver).await;
                connected.unwrap().addr
            });
        }
        connecting
    }

    #[tokio::test]
    async fn a_node_waits_for_answers_beyond_its_pending_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut connecting = connecting(listener.local_addr().unwrap(), PENDING_PER_NODE + 1, true);
        let mut taken = Vec::new();
        for _ in 0..PENDING_PER_NODE {
            taken.push(listener.accept().await.unwrap().0);
        }
        // No answer yet: the last session has not connected (it would within microseconds).
        let held = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(held.is_err(), "a session connected beyond the limit");
        assert!(
            connecting.try_join_next().is_none(),
            "a session ended without an answer"
        );
        // One answer lets that session through and the last one connect.
        taken[0].write_all(b"\x20").await.unwrap();
        taken.push(listener.accept().await.unwrap().0);
        connecting.join_next().await.unwrap().unwrap();
        for node in &mut taken[1..] {
            node.write_all(b"\x20").await.unwrap();
        }
        assert_eq!(connecting.join_all().await.len(), PENDING_PER_NODE);
    }

    #[tokio::test]
    async fn sessions_whose_server_does_not_answer_first_are_not_held_back() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connecting = connecting(listener.local_addr().unwrap(), PENDING_PER_NODE + 1, false);
        let mut taken = Vec::new();
        for _ in 0..=PENDING_PER_NODE {
            taken.push(listener.accept().await.unwrap().0);
        }
        assert_eq!(connecting.join_all().await.len(), PENDING_PER_NODE + 1);
    }

    #[tokio::test]
    async fn early_bytes_arrive_first_whatever_their_size() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Larger than a loopback send buffer takes at once: the rest follows after the wait.
        let early: Vec<u8> = (0..8 << 20).map(|i| i as u8).collect();
        // The stream is closed once connected and sent, so the peer's read ends.
        let sending = async { connect_sending(addr, &early).await.map(drop) };
        let (sent, accepted) = tokio::join!(sending, async {
            let (mut peer, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        });
        sent.unwrap();
        assert!(accepted == early, "the peer got exactly the early bytes");
    }

    #[tokio::test]
    async fn nothing_to_send_still_waits_for_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let stream = connect_sending(listener.local_addr().unwrap(), &[])
            .await
            .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), listener.local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_refused_connect_fails_with_or_without_early_bytes() {
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        for early in [&b""[..], b"\x10\x0c\x00\x04MQTT"] {
            let error = connect_sending(closed, early).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{early:?}");
        }
    }
}
