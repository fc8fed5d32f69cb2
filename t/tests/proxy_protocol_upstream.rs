//! The PROXY protocol to upstreams, with real peers: HAProxy 2.6 receiving it from streamgate
//! (`accept-proxy`) and logging the real client; the v2 header streamgate sends after mTLS,
//! parsed back with the decoder.

use serde_json::json;
use sg_blackbox::free_port_on;
use sg_blackbox::haproxy::Haproxy;
use sg_blackbox::pki::Ca;
use sg_blackbox::proxy_protocol::*;
use sg_blackbox::tcp::NamedServer;
use sg_blackbox::tls::ClientOptions;
use sg_proxy_protocol::{CLIENT_CERT_CONN, CLIENT_SSL};

#[test]
fn haproxy_accept_proxy_logs_the_client_streamgate_sends() {
    let broker = NamedServer::start("127.0.0.1", "broker").unwrap();
    let (plain, identity) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let haproxy = Haproxy::start(
        &format!(
            "
frontend plain
    bind 127.0.0.1:{plain} accept-proxy
    default_backend broker
frontend identity
    bind 127.0.0.1:{identity} accept-proxy
    log-format \"identity client=%ci:%cp authority=%[fc_pp_authority]\"
    default_backend broker
backend broker
    server broker {}
",
            broker.addr
        ),
        &[local(plain), local(identity)],
    )
    .unwrap();
    let (p1, p2, p3) = (
        free_port_on("127.0.0.1"),
        free_port_on("127.0.0.1"),
        free_port_on("127.0.0.1"),
    );
    let gw = gateway(
        &[
            entry(p1, "proxy_protocol_to_upstream: true"),
            entry(p2, "proxy_protocol_to_upstream: true, proxy_protocol_to_upstream_version: 2"),
            entry(p3, "tls: true, proxy_protocol_to_upstream: true, proxy_protocol_to_upstream_version: 2"),
        ],
        "",
        "",
    );
    for (id, port, front) in [("1", p1, plain), ("2", p2, plain), ("3", p3, identity)] {
        put(
            &gw,
            &format!("stream_routes/{id}"),
            json!({"server_port": port, "upstream": nodes(local(front))}),
        );
    }
    // v1, then v2 without TLS: HAProxy's tcplog line starts with the client's address.
    for (port, from) in [(p1, "127.0.0.7"), (p2, "127.0.0.17")] {
        let (client, reply) = talk(from, local(port), b"hi");
        assert_eq!(reply.unwrap(), b"broker\nhibye 2\n", "{from}");
        let line = format!("{client} [");
        let log = haproxy.wait_log(&line);
        assert!(log.contains(&line), "HAProxy logged {client}:\n{log}");
    }
    // v2 after mTLS, its AUTHORITY and SSL TLVs included.
    let ca = Ca::root("broker CA");
    let server = ca.leaf(&["broker.test.com"], 1);
    let device = ca.leaf(&["device-7"], 7);
    put(
        &gw,
        "ssls/1",
        json!({"cert": server.cert, "key": server.key, "snis": ["broker.test.com"],
               "client": {"ca": ca.pem}}),
    );
    let options = ClientOptions {
        sni: Some("broker.test.com"),
        cert: Some(&device),
        from: Some("127.0.0.27"),
        ..Default::default()
    };
    let (client, _, received) = tls_talk(local(p3), &options);
    assert_eq!(received, b"broker\nhibye 2\n");
    let line = format!("identity client={client} authority=broker.test.com");
    let log = haproxy.wait_log(&line);
    assert!(log.contains(&line), "{line}:\n{log}");
}

#[test]
fn the_v2_header_sent_after_mtls_parses_back() {
    let (upstream, headers) = header_server();
    let tls = free_port_on("127.0.0.1");
    // The global keys this time: every listener sends v2.
    let gw = gateway(
        &[entry(tls, "tls: true")],
        "  proxy_protocol:\n    enable_tcp_pp_to_upstream: true\n    tcp_pp_to_upstream_version: 2\n",
        "",
    );
    let ca = Ca::root("device CA");
    let mqtt = ca.leaf(&["mqtt.example.com"], 1);
    let open = ca.leaf(&["open.example.com"], 2);
    let device = ca.leaf(&["device-42"], 42);
    put(
        &gw,
        "ssls/mtls",
        json!({"cert": mqtt.cert, "key": mqtt.key, "snis": ["mqtt.example.com"],
               "client": {"ca": ca.pem}}),
    );
    put(
        &gw,
        "ssls/open",
        json!({"cert": open.cert, "key": open.key, "snis": ["open.example.com"]}),
    );
    put(&gw, "stream_routes/1", json!({"upstream": nodes(upstream)}));

    let options = ClientOptions {
        sni: Some("mqtt.example.com"),
        cert: Some(&device),
        from: Some("127.0.0.9"),
        ..Default::default()
    };
    let (client, _, received) = tls_talk(local(tls), &options);
    assert_eq!(received, b"parsed\n");
    let header = next_header(&headers);
    let addresses = header.addresses.expect("PROXY command with addresses");
    assert_eq!(addresses.source, client);
    assert_eq!(addresses.destination, local(tls));
    assert_eq!(header.authority.as_deref(), Some("mqtt.example.com"));
    let ssl = header.ssl.expect("PP2_TYPE_SSL");
    assert_eq!(ssl.client, CLIENT_SSL | CLIENT_CERT_CONN);
    assert_eq!(ssl.verify, 0, "a verified client certificate");
    assert_eq!(ssl.cn.as_deref(), Some("device-42"));
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.3"));
    let cipher = ssl.cipher.expect("PP2_SUBTYPE_SSL_CIPHER");
    assert!(
        TLS13_CIPHERS.contains(&cipher.as_str()),
        "{cipher}: the name OpenSSL and HAProxy give it"
    );

    // TLS 1.2 without a client certificate: no CN, and verify says so.
    let options = ClientOptions {
        sni: Some("open.example.com"),
        versions: Some(&[&rustls::version::TLS12]),
        from: Some("127.0.0.10"),
        ..Default::default()
    };
    let (client, _, received) = tls_talk(local(tls), &options);
    assert_eq!(received, b"parsed\n");
    let header = next_header(&headers);
    assert_eq!(header.addresses.unwrap().source, client);
    assert_eq!(header.authority.as_deref(), Some("open.example.com"));
    let ssl = header.ssl.expect("PP2_TYPE_SSL");
    assert_eq!(ssl.client, CLIENT_SSL);
    assert_ne!(ssl.verify, 0, "no client certificate was verified");
    assert_eq!(ssl.cn, None);
    assert_eq!(ssl.version.as_deref(), Some("TLSv1.2"));
    let cipher = ssl.cipher.expect("PP2_SUBTYPE_SSL_CIPHER");
    // rcgen's keys are ECDSA: OpenSSL's names for those suites.
    assert!(cipher.starts_with("ECDHE-ECDSA-"), "{cipher}");
}
