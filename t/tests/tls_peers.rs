//! TLS with real peers: mosquitto clients with certificates, a mosquitto TLS listener requiring
//! client certificates behind the gateway, openssl s_client resuming sessions, and TLS upstreams
//! that report the SNI they received.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use serde_json::{json, Value};
use sg_blackbox::mqtt::{free_port_on, publish, subscribe, Broker};
use sg_blackbox::pki::{write, Ca};
use sg_blackbox::tcp::{exchange as tcp_exchange, NamedServer};
use sg_blackbox::tls::{exchange, ClientOptions, SniEchoServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

struct Setup {
    gw: Gateway,
    tls: SocketAddr,
    plain: SocketAddr,
}

fn start(apisix: &str) -> Setup {
    let (tls, plain) = (free_port_on("127.0.0.1"), free_port_on("127.0.0.1"));
    let admin_port = free_port();
    let entries = [
        format!("{{addr: \"127.0.0.1:{tls}\", tls: true}}"),
        format!("\"127.0.0.1:{plain}\""),
    ];
    let config =
        config_with_tcp(admin_port, &entries).replace("apisix:\n", &format!("apisix:\n{apisix}"));
    Setup {
        gw: Gateway::start_with(&config, admin_port).unwrap(),
        tls: format!("127.0.0.1:{tls}").parse().unwrap(),
        plain: format!("127.0.0.1:{plain}").parse().unwrap(),
    }
}

impl Setup {
    fn put(&self, path: &str, body: Value) {
        let reply = self
            .gw
            .admin("PUT", &format!("/apisix/admin/{path}"), &body.to_string());
        assert!(reply.status < 300, "{path}: {}", reply.body);
    }
}

#[test]
fn upstream_tls_sni_and_client_certificates() {
    let s = start("");
    let ca = Ca::root("upstream CA");
    let front = ca.leaf(&["a.test.com"], 1);
    s.put(
        "ssls/front",
        json!({"cert": front.cert, "key": front.key, "snis": ["a.test.com"]}),
    );
    let open = SniEchoServer::start(&ca.leaf(&["backend"], 2), None);
    s.put(
        "stream_routes/1",
        json!({"upstream": {"scheme": "tls", "nodes": {open.addr.to_string(): 1}}}),
    );
    assert_eq!(
        tcp_exchange(s.plain, b"x").unwrap(),
        b"hello apisix_backend\n"
    );
    let options = ClientOptions {
        sni: Some("a.test.com"),
        ..Default::default()
    };
    assert_eq!(
        exchange(s.tls, &options, b"x").unwrap().received,
        b"hello a.test.com\n"
    );

    // An upstream that requires a client certificate.
    let strict = SniEchoServer::start(&ca.leaf(&["backend"], 3), Some(&ca.pem));
    let gateway_cert = ca.leaf(&["gateway"], 4);
    let nodes = json!({strict.addr.to_string(): 1});
    s.put(
        "stream_routes/1",
        json!({"upstream": {"scheme": "tls", "nodes": nodes}}),
    );
    assert!(
        tcp_exchange(s.plain, b"x").unwrap_or_default().is_empty(),
        "no client certificate"
    );
    s.put(
        "stream_routes/1",
        json!({"upstream": {"scheme": "tls", "nodes": nodes,
        "tls": {"client_cert": gateway_cert.cert, "client_key": gateway_cert.key}}}),
    );
    assert_eq!(
        tcp_exchange(s.plain, b"x").unwrap(),
        b"hello apisix_backend\n"
    );
    s.put(
        "ssls/gw",
        json!({"type": "client", "cert": gateway_cert.cert, "key": gateway_cert.key}),
    );
    s.put(
        "stream_routes/1",
        json!({"upstream": {"scheme": "tls", "nodes": nodes,
        "tls": {"client_cert_id": "gw"}}}),
    );
    assert_eq!(
        tcp_exchange(s.plain, b"x").unwrap(),
        b"hello apisix_backend\n"
    );
    // verify: true checks the upstream against the system's roots, which do not know our CA.
    s.put(
        "stream_routes/1",
        json!({"upstream": {"scheme": "tls", "nodes": {open.addr.to_string(): 1},
        "tls": {"verify": true}}}),
    );
    assert!(tcp_exchange(s.plain, b"x").unwrap_or_default().is_empty());
    assert!(s
        .gw
        .log()
        .contains("TLS handshake with the upstream failed"));
}

#[test]
fn mosquitto_clients_with_certificates_through_tls() {
    let s = start("  ssl:\n    fallback_sni: mqtt.example.com\n");
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("device CA");
    let server = ca.leaf(&["mqtt.example.com"], 1);
    let device = ca.leaf(&["device-1"], 2);
    let stranger = Ca::root("other").leaf(&["device-2"], 3);
    s.put(
        "ssls/1",
        json!({"cert": server.cert, "key": server.key, "snis": ["mqtt.example.com"],
        "client": {"ca": ca.pem}}),
    );
    let broker = Broker::start("127.0.0.1").unwrap();
    s.put(
        "stream_routes/1",
        json!({"upstream": {"nodes": {broker.addr.to_string(): 1}},
        "plugins": {"mqtt-proxy": {"protocol_level": 4}}}),
    );
    let cafile = write(dir.path(), "ca.crt", &ca.pem);
    let (cert, key) = (
        write(dir.path(), "d.crt", &device.cert),
        write(dir.path(), "d.key", &device.key),
    );
    let (bad_cert, bad_key) = (
        write(dir.path(), "x.crt", &stranger.cert),
        write(dir.path(), "x.key", &stranger.key),
    );
    let tls_args = |cert: &std::path::Path, key: &std::path::Path| -> Vec<String> {
        [
            "--cafile",
            cafile.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
            "--insecure",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect()
    };
    let watcher = subscribe(broker.addr, "watch", "secure", &[]).unwrap();
    let good: Vec<String> = tls_args(&cert, &key);
    let good: Vec<&str> = good.iter().map(String::as_str).collect();
    publish(s.tls, "device-1", "secure", "over mTLS", &good).unwrap();
    assert_eq!(
        watcher.next(std::time::Duration::from_secs(5)).as_deref(),
        Some("over mTLS")
    );
    let bad: Vec<String> = tls_args(&bad_cert, &bad_key);
    let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
    assert!(publish(s.tls, "device-2", "secure", "stranger", &bad).is_err());
    let no_cert = ["--cafile", cafile.to_str().unwrap(), "--insecure"];
    assert!(publish(s.tls, "device-3", "secure", "anonymous", &no_cert).is_err());
    assert!(watcher
        .next(std::time::Duration::from_millis(300))
        .is_none());
}

#[test]
fn upstream_mtls_to_a_mosquitto_tls_listener() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::root("broker CA");
    let broker_cert = ca.leaf(&["broker"], 1);
    let gateway_cert = ca.leaf(&["gateway"], 2);
    let watcher_cert = ca.leaf(&["watcher"], 3);
    let files = [
        ("ca.crt", &ca.pem),
        ("b.crt", &broker_cert.cert),
        ("b.key", &broker_cert.key),
        ("w.crt", &watcher_cert.cert),
        ("w.key", &watcher_cert.key),
    ];
    for (name, text) in files {
        write(dir.path(), name, text);
    }
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let tls_conf = format!(
        "cafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n",
        p("ca.crt"),
        p("b.crt"),
        p("b.key")
    );
    let broker = Broker::start_with("127.0.0.1", &tls_conf).unwrap();
    let s = start("");
    let watch_args = [
        "--cafile",
        &p("ca.crt"),
        "--cert",
        &p("w.crt"),
        "--key",
        &p("w.key"),
        "--insecure",
    ];
    let watcher = subscribe(broker.addr, "watch", "relayed", &watch_args).unwrap();
    let upstream = |tls: Value| json!({"upstream": {"scheme": "tls", "nodes": {broker.addr.to_string(): 1}, "tls": tls}});
    s.put("stream_routes/1", upstream(json!({})));
    assert!(publish(s.plain, "plain-1", "relayed", "refused", &[]).is_err());
    s.put(
        "stream_routes/1",
        upstream(json!({"client_cert": gateway_cert.cert, "client_key": gateway_cert.key})),
    );
    publish(s.plain, "plain-2", "relayed", "through gateway mTLS", &[]).unwrap();
    assert_eq!(
        watcher.next(std::time::Duration::from_secs(5)).as_deref(),
        Some("through gateway mTLS")
    );
}

/// Whether `openssl s_client` resumed the session stored in `session` (TLS 1.2).
fn s_client(to: SocketAddr, sni: &str, session: &std::path::Path, resume: bool) -> String {
    let flag = if resume { "-sess_in" } else { "-sess_out" };
    let output = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &to.to_string(),
            "-servername",
            sni,
            "-tls1_2",
            flag,
        ])
        .arg(session)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (make test installs it)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn openssl_sessions_resume_only_for_their_own_name() {
    let s = start("");
    let ca = Ca::root("ca");
    let both = ca.leaf(&["a.test.com", "b.test.com"], 1);
    let other = ca.leaf(&["c.test.com"], 2);
    s.put(
        "ssls/1",
        json!({"cert": both.cert, "key": both.key, "snis": ["a.test.com", "b.test.com"]}),
    );
    s.put(
        "ssls/2",
        json!({"cert": other.cert, "key": other.key, "snis": ["c.test.com"]}),
    );
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    s.put(
        "stream_routes/1",
        json!({"upstream": {"nodes": {upstream.addr.to_string(): 1}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("a.session");
    let first = s_client(s.tls, "a.test.com", &session, false);
    assert!(first.contains("New, TLSv1.2"), "{first}");
    // Stateful resumption (APISIX's default): a session id, no ticket.
    assert!(!first.contains("TLS session ticket:"), "{first}");
    let again = s_client(s.tls, "a.test.com", &session, true);
    assert!(
        again.contains("Reused, TLSv1.2"),
        "resumption works for the same name:\n{again}"
    );
    let same_object = s_client(s.tls, "b.test.com", &session, true);
    assert!(
        same_object.contains("New, TLSv1.2"),
        "another name of the same object:\n{same_object}"
    );
    let other_object = s_client(s.tls, "c.test.com", &session, true);
    assert!(
        other_object.contains("New, TLSv1.2"),
        "another object:\n{other_object}"
    );
}

#[test]
fn session_tickets_resume_when_switched_on() {
    let s = start("  ssl:\n    ssl_session_tickets: true\n");
    let cert = Ca::root("ca").leaf(&["a.test.com"], 1);
    s.put(
        "ssls/1",
        json!({"cert": cert.cert, "key": cert.key, "snis": ["a.test.com"]}),
    );
    let upstream = NamedServer::start("127.0.0.1", "up").unwrap();
    s.put(
        "stream_routes/1",
        json!({"upstream": {"nodes": {upstream.addr.to_string(): 1}}}),
    );
    let dir = tempfile::tempdir().unwrap();
    let session = dir.path().join("a.session");
    let first = s_client(s.tls, "a.test.com", &session, false);
    assert!(first.contains("New, TLSv1.2"), "{first}");
    assert!(
        first.contains("TLS session ticket:"),
        "a ticket was issued:\n{first}"
    );
    let again = s_client(s.tls, "a.test.com", &session, true);
    assert!(
        again.contains("Reused, TLSv1.2"),
        "the ticket resumes the session:\n{again}"
    );
}
