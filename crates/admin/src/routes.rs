//! The Admin API as an axum `Router`: APISIX's routes and methods, each answered by a handler,
//! behind the layers every request passes in APISIX's order: `allow_admin`, CORS, the request
//! timeout, then, on the routes that need it, the admin key. The dashboard's routes join the
//! table when it is enabled.

use std::time::Duration;

use axum::body::Body;
use axum::error_handling::HandleErrorLayer;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::Response;
use axum::routing::{any, MethodFilter, MethodRouter};
use axum::{BoxError, Router};
use tower::{ServiceBuilder, ServiceExt};

use crate::{auth, body, cors, crud, meta, patch, path, reply, ui, AdminState};

/// The longest a request (its body included) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The methods APISIX routes to a resource.
const GENERIC: MethodFilter = MethodFilter::GET
    .or(MethodFilter::PUT)
    .or(MethodFilter::POST)
    .or(MethodFilter::DELETE)
    .or(MethodFilter::PATCH);

/// The generic methods a read-only meta resource lacks: APISIX answers them 404 `not found`.
const NOT_GET: MethodFilter = MethodFilter::PUT
    .or(MethodFilter::POST)
    .or(MethodFilter::DELETE)
    .or(MethodFilter::PATCH);

/// The generic methods `schema/validate` lacks besides GET, which asks for a schema.
const NOT_GET_OR_POST: MethodFilter = MethodFilter::PUT
    .or(MethodFilter::DELETE)
    .or(MethodFilter::PATCH);

/// The Admin API. Requests need a `ConnectInfo<SocketAddr>` extension (added by
/// [`crate::serve`]) for `allow_admin`.
pub fn router(state: AdminState) -> Router {
    let routes = table(&state).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(timed_out))
            .timeout(REQUEST_TIMEOUT),
    );
    let routes = if state.config.cors {
        cors::layer(routes)
    } else {
        routes
    };
    let routes = routes
        .layer(from_fn_with_state(state.config.clone(), auth::allow_admin))
        .with_state(state);
    // axum matches routes on the raw path, nginx (so APISIX) on the decoded one.
    Router::new().fallback_service(routes.map_request(path::decoded))
}

/// APISIX's route table. Static segments win over parameters, so `plugins` and `schema` paths
/// reach the resource routes only when they name nothing.
fn table(state: &AdminState) -> Router<AdminState> {
    let keyed = |methods: MethodRouter<AdminState>| {
        methods
            .route_layer(from_fn_with_state(state.config.clone(), auth::require_key))
            // Outside the key layer: APISIX routes no HEAD here, and axum would give it to GET.
            .head(reply::no_route)
    };
    let objects = || {
        keyed(
            unrouted()
                .get(crud::get)
                .put(crud::put)
                .post(crud::post)
                .delete(crud::delete)
                .patch(patch::patch),
        )
    };
    let plugin = || keyed(unrouted().get(meta::plugin).on(NOT_GET, meta::not_found));
    let schema = || keyed(unrouted().get(meta::schema).on(NOT_GET, meta::not_found));
    let validate = || {
        keyed(
            unrouted()
                .post(meta::validate)
                .get(meta::validate_as_schema)
                .on(NOT_GET_OR_POST, meta::not_found),
        )
    };
    let table = Router::new()
        .route("/apisix/admin", unrouted().head(alive))
        .route(
            "/apisix/admin/plugins/reload",
            keyed(unrouted().on(GENERIC, meta::reload)),
        )
        .route(
            "/apisix/admin/plugins/list",
            keyed(
                unrouted()
                    .get(meta::plugin_names)
                    .on(NOT_GET, meta::not_found),
            ),
        )
        .route("/apisix/admin/plugins", plugin())
        .route("/apisix/admin/plugins/", plugin())
        .route("/apisix/admin/plugins/{name}", plugin())
        .route("/apisix/admin/schema", schema())
        .route("/apisix/admin/schema/", schema())
        .route("/apisix/admin/schema/{*name}", schema())
        .route(
            "/apisix/admin/schema/plugins/{name}",
            keyed(
                unrouted()
                    .get(meta::plugin_schema)
                    .on(NOT_GET, meta::not_found),
            ),
        )
        .route("/apisix/admin/schema/validate/", validate())
        .route("/apisix/admin/schema/validate/{resource}", validate())
        .route("/apisix/admin/", objects())
        .route("/apisix/admin/{resource}", objects())
        .route("/apisix/admin/{resource}/", objects())
        .route("/apisix/admin/{resource}/{id}", objects())
        .route("/apisix/admin/{resource}/{id}/", objects())
        .route("/apisix/admin/{resource}/{id}/{*sub_path}", objects())
        .fallback(reply::no_route)
        .layer(DefaultBodyLimit::max(body::MAX_BODY));
    if state.config.ui {
        table.merge(ui::routes(state))
    } else {
        table
    }
}

/// Where a route's methods start: a method APISIX does not route there finds no route (nginx's
/// 404 page), and `any` keeps axum's `Allow` header off that answer.
fn unrouted() -> MethodRouter<AdminState> {
    any(reply::no_route)
}

/// `HEAD /apisix/admin`: APISIX's liveness answer, without a key.
async fn alive() -> Response {
    reply::raw(StatusCode::OK, Body::empty())
}

async fn timed_out(_: BoxError) -> Response {
    reply::error(StatusCode::REQUEST_TIMEOUT, "request timed out")
}
