//! The server side of the handshake. The ClientHello is read first and shown, as a copy, to
//! rustls's `Acceptor`, which parses it and names the SNI that chooses the configuration; the
//! same bytes then start the unbuffered connection, which runs the rest of the handshake.

use std::future::poll_fn;
use std::io;
use std::sync::Arc;

use rustls::server::{Acceptor, UnbufferedServerConnection};
use rustls::ServerConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{tls_error, Next, TlsIo, MAX_INCOMING};

/// Bytes asked of the socket per read while the ClientHello is incomplete.
const HELLO_READ: usize = 4096;

/// What the ClientHello said, and the bytes it came in (which start the connection).
pub struct ClientHello {
    pub sni: Option<String>,
    pub bytes: Vec<u8>,
}

/// Reads until the ClientHello is whole. A hello rustls refuses gets its alert, best effort.
pub async fn client_hello_sni(tcp: &mut TcpStream) -> io::Result<ClientHello> {
    let mut bytes = Vec::with_capacity(HELLO_READ);
    loop {
        if bytes.len() >= MAX_INCOMING {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a ClientHello larger than 64 KiB",
            ));
        }
        let start = bytes.len();
        bytes.resize(start + HELLO_READ, 0);
        let got = tcp.read(&mut bytes[start..]).await?;
        bytes.truncate(start + got);
        if got == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let mut acceptor = Acceptor::default();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            if acceptor.read_tls(&mut rest)? == 0 {
                break;
            }
        }
        match acceptor.accept() {
            Ok(None) => continue,
            Ok(Some(accepted)) => {
                let sni = accepted.client_hello().server_name().map(str::to_owned);
                return Ok(ClientHello { sni, bytes });
            }
            Err((error, mut alert)) => {
                let mut out = Vec::new();
                let _ = alert.write(&mut out);
                let _ = tcp.write_all(&out).await;
                return Err(tls_error(error));
            }
        }
    }
}

/// Runs the handshake with `config`, starting from the ClientHello's bytes.
pub async fn accept(
    tcp: TcpStream,
    config: Arc<ServerConfig>,
    hello: Vec<u8>,
) -> io::Result<TlsIo> {
    let conn = UnbufferedServerConnection::new(config).map_err(tls_error)?;
    let mut io = TlsIo::new(tcp, conn, hello);
    let mut next = io.process_held(None);
    loop {
        // What rustls queued (its flight, or the alert of a failure) goes out first.
        poll_fn(|cx| io.poll_send(cx)).await?;
        match next? {
            Next::Read if io.conn.is_handshaking() => {}
            Next::PeerClosed if io.conn.is_handshaking() => {
                return Err(io::ErrorKind::UnexpectedEof.into())
            }
            _ => return Ok(io),
        }
        next = poll_fn(|cx| io.poll_read_records(cx, None)).await;
    }
}
