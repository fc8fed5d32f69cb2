//! The single entry point: `allow_admin`, CORS, then APISIX's `/apisix/admin` routing with its
//! order of checks (auth, stream mode, resource, method, body, JSON, `ttl`).

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, Response, StatusCode};
use sg_model::Kind;

use crate::reply;
use crate::{auth, body, crud, meta, patch, AdminState};

/// The longest a request (its body included) may take.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request addressed to a resource collection or object.
pub struct Target {
    pub kind: Kind,
    pub id: Option<String>,
    pub sub_path: Vec<String>,
    pub query: Option<String>,
}

/// Handles every admin request.
pub async fn handle(State(state): State<AdminState>, request: Request) -> Response<Body> {
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    if !client.is_some_and(|ip| auth::allowed(&state.config, ip)) {
        return reply::nginx_page(StatusCode::FORBIDDEN);
    }
    if request.method() == Method::OPTIONS && state.config.cors {
        return reply::preflight();
    }
    let mut response = match tokio::time::timeout(REQUEST_TIMEOUT, route(&state, request)).await {
        Ok(response) => response,
        Err(_) => reply::error(StatusCode::REQUEST_TIMEOUT, "request timed out"),
    };
    if state.config.cors {
        reply::add_cors(&mut response);
    }
    response
}

fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .skip(1)
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

async fn route(state: &AdminState, request: Request) -> Response<Body> {
    let (parts, body) = request.into_parts();
    let (method, query) = (&parts.method, parts.uri.query());
    let segs = segments(parts.uri.path());
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["apisix", "admin"] if method == Method::HEAD => reply::raw(StatusCode::OK, Body::empty()),
        ["apisix", "admin", "plugins", "reload"] => {
            if let Err(denied) = auth::check_token(&state.config, method, query, &parts.headers) {
                return denied;
            }
            if method == Method::PUT {
                reply::raw(StatusCode::OK, "done")
            } else {
                reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("please use PUT method to reload the plugins, {method} method is not allowed."),
                )
            }
        }
        ["apisix", "admin", "schema", "validate", resource] if method == Method::POST => {
            if let Err(denied) = auth::check_token(&state.config, method, query, &parts.headers) {
                return denied;
            }
            let raw = match body::read(&parts.headers, body).await {
                Ok(raw) => raw,
                Err(response) => return response,
            };
            meta::validate(resource, &raw)
        }
        ["apisix", "admin", resource, rest @ ..] if is_generic(method) => {
            if let Err(denied) = auth::check_token(&state.config, method, query, &parts.headers) {
                return denied;
            }
            if *resource == "stream_routes" && !state.config.stream_enabled {
                return reply::bad_request("stream mode is disabled, can not add stream routes");
            }
            match *resource {
                "plugins" | "schema" if method != Method::GET => {
                    reply::error(StatusCode::NOT_FOUND, "not found")
                }
                "plugins" => meta::plugins(rest, query),
                "schema" => meta::schema(rest, query),
                _ => {
                    let Some(kind) = Kind::from_dir(resource) else {
                        return reply::error(
                            StatusCode::NOT_FOUND,
                            format!("Unsupported resource type: {resource}"),
                        );
                    };
                    let target = Target {
                        kind,
                        id: rest
                            .first()
                            .filter(|id| !id.is_empty())
                            .map(|id| id.to_string()),
                        // `upstreams/1/` names the whole object, as in APISIX.
                        sub_path: rest
                            .iter()
                            .skip(1)
                            .filter(|s| !s.is_empty())
                            .map(|s| s.to_string())
                            .collect(),
                        query: query.map(str::to_owned),
                    };
                    resource_request(state, method, target, &parts.headers, body).await
                }
            }
        }
        _ => reply::nginx_page(StatusCode::NOT_FOUND),
    }
}

fn is_generic(method: &Method) -> bool {
    [
        Method::GET,
        Method::PUT,
        Method::POST,
        Method::DELETE,
        Method::PATCH,
    ]
    .contains(method)
}

async fn resource_request(
    state: &AdminState,
    method: &Method,
    target: Target,
    headers: &axum::http::HeaderMap,
    body: Body,
) -> Response<Body> {
    if *method == Method::PATCH && !target.kind.supports_patch() {
        return reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("not supported `PATCH` method for {}", target.kind.label()),
        );
    }
    let raw = match body::read(headers, body).await {
        Ok(raw) => raw,
        Err(response) => return response,
    };
    let conf = match body::decode(&raw) {
        Ok(conf) => conf,
        Err(response) => return response,
    };
    if let Some(query) = &target.query {
        if let Some((_, ttl)) = auth::form_pairs(query).find(|(name, _)| name == "ttl") {
            return match ttl.parse::<f64>() {
                Err(_) => reply::bad_request("invalid argument ttl: should be a number"),
                Ok(_) => reply::bad_request("invalid argument ttl: not supported by streamgate"),
            };
        }
    }
    match *method {
        Method::GET => crud::get(state, &target).await,
        Method::PUT => crud::put(state, &target, conf).await,
        Method::POST => crud::post(state, &target, conf).await,
        Method::DELETE => crud::delete(state, &target).await,
        _ => patch::patch(state, &target, conf).await,
    }
}
