use axum::http::StatusCode;
use serde_json::json;

use super::*;

const ROUTE: &str =
    r#"{"remote_addr":"127.0.0.1","upstream":{"nodes":{"127.0.0.1:8080":1},"type":"roundrobin"}}"#;

#[tokio::test]
async fn put_creates_then_replaces_keeping_create_time() {
    let h = Harness::new();
    let first = h.call("PUT", "/apisix/admin/stream_routes/1", ROUTE).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let body = first.json();
    assert_eq!(body["key"], "/apisix/stream_routes/1");
    let value = &body["value"];
    assert_eq!(value["id"], "1");
    assert_eq!(
        value["upstream"],
        json!({"nodes": {"127.0.0.1:8080": 1}, "type": "roundrobin"})
    );
    // No schema defaults are written.
    assert_eq!(value.as_object().unwrap().len(), 5, "{value}");
    let created = value["create_time"].as_u64().unwrap();

    let second = h.call("PUT", "/apisix/admin/stream_routes/1", ROUTE).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        second.json()["value"]["create_time"].as_u64().unwrap(),
        created
    );

    let got = h
        .call("GET", "/apisix/admin/stream_routes/1", "")
        .await
        .json();
    assert_eq!(got["createdIndex"], 1);
    assert_eq!(got["modifiedIndex"], 2);
    assert_eq!(got["value"]["remote_addr"], "127.0.0.1");
}

#[tokio::test]
async fn post_generates_twenty_digit_ids() {
    let h = Harness::new();
    let posted = h
        .call(
            "POST",
            "/apisix/admin/upstreams",
            r#"{"nodes":{"127.0.0.1:1":1}}"#,
        )
        .await;
    assert_eq!(posted.status, StatusCode::CREATED);
    let id = posted.json()["value"]["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 20);
    assert!(id.chars().all(|c| c.is_ascii_digit()));
    assert_eq!(posted.json()["key"], format!("/apisix/upstreams/{id}"));
    let again = h
        .call(
            "POST",
            "/apisix/admin/upstreams",
            r#"{"nodes":{"127.0.0.1:1":1}}"#,
        )
        .await;
    assert!(again.json()["value"]["id"].as_str().unwrap() > id.as_str());
    let with_id = h
        .call(
            "POST",
            "/apisix/admin/upstreams",
            r#"{"id":"3","nodes":{"a:1":1}}"#,
        )
        .await;
    assert_eq!(
        with_id.text,
        r#"{"error_msg":"wrong upstream id, do not need it"}"#
    );
}

#[tokio::test]
async fn missing_and_delete() {
    let h = Harness::new();
    let missing = h.call("GET", "/apisix/admin/upstreams/9", "").await;
    assert_eq!(
        (missing.status, missing.text.as_str()),
        (StatusCode::NOT_FOUND, r#"{"message":"Key not found"}"#)
    );
    assert_eq!(
        h.call("DELETE", "/apisix/admin/upstreams/9", "")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    h.call(
        "PUT",
        "/apisix/admin/upstreams/9",
        r#"{"nodes":{"127.0.0.1:1":1}}"#,
    )
    .await;
    let deleted = h.call("DELETE", "/apisix/admin/upstreams/9", "").await;
    assert_eq!(
        deleted.text,
        r#"{"deleted":"1","key":"/apisix/upstreams/9"}"#
    );
    let no_id = h.call("DELETE", "/apisix/admin/upstreams", "").await;
    assert_eq!(no_id.text, r#"{"error_msg":"missing upstream id"}"#);
}

#[tokio::test]
async fn list_with_filters_and_pages() {
    let h = Harness::new();
    assert_eq!(
        h.call("GET", "/apisix/admin/upstreams", "").await.text,
        r#"{"list":[],"total":0}"#
    );
    for i in 1..=12 {
        let body = json!({"name": format!("up-{i}"), "labels": {"tier": if i % 2 == 0 {"even"} else {"odd"}},
                          "nodes": {"127.0.0.1:1": 1}});
        h.call(
            "PUT",
            &format!("/apisix/admin/upstreams/{i}"),
            &body.to_string(),
        )
        .await;
    }
    let all = h.call("GET", "/apisix/admin/upstreams", "").await.json();
    assert_eq!(all["total"], 12);
    assert!(all["list"][0]["createdIndex"].is_u64());
    let named = h
        .call("GET", "/apisix/admin/upstreams?name=up-1[0-2]", "")
        .await
        .json();
    assert_eq!(named["total"], 3);
    let page2 = h
        .call("GET", "/apisix/admin/upstreams?page=2&page_size=10", "")
        .await
        .json();
    assert_eq!(page2["total"], 12);
    let ids: Vec<_> = page2["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"]["id"].clone())
        .collect();
    assert_eq!(ids, [json!("11"), json!("12")]);
    let bad = h
        .call("GET", "/apisix/admin/upstreams?page=1&page_size=5", "")
        .await;
    assert_eq!(
        (bad.status, bad.text.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "page_size must be between 10 and 500"
        )
    );
    let labelled = h
        .call("GET", "/apisix/admin/upstreams?label=tier", "")
        .await
        .json();
    assert_eq!(labelled["total"], 12);
    let none = h
        .call("GET", "/apisix/admin/upstreams?label=zone", "")
        .await
        .json();
    assert_eq!(none["total"], 0);
}

#[tokio::test]
async fn route_filter_by_upstream_id() {
    let h = Harness::new();
    h.call(
        "PUT",
        "/apisix/admin/upstreams/1",
        r#"{"nodes":{"127.0.0.1:1":1}}"#,
    )
    .await;
    h.call(
        "PUT",
        "/apisix/admin/stream_routes/a",
        r#"{"upstream_id":"1"}"#,
    )
    .await;
    h.call("PUT", "/apisix/admin/stream_routes/b", ROUTE).await;
    let filtered = h
        .call(
            "GET",
            "/apisix/admin/stream_routes?filter=upstream_id%3D1",
            "",
        )
        .await
        .json();
    assert_eq!(filtered["total"], 1);
    assert_eq!(filtered["list"][0]["value"]["id"], "a");
}

#[tokio::test]
async fn bad_bodies_leave_the_store_alone() {
    let h = Harness::new();
    let cases: &[(&str, &str, &str)] = &[
        ("PUT", "/apisix/admin/stream_routes/1", ""),
        ("PUT", "/apisix/admin/stream_routes/1", "{bad"),
        ("PUT", "/apisix/admin/stream_routes", "{}"),
        ("PUT", "/apisix/admin/stream_routes/1", r#"{"id":"2"}"#),
        (
            "PUT",
            "/apisix/admin/stream_routes/1",
            r#"{"create_time":1}"#,
        ),
        (
            "PUT",
            "/apisix/admin/stream_routes/1",
            r#"{"upstream":{"nodes":{"a:1":1},"update_time":1}}"#,
        ),
        (
            "PUT",
            "/apisix/admin/stream_routes/1",
            r#"{"upstream_id":"404"}"#,
        ),
        (
            "PUT",
            "/apisix/admin/stream_routes/1",
            r#"{"plugins":{"nope":{}}}"#,
        ),
        ("PUT", "/apisix/admin/stream_routes/*bad", "{}"),
        (
            "PUT",
            "/apisix/admin/upstreams/1?ttl=abc",
            r#"{"nodes":{"a:1":1}}"#,
        ),
    ];
    let expected = [
        r#"{"error_msg":"missing configurations"}"#,
        "",
        r#"{"error_msg":"missing stream route id"}"#,
        r#"{"error_msg":"wrong stream route id"}"#,
        r#"{"error_msg":"the property is forbidden:  create_time"}"#,
        r#"{"error_msg":"the property is forbidden:  upstream.update_time"}"#,
        r#"{"error_msg":"failed to fetch upstream info by upstream id [404], response code: 404"}"#,
        r#"{"error_msg":"unknown plugin [nope]"}"#,
        r#"{"error_msg":"invalid configuration: property \"id\" validation failed: object matches none of the required"}"#,
        r#"{"error_msg":"invalid argument ttl: should be a number"}"#,
    ];
    for ((method, path, body), want) in cases.iter().zip(expected) {
        let reply = h.call(method, path, body).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path} {body}");
        if want.is_empty() {
            assert!(reply.json()["error_msg"]
                .as_str()
                .unwrap()
                .starts_with("invalid request body: "));
            assert_eq!(reply.json()["req_body"], "{bad");
        } else {
            assert_eq!(reply.text, want, "{path} {body}");
        }
    }
    assert_eq!(h.revision(), 0);
}

#[tokio::test]
async fn oversized_body_is_refused() {
    let h = Harness::new();
    let big = format!(r#"{{"desc":"{}"}}"#, "x".repeat(1_678_000));
    let reply = h.call("PUT", "/apisix/admin/upstreams/1", &big).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply.json()["error_msg"],
        format!("invalid request body: request size {} is greater than the maximum size 1572864 allowed", big.len())
    );
}

#[tokio::test]
async fn stream_mode_disabled() {
    let mut config = config();
    config.stream_enabled = false;
    let h = Harness::with(config);
    let reply = h.call("GET", "/apisix/admin/stream_routes", "").await;
    assert_eq!(
        reply.text,
        r#"{"error_msg":"stream mode is disabled, can not add stream routes"}"#
    );
}

#[tokio::test]
async fn patch_merges_and_sets_sub_paths() {
    let h = Harness::new();
    h.call(
        "PUT",
        "/apisix/admin/upstreams/1",
        r#"{"nodes":{"127.0.0.1:1":1,"127.0.0.1:2":1},"desc":"d","labels":{"a":"1"}}"#,
    )
    .await;
    let merged = h
        .call(
            "PATCH",
            "/apisix/admin/upstreams/1",
            r#"{"nodes":{"127.0.0.1:2":null,"127.0.0.1:3":5},"desc":null}"#,
        )
        .await;
    assert_eq!(merged.status, StatusCode::OK);
    let value = merged.json()["value"].clone();
    assert_eq!(value["nodes"], json!({"127.0.0.1:1": 1, "127.0.0.1:3": 5}));
    assert!(value.get("desc").is_none());
    // APISIX's t/admin/upstream.t, "patch upstream(whole - sub path)": a trailing slash still
    // names the whole object.
    let whole = h
        .call(
            "PATCH",
            "/apisix/admin/upstreams/1/",
            r#"{"nodes":{"127.0.0.1:8080":1},"type":"roundrobin"}"#,
        )
        .await;
    assert_eq!(whole.status, StatusCode::OK, "{}", whole.text);
    assert_eq!(
        whole.json()["value"]["nodes"],
        json!({"127.0.0.1:1": 1, "127.0.0.1:3": 5, "127.0.0.1:8080": 1})
    );
    let sub = h
        .call("PATCH", "/apisix/admin/upstreams/1/labels/b", r#""2""#)
        .await;
    assert_eq!(sub.json()["value"]["labels"], json!({"a": "1", "b": "2"}));
    let bad_sub = h
        .call("PATCH", "/apisix/admin/upstreams/1/labels/a/x", "1")
        .await;
    assert_eq!(
        bad_sub.text,
        r#"{"error_msg":"invalid sub-path: /labels/a"}"#
    );
    let invalid = h
        .call("PATCH", "/apisix/admin/upstreams/1", r#"{"retries":-1}"#)
        .await;
    assert_eq!(
        invalid.text,
        r#"{"error_msg":"invalid configuration: property \"retries\" validation failed: expected -1 to be at least 0"}"#
    );
    let missing = h
        .call("PATCH", "/apisix/admin/upstreams/2", r#"{"desc":"x"}"#)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let route = h.call("PATCH", "/apisix/admin/stream_routes/1", "{}").await;
    assert_eq!(
        (route.status, route.text.as_str()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            "{\"error_msg\":\"not supported `PATCH` method for stream route\"}"
        )
    );
}

#[tokio::test]
async fn ssl_keys_are_encrypted_and_hidden() {
    let h = Harness::new();
    let (cert, key) = cert_pair("test.com");
    let body = json!({"cert": cert, "key": key, "snis": ["test.com"]}).to_string();
    let put = h.call("PUT", "/apisix/admin/ssls/1", &body).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.text);
    let stored_key = put.json()["value"]["key"].as_str().unwrap().to_owned();
    assert!(!stored_key.starts_with("---"));
    assert_eq!(Keyring::apisix_default().decrypt(&stored_key).unwrap(), key);
    let got = h.call("GET", "/apisix/admin/ssls/1", "").await.json();
    assert!(got["value"].get("key").is_none());
    assert_eq!(got["value"]["cert"], cert);
    let listed = h.call("GET", "/apisix/admin/ssls", "").await.json();
    assert!(listed["list"][0]["value"].get("key").is_none());
    // PATCH without the key keeps the stored (encrypted) key valid.
    let patched = h
        .call(
            "PATCH",
            "/apisix/admin/ssls/1",
            r#"{"snis":["a.test.com"]}"#,
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.text);
    assert_eq!(patched.json()["value"]["key"], stored_key);

    let (_, other_key) = cert_pair("other.com");
    let mismatch = json!({"cert": cert, "key": other_key, "sni": "test.com"}).to_string();
    let refused = h.call("PUT", "/apisix/admin/ssls/2", &mismatch).await;
    assert_eq!(
        refused.text,
        r#"{"error_msg":"the private key does not match the certificate"}"#
    );
}
