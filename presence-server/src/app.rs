//! The HTTP surface of a hub: the WebSocket endpoint, the admin API, health,
//! metrics, the OpenAPI document, the browser SDK and its dashboards, plus
//! `serve`, which runs it all on a listener the caller bound (tests bind
//! 127.0.0.1:0).

use std::future::Future;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

use crate::api_error::ApiError;
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
        .route("/v1/ws", get(crate::upgrade::ws))
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
    let router = app(hub.clone());
    let (stop_http, stopping) = tokio::sync::watch::channel(false);
    // Each HTTP connection holds a receiver; `closed()` says they are all
    // gone, so the hub (and its store) is released when `serve` returns.
    let (http_alive, _) = tokio::sync::watch::channel(());
    let mut closed = hub.shutdown_signal();
    let accepting = async {
        loop {
            let stream = match listener.accept().await {
                Ok((s, _)) => s,
                Err(e) => {
                    // Out of file descriptors and the like: the tabs already
                    // open are served on; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let svc = hyper_util::service::TowerToHyperService::new(router.clone());
            let mut stopping = stopping.clone();
            let alive = http_alive.subscribe();
            tokio::spawn(async move {
                let _alive = alive;
                // HTTP/1.1 only: browsers and the ERP backend speak it, and
                // the WebSocket upgrade needs it.
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .with_upgrades();
                tokio::pin!(conn);
                tokio::select! {
                    r = conn.as_mut() => if let Err(e) = r {
                        tracing::debug!(error = %e, "http connection ended");
                    },
                    _ = crate::hub::until_true(&mut stopping) => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    };
    tokio::select! {
        _ = accepting => {}
        _ = shutdown => {}
        // The hub may also be told to stop directly.
        _ = crate::hub::until_true(&mut closed) => {}
    }
    tracing::info!("shutting down: closing tabs with 1012");
    hub.begin_shutdown();
    let _ = stop_http.send(true);
    // Sessions are not HTTP connections any more: wait for them (each sends
    // its 1012), bounded by the grace period so a tab that never answers
    // cannot hold the node.
    let grace = hub.config.shutdown_grace;
    if tokio::time::timeout(grace, hub.sessions_drained())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining connections");
    }
    if tokio::time::timeout(grace, http_alive.closed())
        .await
        .is_err()
    {
        tracing::warn!("grace period over; dropping remaining HTTP connections");
    }
    let _ = background.await;
    if let Err(e) = hub.flush_presence().await {
        tracing::warn!(error = %e, "could not persist presence at shutdown");
    }
    Ok(())
}
