//! Real MQTT clients (mosquitto_pub -V mqttv31, mqttv311, mqttv5) through the mqtt-proxy plugin
//! to two mosquitto brokers with `chash` on `mqtt_client_id`: every client id must land on the
//! broker APISIX's ring gives it, computed independently by `t/apisix_chash.py`.

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use serde_json::json;
use sg_blackbox::mqtt::{apisix_ring, free_port_on, publish, subscribe, Broker};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// A port free on both 127.0.0.1 and 127.0.0.2, so both brokers share it as in APISIX's examples.
fn port_free_on_both() -> u16 {
    loop {
        let port = free_port_on("127.0.0.1");
        if TcpListener::bind(("127.0.0.2", port)).is_ok() {
            return port;
        }
    }
}

#[test]
fn every_mqtt_version_lands_on_the_broker_apisix_would_pick() {
    let port = port_free_on_both();
    let brokers = [
        Broker::start_on(&format!("127.0.0.1:{port}")).unwrap(),
        Broker::start_on(&format!("127.0.0.2:{port}")).unwrap(),
    ];
    let listeners: Vec<u16> = (0..3).map(|_| free_port_on("127.0.0.1")).collect();
    let admin_port = free_port();
    let entries: Vec<String> = listeners
        .iter()
        .map(|p| format!("\"127.0.0.1:{p}\""))
        .collect();
    let gw = Gateway::start_with(&config_with_tcp(admin_port, &entries), admin_port).unwrap();
    let nodes: Vec<String> = brokers.iter().map(|b| b.addr.to_string()).collect();
    let upstream = json!({"type": "chash", "key": "mqtt_client_id",
                          "nodes": {nodes[0].clone(): 1, nodes[1].clone(): 1}});
    assert_eq!(
        gw.admin("PUT", "/apisix/admin/upstreams/1", &upstream.to_string())
            .status,
        201
    );
    let versions = [
        ("mqttv31", "MQIsdp", 3),
        ("mqttv311", "MQTT", 4),
        ("mqttv5", "MQTT", 5),
    ];
    for ((_, name, level), listen) in versions.iter().zip(&listeners) {
        let route = json!({"server_port": listen, "upstream_id": "1",
            "plugins": {"mqtt-proxy": {"protocol_name": name, "protocol_level": level}}});
        let reply = gw.admin(
            "PUT",
            &format!("/apisix/admin/stream_routes/v{level}"),
            &route.to_string(),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
    }
    let watchers = [
        subscribe(brokers[0].addr, "watch-1", "probe/#", &[]).unwrap(),
        subscribe(brokers[1].addr, "watch-2", "probe/#", &[]).unwrap(),
    ];
    let mut ids = Vec::new();
    for ((version, _, level), listen) in versions.iter().zip(&listeners) {
        let via: SocketAddr = format!("127.0.0.1:{listen}").parse().unwrap();
        for i in 0..6 {
            let id = format!("device-v{level}-{i}");
            publish(via, &id, &format!("probe/{id}"), &id, &["-V", version]).unwrap();
            ids.push(id);
        }
    }
    let mut landed = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while landed.len() < ids.len() && Instant::now() < deadline {
        for (watcher, node) in watchers.iter().zip(&nodes) {
            if let Some(id) = watcher.next(Duration::from_millis(20)) {
                landed.insert(id, node.clone());
            }
        }
    }
    let expected = apisix_ring(&nodes, &ids);
    assert_eq!(landed, expected);
    let used: std::collections::BTreeSet<_> = landed.values().collect();
    assert_eq!(used.len(), 2, "both brokers serve some devices: {landed:?}");
}
