//! Who may call the Admin API, as two middlewares: `allow_admin` by client address in front of
//! everything, then on the routes that need it the admin key from the `api_key` query argument,
//! the `X-API-KEY` header or the `x_api_key` cookie, in that order.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;
use sg_model::settings::AdminRole;
use subtle::ConstantTimeEq;

use crate::reply;
use crate::{AdminConfig, QueryArgs};

/// Lets through clients inside `allow_admin`; the others get nginx's HTML 403 page.
pub async fn allow_admin(
    State(config): State<Arc<AdminConfig>>,
    request: Request,
    next: Next,
) -> Response {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    if client.is_some_and(|ip| allowed(&config, ip)) {
        next.run(request).await
    } else {
        reply::nginx_page(StatusCode::FORBIDDEN)
    }
}

fn allowed(config: &AdminConfig, client: IpAddr) -> bool {
    let client = client.to_canonical();
    config.allow.iter().any(|net| net.contains(&client))
}

/// Lets through requests with a valid admin key (APISIX's `check_token`); the others get 401.
pub async fn require_key(
    State(config): State<Arc<AdminConfig>>,
    Query(args): Query<QueryArgs>,
    request: Request,
    next: Next,
) -> Response {
    match check_token(&config, request.method(), &args, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(denied) => denied,
    }
}

fn check_token(
    config: &AdminConfig,
    method: &Method,
    args: &QueryArgs,
    headers: &HeaderMap,
) -> Result<(), Response> {
    if !config.key_required {
        return Ok(());
    }
    // nginx's `$arg_api_key` matches the argument name case-insensitively.
    let token = args
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("api_key"))
        .map(|(_, value)| value.clone())
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

fn unauthorized(description: &str) -> Response {
    reply::json(
        StatusCode::UNAUTHORIZED,
        &json!({"error_msg": "failed to check token", "description": description}),
    )
}

/// axum has no cookie extractor (axum-extra's needs the `cookie` crate): one cookie is read here.
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
