//! The stream data plane with real mosquitto brokers on 127.0.0.1 and 127.0.0.2 and real
//! mosquitto_pub / mosquitto_sub clients: chash stickiness, retries past a dead node, route
//! changes under live traffic, domain nodes.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::json;
use sg_blackbox::mqtt::{free_port_on, publish, subscribe, Broker, Subscription};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// How long a message that should arrive may take.
const ARRIVE: Duration = Duration::from_secs(5);
/// How long we listen to prove that a message did NOT arrive at a broker.
const QUIET: Duration = Duration::from_millis(300);

fn gateway() -> (Gateway, SocketAddr) {
    let port = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let gw = Gateway::start_with(
        &config_with_tcp(admin_port, &[format!("\"127.0.0.1:{port}\"")]),
        admin_port,
    )
    .unwrap();
    (gw, format!("127.0.0.1:{port}").parse().unwrap())
}

/// Messages each watcher receives until `expected` arrived in all (or [`ARRIVE`] passed),
/// plus any that straggle in during [`QUIET`].
fn count_messages(watchers: &[Subscription], expected: usize) -> Vec<usize> {
    let mut counts = vec![0; watchers.len()];
    let deadline = std::time::Instant::now() + ARRIVE;
    while counts.iter().sum::<usize>() < expected && std::time::Instant::now() < deadline {
        for (count, watcher) in counts.iter_mut().zip(watchers) {
            if watcher.next(Duration::from_millis(20)).is_some() {
                *count += 1;
            }
        }
    }
    for (count, watcher) in counts.iter_mut().zip(watchers) {
        *count += std::iter::from_fn(|| watcher.next(QUIET)).count();
    }
    counts
}

fn put(gw: &Gateway, path: &str, body: serde_json::Value) {
    let reply = gw.admin("PUT", path, &body.to_string());
    assert!(reply.status == 200 || reply.status == 201, "{}", reply.body);
}

#[test]
fn chash_on_client_address_pins_every_connection_to_one_broker() {
    let brokers = [
        Broker::start("127.0.0.1").unwrap(),
        Broker::start("127.0.0.2").unwrap(),
    ];
    let (gw, listen) = gateway();
    put(
        &gw,
        "/apisix/admin/upstreams/1",
        json!({"type": "chash", "key": "remote_addr",
        "nodes": {brokers[0].addr.to_string(): 1, brokers[1].addr.to_string(): 1}}),
    );
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"upstream_id": "1"}),
    );
    let watchers = [
        subscribe(brokers[0].addr, "watch-a", "probe/#", &[]).unwrap(),
        subscribe(brokers[1].addr, "watch-b", "probe/#", &[]).unwrap(),
    ];
    for i in 0..6 {
        publish(
            listen,
            &format!("device-{i}"),
            &format!("probe/{i}"),
            &format!("m{i}"),
            &[],
        )
        .unwrap();
    }
    let counts = count_messages(&watchers, 6);
    assert_eq!(counts.iter().sum::<usize>(), 6, "{counts:?}");
    assert!(
        counts.contains(&6),
        "every connection from 127.0.0.1 must reach the same broker: {counts:?}"
    );

    // End to end through the gateway, MQTT 5 as well.
    let through = subscribe(listen, "sub-via-gw", "e2e", &["-V", "mqttv5"]).unwrap();
    publish(
        listen,
        "pub-via-gw",
        "e2e",
        "hello through streamgate",
        &["-V", "mqttv5"],
    )
    .unwrap();
    assert_eq!(
        through.next(ARRIVE).as_deref(),
        Some("hello through streamgate")
    );
}

#[test]
fn retries_skip_a_dead_node() {
    let broker = Broker::start("127.0.0.2").unwrap();
    let dead: SocketAddr = format!("127.0.0.3:{}", free_port_on("127.0.0.3"))
        .parse()
        .unwrap();
    let (gw, listen) = gateway();
    let nodes = json!([
        {"host": "127.0.0.3", "port": dead.port(), "weight": 1, "priority": 1},
        {"host": "127.0.0.2", "port": broker.addr.port(), "weight": 1, "priority": 0}
    ]);
    // No retries: the dead node of the higher priority is tried alone, and the client is refused.
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"upstream": {"type": "roundrobin", "retries": 0, "nodes": nodes}}),
    );
    assert!(publish(listen, "no-retry", "t", "x", &[]).is_err());
    // Default retries (nodes - 1): the dead node costs one refused connect, then the broker.
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"upstream": {"type": "roundrobin", "nodes": nodes}}),
    );
    let watcher = subscribe(broker.addr, "watch", "t", &[]).unwrap();
    for i in 0..4 {
        publish(listen, &format!("retry-{i}"), "t", &format!("r{i}"), &[]).unwrap();
        assert_eq!(watcher.next(ARRIVE), Some(format!("r{i}")));
    }
    let log = gw.log();
    assert!(log.contains(&format!("proxy request to {dead}")), "{log}");
    assert!(log.contains("connect() failed"), "{log}");
    assert!(
        log.contains(&format!("proxy request to {}", broker.addr)),
        "{log}"
    );
}

#[test]
fn route_change_under_live_traffic() {
    let brokers = [
        Broker::start("127.0.0.1").unwrap(),
        Broker::start("127.0.0.2").unwrap(),
    ];
    let (gw, listen) = gateway();
    let to =
        |b: &Broker| json!({"upstream": {"type": "roundrobin", "nodes": {b.addr.to_string(): 1}}});
    put(&gw, "/apisix/admin/stream_routes/1", to(&brokers[0]));
    // A live session through the gateway to broker A.
    let mut live = subscribe(listen, "live", "news", &[]).unwrap();
    // Move the route to broker B: new connections go there at once.
    put(&gw, "/apisix/admin/stream_routes/1", to(&brokers[1]));
    let on_b = subscribe(brokers[1].addr, "watch-b", "news", &[]).unwrap();
    publish(listen, "new-client", "news", "to-b", &[]).unwrap();
    assert_eq!(on_b.next(ARRIVE).as_deref(), Some("to-b"));
    // The established session still talks to broker A.
    publish(brokers[0].addr, "direct-a", "news", "still-a", &[]).unwrap();
    assert_eq!(live.next(ARRIVE).as_deref(), Some("still-a"));
    // Deleting the route does not disturb it either, but new connections are refused.
    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/stream_routes/1", "")
            .status,
        200
    );
    assert!(publish(listen, "refused", "news", "x", &[]).is_err());
    publish(brokers[0].addr, "direct-a", "news", "after-delete", &[]).unwrap();
    assert_eq!(live.next(ARRIVE).as_deref(), Some("after-delete"));
    assert!(live.alive());
}

#[test]
fn domain_nodes_resolve_and_bad_domains_close() {
    let broker = Broker::start("127.0.0.1").unwrap();
    let (gw, listen) = gateway();
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"upstream": {"type": "roundrobin",
        "nodes": [{"host": "localhost", "port": broker.addr.port(), "weight": 1}]}}),
    );
    let watcher = subscribe(broker.addr, "watch", "dns", &[]).unwrap();
    publish(listen, "dns-client", "dns", "resolved", &[]).unwrap();
    assert_eq!(watcher.next(ARRIVE).as_deref(), Some("resolved"));
    put(
        &gw,
        "/apisix/admin/stream_routes/1",
        json!({"upstream": {"type": "roundrobin",
        "nodes": [{"host": "loc.invalid", "port": 1883, "weight": 1}]}}),
    );
    assert!(publish(listen, "dns-client", "dns", "lost", &[]).is_err());
    let log = gw.wait_log("failed to parse domain: loc.invalid");
    assert!(log.contains("failed to parse domain: loc.invalid"), "{log}");
}
