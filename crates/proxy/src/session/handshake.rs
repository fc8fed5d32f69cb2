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
use crate::session::error::{Error, ErrorKind};

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
) -> Result<Handshake, Error> {
    let failed = |e| Error::new(ErrorKind::Handshake).because(e);
    let work = async {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp)
            .await
            .map_err(failed)?;
        let sni = start
            .client_hello()
            .server_name()
            .or(fallback_sni)
            .map(normalize_sni)
            .ok_or(Error::new(ErrorKind::NoSni))?;
        let ssl = table.find(&sni).ok_or_else(|| {
            // rustls hands over only valid DNS names; escaped anyway, as it reaches a log line.
            Error::new(ErrorKind::NoCertificate).on(printable(sni.as_bytes()))
        })?;
        let stream = start
            .into_stream(ssl.config.clone())
            .await
            .map_err(failed)?;
        Ok(Handshake { stream, sni })
    };
    timeout(limit, work)
        .await
        .map_err(|_| Error::new(ErrorKind::HandshakeTimeout))?
}
