//! Extreme numbers (0, 1e-9, 0.5, 2^63, 2^64, 9.3e18, 1e300, -1) in every numeric field of
//! upstreams and stream plugins, with each config provider: every Admin API write is answered
//! 2xx or 400, objects written straight into etcd or apisix.yaml are taken or skipped, and the
//! data plane still follows later changes and comes back after a restart on the same store.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use sg_blackbox::data_plane::DataPlane;
use sg_blackbox::etcd::{etcd_config, Etcd};
use sg_blackbox::extremes::{
    cases, config_errors, excerpt, put_all, wait_answer, with_control, Case, PATIENCE,
};
use sg_blackbox::tcp::NamedServer;
use sg_blackbox::{config_with_tcp, free_port, Gateway};

/// The route the test's own connections (from 127.0.0.1) take; extreme routes never match them.
fn sane_route(server: &NamedServer, id: Option<&str>) -> String {
    let mut route = json!({"remote_addr": "127.0.0.1",
                           "upstream": {"type": "roundrobin", "nodes": {server.addr.to_string(): 1}}});
    if let Some(id) = id {
        route["id"] = json!(id);
    }
    route.to_string()
}

/// A gateway with an Admin API, and the stream port its routes serve.
struct Node {
    provider: &'static str,
    gw: Gateway,
    stream: SocketAddr,
    control: u16,
}

impl Node {
    fn start(provider: &'static str, config: impl FnOnce(u16, &[String]) -> String) -> Node {
        let (admin, port) = (free_port(), free_port());
        let (config, control) = with_control(&config(admin, &[format!("\"127.0.0.1:{port}\"")]));
        let gw = Gateway::start_with(&config, admin)
            .unwrap_or_else(|e| panic!("{provider}: the gateway does not start: {e}"));
        Node {
            provider,
            gw,
            stream: SocketAddr::from(([127, 0, 0, 1], port)),
            control,
        }
    }

    fn route_to(&self, server: &NamedServer, step: &str) {
        let reply = self.gw.admin(
            "PUT",
            "/apisix/admin/stream_routes/sane",
            &sane_route(server, None),
        );
        assert!(
            (200..300).contains(&reply.status),
            "{}: {step}: PUT of the sane route answered {} {}",
            self.provider,
            reply.status,
            reply.body
        );
    }

    fn serves(&mut self, expected: &str, step: &str) {
        let gw = &mut self.gw;
        let gone = || gw.exited().ok().flatten().map(|status| status.to_string());
        if let Err(e) = wait_answer(self.stream, expected, gone) {
            panic!(
                "{}: {step}: {e}\n{}",
                self.provider,
                excerpt(&self.gw.log())
            );
        }
    }

    /// Steps 1 to 3; `bypass` writes straight into the store after the Admin API writes, and
    /// names the objects the control API must then list as unusable. Returns the keys of the
    /// writes the Admin API refused.
    fn survives_extremes(mut self, bypass: impl FnOnce(&Gateway) -> Vec<String>) -> Vec<String> {
        let a = NamedServer::start("127.0.0.1", "a").unwrap();
        let b = NamedServer::start("127.0.0.1", "b").unwrap();
        // A baseline: a later failure is then the extreme objects' doing, not the set-up's.
        self.route_to(&a, "before the extreme writes");
        self.serves("a", "before the extreme writes");

        let cases = cases();
        let refused = put_all(self.gw.admin, &cases).unwrap_or_else(|e| {
            let log = excerpt(&self.gw.log());
            panic!("{}: step 1, extreme writes: {e}\n{log}", self.provider)
        });
        let accepted = cases.len() - refused.len();
        let unusable = bypass(&self.gw);

        let step = format!(
            "step 2, a change after {accepted} of {} extreme objects were accepted",
            cases.len()
        );
        self.route_to(&b, &step);
        self.serves("b", &format!("{step} (route moved to listener b)"));
        self.route_to(&a, &step);
        self.serves("a", &format!("{step} (route moved back to listener a)"));
        // Every object the Admin API accepted was compiled: none is listed as unusable.
        let listed =
            config_errors(self.control).unwrap_or_else(|e| panic!("{}: {e}", self.provider));
        assert_eq!(
            listed, unusable,
            "{}: {step}: /v1/config/errors",
            self.provider
        );

        if let Err(e) = self.gw.restart() {
            let error = e.to_string();
            let first = error.lines().next().unwrap_or_default();
            let provider = self.provider;
            panic!(
                "{provider}: step 3, restart on the same store: {first}\n{}",
                excerpt(&error)
            );
        }
        self.serves("a", "step 3, after a restart on the same store");
        self.route_to(&b, "step 3, a change after the restart");
        self.serves("b", "step 3, a change after the restart");
        refused
    }
}

#[test]
fn embedded_store_survives_extreme_numbers() {
    Node::start("embedded", config_with_tcp).survives_extremes(|_| Vec::new());
}

/// Cases also written straight into etcd under `direct.<id>`, as APISIX or etcdctl write them.
const DIRECT: [(&str, &str); 4] = [
    ("upstreams", "retry_timeout.1e300"),
    ("stream_routes", "timeout.connect.18446744073709551616"),
    ("stream_routes", "checks.active.healthy.interval.9.3e18"),
    ("stream_routes", "limit-conn.default_conn_delay.1e300"),
];

#[test]
fn etcd_survives_extreme_numbers() {
    let etcd = Etcd::start().unwrap();
    let node = Node::start("etcd", |admin, tcp| etcd_config(&[etcd.url()], admin, tcp));
    node.survives_extremes(|gw| {
        let cases = cases();
        for (dir, id) in DIRECT {
            let case = cases.iter().find(|c| c.dir == dir && c.id == id).unwrap();
            let id = format!("direct.{id}");
            etcd.put(&format!("/apisix/{dir}/{id}"), &case.json(Some(&id)))
                .unwrap_or_else(|e| panic!("etcd: step 1, direct write of {dir}/{id}: {e}"));
        }
        // Taken as valid, not skipped: the compiler meets them.
        for (dir, id) in DIRECT {
            let id = format!("direct.{id}");
            assert!(
                listed_within(gw, dir, &id),
                "etcd: step 1, {dir}/{id} written into etcd is not listed by the Admin API"
            );
        }
        // What the Admin API would refuse, written by another tool, is listed as unusable.
        etcd.put(
            "/apisix/stream_routes/direct.refused",
            r#"{"upstream":{"nodes":{"127.0.0.1:1":1},"retries":-1}}"#,
        )
        .unwrap_or_else(|e| panic!("etcd: step 1, direct write of an invalid route: {e}"));
        vec!["stream_routes/direct.refused".to_owned()]
    });
}

/// Polls the Admin API's list of `dir`, which leaves out objects that fail the checks, until
/// it holds `id`.
fn listed_within(gw: &Gateway, dir: &str, id: &str) -> bool {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let reply = gw.admin("GET", &format!("/apisix/admin/{dir}"), "");
        let list = reply.json()["list"].as_array().cloned().unwrap_or_default();
        if list.iter().any(|item| item["value"]["id"] == id) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// apisix.yaml with every case and the sane route to `server`.
fn apisix_yaml(cases: &[Case], server: &NamedServer) -> String {
    let items = |dir: &str| -> String {
        cases
            .iter()
            .filter(|case| case.dir == dir)
            .map(|case| format!("  - {}\n", case.json(Some(&case.id))))
            .collect()
    };
    format!(
        "stream_routes:\n  - {}\n{}upstreams:\n{}#END\n",
        sane_route(server, Some("sane")),
        items("stream_routes"),
        items("upstreams")
    )
}

fn data_plane_serves(node: &mut DataPlane, expected: &str, step: &str) {
    let stream = node.stream;
    let gone = || node.exited().map(|status| status.to_string());
    if let Err(e) = wait_answer(stream, expected, gone) {
        panic!("yaml: {step}: {e}\n{}", excerpt(&node.log()));
    }
}

#[test]
fn standalone_yaml_survives_extreme_numbers() {
    let a = NamedServer::start("127.0.0.1", "a").unwrap();
    let b = NamedServer::start("127.0.0.1", "b").unwrap();
    let cases = cases();
    let mut node = DataPlane::start(&apisix_yaml(&cases, &a)).unwrap();
    let step = format!("step 1, apisix.yaml with {} extreme objects", cases.len());
    data_plane_serves(&mut node, "a", &step);
    // The items of the file that are not served are exactly those the Admin API refuses.
    let mut refused = Node::start("embedded", config_with_tcp).survives_extremes(|_| Vec::new());
    let mut listed = config_errors(node.control).unwrap_or_else(|e| panic!("yaml: {e}"));
    refused.sort();
    listed.sort();
    assert_eq!(
        listed, refused,
        "yaml: {step}: /v1/config/errors against the Admin API's 400s"
    );

    node.write(&apisix_yaml(&cases, &b)).unwrap();
    data_plane_serves(&mut node, "b", "step 2, the route moved to listener b");
    node.write(&apisix_yaml(&cases, &a)).unwrap();
    data_plane_serves(&mut node, "a", "step 2, the route moved back to listener a");

    node.restart().unwrap();
    data_plane_serves(&mut node, "a", "step 3, after a restart on the same files");
}
