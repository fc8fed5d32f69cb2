//! PATCH of upstreams and SSL objects: a deep merge, or a value set at a sub-path, then the
//! whole object is checked again and written with a compare-and-swap.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use sg_model::Kind;
use sg_store::StoreError;

use crate::body::ResourceBody;
use crate::crud::{check_conf, encrypt_secrets, full_key, merge, now, store_error};
use crate::target::PatchTarget;
use crate::{reply, AdminState};

pub async fn patch(
    State(state): State<AdminState>,
    PatchTarget(target): PatchTarget,
    ResourceBody(conf): ResourceBody,
) -> Response {
    let kind = target.kind;
    let Some(id) = &target.id else {
        return reply::bad_request(format!("missing {} id", kind.label()));
    };
    let Some(mut patch) = conf else {
        return reply::bad_request("missing new configuration");
    };
    if target.sub_path.is_empty() && !patch.is_object() {
        return reply::bad_request("invalid configuration");
    }
    let stored = match state.store.get(kind.dir(), id).await {
        Ok(Some(entry)) => entry,
        Ok(None) => return reply::key_not_found(),
        Err(e) => return store_error(e),
    };
    let mut value = stored.value;
    if target.sub_path.is_empty() {
        let carries_update_time = patch.get("update_time").is_some();
        if kind == Kind::Ssl {
            encrypt_secrets(&state, kind, &mut patch);
        }
        if let (Some(base), Some(changes)) = (value.as_object_mut(), patch.as_object()) {
            merge(base, changes);
        }
        if !carries_update_time {
            value["update_time"] = json!(now());
        }
    } else {
        if kind == Kind::Ssl
            && matches!(target.sub_path.as_slice(), [field] if field == "key" || field == "keys")
        {
            let mut wrapper = json!({ target.sub_path[0].clone(): patch });
            encrypt_secrets(&state, kind, &mut wrapper);
            patch = wrapper[&target.sub_path[0]].take();
        }
        if let Err(msg) = set_sub_path(&mut value, &target.sub_path, patch) {
            return reply::bad_request(msg);
        }
        value["update_time"] = json!(now());
    }
    if let Err(msg) = check_conf(&state, kind, &value).await {
        return reply::bad_request(msg);
    }
    encrypt_secrets(&state, kind, &mut value);
    match state
        .store
        .put(kind.dir(), id, value, Some(stored.mod_revision))
        .await
    {
        Ok(put) => {
            state.wait_applied(put.entry.mod_revision).await;
            reply::json(
                StatusCode::OK,
                &json!({"key": full_key(&state, kind, id), "value": put.entry.value}),
            )
        }
        Err(StoreError::Conflict) => reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "value changed before overwritten",
        ),
        Err(e) => store_error(e),
    }
}

/// Sets `value.a.b… = new`, creating missing objects on the way.
fn set_sub_path(value: &mut Value, path: &[String], new: Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("sub-path is not empty");
    let mut cursor = value;
    let mut walked = String::new();
    for name in parents {
        walked.push('/');
        walked.push_str(name);
        let map = cursor
            .as_object_mut()
            .ok_or_else(|| format!("invalid sub-path: {walked}"))?;
        cursor = map.entry(name.clone()).or_insert_with(|| json!({}));
        if !cursor.is_object() {
            return Err(format!("invalid sub-path: {walked}"));
        }
    }
    let map = cursor
        .as_object_mut()
        .ok_or_else(|| format!("invalid sub-path: {walked}"))?;
    map.insert(last.clone(), new);
    Ok(())
}
