//! The mqtt-proxy plugin through the built binary: every case of APISIX's
//! t/stream-plugin/mqtt-proxy.t and mqtt-proxy2.t (spec §5.2, §5.3) as bytes in, upstream reached
//! or connection closed, plus hostile inputs and the bounded pre-read.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::tcp::{exchange, hex, who_answers, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

const CONNECT_FOO: &str = "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f";
const CONNECT_EMPTY_V4: &str = "10 0c 00 04 4d 51 54 54 04 02 00 3c 00 00";
const CONNECT_EMPTY_V5: &str = "10 0d 00 04 4d 51 54 54 05 02 00 3c 00 00 00";
const CONNECT_PROPS_V5: &str =
    "10 1b 00 04 4d 51 54 54 05 02 00 3c 05 11 00 00 0e 10 00 09 63 6c 69 6e 74 2d 31 31 31";
const CONNECT_F_V5: &str = "10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 66";
const CONNECT_G_V5: &str = "10 0e 00 04 4d 51 54 54 05 02 00 3c 00 00 01 67";

struct Setup {
    gw: Gateway,
    listen: SocketAddr,
}

fn start(extra_stream_proxy: &str) -> Setup {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")]).replace(
        "  stream_proxy:\n",
        &format!("  stream_proxy:\n{extra_stream_proxy}"),
    );
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    Setup {
        gw,
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
    }
}

impl Setup {
    fn route(&self, body: Value) -> u16 {
        self.gw
            .admin("PUT", "/apisix/admin/stream_routes/1", &body.to_string())
            .status
    }

    /// Sends `packet`; returns what came back (the upstream's name and echo) or `None` when the
    /// connection was closed without a byte.
    fn send(&self, packet: &str) -> Option<String> {
        let bytes = hex(packet);
        match exchange(self.listen, &bytes) {
            Ok(back) if back.is_empty() => None,
            Ok(back) => Some(String::from_utf8_lossy(&back).into_owned()),
            Err(_) => None,
        }
    }

    /// The upstream received the packet unchanged: its name, then the echo, then its count.
    fn reached(&self, packet: &str, upstream: &str) -> bool {
        let bytes = hex(packet);
        let mut expected = format!("{upstream}\n").into_bytes();
        expected.extend_from_slice(&bytes);
        expected.extend_from_slice(format!("bye {}\n", bytes.len()).as_bytes());
        matches!(exchange(self.listen, &bytes), Ok(back) if back == expected)
    }
}

fn mqtt_route(level: u8, upstream: Value, port: u16) -> Value {
    json!({"remote_addr": "127.0.0.1", "server_port": port,
           "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": level}},
           "upstream": upstream})
}

fn chash(nodes: Value) -> Value {
    json!({"type": "chash", "key": "mqtt_client_id", "nodes": nodes})
}

#[test]
fn apisix_mqtt_proxy_t() {
    let s = start("");
    let server = NamedServer::start("127.0.0.1", "hello").unwrap();
    let port = s.listen.port();
    let one = |host: &str| json!([{"host": host, "port": server.addr.port(), "weight": 1}]);
    // TEST 1-3: chash with one node; an invalid header is refused; a v3.1.1 CONNECT passes.
    assert_eq!(s.route(mqtt_route(4, chash(one("127.0.0.1")), port)), 201);
    assert_eq!(s.send("6d 6d 6d"), None);
    assert!(s
        .gw
        .wait_log("Received unexpected MQTT packet type+flags: 109")
        .contains("type+flags: 109"));
    assert!(s.reached(CONNECT_FOO, "hello"));
    // TEST 4-5: a stale `upstream` key inside the plugin is accepted and ignored; port 2000 is
    // not ours, so nothing matches and the connection is reset.
    let stale = json!({"remote_addr": "127.0.0.1", "server_port": 2000, "plugins": {"mqtt-proxy":
        {"protocol_name": "MQTT", "protocol_level": 4, "upstream": {"host": "127.0.0.1", "port": 1995}}}});
    assert_eq!(s.route(stale), 200);
    assert_eq!(s.send("10 0f"), None);
    assert!(s
        .gw
        .wait_log("not hit any route")
        .contains("not hit any route"));
    // TEST 6-7: a domain node.
    assert_eq!(s.route(mqtt_route(4, chash(one("localhost")), port)), 200);
    assert!(s.reached(CONNECT_FOO, "hello"));
    // TEST 8-10: roundrobin; the client id is logged; an empty id is allowed.
    let rr = json!({"type": "roundrobin", "nodes": one("127.0.0.1")});
    assert_eq!(s.route(mqtt_route(4, rr.clone(), port)), 200);
    assert!(s.reached(CONNECT_FOO, "hello"));
    assert!(s
        .gw
        .wait_log("mqtt client id: foo")
        .contains("mqtt client id: foo"));
    assert!(s.reached(CONNECT_EMPTY_V4, "hello"));
    // TEST 11-13: MQTT 5, with and without properties.
    assert_eq!(s.route(mqtt_route(5, rr, port)), 200);
    assert!(s.reached(CONNECT_EMPTY_V5, "hello"));
    assert!(s.reached(CONNECT_PROPS_V5, "hello"));
    assert!(s
        .gw
        .wait_log("mqtt client id: clint-111")
        .contains("mqtt client id: clint-111"));
}

/// TEST 14-17 of mqtt-proxy.t and TEST 3-7 of mqtt-proxy2.t use nodes 0.0.0.0:1995 and
/// 127.0.0.1:1995: the ring sends "f" to 0.0.0.0, "g" and the empty id (client IP) to 127.0.0.1.
#[test]
fn apisix_chash_vectors_on_port_1995() {
    let server = NamedServer::start_at("0.0.0.0:1995", "hello")
        .expect("APISIX's vectors need port 1995 free on this machine");
    let s = start("");
    let port = s.listen.port();
    let nodes = json!([{"host": "0.0.0.0", "port": 1995, "weight": 1},
                       {"host": "127.0.0.1", "port": 1995, "weight": 1}]);
    let expect = |packet: &str, node: &str| {
        let before =
            s.gw.log()
                .matches(&format!("proxy request to {node}"))
                .count();
        assert!(s.reached(packet, "hello"));
        let log = s.gw.wait_log("session closed");
        assert_eq!(
            log.matches(&format!("proxy request to {node}")).count(),
            before + 1,
            "{packet} → {node}\n{log}"
        );
    };
    // Inline upstream (mqtt-proxy.t).
    assert_eq!(s.route(mqtt_route(5, chash(nodes.clone()), port)), 201);
    expect(CONNECT_EMPTY_V5, "127.0.0.1:1995");
    expect(CONNECT_F_V5, "0.0.0.0:1995");
    expect(CONNECT_G_V5, "127.0.0.1:1995");
    // Through an upstream object (mqtt-proxy2.t).
    let up = s.gw.admin(
        "PUT",
        "/apisix/admin/upstreams/1",
        &chash(nodes).to_string(),
    );
    assert_eq!(up.status, 201);
    let route = json!({"remote_addr": "127.0.0.1", "server_port": port, "upstream_id": 1,
        "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 5}}});
    assert_eq!(s.route(route), 200);
    expect(CONNECT_EMPTY_V5, "127.0.0.1:1995");
    expect(CONNECT_F_V5, "0.0.0.0:1995");
    expect(CONNECT_G_V5, "127.0.0.1:1995");
    drop(server);
}

#[test]
fn apisix_mqtt_proxy2_t_domain_and_schema() {
    let s = start("");
    let port = s.listen.port();
    // TEST 1-2: an unresolvable domain closes the connection with APISIX's log line.
    let loc = chash(json!([{"host": "loc", "port": 1995, "weight": 1}]));
    assert_eq!(s.route(mqtt_route(4, loc, port)), 201);
    assert_eq!(s.send(CONNECT_FOO), None);
    assert!(s
        .gw
        .wait_log("failed to parse domain: loc, error:")
        .contains("failed to parse domain: loc, error:"));
    // TEST 8: the plugin schema.
    let check = |conf: Value| {
        let body = json!({"plugins": {"mqtt-proxy": conf}});
        s.gw.admin("PUT", "/apisix/admin/stream_routes/2", &body.to_string())
    };
    assert_eq!(
        check(json!({"protocol_name": "MQTT", "protocol_level": 4})).status,
        201
    );
    assert_eq!(check(json!({"protocol_name": "MQTT"})).json()["error_msg"],
        "failed to check the configuration of stream plugin [mqtt-proxy]: property \"protocol_level\" is required");
    assert_eq!(check(json!({"protocol_level": 4})).status, 200);
}

#[test]
fn mismatches_and_hostile_packets_close_only_their_connection() {
    let s = start("");
    let server = NamedServer::start("127.0.0.1", "hello").unwrap();
    let rr = json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1}});
    assert_eq!(s.route(mqtt_route(4, rr, s.listen.port())), 201);
    let cases = [
        (CONNECT_EMPTY_V5, "expect protocol level: 4, but got 5"),
        (
            "10 0f 00 04 4d 51 49 73 04 02 00 3c 00 03 66 6f 6f",
            "expect protocol name: MQTT, but got MQIs",
        ),
        (
            "10 0f 00 04 4d 51 54 54 04 02 00 3c 00 09 66 6f 6f",
            "failed to parse mqtt request",
        ),
        (
            "30 02 00 00",
            "Received unexpected MQTT packet type+flags: 48",
        ),
        // apache/apisix#13952: a v5 property length past the end.
        (
            "10 0d 00 04 4d 51 54 54 05 02 00 3c 7f 00 00",
            "failed to parse mqtt request",
        ),
        ("10 ff ff ff ff 7f", "failed to parse mqtt request"),
        (
            "10 0c 00 04 4d 51 54 54 04 03 00 3c 00 00",
            "failed to parse mqtt request",
        ),
    ];
    for (packet, line) in cases {
        assert_eq!(s.send(packet), None, "{packet}");
        let log = s.gw.wait_log(line);
        assert!(log.contains(line), "{packet}: {line}\n{log}");
        // The gateway keeps serving everyone else.
        assert!(s.reached(CONNECT_FOO, "hello"), "after {packet}");
    }
    assert!(s.gw.log().contains("mqtt-proxy exits with status code 503"));
}

#[test]
fn bounded_preread_and_connack_option() {
    let s = start("    preread_timeout: 1\n");
    let server = NamedServer::start("127.0.0.1", "hello").unwrap();
    let rr = json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1}});
    let mut route = mqtt_route(4, rr, s.listen.port());
    assert_eq!(s.route(route.clone()), 201);
    // A CONNECT announcing 2 MiB is refused at once, without reading it.
    assert_eq!(s.send("10 80 80 80 01 00 04 4d 51 54 54"), None);
    assert!(s
        .gw
        .wait_log("larger than the preread buffer")
        .contains("larger than the preread buffer"));
    // A client that never finishes its CONNECT is closed after preread_timeout.
    let mut silent = sg_blackbox::tcp::connect_from("127.0.0.1", s.listen).unwrap();
    std::io::Write::write_all(&mut silent, &hex("10 0f 00 04")).unwrap();
    let mut rest = Vec::new();
    let _ = std::io::Read::read_to_end(&mut silent, &mut rest);
    assert!(rest.is_empty());
    assert!(s
        .gw
        .wait_log("failed to read the Connect Command: timeout")
        .contains("Connect Command: timeout"));
    // A thousand silent connections do not keep a real client out.
    let silent_crowd: Vec<_> = (0..1000)
        .map(|_| sg_blackbox::tcp::connect_from("127.0.0.1", s.listen).unwrap())
        .collect();
    assert!(s.reached(CONNECT_FOO, "hello"));
    drop(silent_crowd);
    // Opt-in CONNACK for a version mismatch.
    route["plugins"]["mqtt-proxy"]["reject_with_connack"] = json!(true);
    assert_eq!(s.route(route), 200);
    assert_eq!(
        exchange(s.listen, &hex(CONNECT_EMPTY_V5)).unwrap(),
        hex("20 03 00 84 00")
    );
    let v3 = "10 0e 00 06 4d 51 49 73 64 70 03 02 00 3c 00 00";
    assert_eq!(exchange(s.listen, &hex(v3)).unwrap(), hex("20 02 00 01"));
    // An oversized CONNECT: a 5.0 client learns why (0x95 "packet too large"); 3.1.1 has no
    // such code and is closed without a byte.
    let huge_v5 = "10 80 80 80 01 00 04 4d 51 54 54 05 02 00 3c 00";
    assert_eq!(
        exchange(s.listen, &hex(huge_v5)).unwrap(),
        hex("20 03 00 95 00")
    );
    assert_eq!(s.send("10 80 80 80 01 00 04 4d 51 54 54 04 02 00 3c"), None);
    // Warned once per client address per minute, naming the setting to raise.
    let log = s.gw.log();
    assert_eq!(
        log.matches("raise apisix.stream_proxy.preread_buffer_size")
            .count(),
        1,
        "{log}"
    );
}

#[test]
fn a_route_whose_server_speaks_first_is_not_held_back_by_mqtt_routes() {
    let s = start("");
    let broker = NamedServer::start("127.0.0.1", "broker").unwrap();
    let greeter = NamedServer::start("127.0.0.1", "greeter").unwrap();
    let port = s.listen.port();
    let mqtt = mqtt_route(4, json!({"nodes": {broker.addr.to_string(): 1}}), port);
    assert_eq!(s.route(mqtt), 201);
    assert!(s.reached("10 0c 00 04 4d 51 54 54 04 02 00 00 00 00", "broker"));
    // Every route read its client's CONNECT, so the listener deferred accepting. A route with no
    // plugins (the upstream greets first) must turn that off before it is in force.
    let plain = json!({"remote_addr": "127.0.0.2",
                       "upstream": {"nodes": {greeter.addr.to_string(): 1}}});
    let put =
        s.gw.admin("PUT", "/apisix/admin/stream_routes/2", &plain.to_string());
    assert_eq!(put.status, 201);
    let started = Instant::now();
    assert_eq!(
        who_answers("127.0.0.2", s.listen).as_deref(),
        Some("greeter")
    );
    // A deferring listener would hold the silent client for a second.
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(500),
        "greeted after {waited:?}"
    );
}

/// Connects with a keep-alive of 2 s, stays silent 1.6 s (past the upstream's 1 s idle
/// timeout, within 1.5 × the keep-alive), then checks the session still carries bytes.
fn alive_after_a_silence(s: &Setup) -> bool {
    use std::io::{Read, Write};
    let connect = hex("10 0f 00 04 4d 51 54 54 04 02 00 02 00 03 66 6f 6f");
    let mut client = sg_blackbox::tcp::connect_from("127.0.0.1", s.listen).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    client.write_all(&connect).unwrap();
    let mut answer = vec![0; 2 + connect.len()];
    client.read_exact(&mut answer).unwrap();
    assert_eq!(&answer[..2], b"k\n");
    std::thread::sleep(Duration::from_millis(1600));
    if client.write_all(b"ping").is_err() {
        return false;
    }
    let mut echo = [0; 4];
    client.read_exact(&mut echo).is_ok() && &echo == b"ping"
}

#[test]
fn idle_sessions_follow_the_clients_keepalive() {
    let s = start("");
    let server = NamedServer::start("127.0.0.1", "k").unwrap();
    let upstream = json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1},
                          "timeout": {"connect": 1, "send": 1, "read": 1}});
    let mut route = mqtt_route(4, upstream, s.listen.port());
    assert_eq!(s.route(route.clone()), 201);
    assert!(alive_after_a_silence(&s), "cut before 1.5 x the keep-alive");
    // Switched off, the upstream's idle timeout applies, as in APISIX.
    route["plugins"]["mqtt-proxy"]["keepalive_idle_timeout"] = json!(false);
    assert_eq!(s.route(route), 200);
    assert!(!alive_after_a_silence(&s), "kept past the idle timeout");
}

#[test]
fn client_bytes_in_logs_are_escaped_and_refusals_rate_limited() {
    let s = start("");
    let server = NamedServer::start("127.0.0.1", "x").unwrap();
    let rr = json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1}});
    assert_eq!(s.route(mqtt_route(4, rr, s.listen.port())), 201);
    // Protocol name "M\nERROR forged" (14 bytes) instead of "MQTT".
    let forged = "10 16 00 0e 4d 0a 45 52 52 4f 52 20 66 6f 72 67 65 64 04 02 00 3c 00 00";
    assert_eq!(s.send(forged), None);
    let log = s.gw.wait_log("but got M\\nERROR forged");
    assert!(log.contains("but got M\\nERROR forged"), "{log}");
    assert!(!log.contains("\nERROR forged"), "{log}");
    // A burst of bad CONNECTs: at most 10 lines a second, the rest counted.
    for _ in 0..40 {
        assert_eq!(s.send("30 02 00 00"), None);
    }
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(s.send("30 02 00 00"), None);
    let log = s.gw.wait_log("log lines of this kind were suppressed");
    assert!(
        log.contains("log lines of this kind were suppressed"),
        "{log}"
    );
    let written = log
        .matches("Received unexpected MQTT packet type+flags")
        .count();
    assert!(written <= 21, "{written} lines written");
    assert_eq!(
        s.gw.metric("streamgate_mqtt_connect_rejected_total{reason=\"not_connect\"}"),
        41.0,
        "every refusal is counted"
    );
}
