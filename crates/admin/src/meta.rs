//! Plugin and schema endpoints: `plugins/list`, `plugins[/<name>]`, `plugins/reload`,
//! `schema/<name>`, `schema/plugins/<name>` and `schema/validate/<resource>`.

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::Value;
use sg_model::resource::STREAM_PLUGINS;
use sg_model::schema::schemas;
use sg_model::Kind;

use crate::body::{decode, RawBody};
use crate::{reply, QueryArgs};

fn arg<'a>(args: &'a QueryArgs, wanted: &str) -> Option<&'a str> {
    args.iter()
        .find(|(name, _)| name == wanted)
        .map(|(_, value)| value.as_str())
}

fn subsystem(args: &QueryArgs) -> &str {
    arg(args, "subsystem").unwrap_or("http")
}

/// The generic methods the meta resources lack.
pub async fn not_found() -> Response {
    reply::error(StatusCode::NOT_FOUND, "not found")
}

/// `GET plugins/list`: the subsystem's plugin names, by priority.
pub async fn plugin_names(Query(args): Query<QueryArgs>) -> Response {
    let names: Vec<&str> = match subsystem(&args) {
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

/// `?all=true` (deprecated in APISIX, still answered): every plugin of the subsystem with its
/// version, priority and schema. streamgate has no HTTP plugins.
fn all_plugins(subsystem: &str) -> Response {
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

/// `GET plugins[/<name>]`: APISIX checks the subsystem, then `all`, then the name.
pub async fn plugin(name: Option<Path<String>>, Query(args): Query<QueryArgs>) -> Response {
    let subsystem = subsystem(&args);
    if subsystem != "http" && subsystem != "stream" {
        return reply::bad_request(format!("unsupported subsystem: {subsystem}"));
    }
    if arg(&args, "all") == Some("true") {
        return all_plugins(subsystem);
    }
    let name = name.map(|Path(name)| name).unwrap_or_default();
    match schemas().plugin(&name).filter(|_| subsystem == "stream") {
        Some(schema) => reply::json(StatusCode::OK, &schema.document),
        None => reply::error(
            StatusCode::NOT_FOUND,
            format!("plugin not found in subsystem {subsystem}"),
        ),
    }
}

/// `PUT plugins/reload`: nothing to reload, streamgate's plugins are built in.
pub async fn reload(method: Method) -> Response {
    if method == Method::PUT {
        reply::raw(StatusCode::OK, "done")
    } else {
        reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("please use PUT method to reload the plugins, {method} method is not allowed."),
        )
    }
}

/// `GET schema/<name>`; any deeper name is not found either.
pub async fn schema(name: Option<Path<String>>) -> Response {
    let name = name.map(|Path(name)| name).unwrap_or_default();
    match schemas().by_name(&name) {
        Some(schema) => reply::json(StatusCode::OK, &schema.document),
        None => reply::bad_request(format!("not found schema: {name}")),
    }
}

/// `GET schema/plugins/<name>`.
pub async fn plugin_schema(Path(name): Path<String>) -> Response {
    match schemas().plugin(&name) {
        Some(schema) => reply::json(StatusCode::OK, &schema.document),
        None => reply::bad_request(format!("not found schema: plugins/{name}")),
    }
}

/// `GET schema/validate/<resource>` asks for the schema of that name, which none has.
pub async fn validate_as_schema(resource: Option<Path<String>>) -> Response {
    let resource = resource.map(|Path(resource)| resource).unwrap_or_default();
    reply::bad_request(format!("not found schema: validate/{resource}"))
}

/// `POST schema/validate/<resource>`: JSON schema only. The body is read before the resource
/// name is checked.
pub async fn validate(resource: Option<Path<String>>, RawBody(raw): RawBody) -> Response {
    let resource = resource.map(|Path(resource)| resource).unwrap_or_default();
    let Some(kind) = Kind::from_dir(&resource) else {
        return reply::error(
            StatusCode::NOT_FOUND,
            format!("Unsupported resource type: {resource}"),
        );
    };
    let conf = match decode(&raw) {
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
