//! The syslog stream plugin against rsyslog: one entry per session, proxied, refused or
//! unable to reach an upstream, over UDP and over TCP; rsyslog stopped while sessions come and
//! go (they proxy as usual) and started again (the entries held meanwhile arrive within the
//! retry budget); entries still batched sent before the gateway exits.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use sg_blackbox::rsyslog::Rsyslog;
use sg_blackbox::tcp::NamedServer;
use sg_blackbox::{free_port, shipped_config, Gateway};
use socket2::{Domain, Socket, Type};

/// The format of the routes below: what tells one session from another, and how it ended.
fn log_format() -> Value {
    json!({"client": "$remote_addr", "port": "$remote_port", "status": "$status",
           "received": "$bytes_received", "upstream": "$upstream_addr"})
}

fn gateway() -> (Gateway, SocketAddr) {
    let (admin, stream) = (free_port(), free_port());
    let gw = Gateway::start_with(&shipped_config(admin, stream), admin).unwrap();
    (gw, SocketAddr::from(([127, 0, 0, 1], stream)))
}

fn put_route(gw: &Gateway, id: &str, route: Value) {
    let reply = gw.admin(
        "PUT",
        &format!("/apisix/admin/stream_routes/{id}"),
        &route.to_string(),
    );
    assert!(reply.status < 300, "{}", reply.body);
}

/// One session from `from`: sends `hello`, half-closes, reads until closed. Returns the
/// client's port and what came back (`None`: refused).
fn session(from: &str, to: SocketAddr) -> (u16, Option<String>) {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&SocketAddr::new(from.parse().unwrap(), 0).into())
        .unwrap();
    // Known before connecting: a refused client may be reset before its connect returns.
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    if socket.connect(&to.into()).is_err() {
        return (port, None);
    }
    let mut stream = TcpStream::from(socket);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(b"hello");
    let _ = stream.shutdown(Shutdown::Write);
    let mut received = Vec::new();
    let read = stream.read_to_end(&mut received);
    let reply = (read.is_ok() && !received.is_empty())
        .then(|| String::from_utf8_lossy(&received).into_owned());
    (port, reply)
}

/// A proxied session: the upstream greeted, echoed and said goodbye.
fn proxied(to: SocketAddr) -> u16 {
    let (port, reply) = session("127.0.0.1", to);
    assert_eq!(reply.as_deref(), Some("up\nhellobye 5\n"));
    port
}

/// The JSON of the entries of route `id`, after checking each is a whole RFC 5424 line.
fn entries(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|line| {
            assert!(line.starts_with("<46>1 "), "{line}");
            let (_, json) = line.split_once(" - - {").expect("an RFC 5424 frame");
            serde_json::from_str(&format!("{{{json}")).unwrap()
        })
        .collect()
}

/// The entry of the session from `port`: there must be exactly one.
fn entry_of(entries: &[Value], port: u16) -> Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["port"].as_str().and_then(|p| p.parse().ok()) == Some(port))
        .collect();
    assert_eq!(found.len(), 1, "one entry for port {port}: {entries:?}");
    found[0].clone()
}

const PATIENCE: Duration = Duration::from_secs(15);

#[test]
fn udp_one_entry_per_session() {
    let rsyslog = Rsyslog::start(free_port()).unwrap();
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    let (gw, listen) = gateway();
    put_route(
        &gw,
        "1",
        json!({
            "plugins": {"syslog": {"host": "127.0.0.1", "port": rsyslog.port,
                "sock_type": "udp", "batch_max_size": 1, "log_format": log_format()}},
            "upstream": {"type": "roundrobin", "nodes": {upstream.addr.to_string(): 1}}
        }),
    );
    let ports: Vec<u16> = (0..5).map(|_| proxied(listen)).collect();
    let lines = rsyslog.wait_lines("\"route_id\":\"1\"", 5, PATIENCE);
    let entries = entries(&lines);
    assert_eq!(entries.len(), 5, "{lines:?}");
    for port in ports {
        let entry = entry_of(&entries, port);
        assert_eq!(entry["client"], "127.0.0.1");
        assert_eq!(entry["status"], "200");
        assert_eq!(entry["received"], "5");
        assert_eq!(entry["upstream"], upstream.addr.to_string());
    }
}

#[test]
fn tcp_one_entry_per_session_proxied_refused_or_unreached() {
    let rsyslog = Rsyslog::start(free_port()).unwrap();
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    let (gw, listen) = gateway();
    let syslog = json!({"host": "127.0.0.1", "port": rsyslog.port, "inactive_timeout": 1,
        "log_format": log_format()});
    let nodes = json!({"type": "roundrobin", "nodes": {upstream.addr.to_string(): 1}});
    put_route(
        &gw,
        "1",
        json!({"remote_addr": "127.0.0.1", "plugins": {"syslog": syslog}, "upstream": nodes}),
    );
    put_route(
        &gw,
        "2",
        json!({"remote_addr": "127.0.0.2", "upstream": nodes, "plugins": {
            "syslog": syslog, "ip-restriction": {"blacklist": ["127.0.0.2"]}}}),
    );
    // Nothing listens on port 1: no upstream is reached.
    let dead = json!({"type": "roundrobin", "nodes": {"127.0.0.1:1": 1}});
    put_route(
        &gw,
        "3",
        json!({"remote_addr": "127.0.0.3", "plugins": {"syslog": syslog}, "upstream": dead}),
    );
    let ports: Vec<u16> = (0..5).map(|_| proxied(listen)).collect();
    let (refused_port, reply) = session("127.0.0.2", listen);
    assert_eq!(reply, None, "ip-restriction refused it");
    let (unreached_port, reply) = session("127.0.0.3", listen);
    assert_eq!(reply, None, "no upstream answered");
    // Batched: six sessions, one batch after a second of silence, one connection.
    let lines = rsyslog.wait_lines("\"route_id\":\"1\"", 5, PATIENCE);
    let proxied_entries = entries(&lines);
    assert_eq!(proxied_entries.len(), 5, "{lines:?}");
    for port in ports {
        assert_eq!(entry_of(&proxied_entries, port)["status"], "200");
    }
    let lines = rsyslog.wait_lines("\"route_id\":\"2\"", 1, PATIENCE);
    let refused = entry_of(&entries(&lines), refused_port);
    assert_eq!(refused["client"], "127.0.0.2");
    assert_eq!(refused["status"], "403");
    assert_eq!(refused.get("upstream"), None, "no upstream was reached");
    let lines = rsyslog.wait_lines("\"route_id\":\"3\"", 1, PATIENCE);
    let unreached = entry_of(&entries(&lines), unreached_port);
    assert_eq!(unreached["status"], "502");
    assert_eq!(unreached["received"], "0");
}

#[test]
fn sessions_ignore_a_stopped_collector_and_entries_arrive_once_it_is_back() {
    let mut rsyslog = Rsyslog::start(free_port()).unwrap();
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    let (gw, listen) = gateway();
    put_route(
        &gw,
        "1",
        json!({
            "plugins": {"syslog": {"host": "127.0.0.1", "port": rsyslog.port,
                "batch_max_size": 1, "max_retry_count": 60, "retry_delay": 1,
                "log_format": log_format()}},
            "upstream": {"type": "roundrobin", "nodes": {upstream.addr.to_string(): 1}}
        }),
    );
    let first = proxied(listen);
    assert_eq!(
        rsyslog.wait_lines("\"route_id\":\"1\"", 1, PATIENCE).len(),
        1
    );

    rsyslog.stop();
    // Sessions proxy and end as usual while nothing takes their entries.
    let during: Vec<u16> = (0..5).map(|_| proxied(listen)).collect();
    rsyslog.restart().unwrap();

    // Within the retry budget (60 × 1 s), each held entry arrives, once.
    let lines = rsyslog.wait_lines("\"route_id\":\"1\"", 6, PATIENCE);
    let entries = entries(&lines);
    for port in during.iter().chain([&first]) {
        assert_eq!(entry_of(&entries, *port)["status"], "200");
    }
    let metrics = gw.metrics();
    for reason in ["send_failed", "buffer_full"] {
        let series =
            format!("streamgate_syslog_dropped_total{{route=\"1\",reason=\"{reason}\"}} 0");
        assert!(metrics.contains(&series), "nothing dropped: {metrics}");
    }
}

#[test]
fn entries_still_batched_leave_before_the_gateway_exits() {
    let rsyslog = Rsyslog::start(free_port()).unwrap();
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    let (mut gw, listen) = gateway();
    // Timers no test waits for: only the shutdown sends these entries.
    put_route(
        &gw,
        "1",
        json!({
            "plugins": {"syslog": {"host": "127.0.0.1", "port": rsyslog.port,
                "inactive_timeout": 3600, "buffer_duration": 3600, "log_format": log_format()}},
            "upstream": {"type": "roundrobin", "nodes": {upstream.addr.to_string(): 1}}
        }),
    );
    let ports: Vec<u16> = (0..3).map(|_| proxied(listen)).collect();
    assert!(rsyslog.lines_with("\"route_id\":\"1\"").is_empty());
    assert!(gw.terminate().unwrap().success());
    let lines = rsyslog.wait_lines("\"route_id\":\"1\"", 3, PATIENCE);
    let entries = entries(&lines);
    for port in ports {
        assert_eq!(entry_of(&entries, port)["status"], "200");
    }
}
