//! The TLS handshake of a `tls: true` listener: read the ClientHello, choose the SSL object by
//! SNI (or `fallback_sni`), then finish the handshake with its prebuilt configuration, all
//! within the handshake timeout.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::server::TlsStream;
use tokio_rustls::LazyConfigAcceptor;

use crate::config::tls::{normalize_sni, TlsTable};
use crate::metrics::logs::printable;

/// Why a handshake did not complete (logged; the connection is closed).
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("failed to find SNI: please check if the client requests via IP or uses an outdated protocol")]
    NoSni,
    #[error("failed to match any SSL certificate by SNI: {0}")]
    NoCertificate(String),
    #[error("TLS handshake timed out")]
    Timeout,
    #[error("TLS handshake failed: {0}")]
    Failed(std::io::Error),
}

impl HandshakeError {
    /// A short, bounded label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::NoSni => "no_sni",
            HandshakeError::NoCertificate(_) => "no_certificate",
            HandshakeError::Timeout => "timeout",
            HandshakeError::Failed(_) => "handshake_error",
        }
    }
}

/// A completed TLS handshake and the SNI it was made for.
pub struct Handshake {
    pub stream: TlsStream<TcpStream>,
    pub sni: String,
}

/// Terminates TLS on `tcp` with the SSL object its SNI selects.
pub async fn handshake(
    tcp: TcpStream,
    table: &TlsTable,
    fallback_sni: Option<&str>,
    limit: Duration,
) -> Result<Handshake, HandshakeError> {
    let work = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(HandshakeError::Failed)?;
        let sni = start
            .client_hello()
            .server_name()
            .or(fallback_sni)
            .map(normalize_sni)
            .ok_or(HandshakeError::NoSni)?;
        let ssl = table
            .find(&sni)
            // rustls hands over only valid DNS names; escaped anyway, as it reaches a log line.
            .ok_or_else(|| HandshakeError::NoCertificate(printable(sni.as_bytes())))?;
        let stream = start
            .into_stream(ssl.config.clone())
            .await
            .map_err(HandshakeError::Failed)?;
        Ok(Handshake { stream, sni })
    };
    timeout(limit, work)
        .await
        .map_err(|_| HandshakeError::Timeout)?
}
