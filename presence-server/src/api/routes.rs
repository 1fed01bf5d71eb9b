//! The whole router of a hub: the WebSocket endpoint, health, metrics, the
//! OpenAPI document, the embedded pages and the admin API, with SPEC §6's
//! JSON answer for a path or a method that does not exist. No socket here:
//! `server.rs` serves it; tests drive it with `oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::api::error::ApiError;
use crate::hub::Hub;

const OPENAPI: &str = include_str!("openapi.json");
/// The whole router of a hub.
pub fn app(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/ws", get(crate::net::upgrade::ws))
        .merge(crate::api::pages::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .merge(crate::api::admin::routes())
        // Applies to the routes added so far, so it comes after all of them.
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .fallback(|| async { ApiError::NoRoute })
        .with_state(hub)
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Result<&'static str, ApiError> {
    if hub.is_ready() {
        Ok("ready")
    } else {
        Err(ApiError::NotReady)
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    // One lock per tenant per scrape; nothing on the tab path pays for it.
    hub.metrics
        .registered_tabs
        .set(hub.registered_tabs() as i64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}
