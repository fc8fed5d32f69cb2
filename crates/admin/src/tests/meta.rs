use axum::http::StatusCode;
use serde_json::json;

use super::*;

#[tokio::test]
async fn plugin_list_and_schemas() {
    let h = Harness::new();
    assert_eq!(
        h.call("GET", "/apisix/admin/plugins/list?subsystem=stream", "")
            .await
            .text,
        r#"["ip-restriction","limit-conn","mqtt-proxy","prometheus","syslog"]"#
    );
    assert_eq!(
        h.call("GET", "/apisix/admin/plugins/list", "").await.text,
        "[]"
    );
    assert_eq!(
        h.call("GET", "/apisix/admin/plugins/list?subsystem=x", "")
            .await
            .text,
        "invalid subsystem passed"
    );
    let schema = h
        .call(
            "GET",
            "/apisix/admin/plugins/mqtt-proxy?subsystem=stream",
            "",
        )
        .await
        .json();
    assert_eq!(schema["required"], json!(["protocol_level"]));
    let missing = h.call("GET", "/apisix/admin/plugins/mqtt-proxy", "").await;
    assert_eq!(
        missing.text,
        r#"{"error_msg":"plugin not found in subsystem http"}"#
    );
    let route_schema = h
        .call("GET", "/apisix/admin/schema/stream_route", "")
        .await
        .json();
    assert_eq!(route_schema["additionalProperties"], false);
    let unknown = h.call("GET", "/apisix/admin/schema/route", "").await;
    assert_eq!(unknown.text, r#"{"error_msg":"not found schema: route"}"#);
    let not_found = h.call("PUT", "/apisix/admin/plugins/list", "").await;
    assert_eq!(
        (not_found.status, not_found.text.as_str()),
        (StatusCode::NOT_FOUND, r#"{"error_msg":"not found"}"#)
    );
    assert_eq!(
        h.call("PUT", "/apisix/admin/plugins/reload", "").await.text,
        "done"
    );
}

#[tokio::test]
async fn every_stream_plugin_at_once_and_unsupported_subsystems() {
    // APISIX's t/admin/plugins.t: `?all=true` lists each plugin with version, priority and
    // schema; an unknown subsystem is refused before anything else.
    let h = Harness::new();
    let all = h
        .call("GET", "/apisix/admin/plugins?all=true&subsystem=stream", "")
        .await;
    assert_eq!(all.status, StatusCode::OK);
    let all = all.json();
    let names: Vec<&String> = all.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        [
            "ip-restriction",
            "limit-conn",
            "mqtt-proxy",
            "prometheus",
            "syslog"
        ]
    );
    assert_eq!(all["mqtt-proxy"]["priority"], 1000);
    assert_eq!(all["mqtt-proxy"]["version"], 0.1);
    assert_eq!(all["limit-conn"]["schema"]["required"][0], "conn");
    let http = h.call("GET", "/apisix/admin/plugins?all=true", "").await;
    assert_eq!(http.text, "{}");
    for path in [
        "/apisix/admin/plugins?subsystem=asdf",
        "/apisix/admin/plugins/mqtt-proxy?subsystem=asdf",
        "/apisix/admin/plugins?all=true&subsystem=asdf",
    ] {
        let refused = h.call("GET", path, "").await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(
            refused.text, r#"{"error_msg":"unsupported subsystem: asdf"}"#,
            "{path}"
        );
    }
    let nameless = h
        .call("GET", "/apisix/admin/plugins?subsystem=stream", "")
        .await;
    assert_eq!(
        (nameless.status, nameless.text.as_str()),
        (
            StatusCode::NOT_FOUND,
            r#"{"error_msg":"plugin not found in subsystem stream"}"#
        )
    );
}

#[tokio::test]
async fn schema_validate_endpoint() {
    let h = Harness::new();
    let ok = h
        .call(
            "POST",
            "/apisix/admin/schema/validate/stream_routes",
            r#"{"server_port":1985}"#,
        )
        .await;
    assert_eq!((ok.status, ok.text.as_str()), (StatusCode::OK, ""));
    let bad = h
        .call(
            "POST",
            "/apisix/admin/schema/validate/upstreams",
            r#"{"nodes":{"a:1":1},"retries":-1}"#,
        )
        .await;
    assert_eq!(
        bad.text,
        r#"{"error_msg":"property \"retries\" validation failed: expected -1 to be at least 0"}"#
    );
}
