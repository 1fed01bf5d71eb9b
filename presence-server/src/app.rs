//! The HTTP surface of a hub: the WebSocket endpoint, the admin API, health,
//! metrics, the OpenAPI document, the browser SDK and its dashboards, plus
//! `serve`, which runs it all on a listener the caller bound (tests bind
//! 127.0.0.1:0).

use std::future::Future;
use std::sync::Arc;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::hub::Hub;

const OPENAPI: &str = include_str!("openapi.json");
/// A minimal page to try the raw protocol by hand.
const DEMO_PAGE: &str = include_str!("../../clients/demo/index.html");
/// The browser SDK (`clients/js`) and the dashboards built on it
/// (`clients/pages`), embedded so a single binary serves them. Each page
/// takes its token from the URL fragment, which browsers never send.
const SDK: &str = include_str!("../../clients/js/presence.js");
const PAGES_JS: &str = include_str!("../../clients/pages/common.js");
const PAGES_CSS: &str = include_str!("../../clients/pages/common.css");
const USERS_PAGE: &str = include_str!("../../clients/pages/users.html");
const ATTENDANTS_PAGE: &str = include_str!("../../clients/pages/attendants.html");
const TEAM_PAGE: &str = include_str!("../../clients/pages/team.html");

/// A static file. `no-cache`: a browser revalidates, so a newer hub's SDK
/// and pages are used at once.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

const JS: &str = "text/javascript; charset=utf-8";
const HTML: &str = "text/html; charset=utf-8";

/// The whole router of a hub.
pub fn app(hub: Arc<Hub>) -> Router {
    Router::new()
        .route("/v1/ws", get(ws))
        .route("/demo", get(|| async { axum::response::Html(DEMO_PAGE) }))
        .route("/sdk/presence.js", get(|| async { asset(JS, SDK) }))
        .route("/ui/common.js", get(|| async { asset(JS, PAGES_JS) }))
        .route(
            "/ui/common.css",
            get(|| async { asset("text/css; charset=utf-8", PAGES_CSS) }),
        )
        .route("/users", get(|| async { asset(HTML, USERS_PAGE) }))
        .route(
            "/attendants",
            get(|| async { asset(HTML, ATTENDANTS_PAGE) }),
        )
        .route("/team", get(|| async { asset(HTML, TEAM_PAGE) }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/v1/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
        )
        .merge(crate::admin_api::routes())
        .with_state(hub)
}

async fn ws(State(hub): State<Arc<Hub>>, headers: HeaderMap, up: WebSocketUpgrade) -> Response {
    if hub.is_shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "node restarting").into_response();
    }
    let allowed = &hub.config.allowed_origins;
    if !allowed.is_empty() {
        let origin = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|o| allowed.iter().any(|a| a == o)) {
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    // tungstenite's own limit only guards memory; the protocol's frame limit
    // is checked by the session so that it can answer with close 4008.
    let limit = (hub.config.max_frame_bytes * 4).max(64 * 1024);
    // Most tabs are idle: a 4 KiB read buffer instead of tungstenite's
    // 128 KiB default is what keeps an idle tab a few KiB (frames are small;
    // the buffer grows for a large one). Writes go out at once: the outbox,
    // not the socket buffer, is where frames wait.
    up.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| crate::session::run(hub, socket))
}

async fn readyz(State(hub): State<Arc<Hub>>) -> Response {
    if hub.is_ready() {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
    }
}

async fn metrics(State(hub): State<Arc<Hub>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        hub.metrics.render(),
    )
}

/// Serves `hub` on `listener` until `shutdown` resolves, then closes every
/// tab with 1012, waits for them up to the grace period, and persists
/// presence.
///
/// # Errors
/// The listener failed.
pub async fn serve(
    hub: Arc<Hub>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let background = tokio::spawn(hub.clone().run_background());
    let signal_hub = hub.clone();
    let mut closed = hub.shutdown_signal();
    let server = axum::serve(listener, app(hub.clone())).with_graceful_shutdown(async move {
        shutdown.await;
        tracing::info!("shutting down: closing tabs with 1012");
        signal_hub.begin_shutdown();
    });
    // axum's graceful shutdown does not track upgraded connections: wait for
    // the sessions themselves (each sends its 1012), bounded by the grace
    // period so a tab that never answers cannot hold the node.
    let grace = hub.config.shutdown_grace;
    let result = tokio::select! {
        r = server => r,
        _ = async {
            crate::hub::until_true(&mut closed).await;
            tokio::time::sleep(grace).await;
        } => Ok(()),
    };
    if tokio::time::timeout(grace, hub.sessions_drained())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining connections");
    }
    hub.begin_shutdown();
    let _ = background.await;
    if let Err(e) = hub.flush_presence().await {
        tracing::warn!(error = %e, "could not persist presence at shutdown");
    }
    result
}
