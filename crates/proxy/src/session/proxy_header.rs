//! The PROXY protocol on a session: the header a load balancer in front sends first, peeked
//! until whole and then consumed exactly (a TLS ClientHello or an MQTT CONNECT after it stays
//! in the socket), and the header sent to an upstream.

use std::io::{self, ErrorKind as IoKind};
use std::net::SocketAddr;

use crate::session::tls_io::TlsIo;
use sg_model::settings::ProxyProtocolVersion;
use sg_proxy_protocol::{Header, Parsed, Ssl, CLIENT_CERT_CONN, CLIENT_SSL, V2_MAX};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{timeout_at, Instant};

use crate::session::error::{Error, ErrorKind};

/// What one look at the socket found.
enum Peeked {
    Header(usize, Header),
    Invalid(sg_proxy_protocol::Error),
    Closed,
}

/// Reads the header `client` starts with, by `deadline`.
pub(crate) async fn receive(client: &mut TcpStream, deadline: Instant) -> Result<Header, Error> {
    let failed = |cause: io::Error| Error::new(ErrorKind::ProxyProtocol).because(cause);
    let (len, header) = match timeout_at(deadline, peek_header(client)).await {
        Err(_) => return Err(failed(IoKind::TimedOut.into())),
        Ok(Err(e)) => return Err(failed(e)),
        Ok(Ok(Peeked::Closed)) => return Err(failed(IoKind::UnexpectedEof.into())),
        Ok(Ok(Peeked::Invalid(e))) => {
            return Err(Error::new(ErrorKind::ProxyProtocol).because(e));
        }
        Ok(Ok(Peeked::Header(len, header))) => (len, header),
    };
    // Already in the socket: peeked above.
    let mut consumed = vec![0; len];
    client.read_exact(&mut consumed).await.map_err(failed)?;
    Ok(header)
}

/// Peeks until the socket holds a whole header (or shows it cannot).
async fn peek_header(client: &TcpStream) -> io::Result<Peeked> {
    // A second descriptor of the same socket, for std's safe `peek`.
    let peeker = std::net::TcpStream::from(SockRef::from(client).try_clone()?);
    loop {
        let ready = client.ready(Interest::READABLE).await?;
        let peeked = client.try_io(Interest::READABLE, || {
            let mut buf = [0; V2_MAX];
            let n = peeker.peek(&mut buf)?;
            if n == 0 {
                return Ok(Peeked::Closed);
            }
            match sg_proxy_protocol::parse(&buf[..n]) {
                // Clears the readiness: the next bytes raise a new one.
                Ok(Parsed::Incomplete) => Err(IoKind::WouldBlock.into()),
                Ok(Parsed::Complete { len, header }) => Ok(Peeked::Header(len, header)),
                Err(e) => Ok(Peeked::Invalid(e)),
            }
        });
        match peeked {
            // The client closed its side with the header unfinished: no byte can complete it.
            // (A closed state is never cleared, so waiting again would return at once, for
            // ever.)
            Err(e) if e.kind() == IoKind::WouldBlock && ready.is_read_closed() => {
                return Ok(Peeked::Closed);
            }
            Err(e) if e.kind() == IoKind::WouldBlock => continue,
            other => return other,
        }
    }
}

/// The header sent to an upstream for a client at `client` that reached `server`; v2 carries
/// the server name and, when the gateway terminated TLS, the client's TLS connection.
pub(crate) fn to_upstream(
    version: ProxyProtocolVersion,
    client: SocketAddr,
    server: SocketAddr,
    sni: Option<&str>,
    tls: Option<&TlsIo>,
) -> Vec<u8> {
    match version {
        ProxyProtocolVersion::V1 => sg_proxy_protocol::v1(client, server),
        ProxyProtocolVersion::V2 => {
            let ssl = tls.map(|stream| ssl_of(stream.common()));
            sg_proxy_protocol::v2(client, server, sni, ssl.as_ref())
        }
    }
}

/// The `PP2_TYPE_SSL` value of a terminated TLS connection.
fn ssl_of(connection: &rustls::CommonState) -> Ssl {
    let certificate = connection
        .peer_certificates()
        .and_then(|chain| chain.first());
    let mut ssl = Ssl {
        client: CLIENT_SSL,
        // rustls completes a handshake only with a verified client certificate.
        verify: u32::from(certificate.is_none()),
        version: connection.protocol_version().map(|v| match v {
            rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".to_owned(),
            rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".to_owned(),
            other => format!("{other:?}"),
        }),
        cipher: connection
            .negotiated_cipher_suite()
            .and_then(|suite| cipher_name(suite.suite())),
        cn: None,
    };
    if let Some(certificate) = certificate {
        ssl.client |= CLIENT_CERT_CONN;
        ssl.cn = common_name(certificate);
    }
    ssl
}

/// The name OpenSSL gives a cipher suite, which HAProxy sends and brokers log
/// (`TLS_AES_128_GCM_SHA256`, `ECDHE-RSA-AES128-GCM-SHA256`); rustls' own names
/// (`TLS13_AES_128_GCM_SHA256`) are neither OpenSSL's nor IANA's. rustls' name for any other.
fn cipher_name(suite: rustls::CipherSuite) -> Option<String> {
    use rustls::CipherSuite as S;
    let name = match suite {
        S::TLS13_AES_128_GCM_SHA256 => "TLS_AES_128_GCM_SHA256",
        S::TLS13_AES_256_GCM_SHA384 => "TLS_AES_256_GCM_SHA384",
        S::TLS13_CHACHA20_POLY1305_SHA256 => "TLS_CHACHA20_POLY1305_SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 => "ECDHE-ECDSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 => "ECDHE-ECDSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-ECDSA-CHACHA20-POLY1305",
        S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => "ECDHE-RSA-AES128-GCM-SHA256",
        S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => "ECDHE-RSA-AES256-GCM-SHA384",
        S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 => "ECDHE-RSA-CHACHA20-POLY1305",
        other => return other.as_str().map(str::to_owned),
    };
    Some(name.to_owned())
}

/// The first common name of a certificate's subject.
fn common_name(certificate: &[u8]) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    /// Runs `receive` on a server socket whose client wrote `bytes` and, with `fin`, closed its
    /// side; the answer must come within 5 s although the deadline is an hour away. On its own
    /// thread, so a receive that never yields fails the test instead of hanging it.
    fn received(bytes: &'static [u8], fin: bool) -> Result<(Header, Vec<u8>), String> {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                let mut client = TcpStream::connect(listener.local_addr().unwrap())
                    .await
                    .unwrap();
                let (mut server, _) = listener.accept().await.unwrap();
                client.write_all(bytes).await.unwrap();
                if fin {
                    client.shutdown().await.unwrap();
                }
                let deadline = Instant::now() + Duration::from_secs(3600);
                let answer = match receive(&mut server, deadline).await {
                    Ok(header) => {
                        let mut rest = Vec::new();
                        if fin {
                            server.read_to_end(&mut rest).await.unwrap();
                        }
                        Ok((header, rest))
                    }
                    Err(e) => Err(e.to_string()),
                };
                let _ = tx.send(answer);
            });
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("receive answered before its deadline")
    }

    #[test]
    fn a_header_cut_short_by_the_clients_fin_fails_at_once() {
        let v2_start = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c\xc0\x00";
        for partial in [&b"PROXY TCP4 192.0.2.1"[..], &b"PROXY"[..], &v2_start[..]] {
            let error = received(partial, true).unwrap_err();
            assert!(error.contains("unexpected end of file"), "{error}");
        }
    }

    #[test]
    fn cipher_suites_go_by_openssls_names() {
        for suite in rustls::crypto::ring::ALL_CIPHER_SUITES {
            let name = cipher_name(suite.suite()).unwrap();
            assert!(
                !name.starts_with("TLS13_") && !name.contains("_WITH_"),
                "{name}"
            );
        }
        let name = |suite| cipher_name(suite).unwrap();
        assert_eq!(
            name(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384),
            "TLS_AES_256_GCM_SHA384"
        );
        assert_eq!(
            name(rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256),
            "ECDHE-RSA-AES128-GCM-SHA256"
        );
    }

    #[test]
    fn the_header_is_consumed_and_the_bytes_after_it_stay() {
        let (header, rest) = received(
            b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 1883\r\n\x10\x0f",
            true,
        )
        .unwrap();
        let source = header.addresses.unwrap().source;
        assert_eq!(source, "192.0.2.1:1234".parse().unwrap());
        assert_eq!(rest, b"\x10\x0f");
        assert!(received(b"\x10\x0f\x00\x04MQTT", false).is_err());
    }
}
