//! Several streamgate nodes on one real etcd with APISIX's key layout: convergence, objects
//! written straight into etcd (as an APISIX node writes them), invalid objects, an etcd outage,
//! and a compacted history.

use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sg_blackbox::etcd::{etcd_config, Etcd, Relay};
use sg_blackbox::tcp::{who_answers, NamedServer};
use sg_blackbox::{cert_pair, free_port, Gateway};

/// A gateway on etcd with one plain TCP listener.
struct Node {
    gw: Gateway,
    stream: SocketAddr,
}

fn node(etcd_url: &str) -> Node {
    let (admin, port) = (free_port(), free_port());
    let config = etcd_config(
        &[etcd_url.to_owned()],
        admin,
        &[format!("\"127.0.0.1:{port}\"")],
    );
    Node {
        gw: Gateway::start_with(&config, admin).expect("gateway on etcd"),
        stream: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// Polls new connections from 127.0.0.1 until `expected` answers (`None`: closed unanswered);
/// returns how long it took.
fn answers_within(node: &Node, expected: Option<&str>, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = who_answers("127.0.0.1", node.stream);
        if got.as_deref() == expected {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{} answers {got:?}, not {expected:?}, after {within:?}\n{}",
            node.stream,
            node.gw.log()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn upstream(server: &NamedServer) -> Value {
    json!({"type": "roundrobin", "nodes": {server.addr.to_string(): 1}})
}

fn write(node: &Node, method: &str, path: &str, body: Value) -> Value {
    let reply = node.gw.admin(method, path, &body.to_string());
    assert!(
        (200..300).contains(&reply.status),
        "{method} {path}: {} {}",
        reply.status,
        reply.body
    );
    reply.json()
}

/// The ids the Admin API lists (only objects that pass the checks are listed).
fn listed(node: &Node, dir: &str) -> Vec<String> {
    let reply = node.gw.admin("GET", &format!("/apisix/admin/{dir}"), "");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["value"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// APISIX's `data_encryption`: AES-128-CBC with the IV equal to the key, base64.
fn apisix_encrypt(key: &str, pem: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    let mut child = Command::new("openssl")
        .args([
            "enc",
            "-aes-128-cbc",
            "-K",
            &hex,
            "-iv",
            &hex,
            "-base64",
            "-A",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("openssl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

const SECOND: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(15);

#[test]
fn a_write_through_either_node_reaches_both_within_a_second() {
    let etcd = Etcd::start().unwrap();
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let (n1, n2) = (node(&etcd.url()), node(&etcd.url()));

    write(&n1, "PUT", "/apisix/admin/upstreams/1", upstream(&a));
    write(
        &n1,
        "PUT",
        "/apisix/admin/stream_routes/1",
        json!({"upstream_id": "1"}),
    );
    answers_within(&n2, Some("a"), SECOND);
    answers_within(&n1, Some("a"), SECOND);

    write(&n2, "PUT", "/apisix/admin/upstreams/1", upstream(&b));
    answers_within(&n1, Some("b"), SECOND);
    answers_within(&n2, Some("b"), SECOND);

    // Stored as APISIX stores it, with etcd's revisions as indexes.
    let stored: Value =
        serde_json::from_str(&etcd.get("/apisix/upstreams/1").unwrap().unwrap()).unwrap();
    assert_eq!(stored["id"], "1");
    assert_eq!(stored["nodes"], upstream(&b)["nodes"]);
    let got = n1.gw.admin("GET", "/apisix/admin/upstreams/1", "").json();
    assert!(got["createdIndex"].as_u64().unwrap() < got["modifiedIndex"].as_u64().unwrap());

    // POST ids are etcd revisions of `<prefix>/gen_id`, 20 digits, as APISIX makes them.
    let posted = write(
        &n2,
        "POST",
        "/apisix/admin/stream_routes",
        json!({"remote_addr": "127.0.0.9", "upstream_id": "1"}),
    );
    let id = posted["value"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20, "{id}");
    let got = n1
        .gw
        .admin("GET", &format!("/apisix/admin/stream_routes/{id}"), "")
        .json();
    assert_eq!(
        got["createdIndex"].as_u64().unwrap(),
        id.parse::<u64>().unwrap() + 1
    );
    assert!(etcd.get("/apisix/gen_id").unwrap().is_some());

    let deleted = write(&n2, "DELETE", "/apisix/admin/stream_routes/1", json!({}));
    assert_eq!(deleted["deleted"], "1");
    answers_within(&n1, None, SECOND);
    answers_within(&n2, None, SECOND);
    assert_eq!(listed(&n1, "stream_routes"), [id]);
}

#[test]
fn objects_written_by_apisix_are_served() {
    let etcd = Etcd::start().unwrap();
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    // `apisix init_etcd` placeholders, then objects as APISIX's Admin API stores them.
    for dir in ["stream_routes", "upstreams", "ssls", "routes"] {
        etcd.put(&format!("/apisix/{dir}/"), "init_dir").unwrap();
    }
    let mut up = upstream(&a);
    up["id"] = json!("7");
    up["create_time"] = json!(1700000000);
    up["update_time"] = json!(1700000000);
    etcd.put("/apisix/upstreams/7", &up.to_string()).unwrap();
    let n1 = node(&etcd.url());

    // Written while n1 follows the watch (the route last: once it is served, all are seen).
    let (cert, key) = cert_pair("test.com");
    let ssl = |id: &str, keyring_key: &str| {
        json!({"id": id, "cert": cert, "key": apisix_encrypt(keyring_key, &key),
               "snis": ["test.com"], "create_time": 1700000000, "update_time": 1700000000})
        .to_string()
    };
    etcd.put("/apisix/ssls/1", &ssl("1", "qeddd145sfvddff3"))
        .unwrap();
    etcd.put("/apisix/ssls/2", &ssl("2", "0000000000000000"))
        .unwrap();
    let route = json!({"id": "7", "upstream_id": "7", "remote_addr": "127.0.0.1",
                       "create_time": 1700000000, "update_time": 1700000000});
    etcd.put("/apisix/stream_routes/7", &route.to_string())
        .unwrap();
    answers_within(&n1, Some("a"), SECOND);

    // A node that loads it all at start agrees.
    let n2 = node(&etcd.url());
    answers_within(&n2, Some("a"), SECOND);
    for n in [&n1, &n2] {
        assert_eq!(
            listed(n, "ssls"),
            ["1"],
            "the SSL encrypted with another keyring is skipped"
        );
        assert_eq!(listed(n, "upstreams"), ["7"]);
        assert!(n
            .gw
            .wait_log("/apisix/ssls/2")
            .contains("invalid object in etcd skipped"));
    }
}

#[test]
fn invalid_objects_are_skipped_without_harm() {
    let etcd = Etcd::start().unwrap();
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    let n1 = node(&etcd.url());
    let good = json!({"id": "4", "remote_addr": "127.0.0.1", "upstream": upstream(&a)}).to_string();
    etcd.put("/apisix/stream_routes/1", "{not json").unwrap();
    etcd.put(
        "/apisix/stream_routes/2",
        r#"{"remote_addr":"not-an-ip","upstream_id":"1"}"#,
    )
    .unwrap();
    etcd.put(
        "/apisix/stream_routes/3",
        r#"{"plugins":{"no-such-plugin":{}}}"#,
    )
    .unwrap();
    etcd.put("/apisix/stream_routes/4", &good).unwrap();
    answers_within(&n1, Some("a"), SECOND);
    let log = n1.gw.wait_log("/apisix/stream_routes/3");
    for key in [
        "/apisix/stream_routes/1",
        "/apisix/stream_routes/2",
        "/apisix/stream_routes/3",
    ] {
        assert!(log.contains(key), "{key} not logged:\n{log}");
    }
    assert_eq!(listed(&n1, "stream_routes"), ["4"]);

    // An object that turns invalid stops being served; fixed, it is served again.
    etcd.put("/apisix/stream_routes/4", "{}}").unwrap();
    answers_within(&n1, None, SECOND);
    etcd.put("/apisix/stream_routes/4", &good).unwrap();
    answers_within(&n1, Some("a"), SECOND);
    let n2 = node(&etcd.url());
    answers_within(&n2, Some("a"), SECOND);
    assert_eq!(listed(&n2, "stream_routes"), ["4"]);
    // The Admin API can still read and replace what is stored.
    let stored = n2
        .gw
        .admin("GET", "/apisix/admin/stream_routes/1", "")
        .json();
    assert_eq!(stored["value"], "{not json");
    write(
        &n2,
        "PUT",
        "/apisix/admin/stream_routes/1",
        json!({"remote_addr": "127.0.0.9", "upstream": upstream(&a)}),
    );
    assert_eq!(listed(&n2, "stream_routes"), ["1", "4"]);
}

#[test]
fn an_etcd_outage_keeps_traffic_and_fails_writes_fast() {
    let mut etcd = Etcd::start().unwrap();
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let (n1, n2) = (node(&etcd.url()), node(&etcd.url()));
    write(
        &n1,
        "PUT",
        "/apisix/admin/stream_routes/1",
        json!({"upstream": upstream(&a)}),
    );
    answers_within(&n2, Some("a"), SECOND);

    etcd.kill();
    for n in [&n1, &n2] {
        assert_eq!(who_answers("127.0.0.1", n.stream).as_deref(), Some("a"));
        let started = Instant::now();
        let reply = n.gw.admin(
            "PUT",
            "/apisix/admin/upstreams/1",
            &upstream(&b).to_string(),
        );
        assert!(started.elapsed() < SECOND, "took {:?}", started.elapsed());
        assert_eq!(reply.status, 503, "{}", reply.body);
        assert!(
            reply.json()["error_msg"].as_str().unwrap().contains("etcd"),
            "{}",
            reply.body
        );
    }

    etcd.restart().unwrap();
    let deadline = Instant::now() + PATIENCE;
    let body = json!({"upstream": upstream(&b)}).to_string();
    while n2
        .gw
        .admin("PUT", "/apisix/admin/stream_routes/1", &body)
        .status
        != 200
    {
        assert!(
            Instant::now() < deadline,
            "writes still fail after etcd came back"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    answers_within(&n1, Some("b"), PATIENCE);
    answers_within(&n2, Some("b"), SECOND);
    etcd.put(
        "/apisix/stream_routes/1",
        &json!({"upstream": upstream(&a)}).to_string(),
    )
    .unwrap();
    answers_within(&n1, Some("a"), SECOND);
    answers_within(&n2, Some("a"), SECOND);
}

#[test]
fn a_compacted_history_is_reloaded_whole() {
    let etcd = Etcd::start().unwrap();
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let relay = Relay::start(&etcd).unwrap();
    let cut_off = node(&relay.url());
    etcd.put(
        "/apisix/stream_routes/1",
        &json!({"upstream": upstream(&a)}).to_string(),
    )
    .unwrap();
    answers_within(&cut_off, Some("a"), SECOND);

    relay.cut();
    etcd.delete("/apisix/stream_routes/1").unwrap();
    let route = json!({"remote_addr": "127.0.0.1", "upstream": upstream(&b)}).to_string();
    let last = etcd.put("/apisix/stream_routes/2", &route).unwrap();
    etcd.compact(last).unwrap();
    // Cut off, the node keeps its last good configuration.
    assert_eq!(
        who_answers("127.0.0.1", cut_off.stream).as_deref(),
        Some("a")
    );

    relay.restore();
    answers_within(&cut_off, Some("b"), PATIENCE);
    assert!(cut_off
        .gw
        .wait_log("reloading everything")
        .contains("compacted"));
    let route = cut_off
        .gw
        .admin("GET", "/apisix/admin/stream_routes", "")
        .json();
    assert_eq!(route["total"], 1);
}
