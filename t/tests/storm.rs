//! Connect-storm protection of the built binary: a per-client-IP connection rate and a cap on
//! TLS handshakes in progress, while legitimate clients still connect.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::pki::Ca;
use sg_blackbox::tcp::{who_answers, NamedServer};
use sg_blackbox::tls::{exchange, ClientOptions};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// A gateway with `limits` under `stream_proxy`, a route to a server answering "up", and a
/// certificate for storm.test.com.
fn start(admin_port: u16, entries: &[String], limits: &str) -> (Gateway, NamedServer) {
    let config = config_with_tcp(admin_port, entries)
        .replace("  stream_proxy:\n", &format!("  stream_proxy:\n{limits}"));
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let server = NamedServer::start("127.0.0.1", "up").unwrap();
    let route = json!({"upstream": {"nodes": {server.addr.to_string(): 1}}});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/stream_routes/1", &route.to_string())
            .status,
        201
    );
    let pair = Ca::root("ca").leaf(&["storm.test.com"], 1);
    let ssl = json!({"cert": pair.cert, "key": pair.key, "snis": ["storm.test.com"]});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/ssls/1", &ssl.to_string())
            .status,
        201
    );
    (gw, server)
}

#[test]
fn storm_limits_hold_while_legitimate_clients_connect() {
    let (plain, tls) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let admin_port = free_port();
    let entries = [
        format!("\"127.0.0.1:{plain}\""),
        format!("{{addr: \"127.0.0.1:{tls}\", tls: true}}"),
    ];
    let limits =
        "    client_conn_rate: 5\n    client_conn_burst: 5\n    max_concurrent_handshakes: 2\n";
    let (gw, _server) = start(admin_port, &entries, limits);
    let plain = format!("127.0.0.1:{plain}").parse().unwrap();
    let tls = format!("127.0.0.1:{tls}").parse().unwrap();

    // One client IP opening 20 connections at once gets its burst, not more.
    let answered = (0..20)
        .filter(|_| who_answers("127.0.0.5", plain).is_some())
        .count();
    assert!((5..=10).contains(&answered), "{answered} of 20 answered");
    assert!(gw.metric("streamgate_connections_refused_total{reason=\"client_rate\"}") >= 10.0);
    // Everyone else is unaffected.
    assert_eq!(who_answers("127.0.0.1", plain).as_deref(), Some("up"));

    // Two TLS clients that stall after the first bytes of their ClientHello take both handshake
    // slots; a third is refused at once.
    let stalled: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut client = TcpStream::connect(tls).unwrap();
            client.write_all(&[0x16, 0x03, 0x01]).unwrap();
            client
        })
        .collect();
    let options = ClientOptions {
        sni: Some("storm.test.com"),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric("streamgate_connections_refused_total{reason=\"handshake_limit\"}") < 1.0 {
        assert!(Instant::now() < deadline, "no handshake was refused");
        let _ = exchange(tls, &options, b"x");
    }
    // When they go, legitimate handshakes get through again.
    drop(stalled);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match exchange(tls, &options, b"x") {
            Ok(reply) => {
                assert_eq!(reply.received, b"up\nxbye 1\n");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "handshakes still refused: {e}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn silent_tls_clients_take_no_handshake_slot() {
    let tls = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let entries = [format!("{{addr: \"127.0.0.1:{tls}\", tls: true}}")];
    let (gw, _server) = start(admin_port, &entries, "    max_concurrent_handshakes: 1\n");
    let tls = format!("127.0.0.1:{tls}").parse().unwrap();
    // Connected and silent: they wait for their first bytes without a slot. The listener
    // defers accepting them (for a second); once the gateway holds them, they are waiting.
    let before = open_descriptors(gw.pid());
    let _silent: Vec<TcpStream> = (0..5).map(|_| TcpStream::connect(tls).unwrap()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_descriptors(gw.pid()) < before + 5 {
        assert!(
            Instant::now() < deadline,
            "the silent clients were never accepted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let options = ClientOptions {
        sni: Some("storm.test.com"),
        ..Default::default()
    };
    for _ in 0..3 {
        let reply = exchange(tls, &options, b"x").expect("the one slot is free");
        assert_eq!(reply.received, b"up\nxbye 1\n");
    }
    assert_eq!(
        gw.metric("streamgate_connections_refused_total{reason=\"handshake_limit\"}"),
        0.0
    );
}

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}
