//! The pages a hub serves from its binary: the browser SDK (`clients/js`),
//! the dashboards built on it (`clients/pages`) and the protocol demo, so a
//! single binary is all a deployment needs. Each page takes its token from
//! the URL fragment, which browsers never send.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

/// A minimal page to try the raw protocol by hand.
const DEMO_PAGE: &str = include_str!("../../../clients/demo/index.html");
const SDK: &str = include_str!("../../../clients/js/presence.js");
const PAGES_JS: &str = include_str!("../../../clients/pages/common.js");
const PAGES_CSS: &str = include_str!("../../../clients/pages/common.css");
const USERS_PAGE: &str = include_str!("../../../clients/pages/users.html");
const ATTENDANTS_PAGE: &str = include_str!("../../../clients/pages/attendants.html");
const TEAM_PAGE: &str = include_str!("../../../clients/pages/team.html");
const REPORTS_PAGE: &str = include_str!("../../../clients/pages/reports.html");

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

/// The routes of the embedded pages, with their documentation, for any
/// router state.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Vec<UtoipaMethodRouter<S>> {
    vec![
        routes!(demo),
        routes!(sdk),
        routes!(pages_script),
        routes!(pages_style),
        routes!(users),
        routes!(attendants),
        routes!(team),
        routes!(reports),
    ]
}

/// Demo page
///
/// A minimal HTML page to try the hub by hand (the --dev tour). The token is pasted into the page (or given in the URL fragment, which browsers never send); it is never put in the WebSocket URL.
#[utoipa::path(
    get,
    path = "/demo",
    operation_id = "demoPage",
    tag = "operations",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html")),
)]
async fn demo() -> Html<&'static str> {
    Html(DEMO_PAGE)
}

/// Browser SDK
///
/// The JavaScript SDK (ES module, clients/js/presence.js): connects a tab to /v1/ws, reports activity, keeps rosters.
#[utoipa::path(
    get,
    path = "/sdk/presence.js",
    operation_id = "sdk",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/javascript")),
)]
async fn sdk() -> Response {
    asset(JS, SDK)
}

/// Dashboards' shared script
///
/// Token, connection banner and English / Brazilian Portuguese text shared by the dashboard pages.
#[utoipa::path(
    get,
    path = "/ui/common.js",
    operation_id = "pagesScript",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/javascript")),
)]
async fn pages_script() -> Response {
    asset(JS, PAGES_JS)
}

/// Dashboards' shared style
///
/// The style sheet of the dashboard pages.
#[utoipa::path(
    get,
    path = "/ui/common.css",
    operation_id = "pagesStyle",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/css")),
)]
async fn pages_style() -> Response {
    asset("text/css; charset=utf-8", PAGES_CSS)
}

/// User management screen
///
/// For administrators: every user with a green (online) or grey (offline) LED, the counters, the activity filter, search, inactive users apart, bulk deactivate/reactivate through the admin API with the administrator's own token. The page takes the user's token from the URL fragment (#token=<JWT>), which browsers never send, and connects with the SDK.
#[utoipa::path(
    get,
    path = "/users",
    operation_id = "usersPage",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/html")),
)]
async fn users() -> Response {
    asset(HTML, USERS_PAGE)
}

/// Attendants button
///
/// A top menu with the attendants button: shown only to CRM attendants, it opens a popover of the attendants online now. The page takes the user's token from the URL fragment (#token=<JWT>), which browsers never send, and connects with the SDK.
#[utoipa::path(
    get,
    path = "/attendants",
    operation_id = "attendantsPage",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/html")),
)]
async fn attendants() -> Response {
    asset(HTML, ATTENDANTS_PAGE)
}

/// Team roster
///
/// The members and supervisors of one team (?team=<id>, else the user's first team), live. The page takes the user's token from the URL fragment (#token=<JWT>), which browsers never send, and connects with the SDK.
#[utoipa::path(
    get,
    path = "/team",
    operation_id = "teamPage",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/html")),
)]
async fn team() -> Response {
    asset(HTML, TEAM_PAGE)
}

/// Attendance report screen
///
/// For administrators and team supervisors: pick a day or a range and a team; one 00:00–24:00 bar per attendant per day in the tenant's time zone with the online periods (hover for the times), time online, periods and longest gap per day, totals per attendant and per team, and a CSV download, all from GET /v1/tenants/{tid}/reports/attendance with the user's own token. The page takes the token from the URL fragment (#token=<JWT>), which browsers never send, and connects with the SDK.
#[utoipa::path(
    get,
    path = "/reports",
    operation_id = "reportsPage",
    tag = "clients",
    responses((status = 200, description = "The file.", body = String, content_type = "text/html")),
)]
async fn reports() -> Response {
    asset(HTML, REPORTS_PAGE)
}
