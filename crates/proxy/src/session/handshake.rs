//! The TLS handshake of a `tls: true` listener: read the ClientHello, choose the SSL object by
//! SNI (or `fallback_sni`), then finish the handshake with its prebuilt configuration, all
//! within the handshake timeout.

use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::tls::{normalize_sni, TlsTable};
use crate::metrics::logs::printable;
use crate::session::error::{Error, ErrorKind};
use crate::session::tls_io::{self, TlsIo};

/// A completed TLS handshake and the SNI it was made for.
pub struct Handshake {
    pub stream: TlsIo,
    pub sni: String,
}

/// Terminates TLS on `tcp` with the SSL object its SNI selects.
pub async fn handshake(
    mut tcp: TcpStream,
    table: &TlsTable,
    fallback_sni: Option<&str>,
    limit: Duration,
) -> Result<Handshake, Error> {
    let failed = |e| Error::new(ErrorKind::Handshake).because(e);
    let work = async {
        let hello = tls_io::client_hello_sni(&mut tcp).await.map_err(failed)?;
        let sni = hello
            .sni
            .as_deref()
            .or(fallback_sni)
            .map(normalize_sni)
            .ok_or(Error::new(ErrorKind::NoSni))?;
        let ssl = table.find(&sni).ok_or_else(|| {
            // rustls hands over only valid DNS names; escaped anyway, as it reaches a log line.
            Error::new(ErrorKind::NoCertificate).on(printable(sni.as_bytes()))
        })?;
        let stream = tls_io::accept(tcp, ssl.config.clone(), hello.bytes)
            .await
            .map_err(failed)?;
        Ok(Handshake { stream, sni })
    };
    timeout(limit, work)
        .await
        .map_err(|_| Error::new(ErrorKind::HandshakeTimeout))?
}
