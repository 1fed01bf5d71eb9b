//! The pages a hub serves from its binary: the browser SDK (`clients/js`),
//! the dashboards built on it (`clients/pages`) and the protocol demo, so a
//! single binary is all a deployment needs. Each page takes its token from
//! the URL fragment, which browsers never send.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// A minimal page to try the raw protocol by hand.
const DEMO_PAGE: &str = include_str!("../../../clients/demo/index.html");
const SDK: &str = include_str!("../../../clients/js/presence.js");
const PAGES_JS: &str = include_str!("../../../clients/pages/common.js");
const PAGES_CSS: &str = include_str!("../../../clients/pages/common.css");
const USERS_PAGE: &str = include_str!("../../../clients/pages/users.html");
const ATTENDANTS_PAGE: &str = include_str!("../../../clients/pages/attendants.html");
const TEAM_PAGE: &str = include_str!("../../../clients/pages/team.html");

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

/// The routes of the embedded pages, for any router state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/demo", get(|| async { Html(DEMO_PAGE) }))
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
}
