//! The stream data plane of the built binary with plain TCP peers: APISIX's matching table,
//! IPv6 listeners, half-close, logs and the drain on SIGTERM.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::json;
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::tcp::{connect_from, greeting, who_answers, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

fn upstream_of(server: &NamedServer) -> serde_json::Value {
    json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1}})
}

fn put_route(gw: &Gateway, id: &str, body: serde_json::Value) {
    let reply = gw.admin(
        "PUT",
        &format!("/apisix/admin/stream_routes/{id}"),
        &body.to_string(),
    );
    assert!(reply.status == 200 || reply.status == 201, "{}", reply.body);
}

#[test]
fn matching_table() {
    let servers: Vec<NamedServer> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|name| NamedServer::start("127.0.0.1", name).unwrap())
        .collect();
    let (p1, p2) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let admin_port = free_port();
    let config = config_with_tcp(
        admin_port,
        &[
            format!("\"127.0.0.1:{p1}\""),
            format!("\"127.0.0.2:{p1}\""),
            format!("\"127.0.0.1:{p2}\""),
        ],
    );
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    put_route(
        &gw,
        "1",
        json!({"remote_addr": "127.0.0.3", "upstream": upstream_of(&servers[0])}),
    );
    put_route(
        &gw,
        "2",
        json!({"remote_addr": "127.0.0.64/26", "upstream": upstream_of(&servers[1])}),
    );
    put_route(
        &gw,
        "3",
        json!({"server_port": p2, "upstream": upstream_of(&servers[2])}),
    );
    put_route(
        &gw,
        "4",
        json!({"server_addr": "127.0.0.2", "upstream": upstream_of(&servers[3])}),
    );
    let at = |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().unwrap() };

    assert_eq!(
        who_answers("127.0.0.3", at("127.0.0.1", p1)).as_deref(),
        Some("a")
    );
    assert_eq!(
        who_answers("127.0.0.70", at("127.0.0.1", p1)).as_deref(),
        Some("b")
    );
    assert_eq!(
        who_answers("127.0.0.1", at("127.0.0.1", p2)).as_deref(),
        Some("c")
    );
    assert_eq!(
        who_answers("127.0.0.1", at("127.0.0.2", p1)).as_deref(),
        Some("d")
    );
    // First match in store order: route 1 wins over route 3 for 127.0.0.3 on p2.
    assert_eq!(
        who_answers("127.0.0.3", at("127.0.0.1", p2)).as_deref(),
        Some("a")
    );
    // No route: closed without a byte.
    assert_eq!(who_answers("127.0.0.1", at("127.0.0.1", p1)), None);
    assert!(gw
        .wait_log("not hit any route")
        .contains("not hit any route"));

    put_route(&gw, "9", json!({"upstream": upstream_of(&servers[4])}));
    assert_eq!(
        who_answers("127.0.0.1", at("127.0.0.1", p1)).as_deref(),
        Some("e")
    );
    // A route whose upstream_id does not exist closes the connection.
    let reply = gw.admin(
        "PUT",
        "/apisix/admin/upstreams/x",
        &upstream_of(&servers[0]).to_string(),
    );
    assert_eq!(reply.status, 201);
    put_route(
        &gw,
        "0",
        json!({"remote_addr": "127.0.0.9", "upstream_id": "x"}),
    );
    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/upstreams/x", "").status,
        200
    );
    assert_eq!(who_answers("127.0.0.9", at("127.0.0.1", p1)), None);
}

#[test]
fn ipv6_listener_and_route() {
    let server = NamedServer::start("127.0.0.1", "v6-ok").unwrap();
    let other = NamedServer::start("127.0.0.1", "v4").unwrap();
    let port = free_port_on("::1");
    let admin_port = free_port();
    let v4 = free_port_on("127.0.0.1");
    let config = config_with_tcp(
        admin_port,
        &[format!("\"[::1]:{port}\""), format!("\"127.0.0.1:{v4}\"")],
    );
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    put_route(
        &gw,
        "1",
        json!({"remote_addr": "::1", "upstream": upstream_of(&server)}),
    );
    put_route(&gw, "2", json!({"upstream": upstream_of(&other)}));
    let v6: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    assert_eq!(who_answers("::1", v6).as_deref(), Some("v6-ok"));
    let v4: SocketAddr = format!("127.0.0.1:{v4}").parse().unwrap();
    assert_eq!(who_answers("127.0.0.1", v4).as_deref(), Some("v4"));
}

fn one_route_gateway(server: &NamedServer, extra: &str) -> (Gateway, SocketAddr) {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")]);
    let config = config.replace("  stream_proxy:\n", &format!("  stream_proxy:\n{extra}"));
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    put_route(&gw, "1", json!({"upstream": upstream_of(server)}));
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

#[test]
fn half_close_is_forwarded_and_logged() {
    let server = NamedServer::start("127.0.0.1", "echo").unwrap();
    let (gw, listen) = one_route_gateway(&server, "");
    let mut client = connect_from("127.0.0.1", listen).unwrap();
    client.write_all(b"hello").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let mut all = String::new();
    client.read_to_string(&mut all).unwrap();
    assert_eq!(all, "echo\nhellobye 5\n");
    let log = gw.wait_log("session closed");
    assert!(
        log.contains(&format!("proxy request to {}", server.addr)),
        "{log}"
    );
    assert!(log.contains("session closed"), "{log}");
    assert!(log.contains("sent=5"), "{log}");
    assert!(log.contains("received=16"), "{log}");
}

#[test]
fn sigterm_closes_listeners_and_drains_sessions() {
    let server = NamedServer::start("127.0.0.1", "drain").unwrap();
    let (mut gw, listen) = one_route_gateway(&server, "");
    let mut session = connect_from("127.0.0.1", listen).unwrap();
    assert_eq!(greeting(&mut session).as_deref(), Some("drain"));
    gw.signal_term().unwrap();
    // New connections are refused once the listener is closed.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(listen).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "listener still open after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The established session still works.
    session.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    session.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    assert!(
        gw.exited().unwrap().is_none(),
        "exited while a session was open"
    );
    session.shutdown(Shutdown::Write).unwrap();
    let mut rest = String::new();
    session.read_to_string(&mut rest).unwrap();
    assert_eq!(
        gw.wait_exit(Duration::from_secs(20)).unwrap().code(),
        Some(0)
    );
}

#[test]
fn drain_timeout_bounds_the_wait() {
    let server = NamedServer::start("127.0.0.1", "held").unwrap();
    let (mut gw, listen) = one_route_gateway(&server, "    drain_timeout: 1\n");
    let mut session = connect_from("127.0.0.1", listen).unwrap();
    assert_eq!(greeting(&mut session).as_deref(), Some("held"));
    gw.signal_term().unwrap();
    assert_eq!(
        gw.wait_exit(Duration::from_secs(20)).unwrap().code(),
        Some(0)
    );
    assert!(gw
        .wait_log("drain timeout reached")
        .contains("drain timeout reached"));
}

#[test]
fn a_connection_no_route_takes_closes_cleanly_when_the_client_sent_nothing() {
    // A client of a port no route matches gets a FIN, as under APISIX,
    // not a reset, when it has not sent anything (nginx resets only over unread bytes).
    let port = free_port_on("127.0.0.1");
    let admin = free_port();
    let gw = Gateway::start_with(
        &config_with_tcp(admin, &[format!("\"127.0.0.1:{port}\"")]),
        admin,
    )
    .unwrap();
    let mut client = TcpStream::connect(("127.0.0.1", port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(client.read(&mut buf).unwrap(), 0, "a clean end of stream");
    assert!(gw
        .wait_log("not hit any route")
        .contains("not hit any route"));
}
