//! Health checks through the built binary: a broker killed under a `chash` upstream with active
//! TCP checks is marked unhealthy on the control API, its clients move to the next broker on
//! the ring while every other client keeps its broker, and it gets its clients back once it
//! returns; passive checks take a dead node out after its connect failures.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sg_blackbox::mqtt::{apisix_ring, free_port_on, publish, subscribe, Broker, Subscription};
use sg_blackbox::tcp::{who_answers, NamedServer};
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// How long a health change may take to show (intervals of 1 s, 2 failures or successes).
const HEALTH_PATIENCE: Duration = Duration::from_secs(20);

struct Setup {
    gw: Gateway,
    listen: SocketAddr,
    control: u16,
    agent: ureq::Agent,
}

fn start() -> Setup {
    let listen = free_port_on("127.0.0.1");
    let admin_port = free_port();
    let control = free_port();
    let shipped = config_with_tcp(admin_port, &[format!("\"127.0.0.1:{listen}\"")]);
    let config = shipped.replacen(
        "\napisix:\n",
        &format!("\napisix:\n  enable_control: true\n  control:\n    ip: 127.0.0.1\n    port: {control}\n"),
        1,
    );
    assert_ne!(config, shipped, "the control settings went in");
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    Setup {
        gw,
        listen: format!("127.0.0.1:{listen}").parse().unwrap(),
        control,
        agent,
    }
}

impl Setup {
    fn put(&self, path: &str, body: Value) {
        let reply = self.gw.admin("PUT", path, &body.to_string());
        assert!(
            reply.status < 300,
            "{path}: {} {}",
            reply.status,
            reply.body
        );
    }

    /// `GET` on the control API: status and JSON body.
    fn control(&self, path: &str) -> (u16, Value) {
        let url = format!("http://127.0.0.1:{}{path}", self.control);
        let mut response = self.agent.get(&url).call().expect("control API");
        let status = response.status().as_u16();
        let body = response.body_mut().read_to_string().expect("body");
        (status, serde_json::from_str(&body).expect("JSON"))
    }

    /// The control API's entry for node `addr` of upstream 1.
    fn node(&self, addr: SocketAddr) -> Value {
        let (status, body) = self.control("/v1/healthcheck/upstreams/1");
        assert_eq!(status, 200, "{body}");
        body["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ip"] == addr.ip().to_string() && n["port"] == addr.port())
            .unwrap_or_else(|| panic!("{addr} not in {body}"))
            .clone()
    }

    /// Polls (bounded) until node `addr` has `status`; returns its entry.
    fn wait_status(&self, addr: SocketAddr, status: &str) -> Value {
        let deadline = Instant::now() + HEALTH_PATIENCE;
        loop {
            let node = self.node(addr);
            if node["status"] == status {
                return node;
            }
            assert!(
                Instant::now() < deadline,
                "{addr} never became {status}: {node}\n{}",
                self.gw.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Publishes once through the gateway per client id (payload: the id) and returns the broker
/// each one reached, as seen by a watcher subscribed on every broker.
fn landings(
    s: &Setup,
    ids: &[String],
    watchers: &[(&Subscription, String)],
) -> BTreeMap<String, String> {
    for id in ids {
        publish(s.listen, id, &format!("probe/{id}"), id, &[]).unwrap();
    }
    let mut landed = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while landed.len() < ids.len() && Instant::now() < deadline {
        for (watcher, node) in watchers {
            if let Some(id) = watcher.next(Duration::from_millis(20)) {
                landed.insert(id, node.clone());
            }
        }
    }
    landed
}

#[test]
fn killed_broker_is_skipped_on_the_ring_and_welcomed_back() {
    let s = start();
    assert_eq!(s.control("/v1/healthcheck"), (200, json!([])));
    let brokers = [
        Broker::start("127.0.0.1").unwrap(),
        Broker::start("127.0.0.2").unwrap(),
        Broker::start("127.0.0.3").unwrap(),
    ];
    let nodes: Vec<String> = brokers.iter().map(|b| b.addr.to_string()).collect();
    let weights: serde_json::Map<String, Value> =
        nodes.iter().map(|n| (n.clone(), json!(1))).collect();
    s.put(
        "/apisix/admin/upstreams/1",
        json!({"type": "chash", "key": "mqtt_client_id", "nodes": weights,
               "checks": {"active": {"type": "tcp", "timeout": 1,
                   "healthy": {"interval": 1, "successes": 2},
                   "unhealthy": {"interval": 1, "tcp_failures": 2}}}}),
    );
    s.put(
        "/apisix/admin/stream_routes/1",
        json!({"server_port": s.listen.port(), "upstream_id": "1",
               "plugins": {"mqtt-proxy": {"protocol_name": "MQTT", "protocol_level": 4}}}),
    );
    let (status, all) = s.control("/v1/healthcheck");
    assert_eq!(status, 200);
    assert_eq!(all[0]["name"], "/apisix/upstreams/1");
    assert_eq!(all[0]["type"], "tcp");
    assert_eq!(all[0]["nodes"].as_array().unwrap().len(), 3);

    let [a, b, c] = brokers;
    let (a_addr, b_addr) = (a.addr, b.addr);
    let watch_a = subscribe(a.addr, "watch-a", "probe/#", &[]).unwrap();
    let watch_b = subscribe(b.addr, "watch-b", "probe/#", &[]).unwrap();
    let watch_c = subscribe(c.addr, "watch-c", "probe/#", &[]).unwrap();
    let ids: Vec<String> = (0..24).map(|i| format!("device-{i}")).collect();
    let before = landings(
        &s,
        &ids,
        &[
            (&watch_a, nodes[0].clone()),
            (&watch_b, nodes[1].clone()),
            (&watch_c, nodes[2].clone()),
        ],
    );
    assert_eq!(before, apisix_ring(&nodes, &ids));
    assert!(before.values().any(|n| *n == nodes[1]), "{before:?}");

    // Kill broker b (and its watcher) with no traffic: only the active checks can notice.
    drop(watch_b);
    drop(b);
    let down = s.wait_status(b_addr, "unhealthy");
    assert_eq!(down["counter"]["tcp_failure"], 2, "{down}");
    assert_eq!(s.node(a_addr)["status"], "healthy");
    let healthy = |addr: &str| {
        s.gw.metric(&format!(
            "streamgate_upstream_node_healthy{{upstream=\"upstreams/1\",node=\"{addr}\"}}"
        ))
    };
    assert_eq!(
        (healthy(&b_addr.to_string()), healthy(&a_addr.to_string())),
        (0.0, 1.0)
    );
    let log = s.gw.wait_log("node is unhealthy");
    assert!(log.contains("node is unhealthy"), "{log}");
    assert!(
        !log.contains("connect() failed"),
        "no client tried b: {log}"
    );

    // New clients: b's move on as a ring without b sends them; everyone else stays put.
    let survivors = [nodes[0].clone(), nodes[2].clone()];
    let watchers = [(&watch_a, nodes[0].clone()), (&watch_c, nodes[2].clone())];
    let after = landings(&s, &ids, &watchers);
    assert_eq!(after, apisix_ring(&survivors, &ids));
    for (id, node) in &before {
        if *node != nodes[1] {
            assert_eq!(after[id], *node, "{id} lost its healthy broker");
        }
    }
    let log = s.gw.log();
    assert!(
        !log.contains("connect() failed"),
        "b was skipped, not tried: {log}"
    );
    assert!(!log.contains("all upstream nodes is unhealthy"), "{log}");

    // b returns on the same address: two successful probes and its clients come back.
    let b = Broker::start_on(&b_addr.to_string()).unwrap();
    let watch_b = subscribe(b.addr, "watch-b2", "probe/#", &[]).unwrap();
    let up = s.wait_status(b_addr, "healthy");
    assert_eq!(up["counter"]["success"], 2, "{up}");
    let back = landings(
        &s,
        &ids,
        &[
            (&watch_a, nodes[0].clone()),
            (&watch_b, nodes[1].clone()),
            (&watch_c, nodes[2].clone()),
        ],
    );
    assert_eq!(back, before);
}

#[test]
fn passive_checks_take_a_dead_node_out_after_its_failures() {
    let s = start();
    let alive = NamedServer::start("127.0.0.1", "alive").unwrap();
    let dead: SocketAddr = format!("127.0.0.2:{}", free_port_on("127.0.0.2"))
        .parse()
        .unwrap();
    // Active probes are due only in an hour: whatever changes here comes from client traffic.
    s.put(
        "/apisix/admin/upstreams/1",
        json!({"type": "roundrobin",
               "nodes": {alive.addr.to_string(): 1, dead.to_string(): 1},
               "checks": {"active": {"type": "tcp", "healthy": {"interval": 3600},
                                     "unhealthy": {"interval": 3600}},
                          "passive": {"type": "tcp", "unhealthy": {"tcp_failures": 2}}}}),
    );
    s.put(
        "/apisix/admin/stream_routes/1",
        json!({"server_port": s.listen.port(), "upstream_id": "1"}),
    );
    let mut clients = 0;
    while s.node(dead)["status"] != "unhealthy" {
        assert!(clients < 20, "still healthy after {clients} clients");
        // A failed connect to the dead node is retried on the live one.
        assert_eq!(who_answers("127.0.0.1", s.listen).as_deref(), Some("alive"));
        clients += 1;
    }
    let failures = |log: &str| log.matches("connect() failed").count();
    assert_eq!(failures(&s.gw.log()), 2, "{}", s.gw.log());
    assert_eq!(s.node(dead)["counter"]["tcp_failure"], 2);
    assert_eq!(s.node(alive.addr)["status"], "healthy");
    for _ in 0..10 {
        assert_eq!(who_answers("127.0.0.1", s.listen).as_deref(), Some("alive"));
    }
    assert_eq!(failures(&s.gw.log()), 2, "the dead node is no longer tried");
}
