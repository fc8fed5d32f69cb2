//! Who may call the Admin API: `allow_admin` by client address, then the admin key from the
//! `api_key` query argument, the `X-API-KEY` header or the `x_api_key` cookie, in that order.

use std::net::IpAddr;

use axum::body::Body;
use axum::http::{header, HeaderMap, Method, Response, StatusCode};
use serde_json::json;
use sg_model::settings::AdminRole;
use subtle::ConstantTimeEq;

use crate::reply;
use crate::AdminConfig;

/// Whether `client` is inside `allow_admin`.
pub fn allowed(config: &AdminConfig, client: IpAddr) -> bool {
    let client = client.to_canonical();
    config.allow.iter().any(|net| net.contains(&client))
}

/// Checks the admin key; `Err` is the 401 to send.
pub fn check_token(
    config: &AdminConfig,
    method: &Method,
    query: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Response<Body>> {
    if !config.key_required {
        return Ok(());
    }
    let token = query_token(query)
        .or_else(|| {
            headers
                .get("x-api-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .or_else(|| cookie_token(headers));
    let Some(token) = token else {
        return Err(unauthorized("missing apikey"));
    };
    // Compare with every key in constant time, so timing reveals nothing about any of them.
    let matched = config.keys.iter().fold(None, |found, k| {
        match bool::from(k.key.as_bytes().ct_eq(token.as_bytes())) {
            true => Some(k),
            false => found,
        }
    });
    let Some(key) = matched else {
        return Err(unauthorized("wrong apikey"));
    };
    if key.role == AdminRole::Viewer && method != Method::GET {
        return Err(unauthorized("invalid method for role viewer"));
    }
    Ok(())
}

fn unauthorized(description: &str) -> Response<Body> {
    reply::json(
        StatusCode::UNAUTHORIZED,
        &json!({"error_msg": "failed to check token", "description": description}),
    )
}

/// The `api_key` query argument (name matched case-insensitively, as nginx's `$arg_` does).
fn query_token(query: Option<&str>) -> Option<String> {
    form_pairs(query?)
        .find(|(name, _)| name.eq_ignore_ascii_case("api_key"))
        .map(|(_, value)| value)
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == "x_api_key")
        .map(|(_, value)| value.to_owned())
}

/// Decoded `name=value` pairs of a query string.
pub fn form_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    form_urlencoded::parse(query.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned()))
}
