//! GET, PUT, POST and DELETE of stream routes, upstreams and SSL objects, following APISIX's
//! generic resource handler (`check_conf`, timestamps, encryption, envelopes).

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};
use sg_model::{check, Kind};
use sg_store::{Entry, StoreError};

use crate::body::ResourceBody;
use crate::target::Target;
use crate::{list, reply, AdminState, QueryArgs};

/// Unix seconds, as APISIX stores `create_time` / `update_time`.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The etcd-style key shown in responses: `/apisix/stream_routes/1`.
pub fn full_key(state: &AdminState, kind: Kind, id: &str) -> String {
    format!("{}/{}/{id}", state.config.prefix, kind.dir())
}

pub fn store_error(e: StoreError) -> Response {
    reply::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// The `{key, value, createdIndex, modifiedIndex}` item of a GET.
pub fn item(state: &AdminState, kind: Kind, entry: Entry) -> Value {
    let mut value = entry.value;
    if kind == Kind::Ssl {
        if let Some(map) = value.as_object_mut() {
            map.remove("key");
            map.remove("keys");
        }
    }
    json!({
        "key": full_key(state, kind, &entry.id),
        "value": value,
        "createdIndex": entry.create_revision,
        "modifiedIndex": entry.mod_revision,
    })
}

/// `GET`: one object, or the list. APISIX reads and checks the body of every resource request.
pub async fn get(
    State(state): State<AdminState>,
    target: Target,
    Query(args): Query<QueryArgs>,
    _: ResourceBody,
) -> Response {
    let Some(id) = &target.id else {
        return list::list(&state, target.kind, &args).await;
    };
    match state.store.get(target.kind.dir(), id).await {
        Ok(Some(entry)) => reply::json(StatusCode::OK, &item(&state, target.kind, entry)),
        Ok(None) => reply::key_not_found(),
        Err(e) => store_error(e),
    }
}

fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// APISIX's `check_conf` id rules; returns the id to store under.
fn resolve_id(
    kind: Kind,
    target: &Target,
    conf: &mut Value,
    need_id: bool,
) -> Result<String, String> {
    let body_id = conf.get("id").cloned();
    let label = kind.label();
    if !need_id {
        if target.id.is_some() || body_id.is_some() {
            return Err(format!("wrong {label} id, do not need it"));
        }
        return Ok(String::new());
    }
    let id = match (&target.id, &body_id) {
        (Some(path_id), _) => Value::String(path_id.clone()),
        (None, Some(body_id)) => body_id.clone(),
        (None, None) => return Err(format!("missing {label} id")),
    };
    if let Some(body_id) = &body_id {
        if id_text(body_id) != id_text(&id) {
            return Err(format!("wrong {label} id"));
        }
    }
    let text = id_text(&id);
    if let Some(map) = conf.as_object_mut() {
        map.insert("id".to_owned(), id);
    }
    Ok(text)
}

/// `create_time` / `update_time` may not be sent on PUT and POST.
fn forbidden_times(conf: &Value) -> Result<(), String> {
    const FIELDS: [&str; 2] = ["create_time", "update_time"];
    for (scope, prefix) in [
        (Some(conf), ""),
        (conf.get("upstream"), "upstream."),
        (conf.get("plugins"), "plugins."),
    ] {
        if let Some(map) = scope.and_then(Value::as_object) {
            if let Some(field) = FIELDS.iter().find(|f| map.contains_key(**f)) {
                return Err(format!("the property is forbidden:  {prefix}{field}"));
            }
        }
    }
    Ok(())
}

/// Fetches the objects `conf` refers to, so the checker can run without touching the store.
async fn references(
    state: &AdminState,
    kind: Kind,
    conf: &Value,
) -> HashMap<(Kind, String), Result<Option<Value>, String>> {
    let mut wanted = Vec::new();
    if kind == Kind::StreamRoute {
        if let Some(id) = conf.get("upstream_id") {
            wanted.push((Kind::Upstream, id_text(id)));
        }
    }
    for pointer in ["/tls/client_cert_id", "/upstream/tls/client_cert_id"] {
        if let Some(id) = conf.pointer(pointer) {
            wanted.push((Kind::Ssl, id_text(id)));
        }
    }
    let mut found = HashMap::new();
    for (ref_kind, id) in wanted {
        let result = state
            .store
            .get(ref_kind.dir(), &id)
            .await
            .map(|entry| entry.map(|e| e.value))
            .map_err(|e| e.to_string());
        found.insert((ref_kind, id), result);
    }
    found
}

/// Runs the resource checker on `conf`, with references fetched from the store.
pub async fn check_conf(state: &AdminState, kind: Kind, conf: &Value) -> Result<(), String> {
    let refs = references(state, kind, conf).await;
    let lookup = |k: Kind, id: &str| refs.get(&(k, id.to_owned())).cloned().unwrap_or(Ok(None));
    check::check(kind, conf, &state.config.keyring, &lookup)
}

/// Encrypts private keys at rest (PEM text only; already-encrypted values are kept).
pub fn encrypt_secrets(state: &AdminState, kind: Kind, conf: &mut Value) {
    let keyring = &state.config.keyring;
    let seal = |v: &mut Value| {
        if let Some(text) = v.as_str().filter(|t| t.starts_with("---")) {
            *v = Value::String(keyring.encrypt(text));
        }
    };
    match kind {
        Kind::Ssl => {
            if let Some(key) = conf.get_mut("key") {
                seal(key);
            }
            if let Some(keys) = conf.get_mut("keys").and_then(Value::as_array_mut) {
                keys.iter_mut().for_each(seal);
            }
        }
        Kind::Upstream | Kind::StreamRoute => {
            for pointer in ["/tls/client_key", "/upstream/tls/client_key"] {
                if let Some(key) = conf.pointer_mut(pointer) {
                    seal(key);
                }
            }
        }
    }
}

fn envelope(state: &AdminState, kind: Kind, id: &str, value: &Value) -> Value {
    json!({"key": full_key(state, kind, id), "value": value})
}

fn set_time(conf: &mut Value, field: &str, time: u64) {
    if let Some(map) = conf.as_object_mut() {
        map.insert(field.to_owned(), json!(time));
    }
}

/// Validates and stores a PUT or POST body.
async fn create_or_replace(
    state: &AdminState,
    target: &Target,
    conf: Option<Value>,
    need_id: bool,
) -> Response {
    let kind = target.kind;
    let Some(mut conf) = conf else {
        return reply::bad_request("missing configurations");
    };
    let id = match resolve_id(kind, target, &mut conf, need_id) {
        Ok(id) => id,
        Err(msg) => return reply::bad_request(msg),
    };
    if let Err(msg) = forbidden_times(&conf) {
        return reply::bad_request(msg);
    }
    if let Err(msg) = check_conf(state, kind, &conf).await {
        return reply::bad_request(msg);
    }
    encrypt_secrets(state, kind, &mut conf);
    let id = if need_id {
        id
    } else {
        match fresh_id(state, kind).await {
            Ok(id) => id,
            Err(e) => return store_error(e),
        }
    };
    if !need_id {
        if let Some(map) = conf.as_object_mut() {
            map.insert("id".to_owned(), Value::String(id.clone()));
        }
    }
    let time = now();
    let create_time = match state.store.get(kind.dir(), &id).await {
        Ok(previous) => previous
            .and_then(|p| p.value.get("create_time").and_then(Value::as_u64))
            .unwrap_or(time),
        Err(e) => return store_error(e),
    };
    set_time(&mut conf, "create_time", create_time);
    set_time(&mut conf, "update_time", time);
    match state.store.put(kind.dir(), &id, conf, None).await {
        Ok(put) => {
            state.wait_applied(put.entry.mod_revision).await;
            let status = if put.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            reply::json(status, &envelope(state, kind, &id, &put.entry.value))
        }
        Err(e) => store_error(e),
    }
}

/// A 20-digit id no object of `kind` uses yet.
async fn fresh_id(state: &AdminState, kind: Kind) -> Result<String, StoreError> {
    loop {
        let id = format!("{:020}", state.store.next_id().await?);
        if state.store.get(kind.dir(), &id).await?.is_none() {
            return Ok(id);
        }
    }
}

/// `PUT`: creates or replaces the object the path (or the body) names.
pub async fn put(
    State(state): State<AdminState>,
    target: Target,
    ResourceBody(conf): ResourceBody,
) -> Response {
    create_or_replace(&state, &target, conf, true).await
}

/// `POST`: creates an object under a fresh id.
pub async fn post(
    State(state): State<AdminState>,
    target: Target,
    ResourceBody(conf): ResourceBody,
) -> Response {
    create_or_replace(&state, &target, conf, false).await
}

/// `DELETE`: removes the object the path names.
pub async fn delete(State(state): State<AdminState>, target: Target, _: ResourceBody) -> Response {
    let Some(id) = &target.id else {
        return reply::bad_request(format!("missing {} id", target.kind.label()));
    };
    match state.store.delete(target.kind.dir(), id).await {
        Ok(Some(revision)) => {
            state.wait_applied(revision).await;
            reply::json(
                StatusCode::OK,
                &json!({"deleted": "1", "key": full_key(&state, target.kind, id)}),
            )
        }
        Ok(None) => reply::key_not_found(),
        Err(e) => store_error(e),
    }
}

/// Deep merge for PATCH: objects merge recursively, arrays and scalars replace, `null` deletes.
pub fn merge(base: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (name, value) in patch {
        match (base.get_mut(name), value) {
            (_, Value::Null) => {
                base.remove(name);
            }
            (Some(Value::Object(inner)), Value::Object(patch_inner)) => merge(inner, patch_inner),
            _ => {
                base.insert(name.clone(), value.clone());
            }
        }
    }
}
