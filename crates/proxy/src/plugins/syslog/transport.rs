//! The connection to a syslog server. TCP (optionally TLS, the certificate not verified, as in
//! APISIX) carries entries as APISIX sends them, each ended by its newline: rsyslog's default
//! framing, unambiguous because an entry holds no other newline. UDP carries one entry per
//! datagram, without the newline (RFC 5426). One connection is kept and reused; a TCP one the
//! server closed (a restart) is noticed before the next batch is written to it.

use std::io;
use std::mem::MaybeUninit;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use rustls::pki_types::ServerName;
use sg_model::resource::{SockType, SyslogConf};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{lookup_host, TcpStream, UdpSocket};
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::batch::{SendError, Transport};
use super::queue::Entry;
use crate::config::tls::client;

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Connects on demand and sends batches, each connect and each write within `timeout`.
pub(super) struct Connector {
    host: String,
    port: u16,
    sock_type: SockType,
    tls: bool,
    timeout: Duration,
    conn: Option<Conn>,
}

fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "syslog server timed out")
}

/// Whether the server closed (or reset) the connection: a syslog server never speaks, so a
/// readable end of stream means it is over. Asked of the socket itself (a peek that never
/// waits), not of the reactor, which may not have seen the close yet.
fn socket_closed(tcp: &TcpStream) -> bool {
    let mut byte = [MaybeUninit::uninit()];
    match SockRef::from(tcp).peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => error.kind() != io::ErrorKind::WouldBlock,
    }
}

/// The same for TLS: records the reactor has seen are read through TLS first (session tickets
/// are consumed there, a close_notify ends the stream), then the socket is asked.
fn tls_closed(tls: &mut TlsStream<TcpStream>) -> bool {
    let mut bytes = [0; 64];
    let mut buf = ReadBuf::new(&mut bytes);
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(&mut *tls).poll_read(&mut cx, &mut buf) {
        Poll::Pending => socket_closed(tls.get_ref().0),
        Poll::Ready(Ok(())) => buf.filled().is_empty(),
        Poll::Ready(Err(_)) => true,
    }
}

impl Connector {
    pub fn new(conf: &SyslogConf) -> Connector {
        Connector {
            host: conf.host.clone(),
            port: conf.port,
            sock_type: conf.sock_type,
            tls: conf.tls,
            timeout: conf.timeout,
            conn: None,
        }
    }

    async fn connect(&self) -> io::Result<Conn> {
        let addr: SocketAddr = lookup_host((self.host.as_str(), self.port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"))?;
        if self.sock_type == SockType::Udp {
            let local: SocketAddr = match addr {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            return Ok(Conn::Udp(socket));
        }
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        if !self.tls {
            return Ok(Conn::Tcp(tcp));
        }
        let config = client::config(false, None).map_err(io::Error::other)?;
        let name = ServerName::try_from(self.host.clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = TlsConnector::from(config).connect(name, tcp).await?;
        Ok(Conn::Tls(Box::new(tls)))
    }
}

/// Sends `entries` on `conn`, each write within `limit`.
async fn deliver(conn: &mut Conn, entries: &[Entry], limit: Duration) -> Result<(), SendError> {
    match conn {
        Conn::Udp(socket) => {
            for (sent, entry) in entries.iter().enumerate() {
                let datagram = entry.bytes.strip_suffix(b"\n").unwrap_or(&entry.bytes);
                let result = timeout(limit, socket.send(datagram)).await;
                if let Err(error) = result.unwrap_or_else(|_| Err(timed_out())) {
                    return Err(SendError { sent, error });
                }
            }
            Ok(())
        }
        Conn::Tcp(tcp) => write_batch(tcp, entries, limit).await,
        Conn::Tls(tls) => write_batch(tls, entries, limit).await,
    }
}

/// Writes the entries of a batch, one after the other, in one write.
async fn write_batch(
    stream: &mut (impl AsyncWrite + Unpin),
    entries: &[Entry],
    limit: Duration,
) -> Result<(), SendError> {
    let len = entries.iter().map(|e| e.bytes.len()).sum();
    let mut batch = Vec::with_capacity(len);
    entries
        .iter()
        .for_each(|e| batch.extend_from_slice(&e.bytes));
    let written = timeout(limit, async {
        stream.write_all(&batch).await?;
        stream.flush().await
    })
    .await;
    written
        .unwrap_or_else(|_| Err(timed_out()))
        .map_err(|error| SendError { sent: 0, error })
}

impl Transport for Connector {
    async fn send(&mut self, entries: &[Entry]) -> Result<(), SendError> {
        let closed = match &mut self.conn {
            Some(Conn::Tcp(tcp)) => socket_closed(tcp),
            Some(Conn::Tls(tls)) => tls_closed(tls),
            Some(Conn::Udp(_)) | None => false,
        };
        if closed {
            self.conn = None;
        }
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                let connected = timeout(self.timeout, self.connect()).await;
                let conn = connected
                    .unwrap_or_else(|_| Err(timed_out()))
                    .map_err(|error| SendError { sent: 0, error })?;
                self.conn.insert(conn)
            }
        };
        let delivered = deliver(conn, entries, self.timeout).await;
        if delivered.is_err() {
            // Reconnect for the next attempt: a stream may hold half a batch.
            self.conn = None;
        }
        delivered
    }
}

#[cfg(test)]
mod tests;
