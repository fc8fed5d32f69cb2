use std::future::poll_fn;
use std::sync::{Arc, LazyLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::*;
use crate::session::relay::pattern;

static KEYS: LazyLock<rcgen::CertifiedKey> =
    LazyLock::new(|| rcgen::generate_simple_self_signed(vec!["io.test".to_owned()]).unwrap());

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn server_config() -> Arc<rustls::ServerConfig> {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(KEYS.key_pair.serialize_der()));
    let cert = CertificateDer::from(KEYS.cert.der().to_vec());
    Arc::new(
        rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap(),
    )
}

fn connector() -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(KEYS.cert.der().to_vec()))
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// A rustls client connected to a `TlsIo` that completed its handshake.
async fn pair() -> (TlsStream<TcpStream>, TlsIo) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = async {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from("io.test").unwrap();
        connector().connect(name, tcp).await.unwrap()
    };
    let server = async {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let hello = client_hello_sni(&mut tcp).await.unwrap();
        assert_eq!(hello.sni.as_deref(), Some("io.test"));
        accept(tcp, server_config(), hello.bytes).await.unwrap()
    };
    tokio::join!(client, server)
}

#[tokio::test]
async fn bytes_cross_both_ways_intact_through_small_reads_and_close_notify_ends_them() {
    let (client, mut server) = pair().await;
    let up = pattern(1 << 20, 1);
    let down = pattern(600_000, 9);
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let client_side = async {
        client_w.write_all(&up).await.unwrap();
        client_w.shutdown().await.unwrap();
        let mut got = Vec::new();
        client_r.read_to_end(&mut got).await.unwrap();
        got
    };
    let server_side = async {
        // Reads smaller than a record leave plaintext in the stash between reads.
        let mut got = Vec::new();
        let mut small = [0u8; 700];
        loop {
            let n = server.read(&mut small).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&small[..n]);
        }
        server.write_all(&down).await.unwrap();
        server.shutdown().await.unwrap();
        got
    };
    let (at_client, at_server) = tokio::join!(client_side, server_side);
    assert!(at_server == up, "client→server bytes differ");
    assert!(at_client == down, "server→client bytes differ");
}

#[tokio::test]
async fn a_reader_that_stops_holds_the_writer_back() {
    let (_client, mut server) = pair().await;
    let chunk = vec![5u8; 16 * 1024];
    let mut accepted = 0usize;
    // The client never reads: once the socket buffers are full, writes must wait.
    poll_fn(|cx| loop {
        match Pin::new(&mut server).poll_write(cx, &chunk) {
            Poll::Ready(Ok(n)) => {
                accepted += n;
                assert!(accepted < 256 << 20, "writes never waited");
            }
            Poll::Ready(Err(e)) => panic!("{e}"),
            Poll::Pending => return Poll::Ready(()),
        }
    })
    .await;
    assert!(
        server.outgoing.len() <= SCRATCH_SIZE,
        "{}",
        server.outgoing.len()
    );
}

#[tokio::test]
async fn an_idle_stream_keeps_no_buffer() {
    let (mut client, mut server) = pair().await;
    client.write_all(b"ping").await.unwrap();
    client.flush().await.unwrap();
    let mut got = [0u8; 4];
    server.read_exact(&mut got).await.unwrap();
    server.write_all(b"pong").await.unwrap();
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"pong");
    for (name, capacity) in [
        ("incoming", server.incoming.capacity()),
        ("outgoing", server.outgoing.capacity()),
        ("plaintext", server.plaintext.capacity()),
    ] {
        assert_eq!(capacity, 0, "{name} is still allocated");
    }
}

#[tokio::test]
async fn a_client_hello_in_single_bytes_still_names_its_sni() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A real ClientHello, captured from a rustls client into memory.
    let mut client = rustls::ClientConnection::new(
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
        ServerName::try_from("split.test").unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    client.write_tls(&mut hello).unwrap();
    let sender = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        for byte in hello {
            tcp.write_all(&[byte]).await.unwrap();
            tcp.flush().await.unwrap();
        }
        tcp
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let got = client_hello_sni(&mut tcp).await.unwrap();
    assert_eq!(got.sni.as_deref(), Some("split.test"));
    drop(sender.await.unwrap());
}

#[tokio::test]
async fn garbage_or_a_closed_socket_instead_of_a_client_hello_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let garbage = tokio::spawn(async move {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer).await;
        answer
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    let err = client_hello_sni(&mut tcp).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    drop(tcp);
    // The refusal goes out as a TLS alert record (content type 21).
    assert_eq!(garbage.await.unwrap().first(), Some(&21));

    let silent = tokio::spawn(async move { drop(TcpStream::connect(addr).await.unwrap()) });
    let (mut tcp, _) = listener.accept().await.unwrap();
    silent.await.unwrap();
    let err = client_hello_sni(&mut tcp).await.err().unwrap();
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
}
