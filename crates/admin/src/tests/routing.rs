//! The router and its layers answering as APISIX does: what no route serves, the order of the
//! checks, CORS header by header, decoded paths and the request timeout.

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::channel::Channel;
use tower::ServiceExt;

use super::*;

const UPSTREAM: &str = r#"{"nodes":{"127.0.0.1:1":1}}"#;

fn header_names(reply: &Reply) -> Vec<&str> {
    let mut names: Vec<&str> = reply.headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    names
}

#[tokio::test]
async fn unrouted_methods_find_nginx_404_without_a_key() {
    let mut config = config();
    config.cors = false;
    let h = Harness::with(config);
    for (method, path) in [
        ("HEAD", "/apisix/admin/upstreams"),
        ("HEAD", "/apisix/admin/plugins/list"),
        ("OPTIONS", "/apisix/admin/upstreams/1"),
        ("TRACE", "/apisix/admin/schema/ssl"),
        ("PURGE", "/apisix/admin/upstreams"),
        ("GET", "/apisix/admin"),
        // APISIX routes only GET, PUT, POST, DELETE and PATCH to `plugins/reload`.
        ("HEAD", "/apisix/admin/plugins/reload"),
        ("TRACE", "/apisix/admin/plugins/reload"),
    ] {
        let reply = h.send(method, path, &[], "", "127.0.0.1:1").await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(
            reply.headers["content-type"], "text/html",
            "{method} {path}"
        );
        assert!(reply.headers.get("allow").is_none(), "{method} {path}");
        if method != "HEAD" {
            assert!(reply.text.contains("404 Not Found"), "{method} {path}");
        }
    }
    let reload = h.call("GET", "/apisix/admin/plugins/reload", "").await;
    assert_eq!(
        (reload.status, reload.text.as_str()),
        (
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"error_msg":"please use PUT method to reload the plugins, GET method is not allowed."}"#
        )
    );
}

#[tokio::test]
async fn checks_come_in_apisix_order() {
    let big = format!(r#"{{"desc":"{}"}}"#, "x".repeat(1_600_000));
    let mut config = config();
    config.stream_enabled = false;
    let h = Harness::with(config);
    // allow_admin, then the key, then stream mode.
    let outsider = h.send("OPTIONS", "/nowhere", &[], "", "10.0.0.1:1").await;
    assert_eq!(outsider.status, StatusCode::FORBIDDEN);
    let anonymous = h
        .send(
            "PATCH",
            "/apisix/admin/stream_routes/1",
            &[],
            &big,
            "127.0.0.1:1",
        )
        .await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    let disabled = h.call("PATCH", "/apisix/admin/stream_routes/1", &big).await;
    assert_eq!(
        disabled.json()["error_msg"],
        "stream mode is disabled, can not add stream routes"
    );

    let h = Harness::new();
    // The resource and its methods before the body, the body before its JSON, JSON before `ttl`.
    let patch = h.call("PATCH", "/apisix/admin/stream_routes/1", &big).await;
    assert_eq!(patch.status, StatusCode::METHOD_NOT_ALLOWED);
    let unknown = h.call("PUT", "/apisix/admin/routes/1", &big).await;
    assert_eq!(
        unknown.text,
        r#"{"error_msg":"Unsupported resource type: routes"}"#
    );
    let meta = h.call("PUT", "/apisix/admin/plugins/list", &big).await;
    assert_eq!(meta.text, r#"{"error_msg":"not found"}"#);
    let too_big = h.call("PUT", "/apisix/admin/upstreams/1?ttl=x", &big).await;
    assert!(too_big.json()["error_msg"]
        .as_str()
        .unwrap()
        .contains("is greater than the maximum size 1572864"));
    let bad_json = h
        .call("PUT", "/apisix/admin/upstreams/1?ttl=x", "{bad")
        .await;
    assert_eq!(bad_json.json()["req_body"], "{bad");
    let ttl = h.call("GET", "/apisix/admin/upstreams?ttl=5", "").await;
    assert_eq!(
        ttl.text,
        r#"{"error_msg":"invalid argument ttl: not supported by streamgate"}"#
    );
    // `schema/validate` reads the body before it checks the resource name.
    let validate = h
        .call("POST", "/apisix/admin/schema/validate/routes", &big)
        .await;
    assert_eq!(validate.status, StatusCode::BAD_REQUEST);
    assert_eq!(h.revision(), 0);
}

#[tokio::test]
async fn cors_headers_exactly() {
    let h = Harness::new();
    let preflight = h
        .send("OPTIONS", "/elsewhere", &[], "", "127.0.0.1:1")
        .await;
    assert_eq!(
        header_names(&preflight),
        [
            "access-control-allow-credentials",
            "access-control-allow-headers",
            "access-control-allow-methods",
            "access-control-allow-origin",
            "access-control-max-age",
            "content-length",
            "content-type",
            "server",
        ]
    );
    for (name, value) in [
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-headers", "*"),
        (
            "access-control-allow-methods",
            "POST, GET, PUT, OPTIONS, DELETE, PATCH",
        ),
        ("access-control-allow-origin", "*"),
        ("access-control-max-age", "3600"),
        ("content-length", "0"),
        ("content-type", "text/plain"),
    ] {
        assert_eq!(preflight.headers[name], value, "{name}");
    }
    for reply in [
        h.call("GET", "/apisix/admin/upstreams", "").await,
        h.call("GET", "/elsewhere", "").await,
        h.send("GET", "/apisix/admin/upstreams", &[], "", "127.0.0.1:1")
            .await,
    ] {
        for (name, value) in [
            ("access-control-allow-credentials", "true"),
            ("access-control-allow-origin", "*"),
            ("access-control-expose-headers", "*"),
            ("access-control-max-age", "3600"),
        ] {
            assert_eq!(reply.headers[name], value, "{name}");
        }
        assert!(reply.headers.get("access-control-allow-methods").is_none());
    }

    let mut config = config();
    config.cors = false;
    let h = Harness::with(config);
    let plain = h.call("GET", "/apisix/admin/upstreams", "").await;
    assert_eq!(
        header_names(&plain),
        ["content-length", "content-type", "server", "x-api-version"]
    );
}

#[tokio::test]
async fn paths_are_decoded_as_nginx_does() {
    let h = Harness::new();
    let encoded = h.call("PUT", "/apisix/%61dmin/upstreams/1", UPSTREAM).await;
    assert_eq!(encoded.status, StatusCode::CREATED, "{}", encoded.text);
    let listed = h.call("GET", "/apisix/admin/%75pstreams/", "").await;
    assert_eq!(listed.json()["total"], 1);
    let not_utf8 = h.call("GET", "/apisix/admin/x%ff/1", "").await;
    assert_eq!(
        not_utf8.text,
        r#"{"error_msg":"Unsupported resource type: x\ufffd"}"#.replace("\\ufffd", "\u{fffd}")
    );
    assert_eq!(
        h.call("GET", "/apisix/admin/upstreams/%ff", "").await.text,
        r#"{"message":"Key not found"}"#
    );
    // nginx decodes `%2F` before APISIX splits the sub-path.
    let sub = h
        .call("PATCH", "/apisix/admin/upstreams/1/labels%2Fb", r#""2""#)
        .await;
    assert_eq!(sub.json()["value"]["labels"]["b"], "2");
    let name = h
        .call(
            "GET",
            "/apisix/admin/plugins/mqtt%2Dproxy?subsystem=stream",
            "",
        )
        .await;
    assert_eq!(name.status, StatusCode::OK);
}

#[tokio::test]
async fn meta_paths_outside_their_routes() {
    let h = Harness::new();
    for (path, status, text) in [
        (
            "/apisix/admin/plugins/x/y",
            404,
            r#"{"error_msg":"not found"}"#,
        ),
        (
            "/apisix/admin/plugins/list/",
            404,
            r#"{"error_msg":"not found"}"#,
        ),
        (
            "/apisix/admin/plugins/",
            404,
            r#"{"error_msg":"plugin not found in subsystem http"}"#,
        ),
        (
            "/apisix/admin/schema",
            400,
            r#"{"error_msg":"not found schema: "}"#,
        ),
        (
            "/apisix/admin/schema/ssl/",
            400,
            r#"{"error_msg":"not found schema: ssl/"}"#,
        ),
        (
            "/apisix/admin/schema/plugins/x/y",
            400,
            r#"{"error_msg":"not found schema: plugins/x/y"}"#,
        ),
        (
            "/apisix/admin/schema/validate/upstreams",
            400,
            r#"{"error_msg":"not found schema: validate/upstreams"}"#,
        ),
        (
            "/apisix/admin/",
            404,
            r#"{"error_msg":"Unsupported resource type: "}"#,
        ),
    ] {
        let reply = h.call("GET", path, "").await;
        assert_eq!(
            (reply.status.as_u16(), reply.text.as_str()),
            (status, text),
            "{path}"
        );
    }
    let plugin_schema = h
        .call("GET", "/apisix/admin/schema/plugins/mqtt-proxy", "")
        .await;
    assert_eq!(plugin_schema.json()["required"][0], "protocol_level");
    let nameless = h.call("POST", "/apisix/admin/schema/validate/", "{}").await;
    assert_eq!(
        nameless.text,
        r#"{"error_msg":"Unsupported resource type: "}"#
    );
}

#[tokio::test(start_paused = true)]
async fn a_request_slower_than_the_timeout_gets_408() {
    let h = Harness::new();
    // The body never comes; paused time runs to the timeout at once.
    let (_sender, body) = Channel::<Bytes>::new(1);
    let mut request = Request::builder()
        .method("PUT")
        .uri("/apisix/admin/upstreams/1")
        .header("x-api-key", KEY)
        .body(Body::new(body))
        .unwrap();
    let from: SocketAddr = "127.0.0.1:1".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(from));
    let response = router(h.state.clone()).oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&bytes[..], br#"{"error_msg":"request timed out"}"#);
}
