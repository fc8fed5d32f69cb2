//! Opening MQTT sessions, plain or over TLS, and the rustls client configuration (no session
//! resumption unless asked, so every TLS connection is a full handshake; a client certificate
//! for mTLS listeners).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use sg_blackbox::pki::Pair;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::mqtt;

/// How long one client may take to connect and get its CONNACK.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// TLS client settings shared by every connection of a run.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// Full handshakes with `sni`; certificates are not verified, so the load generator spends
    /// its CPU on the handshake itself (the same for every system under test).
    pub fn new(sni: &str) -> Result<Tls> {
        Tls::with_resumption(sni, Resumption::disabled())
    }

    /// As [`Tls::new`], but the clients share a session cache: after the first handshake
    /// they resume, as a fleet reconnecting after a blip does.
    pub fn resuming(sni: &str) -> Result<Tls> {
        Tls::with_resumption(sni, Resumption::in_memory_sessions(1024))
    }

    /// As [`Tls::new`], presenting `client` (a PEM certificate and key) to a server that asks
    /// for one (mTLS).
    pub fn with_certificate(sni: &str, client: &Pair) -> Result<Tls> {
        let chain = CertificateDer::pem_slice_iter(client.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .context("the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(client.key.as_bytes()).context("the client key")?;
        Tls::build(sni, Resumption::disabled(), Some((chain, key)))
    }

    fn with_resumption(sni: &str, resumption: Resumption) -> Result<Tls> {
        Tls::build(sni, resumption, None)
    }

    fn build(
        sni: &str,
        resumption: Resumption,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified(provider)));
        let mut config = match identity {
            Some((chain, key)) => builder.with_client_auth_cert(chain, key)?,
            None => builder.with_no_client_auth(),
        };
        config.resumption = resumption;
        Ok(Tls {
            connector: TlsConnector::from(Arc::new(config)),
            name: ServerName::try_from(sni.to_owned())?,
        })
    }
}

/// How clients reach the system under test.
#[derive(Clone)]
pub enum Way {
    /// Plain MQTT; `proxied`: a PROXY protocol header first.
    Plain { proxied: bool },
    /// MQTT over TLS.
    Tls(Tls),
}

/// The two directions of an MQTT session, plain or over TLS.
pub type Halves = (
    Box<dyn AsyncRead + Send + Unpin>,
    Box<dyn AsyncWrite + Send + Unpin>,
);

/// Connects the way `way` says, CONNECTs as `client_id`, and returns the two directions.
pub async fn open_halves(way: &Way, addr: SocketAddr, client_id: &str) -> Result<Halves> {
    Ok(match way {
        Way::Plain { proxied } => {
            let (read, write) = open_plain_as(addr, client_id, *proxied)
                .await?
                .stream
                .into_split();
            (Box::new(read), Box::new(write))
        }
        Way::Tls(tls) => {
            let (read, write) = tokio::io::split(open_tls(addr, tls, client_id).await?.stream);
            (Box::new(read), Box::new(write))
        }
    })
}

/// Timings of one connection.
pub struct Opened<S> {
    pub stream: S,
    /// From `connect()` to the end of the TLS handshake (TLS only).
    pub handshake: Option<Duration>,
    /// From `connect()` to the CONNACK.
    pub connack: Duration,
    /// The TLS handshake resumed an earlier session.
    pub resumed: bool,
}

/// TCP connect, then CONNECT as `client_id` and wait for an accepting CONNACK.
pub async fn open_plain(addr: SocketAddr, client_id: &str) -> Result<Opened<TcpStream>> {
    open_plain_as(addr, client_id, false).await
}

/// As [`open_plain`]; `proxied`: a PROXY protocol v1 header naming this client goes first, as
/// a load balancer in front would send it.
pub async fn open_plain_as(
    addr: SocketAddr,
    client_id: &str,
    proxied: bool,
) -> Result<Opened<TcpStream>> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    if proxied {
        let header = sg_proxy_protocol::v1(stream.local_addr()?, addr);
        stream.write_all(&header).await?;
    }
    let connack = handshake_mqtt(&mut stream, client_id, start).await?;
    Ok(Opened {
        stream,
        handshake: None,
        connack,
        resumed: false,
    })
}

/// TCP connect, full TLS handshake, then CONNECT/CONNACK as `client_id`.
pub async fn open_tls(
    addr: SocketAddr,
    tls: &Tls,
    client_id: &str,
) -> Result<Opened<tokio_rustls::client::TlsStream<TcpStream>>> {
    let start = Instant::now();
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut stream = tls
        .connector
        .connect(tls.name.clone(), tcp)
        .await
        .context("TLS handshake")?;
    let handshake = start.elapsed();
    let resumed = stream.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
    let connack = handshake_mqtt(&mut stream, client_id, start).await?;
    Ok(Opened {
        stream,
        handshake: Some(handshake),
        connack,
        resumed,
    })
}

async fn handshake_mqtt<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    client_id: &str,
    start: Instant,
) -> Result<Duration> {
    stream.write_all(&mqtt::connect(client_id, 0)).await?;
    stream.flush().await?;
    mqtt::expect_connack(stream).await?;
    Ok(start.elapsed())
}

/// Sends DISCONNECT and closes the write side (TLS: with close_notify).
pub async fn close<S: AsyncWrite + Unpin>(mut stream: S) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(&mqtt::DISCONNECT).await?;
        stream.shutdown().await
    })
    .await;
}

/// Accepts any server certificate: the benchmark measures handshakes, not the client's checks.
#[derive(Debug)]
struct Unverified(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
