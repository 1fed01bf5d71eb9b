//! The whole router of a hub: the WebSocket endpoint, health, metrics, the
//! OpenAPI document, the landing page, the embedded pages and the admin API, with SPEC §6's
//! JSON answer for a path or a method that does not exist. No socket here:
//! `server.rs` serves it; tests drive it with `oneshot`.
//!
//! Every route is served from [`documented`], which only takes the
//! `routes!` of handlers with a `#[utoipa::path]` (the modules hand back
//! `UtoipaMethodRouter`s, never an axum `Router`, and nothing here calls
//! `.route`): a route and its entry in `GET /v1/openapi.json` are one
//! registration, so a route cannot be served undocumented. What the types
//! allow but is still wrong (`routes!(a, b)` with two paths serves both
//! handlers' methods on each) fails `tests/it/openapi.rs`, which sends
//! every method to every documented path.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Router;
use presence_protocol::admin::ApiError as ErrorBody;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter};
use utoipa_axum::routes;

use crate::api::error::ApiError;
use crate::api::openapi;
use crate::hub::Hub;

/// The whole router of a hub.
pub fn app(hub: Arc<Hub>) -> Router {
    let (router, _) = documented().split_for_parts();
    router
        .route_layer(axum::middleware::from_fn_with_state(
            hub.clone(),
            load_tenant,
        ))
        // Applies to the routes added so far, so it comes after all of them.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NoRoute })
        .with_state(hub)
}

/// A route under `/v1/tenants/{tid}` uses the tenant: in cluster mode it is
/// loaded here first when this node does not hold it (`Hub::resident`), so
/// a handler finds it held; a tenant that does not exist is left to the
/// handler's 404.
async fn load_tenant(
    axum::extract::State(hub): axum::extract::State<Arc<Hub>>,
    params: Result<axum::extract::RawPathParams, axum::extract::rejection::RawPathParamsRejection>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let tid = params.ok().and_then(|p| {
        p.iter()
            .find_map(|(k, v)| (k == "tid").then(|| v.to_owned()))
    });
    if let Some(tid) = tid {
        if let Err(e) = hub.resident(&tid).await {
            return ApiError::from(e).into_response();
        }
    }
    next.run(req).await
}

/// Every route with its documentation: the router `app` serves and the
/// document `GET /v1/openapi.json` shows are the two halves of this value.
pub(crate) fn documented() -> OpenApiRouter<Arc<Hub>> {
    let mut router = own()
        .into_iter()
        .chain(crate::api::pages::routes())
        .chain(crate::api::landing::routes())
        .chain(crate::api::admin::routes())
        .chain(crate::api::batch::routes())
        .chain(crate::api::query::routes())
        .chain(crate::api::history::routes())
        .chain(crate::api::events::routes())
        .chain(crate::api::webhooks::routes())
        .fold(
            OpenApiRouter::with_openapi(openapi::Base::openapi()),
            OpenApiRouter::routes,
        );
    openapi::complete(router.get_openapi_mut());
    router
}

fn own() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![
        routes!(ws),
        routes!(healthz),
        routes!(readyz),
        routes!(metrics),
        routes!(openapi::serve),
    ]
}

/// WebSocket endpoint
///
/// Upgrade to a WebSocket; the first frame is `hello` with the token (never in the URL). Frames and close codes: SPEC §5.
#[utoipa::path(
    get,
    path = "/v1/ws",
    operation_id = "websocket",
    tag = "realtime",
    responses(
        (status = 101, description = "Switching protocols. No extension (such as `permessage-deflate`) and no subprotocol is negotiated."),
        (status = 400, description = "`Sec-WebSocket-Key` missing, repeated, or not the base64 of 16 bytes (RFC 6455 §4.2.1).", body = ErrorBody),
        (status = 403, description = "Origin not allowed.", body = ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade (`Upgrade: websocket` in the answer), or a version other than 13 (also `Sec-WebSocket-Version: 13`).", body = ErrorBody),
        (status = 503, description = "`node_restarting` (the node is shutting down), `too_many_pending` (more than `PRESENCE_MAX_PENDING_HELLO` upgraded connections have not said hello yet) or `too_many_connections`.", body = ErrorBody),
    )
)]
// The upgrade itself is `net/upgrade.rs`; this carries its documentation.
async fn ws(hub: State<Arc<Hub>>, req: Request) -> Result<Response, ApiError> {
    crate::net::upgrade::ws(hub, req).await
}

/// Liveness
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "The process is alive.", body = String, content_type = "text/plain")),
)]
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve.", body = String, content_type = "text/plain"),
        (status = 503, description = "`not_ready`: shutting down (or not joined to the cluster).", body = ErrorBody),
    )
)]
async fn readyz(State(hub): State<Arc<Hub>>) -> Result<&'static str, ApiError> {
    if hub.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::NotReady)
    }
}

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses((
        status = 200,
        description = "Prometheus text exposition (presence_open_tabs, presence_registered_tabs, presence_online_users, presence_transitions_total, presence_frames_in_total, presence_frames_out_total, presence_slow_consumers_total, presence_delivery_seconds, presence_store_commit_seconds, process_resident_memory_bytes, ...; README, \"Operations\", lists them all).",
        body = String,
        content_type = "text/plain",
    )),
)]
async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    // One lock per tenant per scrape; nothing on the tab path pays for it.
    hub.metrics
        .registered_tabs
        .set(hub.registered_tabs() as i64);
    hub.metrics.ready.set(i64::from(hub.is_ready()));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(hub.now_ms()),
    )
}
