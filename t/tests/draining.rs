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
