//! UDP stream proxying with real peers: dnsmasq as the server, `dig` and an RFC 1035 client as
//! clients, through the built binary: answers arrive, many source ports are all answered,
//! live sessions stay pinned across a hot swap, chash on `remote_addr`, idle sessions expire,
//! a refusing node and a refusing plugin end their sessions, the session cap refuses and
//! counts, hostile datagrams harm nobody, SIGTERM ends quiet sessions, IPv6 listeners.

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sg_blackbox::dns::{Client, Dnsmasq};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 2, 2, 2);
const ACTIVE: &str = "streamgate_stream_active_connections{route=\"1\"}";

/// A port free for both TCP and UDP on 127.0.0.1 now (dnsmasq binds both).
fn free_udp_port() -> u16 {
    loop {
        let port = free_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A gateway with one UDP listener on 127.0.0.1 and `extra` lines in `stream_proxy`, its
/// access log on. Returns it and the listener's address.
fn gateway(extra: &str) -> (Gateway, SocketAddr) {
    let udp = SocketAddr::from(([127, 0, 0, 1], free_udp_port()));
    (gateway_on(&udp.to_string(), extra), udp)
}

/// A gateway whose UDP listener is the `stream_proxy.udp` entry `entry`.
fn gateway_on(entry: &str, extra: &str) -> Gateway {
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{}\"", free_port())])
        .replace(
            "  stream_proxy:\n",
            &format!("  stream_proxy:\n    udp: [\"{entry}\"]\n{extra}"),
        )
        .replace("enable_access_log: false", "enable_access_log: true");
    Gateway::start_with(&config, admin_port).unwrap()
}

/// Route 1: every datagram of the listener at `listener` to `upstream` (with the prometheus
/// plugin, so APISIX's session counter moves).
fn route(gw: &Gateway, listener: SocketAddr, upstream: Value) {
    let body = json!({
        "server_port": listener.port(),
        "plugins": {"prometheus": {}},
        "upstream": upstream,
    });
    let reply = gw.admin("PUT", "/apisix/admin/stream_routes/1", &body.to_string());
    assert!(reply.status < 300, "{}", reply.body);
}

fn udp_upstream(servers: &[&Dnsmasq], extra: Value) -> Value {
    let nodes: serde_json::Map<String, Value> = servers
        .iter()
        .map(|s| (s.addr.to_string(), json!(1)))
        .collect();
    let mut up = json!({"scheme": "udp", "type": "roundrobin", "nodes": nodes});
    if let (Some(up), Value::Object(extra)) = (up.as_object_mut(), extra) {
        up.extend(extra);
    }
    up
}

/// Upstream keys for an idle timeout of `secs` (APISIX's schema wants all three timeouts).
fn idle(secs: u64) -> Value {
    json!({"timeout": {"connect": secs, "send": secs, "read": secs}})
}

/// One dnsmasq answering [`A`] behind a gateway (`extra` lines in `stream_proxy`) whose route
/// 1 has `upstream_extra` keys, and a client whose first answer came (its session is open).
struct Serving {
    server: Dnsmasq,
    gw: Gateway,
    listener: SocketAddr,
    client: Client,
}

fn serving(extra: &str, upstream_extra: Value) -> Serving {
    let server = Dnsmasq::start(free_udp_port(), A).unwrap();
    let (gw, listener) = gateway(extra);
    route(&gw, listener, udp_upstream(&[&server], upstream_extra));
    let client = Client::bind("127.0.0.1").unwrap();
    assert_eq!(client.ask_until_answered(listener).unwrap(), A);
    Serving {
        server,
        gw,
        listener,
        client,
    }
}

#[test]
fn dig_gets_answers_and_the_session_is_counted_and_logged() {
    let Serving {
        server,
        gw,
        listener,
        ..
    } = serving("", idle(1));
    let dig = Command::new("dig")
        .args(["@127.0.0.1", "-p", &listener.port().to_string()])
        .args(["example.test", "+short", "+tries=1", "+time=2"])
        .output()
        .expect("dig (make test installs it)");
    assert_eq!(String::from_utf8_lossy(&dig.stdout).trim(), A.to_string());
    // Both sessions end after a second of silence; each is logged and counted once.
    gw.wait_metric("apisix_stream_connection_total{route=\"1\"}", 2.0);
    gw.wait_metric(ACTIVE, 0.0);
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("session closed route=1") && l.contains("protocol=UDP"))
        .unwrap_or_else(|| panic!("no UDP access line: {log}"));
    assert!(line.contains(&format!("node={}", server.addr)), "{line}");
    assert!(line.contains("end=idle timeout"), "{line}");
    assert!(
        !line.contains("sent=0") && !line.contains("received=0"),
        "{line}"
    );
}

#[test]
fn a_thousand_queries_from_fifty_ports_are_all_answered() {
    // `..` would drop the server at once: it is bound.
    let Serving {
        server: _server,
        gw,
        listener,
        ..
    } = serving("", json!({}));
    let clients: Vec<_> = (0..50)
        .map(|_| {
            std::thread::spawn(move || {
                let client = Client::bind("127.0.0.1").unwrap();
                (0..20)
                    .map(|_| client.ask(listener))
                    .filter(|answer| matches!(answer, Ok(ip) if *ip == A))
                    .count()
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(answered, 1000);
    // The readiness client's session and one per client socket.
    assert_eq!(gw.metric(ACTIVE), 51.0);
}

#[test]
fn a_hot_swap_moves_new_sessions_and_leaves_live_ones_pinned() {
    let (a, b) = (
        Dnsmasq::start(free_udp_port(), A).unwrap(),
        Dnsmasq::start(free_udp_port(), B).unwrap(),
    );
    let (gw, listener) = gateway("");
    route(&gw, listener, udp_upstream(&[&a], json!({})));
    let live = Client::bind("127.0.0.1").unwrap();
    assert_eq!(live.ask_until_answered(listener).unwrap(), A);
    route(&gw, listener, udp_upstream(&[&b], json!({})));
    let new = Client::bind("127.0.0.1").unwrap();
    for _ in 0..5 {
        assert_eq!(
            new.ask(listener).unwrap(),
            B,
            "a new session used the old upstream"
        );
        assert_eq!(live.ask(listener).unwrap(), A, "a live session moved");
    }
}

#[test]
fn chash_on_remote_addr_keeps_each_client_address_on_one_server() {
    let (a, b) = (
        Dnsmasq::start(free_udp_port(), A).unwrap(),
        Dnsmasq::start(free_udp_port(), B).unwrap(),
    );
    let (gw, listener) = gateway("");
    let up = udp_upstream(&[&a, &b], json!({"type": "chash", "key": "remote_addr"}));
    route(&gw, listener, up);
    Client::bind("127.0.0.1")
        .unwrap()
        .ask_until_answered(listener)
        .unwrap();
    let mut seen = Vec::new();
    for host in 2..22 {
        let ip = format!("127.0.0.{host}");
        // Three sockets (three sessions) per address, three queries each.
        let answers: Vec<Ipv4Addr> = (0..3)
            .flat_map(|_| {
                let client = Client::bind(&ip).unwrap();
                (0..3).map(move |_| client.ask(listener).unwrap())
            })
            .collect();
        assert!(
            answers.iter().all(|x| *x == answers[0]),
            "{ip}: {answers:?}"
        );
        seen.push(answers[0]);
    }
    assert!(
        seen.contains(&A) && seen.contains(&B),
        "one server took every client: {seen:?}"
    );
}

#[test]
fn idle_sessions_expire_and_the_client_then_follows_the_new_upstream() {
    let (a, b) = (
        Dnsmasq::start(free_udp_port(), A).unwrap(),
        Dnsmasq::start(free_udp_port(), B).unwrap(),
    );
    let (gw, listener) = gateway("");
    route(&gw, listener, udp_upstream(&[&a], idle(1)));
    let client = Client::bind("127.0.0.1").unwrap();
    assert_eq!(client.ask_until_answered(listener).unwrap(), A);
    route(&gw, listener, udp_upstream(&[&b], idle(1)));
    // Still within its second: pinned.
    assert_eq!(client.ask(listener).unwrap(), A);
    gw.wait_metric(ACTIVE, 0.0);
    assert_eq!(
        client.ask(listener).unwrap(),
        B,
        "the expired session was reused"
    );
}

#[test]
fn the_session_cap_refuses_new_clients_and_counts_them() {
    let Serving {
        server: _server,
        gw,
        listener,
        client: first,
    } = serving("    udp_max_sessions: 3\n", idle(1));
    let admitted: Vec<Client> = (0..2).map(|_| Client::bind("127.0.0.1").unwrap()).collect();
    for client in &admitted {
        assert_eq!(client.ask(listener).unwrap(), A);
    }
    let refused = Client::bind("127.0.0.1").unwrap();
    assert!(refused
        .ask_within(listener, Duration::from_millis(300))
        .is_err());
    assert_eq!(
        gw.metric("streamgate_connections_refused_total{reason=\"udp_session_limit\"}"),
        1.0
    );
    // Live sessions keep working; once they expire, the refused client gets in.
    assert_eq!(first.ask(listener).unwrap(), A);
    gw.wait_metric(ACTIVE, 0.0);
    assert_eq!(refused.ask(listener).unwrap(), A);
}

#[test]
fn largest_empty_and_garbage_datagrams_and_a_source_flood_harm_nobody() {
    let Serving {
        server: _server,
        gw,
        listener,
        client,
    } = serving("    udp_max_sessions: 100\n", json!({}));
    // The largest UDP payload over IPv4, an empty datagram and garbage, on the live session.
    for datagram in [vec![0xff; 65_507], Vec::new(), b"\x00\x01garbage".to_vec()] {
        client.socket.send_to(&datagram, listener).unwrap();
    }
    assert_eq!(client.ask(listener).unwrap(), A);
    // 300 new sources at once against a cap of 100 (the client holds one place): the gateway
    // holds 100 sessions, refuses and counts the others, and the live session goes on.
    let flood: Vec<UdpSocket> = (0..300)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for socket in &flood {
        socket.send_to(b"flood", listener).unwrap();
    }
    gw.wait_metric(ACTIVE, 100.0);
    let refused = "streamgate_connections_refused_total{reason=\"udp_session_limit\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while gw.metric(refused) < 1.0 {
        assert!(Instant::now() < deadline, "nothing refused: {}", gw.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        client.ask(listener).unwrap(),
        A,
        "the live session was disturbed"
    );
    assert_eq!(gw.metric(ACTIVE), 100.0);
}

#[test]
fn a_node_that_refuses_ends_the_session_and_the_next_datagram_picks_again() {
    // Nothing listens on the node's port yet: it answers with ICMP port unreachable.
    let port = free_udp_port();
    let (gw, listener) = gateway("");
    let node = SocketAddr::from(([127, 0, 0, 1], port));
    let up = json!({"scheme": "udp", "type": "roundrobin", "nodes": {node.to_string(): 1}});
    route(&gw, listener, up);
    let client = Client::bind("127.0.0.1").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !gw.log().contains("end=upstream refused") {
        assert!(
            Instant::now() < deadline,
            "no refused session: {}",
            gw.log()
        );
        assert!(client
            .ask_within(listener, Duration::from_millis(100))
            .is_err());
    }
    gw.wait_metric(ACTIVE, 0.0);
    let line = gw
        .log()
        .lines()
        .find(|l| l.contains("end=upstream refused"))
        .map(str::to_owned)
        .unwrap();
    assert!(
        line.contains(&format!("node={node}")) && line.contains("protocol=UDP"),
        "{line}"
    );
    // The server comes up: the same client's next query opens a session that it answers.
    let _server = Dnsmasq::start(port, A).unwrap();
    assert_eq!(client.ask(listener).unwrap(), A);
}

#[test]
fn a_plugin_refusal_drops_the_datagram_and_runs_the_log_hooks() {
    let server = Dnsmasq::start(free_udp_port(), A).unwrap();
    let (gw, listener) = gateway("");
    let body = json!({
        "server_port": listener.port(),
        "plugins": {"prometheus": {}, "ip-restriction": {"blacklist": ["127.0.0.2"]}},
        "upstream": udp_upstream(&[&server], json!({})),
    });
    let reply = gw.admin("PUT", "/apisix/admin/stream_routes/1", &body.to_string());
    assert!(reply.status < 300, "{}", reply.body);
    let allowed = Client::bind("127.0.0.1").unwrap();
    assert_eq!(allowed.ask_until_answered(listener).unwrap(), A);
    let refused = Client::bind("127.0.0.2").unwrap();
    for _ in 0..3 {
        assert!(refused
            .ask_within(listener, Duration::from_millis(100))
            .is_err());
    }
    // Each refused datagram was a session of its own, refused, logged by the hooks.
    gw.wait_metric(
        "streamgate_session_failures_total{kind=\"refused\",origin=\"client\"}",
        3.0,
    );
    gw.wait_metric("apisix_stream_connection_total{route=\"1\"}", 3.0);
    assert_eq!(
        gw.metric(ACTIVE),
        1.0,
        "only the allowed client's session is open"
    );
    assert!(gw
        .log()
        .contains("ip-restriction exits with status code 403"));
}

#[test]
fn sigterm_ends_quiet_udp_sessions_within_a_second_or_so() {
    // Ten-minute sessions (the default), and 30 s of drain_timeout (the default).
    let Serving {
        server: _server,
        mut gw,
        listener,
        client,
    } = serving("", json!({}));
    assert_eq!(client.ask(listener).unwrap(), A);
    assert_eq!(gw.metric(ACTIVE), 1.0);
    let asked = Instant::now();
    gw.signal_term().unwrap();
    let status = gw.wait_exit(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{status}");
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(5), "the drain took {took:?}");
    let log = gw.log();
    assert!(
        log.contains("end=idle timeout protocol=UDP"),
        "the session was not ended and logged: {log}"
    );
    assert!(!log.contains("drain timeout reached"), "{log}");
}

#[test]
fn an_ipv6_listener_answers_from_its_own_address() {
    let server = Dnsmasq::start(free_udp_port(), A).unwrap();
    let port = free_udp_port();
    let gw = gateway_on(&format!("[::1]:{port}"), "");
    let listener: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    route(&gw, listener, udp_upstream(&[&server], json!({})));
    // `ask` checks that the answer comes from the address asked.
    let client = Client::bind("::1").unwrap();
    assert_eq!(client.ask_until_answered(listener).unwrap(), A);
    assert_eq!(client.ask(listener).unwrap(), A);
}
