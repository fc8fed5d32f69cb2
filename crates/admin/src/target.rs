//! What a resource request names, taken from its route's path parameters and checked in APISIX's
//! order: stream mode, then the resource name (and for PATCH, whether the resource has it).

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use sg_model::Kind;

use crate::{reply, AdminState};

/// A resource collection or object, with the sub-path a PATCH may set.
pub struct Target {
    pub kind: Kind,
    pub id: Option<String>,
    pub sub_path: Vec<String>,
}

/// The parameters of the resource routes; a route without one leaves it empty.
#[derive(Deserialize)]
struct TargetParams {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    sub_path: String,
}

impl FromRequestParts<AdminState> for Target {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        let Path(params) = Path::<TargetParams>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if params.resource == "stream_routes" && !state.config.stream_enabled {
            return Err(reply::bad_request(
                "stream mode is disabled, can not add stream routes",
            ));
        }
        let Some(kind) = Kind::from_dir(&params.resource) else {
            return Err(match params.resource.as_str() {
                // Their own routes serve every path they have; what reaches here names nothing.
                "plugins" | "schema" => reply::error(StatusCode::NOT_FOUND, "not found"),
                other => reply::error(
                    StatusCode::NOT_FOUND,
                    format!("Unsupported resource type: {other}"),
                ),
            });
        };
        Ok(Target {
            kind,
            id: Some(params.id).filter(|id| !id.is_empty()),
            // `upstreams/1/` names the whole object, as in APISIX.
            sub_path: params
                .sub_path
                .split('/')
                .filter(|name| !name.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }
}

/// The object a PATCH names; stream routes have no PATCH (405 before the body is read).
pub struct PatchTarget(pub Target);

impl FromRequestParts<AdminState> for PatchTarget {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AdminState) -> Result<Self, Response> {
        let target = Target::from_request_parts(parts, state).await?;
        if !target.kind.supports_patch() {
            return Err(reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("not supported `PATCH` method for {}", target.kind.label()),
            ));
        }
        Ok(PatchTarget(target))
    }
}
