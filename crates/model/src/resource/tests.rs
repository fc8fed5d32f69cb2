use serde_json::{json, Value};

use super::*;

fn upstream(value: Value) -> Result<Upstream, String> {
    decode(&value).map_err(|e| e.to_string())
}

#[test]
fn upstream_defaults_and_both_node_forms() {
    let up = upstream(json!({"type": "chash", "key": "mqtt_client_id",
        "nodes": {"127.0.0.1:1883": 1, "[::1]:1884": 2}}))
    .unwrap();
    assert_eq!(up.balancing, Balancing::Chash);
    assert_eq!(up.hash_on, HashOn::Vars);
    let nodes = up.nodes.unwrap();
    assert_eq!(
        (nodes[0].host.as_str(), nodes[0].port),
        ("127.0.0.1", Some(1883))
    );
    assert_eq!((nodes[1].host.as_str(), nodes[1].weight), ("[::1]", 2));

    let listed = upstream(json!({"nodes": [
        {"host": "::1", "port": 1, "weight": 1, "priority": -1},
        {"host": "a", "port": 2, "weight": 1, "metadata": {"draining": true}}]}))
    .unwrap();
    let nodes = listed.nodes.unwrap();
    assert_eq!((nodes[0].host.as_str(), nodes[0].priority), ("[::1]", -1));
    assert!(nodes[1].draining);
    assert_eq!(listed.balancing, Balancing::RoundRobin);
    assert!(
        upstream(json!({"service_name": "x", "discovery_type": "dns"}))
            .unwrap()
            .nodes
            .is_none()
    );
}

#[test]
fn extreme_numbers_load_capped_or_saturated() {
    let up = upstream(json!({"nodes": {"127.0.0.1:1883": 1e300}, "retries": 1e300,
        "retry_timeout": 1e300,
        "timeout": {"connect": 1e300, "send": 18446744073709551615u64, "read": 9.3e18},
        "checks": {"active": {"timeout": 1e300, "concurrency": 1e300,
            "healthy": {"interval": 1e300, "successes": 1e300},
            "unhealthy": {"interval": 1e300, "tcp_failures": 300, "timeouts": 1e300}}}}))
    .unwrap();
    assert_eq!(up.nodes.unwrap()[0].weight, u32::MAX);
    assert_eq!(up.retries, Some(Count(u64::MAX)));
    let timeout = up.timeout.unwrap();
    for s in [
        timeout.connect,
        timeout.send,
        timeout.read,
        up.retry_timeout,
    ] {
        let s = s.unwrap();
        assert_eq!((s.get(), s.capped()), (MAX_DURATION, true));
    }
    let active = up.checks.unwrap().active.unwrap();
    assert_eq!(active.timeout.get(), MAX_DURATION);
    assert_eq!(active.healthy_interval.get(), MAX_DURATION);
    assert_eq!(active.concurrency, checks::MAX_CONCURRENCY);
    assert_eq!(active.thresholds.successes, 254);
    assert_eq!(active.thresholds.tcp_failures, 254);
}

#[test]
fn bad_values_are_refused_naming_the_field() {
    let err = upstream(json!({"nodes": {"a:1": 1}, "timeout": {"connect": "soon"}})).unwrap_err();
    assert!(err.starts_with("timeout.connect: "), "{err}");
    let err = upstream(json!({"nodes": {"a:1": 1}, "retries": "3"})).unwrap_err();
    assert!(err.starts_with("retries: "), "{err}");
    assert_eq!(
        upstream(json!({"nodes": {"a": 1}})).unwrap().nodes.unwrap()[0].port,
        None
    );
    let err = upstream(json!({"nodes": {"a:0": 1}})).unwrap_err();
    assert!(err.contains("invalid port in node a:0"), "{err}");
    let err = upstream(json!({"nodes": [{"host": "a", "port": 70000, "weight": 1}]})).unwrap_err();
    assert!(err.contains("invalid port 70000"), "{err}");
}

#[test]
fn routes_and_plugins() {
    let route: StreamRoute = decode(&json!({"remote_addr": "127.0.0.9/8", "server_port": 9100,
        "sni": "A.Example.", "upstream_id": 1, "plugins": {
            "mqtt-proxy": {"protocol_level": 5},
            "limit-conn": {"conn": 1e300, "burst": 0, "default_conn_delay": 1e300, "key": "remote_addr"},
            "ip-restriction": {"_meta": {"disable": true}, "whitelist": "not even a list"}}}))
    .unwrap();
    assert_eq!(route.remote_addr.unwrap().0.to_string(), "127.0.0.0/8");
    assert_eq!(route.sni.as_deref(), Some("a.example"));
    assert_eq!(route.upstream_id, Some(Id("1".into())));
    let names: Vec<_> = route.plugins.0.iter().map(PluginConf::name).collect();
    assert_eq!(names, ["mqtt-proxy", "limit-conn"]);
    let PluginConf::LimitConn(limit) = &route.plugins.0[1] else {
        panic!("limit-conn expected")
    };
    assert_eq!(limit.conn, u64::MAX);
    assert_eq!(limit.default_conn_delay.get(), MAX_DURATION);
    assert_eq!(limit.rejected_code, 503);

    let err = decode::<StreamRoute>(&json!({"plugins": {"limit-x": {}}}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown plugin [limit-x]"), "{err}");
    let err = decode::<StreamRoute>(&json!({"plugins": {"limit-conn": {"conn": 0,
        "burst": 0, "default_conn_delay": 1, "key": "remote_addr"}}}))
    .unwrap_err()
    .to_string();
    assert!(err.contains("limit-conn needs conn > 0"), "{err}");
    let err = decode::<StreamRoute>(&json!({"remote_addr": "300.1.1.1"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid ip address: 300.1.1.1"), "{err}");
}

#[test]
fn ssl_objects() {
    let ssl: Ssl = decode(
        &json!({"cert": "c", "key": "k", "snis": ["A.com", "*.b.com."],
        "certs": ["c2"], "keys": ["k2"], "client": {"ca": "ca", "depth": 1e300}, "status": 0}),
    )
    .unwrap();
    assert!(!ssl.enabled());
    assert_eq!(ssl.all_snis().collect::<Vec<_>>(), ["a.com", "*.b.com"]);
    assert_eq!(ssl.pairs().count(), 2);
    assert_eq!(ssl.client.unwrap().depth, Count(u64::MAX));
    assert_eq!(ssl.kind, SslType::Server);
}

#[test]
fn decode_errors_name_the_field_only_when_there_is_one() {
    let whole = decode::<Upstream>(&json!("init_dir")).unwrap_err();
    assert!(matches!(whole, DecodeError::Object(_)), "{whole:?}");
    assert!(whole.to_string().starts_with("invalid type: "), "{whole}");
    let field = decode::<Upstream>(&json!({"retries": "3"})).unwrap_err();
    assert!(
        matches!(&field, DecodeError::Field { path, .. } if path == "retries"),
        "{field:?}"
    );
}
