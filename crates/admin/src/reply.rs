//! Response builders: APISIX's JSON envelopes, its common headers and nginx's error pages.

use axum::body::Body;
use axum::http::{header, HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

/// The Admin API version APISIX announces in `X-API-VERSION`.
const API_VERSION: &str = "v3";
pub const SERVER: &str = concat!("streamgate/", env!("CARGO_PKG_VERSION"));

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

/// The answer where APISIX routes nothing (path or method): nginx's 404 page, without a key.
pub async fn no_route() -> Response<Body> {
    nginx_page(StatusCode::NOT_FOUND)
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
