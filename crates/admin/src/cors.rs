//! CORS as APISIX sends it (`enable_admin_cors`): every OPTIONS request, on any path and without
//! a key, gets the preflight answer; every other answer gets four headers.
//!
//! tower-http's `CorsLayer` cannot send these: it joins the allowed methods with `,` where APISIX
//! writes `, `, it refuses `Access-Control-Allow-Credentials: true` beside the `*` wildcards (or,
//! through a predicate, sends it only when the request carries an `Origin`), and it sends
//! `Access-Control-Max-Age` on preflights only. So the preflight is a small middleware, and the
//! other headers come from tower-http's `SetResponseHeaderLayer`.

use axum::extract::Request;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    CONTENT_TYPE, SERVER,
};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::reply;

/// `routes` with APISIX's CORS answers.
pub fn layer<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    let header = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    routes
        .layer(header(ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .layer(header(ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"))
        .layer(header(ACCESS_CONTROL_EXPOSE_HEADERS, "*"))
        .layer(header(ACCESS_CONTROL_MAX_AGE, "3600"))
        .layer(middleware::from_fn(preflight))
}

async fn preflight(request: Request, next: Next) -> Response {
    if request.method() != Method::OPTIONS {
        return next.run(request).await;
    }
    [
        (ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        (
            ACCESS_CONTROL_ALLOW_METHODS,
            "POST, GET, PUT, OPTIONS, DELETE, PATCH",
        ),
        (ACCESS_CONTROL_MAX_AGE, "3600"),
        (ACCESS_CONTROL_ALLOW_HEADERS, "*"),
        (ACCESS_CONTROL_ALLOW_CREDENTIALS, "true"),
        (CONTENT_TYPE, "text/plain"),
        (SERVER, reply::SERVER),
    ]
    .into_response()
}
