//! TLS peers for the black-box tests, built on rustls: a client that reports the certificate
//! it was served (with or without SNI, a client certificate, chosen versions and signature
//! schemes), and an upstream TLS server that answers with the SNI it received.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::pki::Pair;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Accepts whatever the gateway serves (the tests compare it with what they expect) and
/// offers only `schemes` when given, to steer the server's certificate choice.
#[derive(Debug)]
struct Anything(Option<Vec<SignatureScheme>>);

impl ServerCertVerifier for Anything {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.clone().unwrap_or_else(|| {
            provider()
                .signature_verification_algorithms
                .supported_schemes()
        })
    }
}

/// How a test client connects.
#[derive(Default, Clone)]
pub struct ClientOptions<'a> {
    /// The SNI to send; `None` sends none.
    pub sni: Option<&'a str>,
    pub cert: Option<&'a Pair>,
    pub versions: Option<&'a [&'static rustls::SupportedProtocolVersion]>,
    pub schemes: Option<Vec<SignatureScheme>>,
    /// The loopback address to connect from; `None` lets the system pick.
    pub from: Option<&'a str>,
}

fn config(options: &ClientOptions<'_>) -> Arc<ClientConfig> {
    let versions = options.versions.unwrap_or(rustls::DEFAULT_VERSIONS);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .expect("versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Anything(options.schemes.clone())));
    let config = match options.cert {
        Some(pair) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                    .collect::<Result<_, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("key"),
            )
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// An open TLS session through the gateway.
pub struct TlsSession {
    tls: StreamOwned<ClientConnection, TcpStream>,
    /// The leaf certificate the gateway served (DER).
    pub served: Vec<u8>,
}

impl TlsSession {
    /// Handshakes with `to`. `Err` when the handshake failed.
    pub fn open(to: SocketAddr, options: &ClientOptions<'_>) -> Result<TlsSession, String> {
        let name = match options.sni {
            Some(sni) => ServerName::try_from(sni.to_owned()).map_err(|e| e.to_string())?,
            // An IP address as server name: rustls then sends no SNI.
            None => ServerName::IpAddress(to.ip().into()),
        };
        let conn = ClientConnection::new(config(options), name).map_err(|e| e.to_string())?;
        let sock = match options.from {
            Some(from) => crate::tcp::connect_from(from, to).map_err(|e| e.to_string())?,
            None => TcpStream::connect(to).map_err(|e| e.to_string())?,
        };
        sock.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut tls = StreamOwned::new(conn, sock);
        while tls.conn.is_handshaking() {
            tls.conn
                .complete_io(&mut tls.sock)
                .map_err(|e| e.to_string())?;
        }
        let served = tls
            .conn
            .peer_certificates()
            .and_then(|c| c.first())
            .map(|c| c.to_vec())
            .ok_or("no certificate served")?;
        Ok(TlsSession { tls, served })
    }

    /// The client's end of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.tls.sock.local_addr().expect("connected socket")
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.tls.write_all(bytes).map_err(|e| e.to_string())?;
        self.tls.flush().map_err(|e| e.to_string())
    }

    /// Closes the sending side and reads everything until the connection closes.
    pub fn finish(mut self) -> Result<Vec<u8>, String> {
        self.tls.conn.send_close_notify();
        let _ = self.tls.flush();
        let mut received = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            match self.tls.read(&mut chunk) {
                Ok(0) => return Ok(received),
                Ok(n) => received.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(received),
                Err(e) => return Err(format!("after the handshake: {e}")),
            }
        }
    }
}

/// What a TLS exchange through the gateway gave.
#[derive(Debug)]
pub struct TlsReply {
    /// The leaf certificate the gateway served (DER).
    pub served: Vec<u8>,
    /// Everything read until the connection closed.
    pub received: Vec<u8>,
}

/// Handshakes with `to`, sends `bytes`, closes its sending side and reads to the end.
/// `Err` when the handshake (or anything after it) failed.
pub fn exchange(
    to: SocketAddr,
    options: &ClientOptions<'_>,
    bytes: &[u8],
) -> Result<TlsReply, String> {
    let mut session = TlsSession::open(to, options)?;
    session.send(bytes)?;
    let served = session.served.clone();
    let received = session.finish()?;
    Ok(TlsReply { served, received })
}

/// The DER of a PEM certificate (to compare with [`TlsReply::served`]).
pub fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("cert pem")
        .to_vec()
}

/// An upstream TLS server that answers every connection with `hello <sni>\n` (or
/// `hello <none>\n`) and closes; it can require a client certificate from `client_ca`.
pub struct SniEchoServer {
    pub addr: SocketAddr,
}

impl SniEchoServer {
    pub fn start(pair: &Pair, client_ca: Option<&str>) -> SniEchoServer {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(pair.cert.as_bytes())
                .collect::<Result<_, _>>()
                .expect("cert");
        let key = PrivateKeyDer::from_pem_slice(pair.key.as_bytes()).expect("key");
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("versions");
        let builder = match client_ca {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(CertificateDer::from_pem_slice(ca.as_bytes()).expect("ca"))
                    .expect("root");
                let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                    Arc::new(roots),
                    provider(),
                )
                .build()
                .expect("verifier");
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let config = Arc::new(builder.with_single_cert(certs, key).expect("server cert"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for sock in listener.incoming().map_while(Result::ok) {
                let config = config.clone();
                std::thread::spawn(move || {
                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                        return;
                    };
                    let mut tls = StreamOwned::new(conn, sock);
                    let mut first = [0u8; 1];
                    if tls.read(&mut first).is_err() {
                        return;
                    }
                    let sni = tls.conn.server_name().unwrap_or("<none>").to_owned();
                    let _ = tls.write_all(format!("hello {sni}\n").as_bytes());
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                    // Read to the client's end before closing: closing with bytes unread (its
                    // close_notify) would reset the connection and could destroy the reply.
                    let _ = tls.sock.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = std::io::copy(&mut tls.sock, &mut std::io::sink());
                });
            }
        });
        SniEchoServer { addr }
    }
}
