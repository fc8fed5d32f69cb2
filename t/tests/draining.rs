//! Paced draining through the built binary: when a node leaves its upstream, its sessions are
//! closed at `drain_rate`, measured from the upstream's side.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::json;
use sg_blackbox::mqtt::free_port_on;
use sg_blackbox::tcp::{connect_from, HoldingServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

fn gateway(rate: u32) -> (Gateway, SocketAddr) {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let config = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")]).replace(
        "  stream_proxy:\n",
        &format!("  stream_proxy:\n    drain_rate: {rate}\n"),
    );
    (
        Gateway::start_with(&config, admin_port).unwrap(),
        format!("127.0.0.1:{port}").parse().unwrap(),
    )
}

fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn open_sessions(listen: SocketAddr, count: usize) -> Vec<TcpStream> {
    (0..count)
        .map(|_| {
            let mut s = connect_from("127.0.0.1", listen).unwrap();
            std::io::Write::write_all(&mut s, b"hello").unwrap();
            s
        })
        .collect()
}

#[test]
fn a_removed_node_is_drained_at_the_configured_rate() {
    let (old, new) = (
        HoldingServer::start("127.0.0.1").unwrap(),
        HoldingServer::start("127.0.0.2").unwrap(),
    );
    let (gw, listen) = gateway(10);
    let upstream = |node: SocketAddr| json!({"upstream": {"nodes": {node.to_string(): 1}}});
    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/stream_routes/1",
            &upstream(old.addr).to_string()
        )
        .status,
        201
    );
    let sessions = open_sessions(listen, 20);
    wait_until("20 sessions", Duration::from_secs(10), || {
        gw.metric("streamgate_stream_active_connections{route=\"1\"}") == 20.0
    });

    let moved = Instant::now();
    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/stream_routes/1",
            &upstream(new.addr).to_string()
        )
        .status,
        200
    );
    wait_until("all 20 drained", Duration::from_secs(15), || {
        old.closed().len() == 20
    });
    let closed = old.closed();
    let spread = *closed.iter().max().unwrap() - *closed.iter().min().unwrap();
    // 20 sessions at 10 per second: about 1.9 s from the first to the last, never all at once.
    assert!(
        spread >= Duration::from_millis(1500),
        "closed within {spread:?}"
    );
    let first_second = closed
        .iter()
        .filter(|t| **t < moved + Duration::from_secs(1))
        .count();
    assert!(
        first_second <= 12,
        "{first_second} closed in the first second"
    );
    drop(sessions);

    // A node marked draining takes no new session and loses its established ones.
    let both = json!({"upstream": {"nodes": [
        {"host": "127.0.0.2", "port": new.addr.port(), "weight": 1},
        {"host": "127.0.0.1", "port": old.addr.port(), "weight": 1}]}});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/stream_routes/1", &both.to_string())
            .status,
        200
    );
    let more = open_sessions(listen, 4);
    wait_until("4 sessions", Duration::from_secs(10), || {
        gw.metric("streamgate_stream_active_connections{route=\"1\"}") == 4.0
    });
    let mut draining = both.clone();
    draining["upstream"]["nodes"][1]["metadata"] = json!({"draining": true});
    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/stream_routes/1",
            &draining.to_string()
        )
        .status,
        200
    );
    wait_until(
        "the draining node's sessions",
        Duration::from_secs(10),
        || old.closed().len() == 22,
    );
    assert_eq!(
        gw.metric("streamgate_stream_active_connections{route=\"1\"}"),
        2.0
    );
    drop(more);
}

/// Waits until `server` saw `count` sessions end, then checks they ended paced: 20 sessions at
/// 50 per second take about 0.38 s from the first close to the last, never all at once.
fn assert_paced(server: &HoldingServer, count: usize, case: &str) {
    wait_until("the sessions drained", Duration::from_secs(10), || {
        server.closed().len() == count
    });
    let mut closed = server.closed();
    closed.sort();
    let first = closed[0];
    let offsets: Vec<u128> = closed.iter().map(|t| (*t - first).as_millis()).collect();
    assert!(
        *closed.last().unwrap() - first >= PACED,
        "{case}: closed at {offsets:?} ms"
    );
}

/// The least spread of 20 closes at 50 per second (about 0.38 s) the tests accept.
const PACED: Duration = Duration::from_millis(300);

#[test]
fn pacing_holds_for_every_way_a_node_leaves_after_a_calm_spell() {
    let (gw, listen) = gateway(50);
    let route = |node: SocketAddr| json!({"upstream": {"nodes": {node.to_string(): 1}}});
    let put = |body: serde_json::Value| {
        gw.admin("PUT", "/apisix/admin/stream_routes/1", &body.to_string())
            .status
    };
    let fill = |server: &HoldingServer| {
        assert!(matches!(put(route(server.addr)), 200 | 201));
        let sessions = open_sessions(listen, 20);
        wait_until("20 sessions", Duration::from_secs(10), || {
            gw.metric("streamgate_stream_active_connections{route=\"1\"}") == 20.0
        });
        // The drainer has been idle for a while when the node leaves, as in production:
        // missed ticks must not be caught up at once.
        std::thread::sleep(Duration::from_secs(1));
        sessions
    };

    // The node is replaced by another.
    let (a, b) = (
        HoldingServer::start("127.0.0.1").unwrap(),
        HoldingServer::start("127.0.0.1").unwrap(),
    );
    let held = fill(&a);
    assert_eq!(put(route(b.addr)), 200);
    assert_paced(&a, 20, "node replaced");
    drop(held);

    // The node is marked draining.
    let c = HoldingServer::start("127.0.0.1").unwrap();
    let held = fill(&c);
    let draining = json!({"upstream": {"nodes": [
        {"host": "127.0.0.1", "port": c.addr.port(), "weight": 1, "metadata": {"draining": true}},
        {"host": "127.0.0.1", "port": b.addr.port(), "weight": 1}]}});
    assert_eq!(put(draining), 200);
    assert_paced(&c, 20, "node marked draining");
    drop(held);

    // The route goes away.
    let d = HoldingServer::start("127.0.0.1").unwrap();
    let held = fill(&d);
    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/stream_routes/1", "")
            .status,
        200
    );
    assert_paced(&d, 20, "route deleted");
    drop(held);

    // SIGTERM.
    let e = HoldingServer::start("127.0.0.1").unwrap();
    let held = fill(&e);
    gw.signal_term().unwrap();
    assert_paced(&e, 20, "SIGTERM");
    drop(held);
}
