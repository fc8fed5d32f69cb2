//! Request bodies: APISIX's 1.5 MiB limit and JSON decoding with its error wording.

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, Response};
use http_body_util::{BodyExt, Limited};
use serde_json::{json, Value};

use crate::reply;

/// APISIX's `client_max_body_size` for the Admin API.
pub const MAX_BODY: usize = 1_572_864;

fn too_big(size: impl std::fmt::Display) -> Response<Body> {
    reply::bad_request(format!(
        "invalid request body: request size {size} is greater than the maximum size {MAX_BODY} allowed"
    ))
}

/// Reads the whole body, refusing more than [`MAX_BODY`] bytes.
pub async fn read(headers: &HeaderMap, body: Body) -> Result<Bytes, Response<Body>> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(size) = declared.filter(|size| *size > MAX_BODY as u64) {
        return Err(too_big(size));
    }
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(too_big(format!("over {MAX_BODY}")))
        }
        Err(e) => Err(reply::bad_request(format!("invalid request body: {e}"))),
    }
}

/// Decodes a non-empty body as JSON; an empty body is `None` (APISIX's `conf = nil`).
pub fn decode(raw: &Bytes) -> Result<Option<Value>, Response<Body>> {
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw).map(Some).map_err(|e| {
        let text = String::from_utf8_lossy(raw);
        let at = char_offset(&text, e.line(), e.column());
        let reason = e.to_string();
        let reason = reason.split(" at line ").next().unwrap_or(&reason);
        reply::json(
            axum::http::StatusCode::BAD_REQUEST,
            &json!({
                "error_msg": format!("invalid request body: {reason} at character {at}"),
                "req_body": text,
            }),
        )
    })
}

/// The 1-based character offset of serde_json's (line, column) position.
fn char_offset(text: &str, line: usize, column: usize) -> usize {
    let before: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(|l| l.chars().count())
        .sum();
    before + column.max(1)
}
