//! Request bodies as extractors: APISIX's 1.5 MiB limit (axum's `DefaultBodyLimit`, set on the
//! routes) and its JSON decoding, both answered in APISIX's words. axum's `Json` does not fit:
//! APISIX ignores the content type, reads an empty body as no configuration and words its errors
//! after cjson.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
use axum::extract::{FromRequest, Query, Request};
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use crate::{reply, QueryArgs};

/// APISIX's `client_max_body_size` for the Admin API.
pub const MAX_BODY: usize = 1_572_864;

/// The whole request body.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // axum's limit applies while reading; a declared size over it is refused unread, so
        // hyper does not ask the client for the body (`100 Continue`).
        if let Some(size) = declared.filter(|size| *size > MAX_BODY as u64) {
            return Err(too_big(size));
        }
        Bytes::from_request(request, state)
            .await
            .map(RawBody)
            .map_err(|rejection| match rejection {
                BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(_)) => {
                    too_big(format!("over {MAX_BODY}"))
                }
                other => {
                    let cause = std::error::Error::source(&other).map(ToString::to_string);
                    let cause = cause.unwrap_or_else(|| other.body_text());
                    reply::bad_request(format!("invalid request body: {cause}"))
                }
            })
    }
}

fn too_big(size: impl std::fmt::Display) -> Response {
    reply::bad_request(format!(
        "invalid request body: request size {size} is greater than the maximum size {MAX_BODY} allowed"
    ))
}

/// What APISIX reads of a resource request after its path, in its order: the body, its JSON
/// (an empty body is `None`, APISIX's `conf = nil`), then the `ttl` argument, which streamgate
/// refuses. axum runs the body extractor last, so the `ttl` check lives here.
pub struct ResourceBody(pub Option<Value>);

impl<S: Send + Sync> FromRequest<S> for ResourceBody {
    type Rejection = Response;

    async fn from_request(request: Request, state: &S) -> Result<Self, Response> {
        let ttl = Query::<QueryArgs>::try_from_uri(request.uri())
            .ok()
            .and_then(|Query(args)| args.into_iter().find(|(name, _)| name == "ttl"));
        let RawBody(raw) = RawBody::from_request(request, state).await?;
        let conf = decode(&raw)?;
        if let Some((_, ttl)) = ttl {
            return Err(match ttl.parse::<f64>() {
                Err(_) => reply::bad_request("invalid argument ttl: should be a number"),
                Ok(_) => reply::bad_request("invalid argument ttl: not supported by streamgate"),
            });
        }
        Ok(ResourceBody(conf))
    }
}

/// Decodes a non-empty body as JSON; an empty body is `None`.
pub fn decode(raw: &Bytes) -> Result<Option<Value>, Response> {
    if raw.is_empty() {
        return Ok(None);
    }
    serde_json::from_slice(raw).map(Some).map_err(|e| {
        let text = String::from_utf8_lossy(raw);
        let at = char_offset(&text, e.line(), e.column());
        let reason = e.to_string();
        let reason = reason.split(" at line ").next().unwrap_or(&reason);
        reply::json(
            StatusCode::BAD_REQUEST,
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
