//! The dashboard at `/ui/` (`deployment.admin.enable_admin_ui`): static files built into the
//! binary, and the control API's JSON read through `/ui/control/` with the admin key, so that
//! the page works wherever the Admin API is reachable while the control API stays on loopback.

use axum::body::Body;
use axum::extract::Path;
use axum::http::{header, HeaderValue, Response, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use axum::Router;

use crate::{auth, reply, AdminState};

/// The files of the page: name, media type, content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../ui/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/app.js"),
    ),
    (
        "view.js",
        "text/javascript; charset=utf-8",
        include_str!("../ui/view.js"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../ui/style.css"),
    ),
];

/// Where the page reads the control API.
pub const CONTROL_PREFIX: &str = "/ui/control";

/// The dashboard's routes, added to the Admin API's table when the UI is enabled.
pub(crate) fn routes(state: &AdminState) -> Router<AdminState> {
    let pages = Router::new()
        .route("/ui", get(to_index))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{name}",
            get(|Path(name): Path<String>| async move { file(&name) }),
        );
    match &state.control {
        Some(control) => pages.nest_service(
            CONTROL_PREFIX,
            control
                .clone()
                .layer(from_fn_with_state(state.config.clone(), auth::require_key)),
        ),
        None => pages,
    }
}

/// `/ui` leads to the page, as APISIX's `/ui` does.
async fn to_index() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static("/ui/"));
    response
}

fn file(name: &str) -> Response<Body> {
    let Some((_, media_type, content)) = FILES.iter().find(|(file, _, _)| *file == name) else {
        return reply::nginx_page(StatusCode::NOT_FOUND);
    };
    let mut response = Response::new(Body::from(*content));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(header::SERVER, HeaderValue::from_static(reply::SERVER));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page loads nothing but its own files and talks only to this listener.
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
