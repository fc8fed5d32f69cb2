use axum::http::StatusCode;

use super::*;

const PATH: &str = "/apisix/admin/upstreams";

#[tokio::test]
async fn token_sources_and_401_bodies() {
    let h = Harness::new();
    let none = h.send("GET", PATH, &[], "", "127.0.0.1:1").await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        none.text,
        r#"{"error_msg":"failed to check token","description":"missing apikey"}"#
    );
    let wrong = h
        .send("GET", PATH, &[("x-api-key", "nope")], "", "127.0.0.1:1")
        .await;
    assert_eq!(wrong.json()["description"], "wrong apikey");
    let by_query = h
        .send(
            "GET",
            &format!("{PATH}?API_KEY={KEY}"),
            &[],
            "",
            "127.0.0.1:1",
        )
        .await;
    assert_eq!(by_query.status, StatusCode::OK);
    let by_cookie = h
        .send(
            "GET",
            PATH,
            &[("cookie", &format!("a=b; x_api_key={KEY}"))],
            "",
            "127.0.0.1:1",
        )
        .await;
    assert_eq!(by_cookie.status, StatusCode::OK);
    // The query argument wins over the header.
    let precedence = h
        .send(
            "GET",
            &format!("{PATH}?api_key=bad"),
            &[("x-api-key", KEY)],
            "",
            "127.0.0.1:1",
        )
        .await;
    assert_eq!(precedence.json()["description"], "wrong apikey");
}

#[tokio::test]
async fn viewer_reads_only() {
    let h = Harness::new();
    let get = h
        .send("GET", PATH, &[("x-api-key", VIEWER)], "", "127.0.0.1:1")
        .await;
    assert_eq!(get.status, StatusCode::OK);
    let put = h
        .send(
            "PUT",
            &format!("{PATH}/1"),
            &[("x-api-key", VIEWER)],
            r#"{"nodes":{"127.0.0.1:1":1}}"#,
            "127.0.0.1:1",
        )
        .await;
    assert_eq!(put.status, StatusCode::UNAUTHORIZED);
    assert_eq!(put.json()["description"], "invalid method for role viewer");
    assert_eq!(h.revision(), 0);
}

#[tokio::test]
async fn key_not_required() {
    let mut config = config();
    config.key_required = false;
    let h = Harness::with(config);
    assert_eq!(
        h.send("GET", PATH, &[], "", "127.0.0.1:1").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn allow_admin_gives_nginx_403() {
    let h = Harness::new();
    let denied = h
        .send("GET", PATH, &[("x-api-key", KEY)], "", "127.0.1.1:1")
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.text.contains("403 Forbidden"));
    let mapped = h
        .send(
            "GET",
            PATH,
            &[("x-api-key", KEY)],
            "",
            "[::ffff:127.0.0.9]:1",
        )
        .await;
    assert_eq!(mapped.status, StatusCode::OK);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let h = Harness::new();
    let pre = h
        .send("OPTIONS", "/apisix/admin/anything", &[], "", "127.0.0.1:1")
        .await;
    assert_eq!(pre.status, StatusCode::OK);
    assert_eq!(pre.text, "");
    assert_eq!(
        pre.headers["access-control-allow-methods"],
        "POST, GET, PUT, OPTIONS, DELETE, PATCH"
    );
    let get = h.call("GET", PATH, "").await;
    assert_eq!(get.headers["access-control-allow-origin"], "*");
    assert_eq!(get.headers["access-control-expose-headers"], "*");
    assert_eq!(get.headers["x-api-version"], "v3");
    assert_eq!(get.headers["content-type"], "application/json");
}

#[tokio::test]
async fn head_needs_no_key_and_unknown_paths_are_404() {
    let h = Harness::new();
    assert_eq!(
        h.send("HEAD", "/apisix/admin", &[], "", "127.0.0.1:1")
            .await
            .status,
        StatusCode::OK
    );
    let other = h.call("GET", "/elsewhere", "").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.text.contains("404 Not Found"));
    let unknown = h.call("GET", "/apisix/admin/routes", "").await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        unknown.text,
        r#"{"error_msg":"Unsupported resource type: routes"}"#
    );
}

/// Every route the Admin API serves, with every method it routes.
fn every_route() -> Vec<(&'static str, String)> {
    let mut routes = Vec::new();
    for resource in ["stream_routes", "upstreams", "ssls"] {
        for path in [
            format!("/apisix/admin/{resource}"),
            format!("/apisix/admin/{resource}/1"),
            format!("/apisix/admin/{resource}/1/desc"),
        ] {
            for method in ["GET", "PUT", "POST", "PATCH", "DELETE"] {
                routes.push((method, path.clone()));
            }
        }
    }
    for path in [
        "/apisix/admin/plugins/list",
        "/apisix/admin/plugins/mqtt-proxy",
        "/apisix/admin/schema/ssl",
        "/apisix/admin/schema/plugins/mqtt-proxy",
        "/apisix/admin/plugins/reload",
        "/apisix/admin/schema/validate/stream_routes",
        "/apisix/admin/unknown/1",
    ] {
        for method in ["GET", "PUT", "POST", "PATCH", "DELETE"] {
            routes.push((method, path.to_owned()));
        }
    }
    routes
}

#[tokio::test]
async fn every_route_needs_a_key_and_viewers_never_write() {
    let h = Harness::new();
    h.call(
        "PUT",
        "/apisix/admin/upstreams/1",
        r#"{"nodes":{"127.0.0.1:1":1}}"#,
    )
    .await;
    let before = h.revision();
    for (method, path) in every_route() {
        let anonymous = h.send(method, &path, &[], "{}", "127.0.0.1:1").await;
        assert_eq!(
            anonymous.status,
            StatusCode::UNAUTHORIZED,
            "{method} {path}: {}",
            anonymous.text
        );
        let viewer = h
            .send(method, &path, &[("x-api-key", VIEWER)], "{}", "127.0.0.1:1")
            .await;
        if method == "GET" {
            assert_ne!(viewer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        } else {
            assert_eq!(viewer.status, StatusCode::UNAUTHORIZED, "{method} {path}");
            assert_eq!(
                viewer.json()["description"],
                "invalid method for role viewer"
            );
        }
    }
    assert_eq!(h.revision(), before, "nothing was written");
    // The two exceptions.
    assert_eq!(
        h.send("HEAD", "/apisix/admin", &[], "", "127.0.0.1:1")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        h.send("OPTIONS", "/apisix/admin/upstreams", &[], "", "127.0.0.1:1")
            .await
            .status,
        StatusCode::OK
    );
}
