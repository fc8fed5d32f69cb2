//! The connector against real loopback peers: the bytes each side sees.

use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use sg_model::resource::SyslogConf;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, UdpSocket};
use tokio_rustls::TlsAcceptor;

use super::{socket_closed, Conn, Connector};
use crate::plugins::syslog::batch::Transport;
use crate::plugins::syslog::queue::Entry;

fn connector(port: u16, extra: serde_json::Value) -> Connector {
    let mut value = json!({"host": "127.0.0.1", "port": port, "timeout": 2000});
    value
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    Connector::new(&sg_model::decode::<SyslogConf>(&value).unwrap())
}

fn entries(texts: &[&str]) -> Vec<Entry> {
    texts
        .iter()
        .map(|t| Entry {
            bytes: format!("{t}\n").into_bytes(),
            failed: Counter::default(),
        })
        .collect()
}

/// Reads from `stream` until `len` bytes came.
async fn read_exactly(stream: &mut (impl AsyncReadExt + Unpin), len: usize) -> String {
    let mut bytes = vec![0; len];
    stream.read_exact(&mut bytes).await.unwrap();
    String::from_utf8(bytes).unwrap()
}

#[tokio::test]
async fn tcp_entries_are_newline_framed_and_a_closed_connection_is_replaced() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut sender = connector(listener.local_addr().unwrap().port(), json!({}));
    sender
        .send(&entries(&["<46>1 a", "<46>1 b"]))
        .await
        .unwrap();
    let (mut first, _) = listener.accept().await.unwrap();
    assert_eq!(read_exactly(&mut first, 16).await, "<46>1 a\n<46>1 b\n");
    // The server restarts: the old connection is over, the next batch takes a new one.
    drop(first);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !matches!(&sender.conn, Some(Conn::Tcp(tcp)) if socket_closed(tcp)) {
        assert!(
            std::time::Instant::now() < deadline,
            "the close never showed"
        );
        tokio::task::yield_now().await;
    }
    sender.send(&entries(&["<46>1 c"])).await.unwrap();
    let (mut second, _) = listener.accept().await.unwrap();
    assert_eq!(read_exactly(&mut second, 8).await, "<46>1 c\n");
}

#[tokio::test]
async fn udp_sends_one_datagram_per_entry_without_its_newline() {
    let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = server.local_addr().unwrap().port();
    let mut sender = connector(port, json!({"sock_type": "udp"}));
    sender
        .send(&entries(&["<46>1 a", "<46>1 bb"]))
        .await
        .unwrap();
    let mut buf = [0; 64];
    let len = server.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..len], b"<46>1 a");
    let len = server.recv(&mut buf).await.unwrap();
    assert_eq!(&buf[..len], b"<46>1 bb");
}

#[tokio::test]
async fn tls_carries_the_same_frames_to_an_unverified_certificate() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let keys = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(keys.key_pair.serialize_der()));
    let cert = CertificateDer::from(keys.cert.der().to_vec());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .unwrap();
        read_exactly(&mut tls, 8).await
    });
    let mut sender = connector(port, json!({"tls": true}));
    sender.send(&entries(&["<46>1 t"])).await.unwrap();
    assert_eq!(server.await.unwrap(), "<46>1 t\n");
}

#[tokio::test]
async fn an_unreachable_server_is_an_error_not_a_wait() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut sender = connector(port, json!({}));
    let failed = sender.send(&entries(&["<46>1 a"])).await.unwrap_err();
    assert_eq!(failed.sent, 0);
    assert_eq!(failed.error.kind(), std::io::ErrorKind::ConnectionRefused);
    // A port APISIX's schema let through but no socket can use.
    let mut invalid = connector(0, json!({}));
    assert!(invalid.send(&entries(&["<46>1 a"])).await.is_err());
}
