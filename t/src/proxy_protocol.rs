//! Helpers of the PROXY protocol black-box tests: gateways with PROXY protocol listeners,
//! HAProxy in front of them, and a server that decodes the header streamgate sends.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::Duration;

use crate::haproxy::Haproxy;
use crate::tcp::connect_from;
use crate::tls::{ClientOptions, TlsSession};
use crate::{config_with_tcp, free_port, free_port_on, Gateway};
use serde_json::{json, Value};
use sg_proxy_protocol::{parse, Header, Parsed};

/// The v2 signature.
pub const SIG: &str = "0d 0a 0d 0a 00 0d 0a 51 55 49 54 0a";
/// v2 IPv4 addresses: 192.0.2.1:1234 → 127.0.0.1:1883.
pub const ADDRS: &str = "c0 00 02 01 7f 00 00 01 04 d2 07 5b";
/// The names OpenSSL (and so HAProxy) gives the TLS 1.3 cipher suites.
pub const TLS13_CIPHERS: [&str; 3] = [
    "TLS_AES_256_GCM_SHA384",
    "TLS_AES_128_GCM_SHA256",
    "TLS_CHACHA20_POLY1305_SHA256",
];
pub const FAILURES: &str =
    "streamgate_session_failures_total{kind=\"proxy_protocol\",origin=\"client\"}";

/// A `stream_proxy.tcp` item on 127.0.0.1:`port` with `keys` (`proxy_protocol: true`, …).
pub fn entry(port: u16, keys: &str) -> String {
    format!("{{addr: \"127.0.0.1:{port}\", {keys}}}")
}

pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A gateway on `entries` (items of `apisix.stream_proxy.tcp`) with extra lines for the
/// `apisix` and `stream_proxy` sections, its access log on.
pub fn gateway(entries: &[String], apisix: &str, stream_proxy: &str) -> Gateway {
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, entries)
        .replace(
            "  stream_proxy:\n",
            &format!("  stream_proxy:\n{stream_proxy}"),
        )
        .replace("apisix:\n", &format!("apisix:\n{apisix}"))
        .replace("enable_access_log: false", "enable_access_log: true");
    Gateway::start_with(&config, admin_port).unwrap()
}

pub fn put(gw: &Gateway, path: &str, body: Value) {
    let reply = gw.admin("PUT", &format!("/apisix/admin/{path}"), &body.to_string());
    assert!(reply.status < 300, "{path}: {}", reply.body);
}

pub fn nodes(addr: SocketAddr) -> Value {
    json!({"type": "roundrobin", "nodes": {addr.to_string(): 1}})
}

/// Connects from `from`, sends `bytes`, half-closes and reads until the other side closed.
/// Returns the client's address and what came back (`Err`: reset or timed out).
pub fn talk(from: &str, to: SocketAddr, bytes: &[u8]) -> (SocketAddr, std::io::Result<Vec<u8>>) {
    let mut stream = connect_from(from, to).unwrap();
    let client = stream.local_addr().unwrap();
    let reply = stream
        .write_all(bytes)
        .and_then(|()| stream.shutdown(Shutdown::Write))
        .and_then(|()| {
            let mut received = Vec::new();
            stream.read_to_end(&mut received).map(|_| received)
        });
    (client, reply)
}

/// An upstream that reads the PROXY header each connection starts with (with the decoder
/// streamgate uses), hands it to the test, answers `parsed\n`, and closes after the client.
pub fn header_server() -> (SocketAddr, mpsc::Receiver<Result<Header, String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut bytes = Vec::new();
                let mut chunk = [0u8; 4096];
                let header = loop {
                    match stream.read(&mut chunk) {
                        Ok(0) | Err(_) => {
                            let _ = tx.send(Err(format!("closed after {bytes:?}")));
                            return;
                        }
                        Ok(n) => bytes.extend_from_slice(&chunk[..n]),
                    }
                    match parse(&bytes) {
                        Ok(Parsed::Incomplete) => {}
                        Ok(Parsed::Complete { header, .. }) => break header,
                        Err(e) => {
                            let _ = tx.send(Err(format!("{e}: {bytes:?}")));
                            return;
                        }
                    }
                };
                let _ = tx.send(Ok(header));
                let _ = stream.write_all(b"parsed\n");
                let _ = std::io::copy(&mut stream, &mut std::io::sink());
                let _ = stream.shutdown(Shutdown::Write);
            });
        }
    });
    (addr, rx)
}

pub fn next_header(headers: &mpsc::Receiver<Result<Header, String>>) -> Header {
    headers
        .recv_timeout(Duration::from_secs(10))
        .expect("a connection reached the upstream")
        .expect("a PROXY header the decoder reads")
}

/// A TLS session through `to` from `from`: what came back after sending `hi`, and the
/// client's address.
pub fn tls_talk(to: SocketAddr, options: &ClientOptions<'_>) -> (SocketAddr, Vec<u8>, Vec<u8>) {
    let mut session = TlsSession::open(to, options).unwrap();
    let client = session.local_addr();
    let served = session.served.clone();
    session.send(b"hi").unwrap();
    (client, served, session.finish().unwrap())
}

/// Two HAProxy frontends in front of `target`, one sending v1 and one v2, their servers with
/// `server_options` added.
pub fn haproxy_sending_to(target: u16, server_options: &str) -> (Haproxy, SocketAddr, SocketAddr) {
    let (v1, v2) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let haproxy = Haproxy::start(
        &format!(
            "
frontend v1
    bind 127.0.0.1:{v1}
    default_backend send_v1
backend send_v1
    server gw 127.0.0.1:{target} send-proxy {server_options}
frontend v2
    bind 127.0.0.1:{v2}
    default_backend send_v2
backend send_v2
    server gw 127.0.0.1:{target} send-proxy-v2 {server_options}
"
        ),
        &[local(v1), local(v2)],
    )
    .unwrap();
    (haproxy, local(v1), local(v2))
}
