//! The PROXY protocol from load balancers, with real peers: HAProxy 2.6 sending it to
//! streamgate (`send-proxy`, `send-proxy-v2`, a TLS ClientHello behind the header, HAProxy's own
//! TLVs after it terminated mTLS); LOCAL and UNKNOWN headers; hostile headers that close only
//! their own connection; connection rates per reported client.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use serde_json::json;
use sg_blackbox::free_port_on;
use sg_blackbox::haproxy::Haproxy;
use sg_blackbox::pki::{write, Ca};
use sg_blackbox::proxy_protocol::*;
use sg_blackbox::tcp::{connect_from, greeting, hex, who_answers, NamedServer};
use sg_blackbox::tls::{der, ClientOptions};
use sg_proxy_protocol::{CLIENT_CERT_CONN, CLIENT_SSL};

#[test]
fn routes_plugins_and_logs_see_the_client_haproxy_reports() {
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    let b = NamedServer::start("127.0.0.1", "b").unwrap();
    let pp = free_port_on("127.0.0.1");
    let gw = gateway(&[entry(pp, "proxy_protocol: true")], "", "");
    put(
        &gw,
        "stream_routes/1",
        json!({"remote_addr": "127.0.0.5", "upstream": nodes(a.addr)}),
    );
    // One connection at a time per client HAProxy reports.
    let limit = json!({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1,
        "key_type": "var_combination", "key": "$proxy_protocol_addr"}});
    put(
        &gw,
        "stream_routes/2",
        json!({"plugins": limit, "upstream": nodes(b.addr)}),
    );
    // HAProxy's health checks send a header too: v1 with the check connection's own
    // addresses, v2 a LOCAL command.
    let (_haproxy, v1, v2) = haproxy_sending_to(pp, "check inter 100ms");
    // Every connection reaches streamgate from HAProxy's 127.0.0.1.
    for (front, held_ip, other_ip) in [
        (v1, "127.0.0.6", "127.0.0.8"),
        (v2, "127.0.0.16", "127.0.0.18"),
    ] {
        // The route matches the reported client, and exactly the header is consumed: the
        // upstream gets the client's bytes and nothing else.
        let (client, reply) = talk("127.0.0.5", front, b"hi");
        assert_eq!(reply.unwrap(), b"a\nhibye 2\n", "{front}");
        let line = format!("client={client}");
        let log = gw.wait_log(&line);
        // `conn{balancer=127.0.0.1:… server=… client=127.0.0.5:…}: session closed route=1 …`
        assert!(
            log.lines().any(|l| l.contains(&line)
                && l.contains("session closed route=1")
                && l.contains("{balancer=127.0.0.1:")
                && l.matches("client=").count() == 1),
            "the access log names the reported client {client}, and HAProxy as the balancer:\n{log}"
        );
        let mut held = connect_from(held_ip, front).unwrap();
        assert_eq!(greeting(&mut held).as_deref(), Some("b"));
        assert_eq!(
            who_answers(held_ip, front),
            None,
            "limit-conn counts {held_ip}'s connections"
        );
        assert_eq!(
            who_answers(other_ip, front).as_deref(),
            Some("b"),
            "{other_ip} has a slot of its own"
        );
    }
    // Health checks are routed by HAProxy's own address, which is the client they name.
    let deadline = Instant::now() + Duration::from_secs(10);
    let check = |line: &str| {
        let field = |name: &str| line.split(name).nth(1)?.split([' ', '}']).next();
        line.contains("session closed route=2")
            && field("{balancer=").is_some()
            && field("{balancer=") == field(" client=")
    };
    while !gw.log().lines().any(check) {
        assert!(Instant::now() < deadline, "no health check:\n{}", gw.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(gw.metric(FAILURES), 0.0, "{}", gw.log());
}

#[test]
fn a_tls_client_handshakes_behind_haproxys_header() {
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    let b = NamedServer::start("127.0.0.1", "b").unwrap();
    let tls = free_port_on("127.0.0.1");
    let gw = gateway(&[entry(tls, "tls: true, proxy_protocol: true")], "", "");
    let ca = Ca::root("pp CA");
    let server = ca.leaf(&["pp.test.com"], 1);
    put(
        &gw,
        "ssls/1",
        json!({"cert": server.cert, "key": server.key, "snis": ["pp.test.com"]}),
    );
    put(
        &gw,
        "stream_routes/1",
        json!({"sni": "pp.test.com", "remote_addr": "127.0.0.5", "upstream": nodes(a.addr)}),
    );
    put(&gw, "stream_routes/2", json!({"upstream": nodes(b.addr)}));
    let (_haproxy, v1, v2) = haproxy_sending_to(tls, "");
    for front in [v1, v2] {
        for (from, name) in [("127.0.0.5", "a"), ("127.0.0.6", "b")] {
            let options = ClientOptions {
                sni: Some("pp.test.com"),
                from: Some(from),
                ..Default::default()
            };
            let (_, served, received) = tls_talk(front, &options);
            assert_eq!(served, der(&server.cert));
            assert_eq!(received, format!("{name}\nhibye 2\n").as_bytes(), "{from}");
        }
    }
}

#[test]
fn haproxys_v2_tlvs_after_mtls_decode_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("edge CA");
    let server = ca.leaf(&["edge.test.com"], 1);
    let device = ca.leaf(&["device-9"], 9);
    let crt = write(
        dir.path(),
        "edge.pem",
        &format!("{}{}", server.cert, server.key),
    );
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);
    let (capture, headers) = header_server();
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    let b = NamedServer::start("127.0.0.1", "b").unwrap();
    let pp = free_port_on("127.0.0.1");
    let gw = gateway(&[entry(pp, "proxy_protocol: true")], "", "");
    put(
        &gw,
        "stream_routes/1",
        json!({"remote_addr": "127.0.0.5", "upstream": nodes(a.addr)}),
    );
    put(&gw, "stream_routes/2", json!({"upstream": nodes(b.addr)}));
    // Every TLV HAProxy 2.6 can send after terminating mTLS.
    let (to_capture, to_gateway) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let send = "send-proxy-v2-ssl-cn proxy-v2-options ssl-cipher,cert-sig,cert-key,authority,crc32c,unique-id";
    let bind = format!(
        "ssl crt {} ca-file {} verify required",
        crt.display(),
        ca_file.display()
    );
    let _haproxy = Haproxy::start(
        &format!(
            "
frontend capture
    bind 127.0.0.1:{to_capture} {bind}
    unique-id-format %ci:%cp_%Ts_%rt
    default_backend capture
backend capture
    server capture {capture} {send}
frontend edge
    bind 127.0.0.1:{to_gateway} {bind}
    unique-id-format %ci:%cp_%Ts_%rt
    default_backend gw
backend gw
    server gw 127.0.0.1:{pp} {send}
"
        ),
        &[local(to_capture), local(to_gateway)],
    )
    .unwrap();
    let options = |from| ClientOptions {
        sni: Some("edge.test.com"),
        cert: Some(&device),
        from: Some(from),
        ..Default::default()
    };

    // The decoder reads HAProxy's header.
    let (client, _, received) = tls_talk(local(to_capture), &options("127.0.0.5"));
    assert_eq!(received, b"parsed\n");
    let header = next_header(&headers);
    assert_eq!(header.addresses.unwrap().source, client);
    assert_eq!(header.authority.as_deref(), Some("edge.test.com"));
    let ssl = header.ssl.expect("PP2_TYPE_SSL");
    assert_eq!(
        ssl.client & (CLIENT_SSL | CLIENT_CERT_CONN),
        CLIENT_SSL | CLIENT_CERT_CONN
    );
    assert_eq!(ssl.verify, 0);
    assert_eq!(ssl.cn.as_deref(), Some("device-9"));
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    let cipher = ssl.cipher.expect("PP2_SUBTYPE_SSL_CIPHER");
    assert!(TLS13_CIPHERS.contains(&cipher.as_str()), "{cipher}");

    // The gateway reads it too, and routes on the client it names.
    for (from, name) in [("127.0.0.5", "a"), ("127.0.0.6", "b")] {
        let (_, _, received) = tls_talk(local(to_gateway), &options(from));
        assert_eq!(received, format!("{name}\nhibye 2\n").as_bytes(), "{from}");
    }
    assert_eq!(gw.metric(FAILURES), 0.0, "{}", gw.log());
}

#[test]
fn local_and_unknown_headers_keep_the_socket_address() {
    let socket = NamedServer::start("127.0.0.1", "socket").unwrap();
    let reported = NamedServer::start("127.0.0.1", "reported").unwrap();
    let v6 = NamedServer::start("127.0.0.1", "v6").unwrap();
    let port = free_port_on("127.0.0.1");
    // The global key this time, on a plain entry.
    let gw = gateway(
        &[format!("\"127.0.0.1:{port}\"")],
        "  proxy_protocol:\n    enable_tcp_pp: true\n",
        "",
    );
    for (id, client, server) in [
        ("1", "127.0.0.9", &socket),
        ("2", "192.0.2.1", &reported),
        ("3", "2001:db8::1", &v6),
    ] {
        put(
            &gw,
            &format!("stream_routes/{id}"),
            json!({"remote_addr": client, "upstream": nodes(server.addr)}),
        );
    }
    let listen = local(port);
    let built = sg_proxy_protocol::v2(
        "192.0.2.1:1234".parse().unwrap(),
        "127.0.0.1:1883".parse().unwrap(),
        None,
        None,
    );
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("v2 LOCAL", hex(&format!("{SIG} 20 00 00 00")), "socket"),
        (
            "v2 LOCAL with addresses",
            hex(&format!("{SIG} 20 11 00 0c {ADDRS}")),
            "socket",
        ),
        (
            "v2 PROXY, address family unspecified",
            hex(&format!("{SIG} 21 00 00 00")),
            "socket",
        ),
        ("v1 UNKNOWN", b"PROXY UNKNOWN\r\n".to_vec(), "socket"),
        ("v2 PROXY", built, "reported"),
        (
            "v1 TCP4",
            b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 1883\r\n".to_vec(),
            "reported",
        ),
        (
            "v1 TCP6",
            b"PROXY TCP6 2001:db8::1 2001:db8::2 1234 1883\r\n".to_vec(),
            "v6",
        ),
    ];
    for (what, header, name) in cases {
        let (_, reply) = talk("127.0.0.9", listen, &[header.as_slice(), b"hi"].concat());
        assert_eq!(
            String::from_utf8_lossy(&reply.unwrap_or_default()),
            format!("{name}\nhibye 2\n"),
            "{what}"
        );
    }
    assert_eq!(gw.metric(FAILURES), 0.0);
}

#[test]
fn hostile_headers_close_only_their_own_connection() {
    let up = NamedServer::start("127.0.0.1", "up").unwrap();
    let port = free_port_on("127.0.0.1");
    let gw = gateway(
        &[entry(port, "proxy_protocol: true")],
        "",
        "    preread_timeout: 3\n",
    );
    put(&gw, "stream_routes/1", json!({"upstream": nodes(up.addr)}));
    let listen = local(port);
    let good = b"PROXY TCP4 192.0.2.1 127.0.0.1 1234 1883\r\n";

    // A session established before the hostile connections, used after them.
    let mut established = connect_from("127.0.0.1", listen).unwrap();
    established.write_all(good).unwrap();
    assert_eq!(greeting(&mut established).as_deref(), Some("up"));
    // A header begun and never finished: only preread_timeout ends it.
    let mut silent = connect_from("127.0.0.1", listen).unwrap();
    silent.write_all(b"PROXY TCP4 192.0.2.1 ").unwrap();
    let begun = Instant::now();

    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "a v1 header cut short by the client's FIN",
            b"PROXY TCP4 192.0.2.1".to_vec(),
        ),
        (
            "a v2 header cut short by the client's FIN",
            hex(&format!("{SIG} 21 11 00 0c c0 00")),
        ),
        (
            "120 bytes of v1 without CRLF",
            [b"PROXY ".as_slice(), &[b'1'; 114]].concat(),
        ),
        (
            "a v1 header with a bad address",
            b"PROXY TCP4 999.0.2.1 127.0.0.1 1234 1883\r\n".to_vec(),
        ),
        (
            "an MQTT CONNECT without a header",
            hex("10 0f 00 04 4d 51 54 54 04 02 00 3c 00 03 66 6f 6f"),
        ),
        (
            "a v2 header announcing 64 KiB",
            hex(&format!("{SIG} 21 11 ff ff")),
        ),
        (
            "a v2 length too short for its addresses",
            hex(&format!("{SIG} 21 11 00 04 7f 00 00 01")),
        ),
        (
            "a v2 header of version 3",
            hex(&format!("{SIG} 31 11 00 0c {ADDRS}")),
        ),
        (
            "a v2 TLV running past the header",
            hex(&format!("{SIG} 21 11 00 0f {ADDRS} 02 00 0a")),
        ),
        (
            "a v2 SSL TLV too short for its fields",
            hex(&format!("{SIG} 21 11 00 11 {ADDRS} 20 00 02 01 00")),
        ),
    ];
    for (what, bytes) in &hostile {
        let sent = Instant::now();
        let (_, reply) = talk("127.0.0.1", listen, bytes);
        assert!(
            reply.as_ref().map_or(true, Vec::is_empty),
            "{what}: the upstream answered {reply:?}"
        );
        assert!(
            sent.elapsed() < Duration::from_secs(2),
            "{what}: closed at once, not by the timeout ({:?})",
            sent.elapsed()
        );
    }

    // A new connection right after, while the silent one still waits, and the session from
    // before.
    let (_, reply) = talk("127.0.0.1", listen, &[good.as_slice(), b"hi"].concat());
    assert_eq!(reply.unwrap(), b"up\nhibye 2\n");
    established.write_all(b"hi").unwrap();
    established.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    established.read_to_end(&mut rest).unwrap();
    assert_eq!(rest, b"hibye 2\n");

    let mut unanswered = Vec::new();
    let closed = silent.read_to_end(&mut unanswered);
    assert!(
        closed.is_err() || unanswered.is_empty(),
        "{closed:?} {unanswered:?}"
    );
    let waited = begun.elapsed();
    assert!(
        waited > Duration::from_secs(2) && waited < Duration::from_secs(10),
        "closed by preread_timeout (3 s) after {waited:?}"
    );

    gw.wait_metric(FAILURES, hostile.len() as f64 + 1.0);
    let log = gw.log();
    for line in [
        "broken PROXY protocol header: unexpected end of file",
        "broken PROXY protocol header: PROXY protocol v1 header longer than 107 bytes",
        "broken PROXY protocol header: timed out",
    ] {
        assert!(log.contains(line), "{line}:\n{log}");
    }
}

#[test]
fn the_connection_rate_applies_to_the_client_the_header_names() {
    let up = NamedServer::start("127.0.0.1", "up").unwrap();
    let port = free_port_on("127.0.0.1");
    // One connection per client per 100 s.
    let gw = gateway(
        &[entry(port, "proxy_protocol: true")],
        "",
        "    client_conn_rate: 0.01\n    client_conn_burst: 1\n",
    );
    put(&gw, "stream_routes/1", json!({"upstream": nodes(up.addr)}));
    let listen = local(port);
    // Every connection comes from 127.0.0.1, as from one balancer.
    let from = |client: &str| {
        let header = format!("PROXY TCP4 {client} 127.0.0.1 1234 1883\r\nhi");
        talk("127.0.0.1", listen, header.as_bytes()).1
    };
    assert_eq!(from("192.0.2.1").unwrap(), b"up\nhibye 2\n");
    assert!(
        from("192.0.2.1").map_or(true, |reply| reply.is_empty()),
        "192.0.2.1's second connection is over its rate"
    );
    assert_eq!(
        from("192.0.2.2").unwrap(),
        b"up\nhibye 2\n",
        "192.0.2.2 has a bucket of its own"
    );
    gw.wait_metric(
        "streamgate_connections_refused_total{reason=\"client_rate\"}",
        1.0,
    );
    gw.wait_metric(
        "streamgate_session_failures_total{kind=\"client_rate\",origin=\"client\"}",
        1.0,
    );
}
