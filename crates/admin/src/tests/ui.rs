//! The dashboard's routes: its files, `enable_admin_ui`, `allow_admin` and the key in front of
//! the control API it reads.

use axum::http::StatusCode;
use axum::routing::get;

use super::{config, Harness, KEY, VIEWER};
use crate::AdminConfig;

fn with_control(config: AdminConfig) -> Harness {
    let mut harness = Harness::with(config);
    harness.state.control =
        Some(axum::Router::new().route("/v1/stats", get(|| async { "{\"figures\":1}" })));
    harness
}

#[tokio::test]
async fn serves_the_page_and_its_files() {
    let h = with_control(config());
    let to_page = h.send("GET", "/ui", &[], "", "127.0.0.1:5000").await;
    assert_eq!(to_page.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(to_page.headers["location"], "/ui/");
    for (path, media_type, needle) in [
        ("/ui/", "text/html; charset=utf-8", "src=\"app.js\""),
        (
            "/ui/index.html",
            "text/html; charset=utf-8",
            "id=\"login-form\"",
        ),
        (
            "/ui/app.js",
            "text/javascript; charset=utf-8",
            "sessionStorage",
        ),
        ("/ui/style.css", "text/css; charset=utf-8", "body.viewer"),
    ] {
        // No key: the page asks for one itself.
        let reply = h.send("GET", path, &[], "", "127.0.0.1:5000").await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.headers["content-type"], media_type, "{path}");
        assert!(reply.text.contains(needle), "{path}");
        let policy = reply.headers["content-security-policy"].to_str().unwrap();
        assert!(policy.starts_with("default-src 'self'"), "{policy}");
    }
    let missing = h
        .send("GET", "/ui/other.js", &[], "", "127.0.0.1:5000")
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text.contains("<h1>404 Not Found</h1>"));
}

#[tokio::test]
async fn control_api_needs_a_key_of_any_role() {
    let h = with_control(config());
    let bare = h
        .send("GET", "/ui/control/v1/stats", &[], "", "127.0.0.1:5000")
        .await;
    assert_eq!(bare.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bare.json()["description"], "missing apikey");
    for key in [KEY, VIEWER] {
        let reply = h
            .send(
                "GET",
                "/ui/control/v1/stats",
                &[("x-api-key", key)],
                "",
                "127.0.0.1:5000",
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text, "{\"figures\":1}");
    }
}

#[tokio::test]
async fn allow_admin_and_the_switch_hold() {
    let h = with_control(config());
    for path in ["/ui/", "/ui/control/v1/stats"] {
        let denied = h
            .send("GET", path, &[("x-api-key", KEY)], "", "10.0.0.1:5000")
            .await;
        assert_eq!(denied.status, StatusCode::FORBIDDEN, "{path}");
    }
    let off = with_control(AdminConfig {
        ui: false,
        ..config()
    });
    for path in ["/ui", "/ui/", "/ui/app.js", "/ui/control/v1/stats"] {
        let reply = off
            .send("GET", path, &[("x-api-key", KEY)], "", "127.0.0.1:5000")
            .await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
    }
}
