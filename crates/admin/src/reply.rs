//! Response builders: APISIX's JSON envelopes, its common headers and nginx's error pages.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

/// The Admin API version APISIX announces in `X-API-VERSION`.
const API_VERSION: &str = "v3";
const SERVER: &str = concat!("streamgate/", env!("CARGO_PKG_VERSION"));

/// A response with a JSON (or bare string) body and APISIX's admin headers.
pub fn json(status: StatusCode, body: &Value) -> Response<Body> {
    raw(status, body.to_string())
}

/// A response whose body is sent as is, still labelled JSON as APISIX does.
pub fn raw(status: StatusCode, body: impl Into<Body>) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    headers.insert("x-api-version", HeaderValue::from_static(API_VERSION));
    response
}

/// `{"error_msg": msg}` with `status`.
pub fn error(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    json(status, &json!({ "error_msg": msg.into() }))
}

/// `400 {"error_msg": msg}`.
pub fn bad_request(msg: impl Into<String>) -> Response<Body> {
    error(StatusCode::BAD_REQUEST, msg)
}

/// `404 {"message":"Key not found"}`, as etcd answers for a missing key.
pub fn key_not_found() -> Response<Body> {
    json(StatusCode::NOT_FOUND, &json!({"message": "Key not found"}))
}

/// An nginx-style HTML error page (no route, or denied by `allow_admin`).
pub fn nginx_page(status: StatusCode) -> Response<Body> {
    let reason = status.canonical_reason().unwrap_or("");
    let code = status.as_u16();
    let page = format!(
        "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n<center><h1>{code} {reason}</h1></center>\r\n<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(Body::from(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    response
}

/// Adds the CORS headers APISIX sets on every non-OPTIONS admin response.
pub fn add_cors(response: &mut Response<Body>) {
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-credentials",
        HeaderValue::from_static("true"),
    );
    headers.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("*"),
    );
    headers.insert("access-control-max-age", HeaderValue::from_static("3600"));
}

/// The answer to a CORS preflight (`OPTIONS` on any path, no auth).
pub fn preflight() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    let headers = response.headers_mut();
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, GET, PUT, OPTIONS, DELETE, PATCH"),
    );
    headers.insert("access-control-max-age", HeaderValue::from_static("3600"));
    headers.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("*"),
    );
    headers.insert(
        "access-control-allow-credentials",
        HeaderValue::from_static("true"),
    );
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    headers.insert(header::SERVER, HeaderValue::from_static(SERVER));
    response
}
