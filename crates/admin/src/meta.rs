//! Plugin and schema endpoints: `plugins/list`, `plugins/<name>`, `schema/<name>` and
//! `schema/validate/<resource>`.

use axum::body::{Body, Bytes};
use axum::http::{Response, StatusCode};
use serde_json::Value;
use sg_model::resource::STREAM_PLUGINS;
use sg_model::schema::schemas;
use sg_model::Kind;

use crate::auth::form_pairs;
use crate::{body, reply};

fn arg(query: Option<&str>, wanted: &str) -> Option<String> {
    form_pairs(query.unwrap_or_default())
        .find(|(name, _)| name == wanted)
        .map(|(_, v)| v)
}

fn subsystem(query: Option<&str>) -> String {
    arg(query, "subsystem").unwrap_or_else(|| "http".to_owned())
}

/// `?all=true` (deprecated in APISIX, still answered): every plugin of the subsystem with its
/// version, priority and schema. streamgate has no HTTP plugins.
fn all_plugins(subsystem: &str) -> Response<Body> {
    let mut all = serde_json::Map::new();
    if subsystem == "stream" {
        for (name, priority) in STREAM_PLUGINS {
            let schema = schemas().plugin(name).map(|s| s.document.clone());
            all.insert(
                (*name).to_owned(),
                serde_json::json!({"version": 0.1, "priority": priority, "schema": schema}),
            );
        }
    }
    reply::json(StatusCode::OK, &Value::Object(all))
}

/// `GET /apisix/admin/plugins/...`.
pub fn plugins(rest: &[&str], query: Option<&str>) -> Response<Body> {
    let subsystem = subsystem(query);
    match rest {
        ["list"] => {
            let names: Vec<&str> = match subsystem.as_str() {
                // streamgate has no HTTP plugins.
                "http" => Vec::new(),
                "stream" => {
                    let mut plugins = STREAM_PLUGINS.to_vec();
                    plugins.sort_by_key(|(_, priority)| -priority);
                    plugins.into_iter().map(|(name, _)| name).collect()
                }
                _ => return reply::raw(StatusCode::BAD_REQUEST, "invalid subsystem passed"),
            };
            reply::json(StatusCode::OK, &serde_json::json!(names))
        }
        // `plugins`, `plugins/<name>`: APISIX checks the subsystem, then `all`, then the name.
        [] | [_] => {
            if subsystem != "http" && subsystem != "stream" {
                return reply::bad_request(format!("unsupported subsystem: {subsystem}"));
            }
            if arg(query, "all").as_deref() == Some("true") {
                return all_plugins(&subsystem);
            }
            let name = rest.first().copied().unwrap_or_default();
            match schemas().plugin(name).filter(|_| subsystem == "stream") {
                Some(schema) => reply::json(StatusCode::OK, &schema.document),
                None => reply::error(
                    StatusCode::NOT_FOUND,
                    format!("plugin not found in subsystem {subsystem}"),
                ),
            }
        }
        _ => reply::error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `GET /apisix/admin/schema/<name>` and `schema/plugins/<name>`.
pub fn schema(rest: &[&str], _query: Option<&str>) -> Response<Body> {
    let found = match rest {
        ["plugins", name] => schemas().plugin(name),
        [name] => schemas().by_name(name),
        _ => None,
    };
    match found {
        Some(schema) => reply::json(StatusCode::OK, &schema.document),
        None => reply::bad_request(format!("not found schema: {}", rest.join("/"))),
    }
}

/// `POST /apisix/admin/schema/validate/<resource>`: JSON schema only.
pub fn validate(resource: &str, raw: &Bytes) -> Response<Body> {
    let Some(kind) = Kind::from_dir(resource) else {
        return reply::error(
            StatusCode::NOT_FOUND,
            format!("Unsupported resource type: {resource}"),
        );
    };
    let conf = match body::decode(raw) {
        Ok(Some(conf)) => conf,
        Ok(None) => Value::Null,
        Err(response) => return response,
    };
    let schema = match kind {
        Kind::StreamRoute => &schemas().stream_route,
        Kind::Upstream => &schemas().upstream,
        Kind::Ssl => &schemas().ssl,
    };
    match schema.validate(&conf) {
        Ok(()) => reply::raw(StatusCode::OK, Body::empty()),
        Err(msg) => reply::bad_request(msg),
    }
}
