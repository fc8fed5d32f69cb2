//! TLS on stream ports through the built binary: certificates chosen by SNI, mTLS (depth, CRL),
//! SNI routes, protocol versions, hot swap and the handshake timeout.

use std::net::SocketAddr;

use serde_json::{json, Value};
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::pki::{Ca, Pair};
use sg_blackbox::tcp::NamedServer;
use sg_blackbox::tls::{der, exchange, ClientOptions, TlsSession};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

struct Setup {
    gw: Gateway,
    tls: SocketAddr,
    plain: SocketAddr,
    upstream: NamedServer,
}

/// A gateway with a TLS and a plain listener; `stream_proxy` and `apisix` take extra YAML
/// lines for those sections.
fn start_with(stream_proxy: &str, apisix: &str) -> Setup {
    let (tls, plain) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let admin_port = free_port();
    let entries = [
        format!("{{addr: \"127.0.0.1:{tls}\", tls: true}}"),
        format!("\"127.0.0.1:{plain}\""),
    ];
    let config = config_with_tcp(admin_port, &entries)
        .replace(
            "  stream_proxy:\n",
            &format!("  stream_proxy:\n{stream_proxy}"),
        )
        .replace("apisix:\n", &format!("apisix:\n{apisix}"));
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    let s = Setup {
        gw,
        tls: format!("127.0.0.1:{tls}").parse().unwrap(),
        plain: format!("127.0.0.1:{plain}").parse().unwrap(),
        upstream,
    };
    let route = json!({"upstream": {"nodes": {s.upstream.addr.to_string(): 1}}});
    assert_eq!(s.put("stream_routes/default", route), 201);
    s
}

fn start(stream_proxy: &str) -> Setup {
    start_with(stream_proxy, "")
}

impl Setup {
    fn put(&self, path: &str, body: Value) -> u16 {
        let reply = self
            .gw
            .admin("PUT", &format!("/apisix/admin/{path}"), &body.to_string());
        assert!(reply.status < 300, "{path}: {}", reply.body);
        reply.status
    }

    fn ssl(&self, id: &str, pair: &Pair, snis: &[&str], extra: Value) {
        let mut body = json!({"cert": pair.cert, "key": pair.key, "snis": snis});
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        self.put(&format!("ssls/{id}"), body);
    }

    /// The certificate served for `sni`, if the handshake and the session succeeded.
    fn served(&self, sni: Option<&str>) -> Option<Vec<u8>> {
        let options = ClientOptions {
            sni,
            ..Default::default()
        };
        exchange(self.tls, &options, b"ping")
            .ok()
            .map(|reply| reply.served)
    }
}

#[test]
fn certificates_by_sni() {
    let s = start("");
    let ca = Ca::root("test CA");
    let exact = ca.leaf(&["a.test.com"], 1);
    let wild = ca.leaf(&["*.test.com"], 2);
    let many = ca.leaf(&["mqtt.example.com", "broker.example.org"], 3);
    s.ssl("exact", &exact, &["a.test.com"], json!({}));
    s.ssl("wild", &wild, &["*.test.com"], json!({}));
    s.ssl(
        "many",
        &many,
        &["MQTT.example.com.", "broker.example.org"],
        json!({}),
    );
    assert_eq!(s.served(Some("a.test.com")), Some(der(&exact.cert)));
    assert_eq!(s.served(Some("b.test.com")), Some(der(&wild.cert)));
    assert_eq!(s.served(Some("mqtt.example.com")), Some(der(&many.cert)));
    assert_eq!(s.served(Some("broker.example.org")), Some(der(&many.cert)));
    // A wildcard covers one label only; unknown names and no SNI are refused.
    assert_eq!(s.served(Some("a.b.test.com")), None);
    assert_eq!(s.served(Some("unknown.org")), None);
    assert_eq!(s.served(None), None);
    let log = s.gw.wait_log("failed to find SNI");
    assert!(
        log.contains("failed to match any SSL certificate by SNI: unknown.org"),
        "{log}"
    );
    // An object for "*" serves everything else.
    let any = ca.leaf(&["fallback"], 4);
    s.ssl("any", &any, &["*"], json!({}));
    assert_eq!(s.served(Some("a.b.test.com")), Some(der(&any.cert)));
    // A disabled object is ignored.
    s.ssl("exact", &exact, &["a.test.com"], json!({"status": 0}));
    assert_eq!(s.served(Some("a.test.com")), Some(der(&wild.cert)));
    // The session itself went through to the upstream.
    let reply = exchange(
        s.tls,
        &ClientOptions {
            sni: Some("b.test.com"),
            ..Default::default()
        },
        b"ping",
    )
    .unwrap();
    assert_eq!(reply.received, b"up\npingbye 4\n");
}

#[test]
fn fallback_sni_for_clients_without_one() {
    let s = start_with("", "  ssl:\n    fallback_sni: \"a.test.com\"\n");
    let pair = Ca::root("ca").leaf(&["a.test.com"], 1);
    s.ssl("1", &pair, &["a.test.com"], json!({}));
    assert_eq!(s.served(None), Some(der(&pair.cert)));
}

#[test]
fn sni_routes_after_termination() {
    let s = start("");
    let ca = Ca::root("ca");
    s.ssl(
        "wild",
        &ca.leaf(&["*.test.com"], 1),
        &["*.test.com"],
        json!({}),
    );
    s.ssl(
        "api",
        &ca.leaf(&["*.api7.dev"], 2),
        &["*.api7.dev"],
        json!({}),
    );
    let exact = NamedServer::start("127.0.0.1", "exact").unwrap();
    let wildcard = NamedServer::start("127.0.0.1", "wildcard").unwrap();
    let split = NamedServer::start("127.0.0.1", "split").unwrap();
    let to = |server: &NamedServer| json!({"nodes": {server.addr.to_string(): 1}});
    s.put(
        "stream_routes/r1",
        json!({"sni": "a.test.com", "upstream": to(&exact)}),
    );
    s.put(
        "stream_routes/r2",
        json!({"sni": "*.test.com", "upstream": to(&wildcard)}),
    );
    s.put(
        "stream_routes/r3",
        json!({"sni": "b.test.com", "remote_addr": "127.0.0.2", "upstream": to(&split)}),
    );
    s.put(
        "stream_routes/r4",
        json!({"sni": "specific.api7.dev", "upstream": to(&exact)}),
    );
    s.put(
        "stream_routes/r5",
        json!({"sni": "*.api7.dev", "upstream": to(&wildcard)}),
    );
    let first_line = |sni: &str| {
        let reply = exchange(
            s.tls,
            &ClientOptions {
                sni: Some(sni),
                ..Default::default()
            },
            b"x",
        )
        .unwrap();
        String::from_utf8_lossy(&reply.received)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(first_line("a.test.com"), "exact");
    assert_eq!(
        first_line("b.test.com"),
        "wildcard",
        "r3 needs client 127.0.0.2"
    );
    assert_eq!(first_line("specific.api7.dev"), "exact");
    assert_eq!(first_line("other.api7.dev"), "wildcard");
    // Plain TCP has no SNI: the route without sni.
    assert_eq!(
        sg_blackbox::tcp::who_answers("127.0.0.1", s.plain).as_deref(),
        Some("up")
    );
}

#[test]
fn mutual_tls_depth_and_revocation() {
    let s = start("");
    let ca = Ca::root("device CA");
    let other = Ca::root("other CA");
    let sub = ca.intermediate("device sub-CA");
    let server = ca.leaf(&["mqtt.example.com"], 1);
    let good = ca.leaf(&["device-1"], 100);
    let revoked = ca.leaf(&["device-2"], 101);
    let stranger = other.leaf(&["device-3"], 102);
    let deep_leaf = sub.leaf(&["device-4"], 103);
    let deep = Pair {
        cert: format!("{}{}", deep_leaf.cert, sub.pem),
        key: deep_leaf.key,
    };
    let client = json!({"client": {"ca": ca.pem, "depth": 1, "crl": ca.crl(&[101])}});
    s.ssl("mtls", &server, &["mqtt.example.com"], client);
    let with = |cert: Option<&Pair>| {
        let options = ClientOptions {
            sni: Some("mqtt.example.com"),
            cert,
            ..Default::default()
        };
        exchange(s.tls, &options, b"hi").map(|r| r.received)
    };
    assert_eq!(with(Some(&good)).unwrap(), b"up\nhibye 2\n");
    assert!(with(None).is_err(), "no client certificate");
    assert!(
        with(Some(&stranger)).is_err(),
        "certificate from another CA"
    );
    assert!(with(Some(&revoked)).is_err(), "revoked certificate");
    assert!(
        with(Some(&deep)).is_err(),
        "one intermediate is too deep for depth 1"
    );
    s.ssl(
        "mtls",
        &server,
        &["mqtt.example.com"],
        json!({"client": {"ca": ca.pem, "depth": 2}}),
    );
    assert_eq!(with(Some(&deep)).unwrap(), b"up\nhibye 2\n");
    assert!(
        s.gw.log().matches("proxy request to").count() == 2,
        "refused clients never reached the upstream"
    );
}

#[test]
fn versions_and_certificate_types() {
    let s = start("");
    let ca = Ca::root("ca");
    let pair = ca.leaf(&["v.test.com"], 1);
    s.ssl("1", &pair, &["v.test.com"], json!({}));
    let version = |v: &'static rustls::SupportedProtocolVersion| {
        let versions = [v];
        let options = ClientOptions {
            sni: Some("v.test.com"),
            versions: Some(&versions),
            ..Default::default()
        };
        exchange(s.tls, &options, b"x").is_ok()
    };
    assert!(version(&rustls::version::TLS12));
    assert!(version(&rustls::version::TLS13));
    s.ssl(
        "1",
        &pair,
        &["v.test.com"],
        json!({"ssl_protocols": ["TLSv1.3"]}),
    );
    assert!(!version(&rustls::version::TLS12));
    assert!(version(&rustls::version::TLS13));
    // Two chains side by side: the client's signature schemes pick one.
    let ed = {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["v.test.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Pair {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    };
    s.ssl(
        "1",
        &pair,
        &["v.test.com"],
        json!({"certs": [ed.cert], "keys": [ed.key]}),
    );
    let schemes = |schemes: Vec<rustls::SignatureScheme>| {
        let options = ClientOptions {
            sni: Some("v.test.com"),
            schemes: Some(schemes),
            ..Default::default()
        };
        exchange(s.tls, &options, b"x").unwrap().served
    };
    assert_eq!(
        schemes(vec![rustls::SignatureScheme::ED25519]),
        der(&ed.cert)
    );
    assert_eq!(
        schemes(vec![rustls::SignatureScheme::ECDSA_NISTP256_SHA256]),
        der(&pair.cert)
    );
}

#[test]
fn certificate_swapped_under_traffic() {
    let s = start("");
    let ca = Ca::root("ca");
    let old = ca.leaf(&["swap.test.com"], 1);
    let new = ca.leaf(&["swap.test.com"], 2);
    s.ssl("1", &old, &["swap.test.com"], json!({}));
    let options = ClientOptions {
        sni: Some("swap.test.com"),
        ..Default::default()
    };
    // An established session, mid-way through.
    let mut held = TlsSession::open(s.tls, &options).unwrap();
    held.send(b"before").unwrap();
    assert_eq!(held.served, der(&old.cert));
    s.ssl("1", &new, &["swap.test.com"], json!({}));
    // The next handshake gets the new certificate; the held session goes on untouched.
    assert_eq!(
        exchange(s.tls, &options, b"x").unwrap().served,
        der(&new.cert)
    );
    held.send(b"after").unwrap();
    assert_eq!(held.finish().unwrap(), b"up\nbeforeafterbye 11\n");
}

#[test]
fn handshake_timeout_and_garbage_only_close_their_connection() {
    let s = start("    ssl_handshake_timeout: 1\n");
    let pair = Ca::root("ca").leaf(&["t.test.com"], 1);
    s.ssl("1", &pair, &["t.test.com"], json!({}));
    let silent = std::net::TcpStream::connect(s.tls).unwrap();
    // Garbage gets at most a TLS alert, and never reaches the upstream.
    let garbage = sg_blackbox::tcp::exchange(s.tls, b"GET / HTTP/1.1\r\n\r\n").unwrap_or_default();
    assert!(!garbage.starts_with(b"up"), "{garbage:?}");
    let mut buf = [0u8; 1];
    let mut silent = silent;
    let closed = std::io::Read::read(&mut silent, &mut buf);
    assert!(matches!(closed, Ok(0) | Err(_)));
    let log = s.gw.wait_log("TLS handshake timed out");
    assert!(log.contains("TLS handshake timed out"), "{log}");
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert_eq!(s.served(Some("t.test.com")), Some(der(&pair.cert)));
}

#[test]
fn certificates_from_environment_references() {
    let ca = Ca::root("test CA");
    let pair = ca.leaf(&["env.test.com"], 7);
    // The gateway inherits this test's environment (nextest runs each test in its own process).
    std::env::set_var("SG_BLACKBOX_CERT", &pair.cert);
    std::env::set_var("SG_BLACKBOX_KEY", &pair.key);
    let s = start("");
    let refs = json!({"cert": "$ENV://SG_BLACKBOX_CERT", "key": "$ENV://SG_BLACKBOX_KEY",
                      "snis": ["env.test.com"]});
    assert_eq!(s.put("ssls/env", refs), 201);
    assert_eq!(s.served(Some("env.test.com")), Some(der(&pair.cert)));
    // Stored as written: the reference, not the secret.
    let stored = s.gw.admin("GET", "/apisix/admin/ssls/env", "").json();
    assert_eq!(stored["value"]["cert"], "$ENV://SG_BLACKBOX_CERT");
    // A secret manager reference is stored too, and left out of the data plane.
    let vault = json!({"cert": "$secret://vault/1/cert", "key": "$secret://vault/1/key",
                       "snis": ["vault.test.com"]});
    assert_eq!(s.put("ssls/vault", vault), 201);
    assert_eq!(s.served(Some("vault.test.com")), None);
    let log = s.gw.wait_log("secret managers are not supported");
    assert!(log.contains("secret managers are not supported"), "{log}");
}
