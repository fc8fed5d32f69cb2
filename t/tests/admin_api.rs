//! The Admin API of the built binary, driven over HTTP as curl would: the checklist of
//! `spec/apisix-admin-api.md` §6, roles and `allow_admin`.

use serde_json::json;
use sg_blackbox::{cert_pair, free_port, shipped_config, Gateway, VIEWER_KEY};

const ROUTE: &str =
    r#"{"remote_addr":"127.0.0.1","upstream":{"nodes":{"127.0.0.1:8080":1},"type":"roundrobin"}}"#;

#[test]
fn auth_precedence_and_401_bodies() {
    let gw = Gateway::start().unwrap();
    let path = "/apisix/admin/stream_routes";
    let missing = gw.request("GET", path, &[], "");
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.json(),
        json!({"error_msg": "failed to check token", "description": "missing apikey"})
    );
    let wrong = gw.request("GET", path, &[("X-API-KEY", "x")], "");
    assert_eq!(wrong.json()["description"], "wrong apikey");
    let query_wins = gw.request(
        "GET",
        &format!("{path}?api_key=bad"),
        &[("X-API-KEY", sg_blackbox::ADMIN_KEY)],
        "",
    );
    assert_eq!(query_wins.json()["description"], "wrong apikey");
    let header_wins = gw.request(
        "GET",
        path,
        &[
            ("X-API-KEY", sg_blackbox::ADMIN_KEY),
            ("Cookie", "x_api_key=bad"),
        ],
        "",
    );
    assert_eq!(header_wins.status, 200);
    let cookie = gw.request(
        "GET",
        path,
        &[("Cookie", &format!("x_api_key={}", sg_blackbox::ADMIN_KEY))],
        "",
    );
    assert_eq!(cookie.status, 200);
    assert_eq!(cookie.header("x-api-version"), Some("v3"));
}

#[test]
fn envelopes_and_status_codes() {
    let gw = Gateway::start().unwrap();
    let created = gw.admin("PUT", "/apisix/admin/stream_routes/1", ROUTE);
    assert_eq!(created.status, 201);
    let value = created.json()["value"].clone();
    assert_eq!(created.json()["key"], "/apisix/stream_routes/1");
    assert_eq!(value["id"], "1");
    let mut expected = serde_json::from_str::<serde_json::Value>(ROUTE).unwrap();
    expected["id"] = json!("1");
    expected["create_time"] = value["create_time"].clone();
    expected["update_time"] = value["update_time"].clone();
    assert_eq!(
        value, expected,
        "stored value is the body plus id and times, nothing else"
    );

    let replaced = gw.admin("PUT", "/apisix/admin/stream_routes/1", ROUTE);
    assert_eq!(replaced.status, 200);
    assert_eq!(
        replaced.json()["value"]["create_time"],
        value["create_time"]
    );

    let got = gw.admin("GET", "/apisix/admin/stream_routes/1", "").json();
    assert!(got["createdIndex"].as_u64().unwrap() < got["modifiedIndex"].as_u64().unwrap());
    let listed = gw.admin("GET", "/apisix/admin/stream_routes", "").json();
    assert_eq!(listed["total"], 1);
    assert_eq!(listed["list"][0]["key"], "/apisix/stream_routes/1");

    let posted = gw.admin("POST", "/apisix/admin/stream_routes", ROUTE);
    assert_eq!(posted.status, 201);
    let id = posted.json()["value"]["id"].as_str().unwrap().to_owned();
    assert!(
        id.len() == 20 && id.bytes().all(|b| b.is_ascii_digit()),
        "{id}"
    );

    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/stream_routes/1", "")
            .json(),
        json!({"deleted": "1", "key": "/apisix/stream_routes/1"})
    );
    let gone = gw.admin("GET", "/apisix/admin/stream_routes/1", "");
    assert_eq!(
        (gone.status, gone.json()),
        (404, json!({"message": "Key not found"}))
    );
    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/stream_routes/1", "")
            .status,
        404
    );
}

#[test]
fn forbidden_times_patch_and_references() {
    let gw = Gateway::start().unwrap();
    let times = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"create_time":1}"#,
    );
    assert_eq!(
        (times.status, times.json()["error_msg"].as_str()),
        (400, Some("the property is forbidden:  create_time"))
    );
    let patch = gw.admin("PATCH", "/apisix/admin/stream_routes/1", "{}");
    assert_eq!(patch.status, 405);
    assert_eq!(
        patch.json()["error_msg"],
        "not supported `PATCH` method for stream route"
    );
    let dangling = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"upstream_id":"7"}"#,
    );
    assert_eq!(
        dangling.json()["error_msg"],
        "failed to fetch upstream info by upstream id [7], response code: 404"
    );
    let plugin = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"plugins":{"zipkin":{}}}"#,
    );
    assert_eq!(plugin.json()["error_msg"], "unknown plugin [zipkin]");
    let syslog = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"plugins":{"syslog":{"host":"127.0.0.1","port":514,"sock_type":"tls"}}}"#,
    );
    assert_eq!(
        syslog.json()["error_msg"],
        "failed to check the configuration of stream plugin [syslog]: property \"sock_type\" validation failed: matches none of the enum values"
    );
    let limit = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"plugins":{"limit-conn":{"conn":1}}}"#,
    );
    assert_eq!(
        limit.json()["error_msg"],
        "failed to check the configuration of stream plugin [limit-conn]: property \"burst\" is required"
    );
    let schema = gw.admin(
        "PUT",
        "/apisix/admin/stream_routes/1",
        r#"{"remote_addr":"1.2.3"}"#,
    );
    assert_eq!(schema.json()["error_msg"],
        "invalid configuration: property \"remote_addr\" validation failed: object matches none of the required");

    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/upstreams/7",
            r#"{"type":"chash","key":"mqtt_client_id","nodes":{"127.0.0.1:1883":1}}"#
        )
        .status,
        201
    );
    assert_eq!(
        gw.admin(
            "PUT",
            "/apisix/admin/stream_routes/1",
            r#"{"upstream_id":"7"}"#
        )
        .status,
        201
    );
    let merged = gw.admin(
        "PATCH",
        "/apisix/admin/upstreams/7",
        r#"{"nodes":{"127.0.0.2:1883":1}}"#,
    );
    assert_eq!(
        merged.json()["value"]["nodes"],
        json!({"127.0.0.1:1883": 1, "127.0.0.2:1883": 1})
    );
    let sub = gw.admin(
        "PATCH",
        "/apisix/admin/upstreams/7/nodes",
        r#"{"127.0.0.3:1883":2}"#,
    );
    assert_eq!(sub.json()["value"]["nodes"], json!({"127.0.0.3:1883": 2}));
    // APISIX does not check stream routes when an upstream is deleted.
    assert_eq!(
        gw.admin("DELETE", "/apisix/admin/upstreams/7", "").status,
        200
    );
    // Nothing refused above changed the store: route 1 is the one accepted write.
    assert_eq!(
        gw.admin("GET", "/apisix/admin/stream_routes", "").json()["total"],
        1
    );
}

#[test]
fn ssl_keys_encrypted_at_rest_and_never_returned() {
    let gw = Gateway::start().unwrap();
    let (cert, key) = cert_pair("mqtt.example.com");
    let body = json!({"cert": cert, "key": key, "snis": ["mqtt.example.com"]}).to_string();
    let put = gw.admin("PUT", "/apisix/admin/ssls/1", &body);
    assert_eq!(put.status, 201, "{}", put.body);
    let sealed = put.json()["value"]["key"].as_str().unwrap().to_owned();
    assert!(!sealed.contains("PRIVATE KEY"));
    assert!(gw.admin("GET", "/apisix/admin/ssls/1", "").json()["value"]
        .get("key")
        .is_none());
    let (_, other) = cert_pair("other");
    let mismatch = json!({"cert": cert, "key": other, "sni": "mqtt.example.com"}).to_string();
    let refused = gw.admin("PUT", "/apisix/admin/ssls/2", &mismatch);
    assert_eq!(
        (refused.status, refused.json()["error_msg"].as_str()),
        (400, Some("the private key does not match the certificate"))
    );
    let db = std::fs::read(gw.dir.path().join("data/streamgate.db")).unwrap();
    let needle = b"PRIVATE KEY";
    assert!(
        !db.windows(needle.len()).any(|w| w == needle),
        "a private key reached the disk in clear"
    );
}

#[test]
fn viewer_role_and_plugin_endpoints() {
    let admin_port = free_port();
    let config = shipped_config(admin_port, free_port()).replace(
        "        role: admin\n",
        &format!("        role: admin\n      - name: viewer\n        key: {VIEWER_KEY}\n        role: viewer\n"),
    );
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let viewer = [("X-API-KEY", VIEWER_KEY)];
    assert_eq!(
        gw.request("GET", "/apisix/admin/upstreams", &viewer, "")
            .status,
        200
    );
    let put = gw.request(
        "PUT",
        "/apisix/admin/upstreams/1",
        &viewer,
        r#"{"nodes":{"127.0.0.1:1":1}}"#,
    );
    assert_eq!(
        put.json(),
        json!({"error_msg": "failed to check token", "description": "invalid method for role viewer"})
    );
    let list = gw.admin("GET", "/apisix/admin/plugins/list?subsystem=stream", "");
    assert_eq!(
        list.json(),
        json!([
            "ip-restriction",
            "limit-conn",
            "mqtt-proxy",
            "prometheus",
            "syslog"
        ])
    );
    let schema = gw.admin("GET", "/apisix/admin/schema/upstream", "").json();
    assert_eq!(schema["additionalProperties"], false);
    let validate = gw.admin(
        "POST",
        "/apisix/admin/schema/validate/stream_routes",
        r#"{"plugins":1}"#,
    );
    assert_eq!(
        validate.json()["error_msg"],
        "property \"plugins\" validation failed: wrong type: expected object, got number"
    );
    let options = gw.request("OPTIONS", "/apisix/admin/upstreams", &[], "");
    assert_eq!(
        (
            options.status,
            options.header("access-control-allow-origin")
        ),
        (200, Some("*"))
    );
}

#[test]
fn allow_admin_refuses_other_clients() {
    let admin_port = free_port();
    let config =
        shipped_config(admin_port, free_port()).replace("- 127.0.0.0/24", "- 127.0.0.2/32");
    let gw = Gateway::start_with(&config, admin_port);
    // The readiness probe itself is refused with 403, which still proves the server is up.
    let gw = gw.unwrap();
    let denied = gw.admin("GET", "/apisix/admin/upstreams", "");
    assert_eq!(denied.status, 403);
    assert!(denied.body.contains("403 Forbidden"));
}

#[test]
fn stream_mode_disabled_refuses_stream_routes() {
    let admin_port = free_port();
    let config =
        shipped_config(admin_port, free_port()).replace("proxy_mode: stream", "proxy_mode: http");
    let gw = Gateway::start_with(&config, admin_port).unwrap();
    let reply = gw.admin("PUT", "/apisix/admin/stream_routes/1", ROUTE);
    assert_eq!(
        (reply.status, reply.json()["error_msg"].as_str()),
        (
            400,
            Some("stream mode is disabled, can not add stream routes")
        )
    );
}
