use serde_json::json;

use super::schemas;

fn route_err(v: serde_json::Value) -> String {
    schemas().stream_route.validate(&v).unwrap_err()
}

#[test]
fn valid_route_passes() {
    let route = json!({"remote_addr": "127.0.0.1", "server_port": 1985,
        "upstream": {"type": "chash", "key": "mqtt_client_id",
                     "nodes": [{"host": "127.0.0.1", "port": 1995, "weight": 1}]}});
    assert_eq!(schemas().stream_route.validate(&route), Ok(()));
    let cidr = json!({"remote_addr": "127.0.0.1/26", "server_addr": "::1"});
    assert_eq!(schemas().stream_route.validate(&cidr), Ok(()));
}

#[test]
fn messages_follow_apisix_grammar() {
    assert_eq!(
        route_err(json!({"id": "*invalid"})),
        "property \"id\" validation failed: object matches none of the required"
    );
    assert_eq!(
        route_err(json!({"remote_addr": "127.0.0.x"})),
        "property \"remote_addr\" validation failed: object matches none of the required"
    );
    assert_eq!(
        route_err(json!({"upstream": {"nodes": {"a:1": 1}, "retries": -1}})),
        "property \"upstream\" validation failed: property \"retries\" validation failed: expected -1 to be at least 0"
    );
    assert_eq!(
        route_err(json!({"status": 1})),
        "additional properties forbidden, found status"
    );
    assert_eq!(
        route_err(json!({"server_port": 1.5})),
        "property \"server_port\" validation failed: wrong type: expected integer, got number"
    );
    assert_eq!(
        route_err(json!({"name": ""})),
        "property \"name\" validation failed: string too short, expected at least 1, got 0"
    );
}

#[test]
fn upstream_messages() {
    let up = &schemas().upstream;
    assert_eq!(
        up.validate(&json!({"type": "roundrobin"})).unwrap_err(),
        "value should match only one schema, but matches none"
    );
    assert_eq!(
        up.validate(&json!({"nodes": {"a:1": 1}, "service_name": "s", "discovery_type": "dns"}))
            .unwrap_err(),
        "value should match only one schema, but matches both schemas 1 and 2"
    );
    assert_eq!(
        up.validate(&json!({"nodes": {"a:1": 1}, "timeout": {"connect": 0, "send": 1, "read": 1}}))
            .unwrap_err(),
        "property \"timeout\" validation failed: property \"connect\" validation failed: expected 0 to be greater than 0"
    );
    assert_eq!(
        up.validate(&json!({"nodes": {"a:1": 1}, "labels": {"env": {}}})).unwrap_err(),
        "property \"labels\" validation failed: failed to validate env (matching \".*\"): wrong type: expected string, got table"
    );
    assert_eq!(
        up.validate(&json!({"nodes": {"a:1": 1}, "checks": {"active": {"healthy": {"successes": 255}}}}))
            .unwrap_err(),
        "property \"checks\" validation failed: property \"active\" validation failed: property \"healthy\" validation failed: property \"successes\" validation failed: expected 255 to be at most 254"
    );
    assert_eq!(
        up.validate(&json!({"nodes": {"a:1": 1},
            "checks": {"active": {"healthy": {"http_statuses": [200, 600]}}}}))
            .unwrap_err(),
        "property \"checks\" validation failed: property \"active\" validation failed: property \"healthy\" validation failed: property \"http_statuses\" validation failed: failed to validate item 2: expected 600 to be at most 599"
    );
}

#[test]
fn ssl_then_clause() {
    let ssl = &schemas().ssl;
    let cert = "c".repeat(128);
    let key = "k".repeat(64);
    assert_eq!(
        ssl.validate(&json!({"cert": cert, "key": key}))
            .unwrap_err(),
        "then clause did not match"
    );
    assert_eq!(
        ssl.validate(&json!({"cert": cert, "key": key, "sni": "a.com", "snis": ["b.com"]}))
            .unwrap_err(),
        "then clause did not match"
    );
    assert_eq!(
        ssl.validate(&json!({"cert": cert, "key": key, "sni": "*.a.com"})),
        Ok(())
    );
    assert_eq!(
        ssl.validate(&json!({"type": "client", "cert": cert, "key": key})),
        Ok(())
    );
}

#[test]
fn mqtt_proxy_requires_level() {
    let plugin = &schemas().mqtt_proxy;
    assert_eq!(
        plugin
            .validate(&json!({"protocol_name": "MQTT"}))
            .unwrap_err(),
        "property \"protocol_level\" is required"
    );
    assert_eq!(plugin.validate(&json!({"protocol_level": 4})), Ok(()));
    assert_eq!(
        plugin.validate(&json!({"protocol_level": 4, "upstream": {"host": "h", "port": 1}})),
        Ok(())
    );
}

#[test]
fn ip_restriction_and_limit_conn() {
    let ip = &schemas().ip_restriction;
    assert_eq!(
        ip.validate(&json!({"whitelist": ["127.0.0.1", "10.0.0.0/8", "::1"]})),
        Ok(())
    );
    assert_eq!(
        ip.validate(&json!({})).unwrap_err(),
        "value should match only one schema, but matches none"
    );
    assert_eq!(
        ip.validate(&json!({"blacklist": []})).unwrap_err(),
        "property \"blacklist\" validation failed: expect array to have at least 1 items"
    );
    let limit = &schemas().limit_conn;
    assert_eq!(
        limit.validate(
            &json!({"conn": 1, "burst": 0, "default_conn_delay": 0.1, "key": "remote_addr"})
        ),
        Ok(())
    );
    assert_eq!(
        limit
            .validate(&json!({"conn": 0, "burst": 0, "default_conn_delay": 0.1, "key": "x"}))
            .unwrap_err(),
        "property \"conn\" validation failed: expected 0 to be greater than 0"
    );
}

#[test]
fn messages_of_apisix_validator_for_types_dependencies_and_alternatives() {
    let up = &schemas().upstream;
    let err = |v: serde_json::Value| up.validate(&v).unwrap_err();
    // Lua's type(): every number is a number.
    assert_eq!(
        err(json!({"nodes": {"a:1": 1}, "key": 1})),
        "property \"key\" validation failed: wrong type: expected string, got number"
    );
    // The branches' required lists end an anyOf failure.
    assert_eq!(
        err(json!({"nodes": {"a:1": 1}, "checks": {"passive": {"type": "tcp"}}})),
        "property \"checks\" validation failed: object matches none of the required: [\"active\"] or [\"active\",\"passive\"]"
    );
    // Dependencies, as a list and as a schema.
    let pem = "x".repeat(128);
    assert_eq!(
        err(json!({"nodes": {"a:1": 1}, "tls": {"client_cert": pem}})),
        "property \"tls\" validation failed: property \"client_key\" is required when client_cert is set"
    );
    assert_eq!(
        err(json!({"nodes": {"a:1": 1}, "tls": {"client_cert_id": 1, "client_cert": pem,
                                               "client_key": pem}})),
        "property \"tls\" validation failed: failed to validate dependent schema for client_cert_id: value wasn't supposed to match schema"
    );
}

#[test]
fn syslog_schema_as_apisix_wraps_it() {
    let syslog = &schemas().syslog;
    assert_eq!(
        syslog.validate(
            &json!({"host": "127.0.0.1", "port": 514, "sock_type": "udp",
            "batch_max_size": 1, "log_format": {"client_ip": "$remote_addr"}})
        ),
        Ok(())
    );
    let err = |v: serde_json::Value| syslog.validate(&v).unwrap_err();
    assert_eq!(err(json!({"port": 514})), "property \"host\" is required");
    assert_eq!(
        err(json!({"host": "h", "port": 514, "sock_type": "tls"})),
        "property \"sock_type\" validation failed: matches none of the enum values"
    );
    assert_eq!(
        err(json!({"host": "h", "port": 514, "pool_size": 4})),
        "property \"pool_size\" validation failed: expected 4 to be at least 5"
    );
    assert_eq!(
        err(json!({"host": "h", "port": 514, "inactive_timeout": 0})),
        "property \"inactive_timeout\" validation failed: expected 0 to be at least 1"
    );
    assert_eq!(
        err(json!({"host": "h", "port": 514, "log_format": "$remote_addr"})),
        "property \"log_format\" validation failed: wrong type: expected object, got string"
    );
    assert_eq!(
        syslog.document["properties"]["name"]["default"],
        "stream sys logger"
    );
}
