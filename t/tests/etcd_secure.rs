//! streamgate on etcd as production runs it: a 3-member cluster with server TLS, client
//! certificates and auth. Writes from the Admin API and from etcdctl reach the data plane,
//! through the loss of the member in use, a compaction and defragmentation, and expiring
//! tokens; a wrong password, CA or a missing client certificate stop the start, naming why.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sg_blackbox::etcd_secure::{Access, SecureCluster, ROOT_PASSWORD};
use sg_blackbox::tcp::{who_answers, NamedServer};
use sg_blackbox::{free_port, run_to_exit, Gateway};

/// A gateway on the cluster with one plain TCP listener.
struct Node {
    gw: Gateway,
    stream: SocketAddr,
}

fn access(cluster: &SecureCluster) -> Access<'_> {
    Access {
        password: ROOT_PASSWORD,
        ca: &cluster.pki.ca,
        client_cert: true,
        watch_timeout: Duration::from_secs(50),
        verify: true,
        sni: None,
    }
}

fn node(cluster: &SecureCluster, access: &Access<'_>) -> Node {
    let (admin, port) = (free_port(), free_port());
    let config = cluster.config(admin, &[format!("\"127.0.0.1:{port}\"")], access);
    Node {
        gw: Gateway::start_with(&config, admin).expect("gateway on the TLS etcd cluster"),
        stream: SocketAddr::from(([127, 0, 0, 1], port)),
    }
}

/// Polls until `expected` answers on the node's listener; returns how long it took.
fn answers_within(node: &Node, expected: &str, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let got = who_answers("127.0.0.1", node.stream);
        if got.as_deref() == Some(expected) {
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

fn route_to(server: &NamedServer) -> Value {
    json!({"upstream": {"type": "roundrobin", "nodes": {server.addr.to_string(): 1}}})
}

/// PUTs through the Admin API until it succeeds; returns how long that took.
fn put_until_ok(node: &Node, path: &str, body: &Value, within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let reply = node.gw.admin("PUT", path, &body.to_string());
        if (200..300).contains(&reply.status) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "PUT {path} still fails after {within:?}: {} {}\n{}",
            reply.status,
            reply.body,
            node.gw.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

const SECOND: Duration = Duration::from_secs(1);
const ROUTE: &str = "/apisix/stream_routes/1";
const ADMIN_ROUTE: &str = "/apisix/admin/stream_routes/1";

#[test]
fn a_tls_auth_cluster_serves_through_member_loss_and_compaction() {
    let mut cluster = SecureCluster::start(Duration::from_secs(300)).unwrap();
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    let n1 = node(&cluster, &access(&cluster));

    // An Admin API write and an etcdctl write both reach the data plane.
    put_until_ok(&n1, ADMIN_ROUTE, &route_to(&a), SECOND);
    answers_within(&n1, "a", SECOND);
    cluster.put(ROUTE, &route_to(&b).to_string()).unwrap();
    answers_within(&n1, "b", SECOND);

    // The member in use (the first host) dies: writes work again within 10 s, and the watch
    // resumes on another member without missing what was written meanwhile.
    cluster.kill(0);
    let recovered = put_until_ok(&n1, ADMIN_ROUTE, &route_to(&a), Duration::from_secs(10));
    eprintln!("writes recovered {recovered:?} after the member in use died");
    answers_within(&n1, "a", Duration::from_secs(5));
    cluster.put(ROUTE, &route_to(&b).to_string()).unwrap();
    answers_within(&n1, "b", SECOND);

    // A burst of writes, then etcd forgets its history and defragments: a later write still
    // reaches the data plane within 3 s.
    for i in 0..100 {
        let upstream = json!({"nodes": {a.addr.to_string(): 1}, "type": "roundrobin"});
        put_until_ok(
            &n1,
            &format!("/apisix/admin/upstreams/u{i}"),
            &upstream,
            SECOND,
        );
    }
    let last = cluster.put("/apisix/gen_id", "1").unwrap();
    cluster.compact_and_defrag(last).unwrap();
    cluster.put(ROUTE, &route_to(&a).to_string()).unwrap();
    let followed = answers_within(&n1, "a", Duration::from_secs(3));
    eprintln!("an etcdctl write after compaction and defrag served in {followed:?}");
    let listed = n1.gw.admin("GET", "/apisix/admin/upstreams", "").json();
    assert_eq!(listed["total"], 100);
    assert!(
        !n1.gw.log().contains(ROOT_PASSWORD),
        "the password was logged"
    );
}

#[test]
fn a_wrong_password_ca_or_missing_client_certificate_stops_the_start() {
    let cluster = SecureCluster::start(Duration::from_secs(300)).unwrap();
    let (admin, port) = (free_port(), free_port());
    let entries = [format!("\"127.0.0.1:{port}\"")];
    let good = access(&cluster);
    let cases = [
        (
            Access {
                password: "Wrong-pw-0",
                ..access(&cluster)
            },
            "refused user \"root\": etcdserver: authentication failed, invalid user ID or password",
        ),
        (
            Access {
                ca: &cluster.pki.other_ca,
                ..access(&cluster)
            },
            "is not trusted (UnknownIssuer): check apisix.ssl.ssl_trusted_certificate",
        ),
        (
            Access {
                client_cert: false,
                ..access(&cluster)
            },
            "refused the TLS client certificate",
        ),
        (
            Access {
                sni: Some("other.test"),
                ..access(&cluster)
            },
            "is not trusted (NotValidForName",
        ),
    ];
    for (access, cause) in &cases {
        let started = Instant::now();
        let (status, stderr) = run_to_exit(&cluster.config(admin, &entries, access)).unwrap();
        assert_eq!(status.code(), Some(64), "{stderr}");
        assert!(stderr.contains(cause), "expected {cause:?} in:\n{stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no retry loop: {:?}",
            started.elapsed()
        );
        for secret in [ROOT_PASSWORD, "Wrong-pw-0"] {
            assert!(
                !stderr.contains(secret),
                "the password was shown:\n{stderr}"
            );
        }
    }
    // The same cluster with the right settings is fine; so is a name etcd's certificate
    // holds as `tls.sni`, and any CA with `verify: false`, which is logged.
    node(&cluster, &good);
    node(
        &cluster,
        &Access {
            sni: Some("etcd.test"),
            ..access(&cluster)
        },
    );
    let unverified = node(
        &cluster,
        &Access {
            ca: &cluster.pki.other_ca,
            verify: false,
            ..access(&cluster)
        },
    );
    assert!(unverified
        .gw
        .wait_log("tls.verify is false")
        .contains("etcd's certificate is not checked"));
}

#[test]
fn an_expired_auth_token_is_renewed_and_the_watch_keeps_its_place() {
    let ttl = Duration::from_secs(1);
    let cluster = SecureCluster::start(ttl).unwrap();
    let (a, b) = (
        NamedServer::start("127.0.0.1", "a").unwrap(),
        NamedServer::start("127.0.0.1", "b").unwrap(),
    );
    // `calls` keeps one watch all along, so only its Admin API calls meet an expired token;
    // `watches` renews its watch every 2 s, each time with a token etcd has forgotten.
    let calls = node(&cluster, &access(&cluster));
    let watch_timeout = Duration::from_secs(2);
    let watches = node(
        &cluster,
        &Access {
            watch_timeout,
            ..access(&cluster)
        },
    );
    put_until_ok(&calls, ADMIN_ROUTE, &route_to(&a), SECOND);
    answers_within(&watches, "a", SECOND);

    // Idle past the TTL, etcd forgets the token: the next Admin API write still succeeds at
    // the first try.
    std::thread::sleep(ttl * 3);
    let reply = calls
        .gw
        .admin("PUT", ADMIN_ROUTE, &route_to(&b).to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    answers_within(&calls, "b", SECOND);
    answers_within(&watches, "b", SECOND);

    // Past the TTL and the watch timeout, the watch is created again with a forgotten token:
    // it authenticates again and resumes where it was, so an etcdctl write made after it is
    // served.
    for (round, server) in [(1, &a), (2, &b)] {
        std::thread::sleep(ttl * 2 + watch_timeout);
        cluster.put(ROUTE, &route_to(server).to_string()).unwrap();
        let name = if round == 1 { "a" } else { "b" };
        answers_within(&watches, name, Duration::from_secs(3));
    }
}
