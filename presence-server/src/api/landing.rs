//! `GET /`: the first page a person opens. In `--dev`, a landing page with
//! working links (tokens minted on each request) to every screen, the admin
//! key's curl example and the SDK; otherwise a status page with no secret
//! on it: version, node, readiness, cluster members, and where to go next.
//!
//! Rendered here rather than embedded like `pages.rs`' files: it shows the
//! node's state, and in `--dev` tokens that are fresh when the page is
//! opened (a static page would need the admin key to find them).

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::auth::mint_hs256;
use crate::dev::{DevSecrets, DEMO_TENANT};
use crate::hub::Hub;

/// How long the tokens on the `--dev` page stay valid (as the banner's).
const DEV_TOKEN_TTL_S: u64 = 12 * 3600;

/// The demo people the `--dev` page links to, and what each one shows.
/// Same people as the banner `main` prints (`dev::seed` makes them).
const PEOPLE: [(&str, &str, &[Screen]); 4] = [
    (
        "ana",
        "administrator",
        &[
            Screen::Users,
            Screen::Attendants,
            Screen::Reports,
            Screen::Demo,
        ],
    ),
    (
        "bruno",
        "supervisor of the Sales team (the report shows its members only)",
        &[Screen::Team, Screen::Reports],
    ),
    (
        "diego",
        "CRM attendant, Support team",
        &[Screen::Attendants, Screen::Team, Screen::Demo],
    ),
    (
        "fabio",
        "Finance team, not an attendant (no attendants button)",
        &[Screen::Attendants, Screen::Team],
    ),
];

/// A screen the hub serves (`pages.rs`).
#[derive(Clone, Copy)]
enum Screen {
    Users,
    Attendants,
    Team,
    Reports,
    Demo,
}

impl Screen {
    const ALL: [Screen; 5] = [
        Screen::Users,
        Screen::Attendants,
        Screen::Team,
        Screen::Reports,
        Screen::Demo,
    ];

    fn path(self) -> &'static str {
        match self {
            Screen::Users => "/users",
            Screen::Attendants => "/attendants",
            Screen::Team => "/team",
            Screen::Reports => "/reports",
            Screen::Demo => "/demo",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Screen::Users => "user management",
            Screen::Attendants => "attendants button",
            Screen::Team => "team roster",
            Screen::Reports => "attendance report",
            Screen::Demo => "protocol demo",
        }
    }
}

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![routes!(landing)]
}

/// Landing page
///
/// With --dev: links with fresh tokens of the demo tenant to every screen, the admin key's curl example and the SDK. Otherwise a status page: version, node id, readiness, cluster members (cluster mode), links to /metrics, /v1/openapi.json and the screens; no secret is on it.
#[utoipa::path(
    get,
    path = "/",
    operation_id = "landingPage",
    tag = "operations",
    responses((status = 200, description = "The page.", body = String, content_type = "text/html")),
)]
async fn landing(State(hub): State<Arc<Hub>>, headers: HeaderMap) -> Response {
    let mut page = String::with_capacity(8 * 1024);
    let dev = hub.dev();
    let title = if dev.is_some() {
        "presence hub — dev mode"
    } else {
        "presence hub"
    };
    // `write!` into a String cannot fail.
    let _ = write!(
        page,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><link rel=\"stylesheet\" href=\"/ui/common.css\">\
         <style>{STYLE}</style></head>\n<body data-mode=\"{mode}\"><main>\n<h1>{title}</h1>\n",
        mode = if dev.is_some() { "dev" } else { "status" },
    );
    status(&mut page, &hub);
    match dev {
        Some(secrets) => {
            // The Host the browser used, so the curl line works from where
            // the page was opened.
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("127.0.0.1:7700");
            dev_sections(&mut page, secrets, host, hub.now_ms() / 1000);
        }
        None => screens(&mut page),
    }
    operations(&mut page);
    page.push_str("</main></body></html>\n");
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The dev page holds secrets; the status page is live state.
            (header::CACHE_CONTROL, "no-store"),
        ],
        page,
    )
        .into_response()
}

const STYLE: &str = "main{max-width:900px}section{background:#fff;border:1px solid var(--line);\
border-radius:10px;padding:2px 16px 10px;margin:12px 0}h2{margin:12px 0 6px}p{margin:6px 0}\
dl{display:grid;grid-template-columns:max-content 1fr max-content 1fr;gap:4px 16px;margin:8px 0}\
dt{color:var(--muted)}dd{margin:0}dd ul{margin:0;padding-left:18px}pre{background:var(--bg);\
margin:6px 0;padding:6px 10px;border-radius:6px;white-space:pre-wrap;word-break:break-all}\
td,th{text-align:left;padding:4px 12px 4px 0;vertical-align:top;background:none;font-size:14px}\
th{color:var(--ink)}a{color:var(--accent);white-space:nowrap}";

/// Version, node, readiness and, in cluster mode, the members.
fn status(page: &mut String, hub: &Hub) {
    let ready = hub.is_ready();
    let (mode, node) = match hub.cluster_handle() {
        Some(h) => ("cluster", h.node.to_string()),
        None => ("single node", hub.config.node_id.clone()),
    };
    let _ = write!(
        page,
        "<section id=\"status\"><h2>Status</h2><dl>\
         <dt>version</dt><dd id=\"version\">{version}</dd>\
         <dt>node</dt><dd id=\"node\">{node}</dd>\
         <dt>mode</dt><dd id=\"mode\">{mode}</dd>\
         <dt>readiness</dt><dd id=\"ready\" data-ready=\"{ready}\">{ready_text}</dd>\
         <dt>tenants held</dt><dd id=\"tenants\">{tenants}</dd>",
        version = env!("CARGO_PKG_VERSION"),
        node = escape(&node),
        ready_text = if ready {
            "ready"
        } else {
            "not ready (shutting down, or not joined to the cluster yet)"
        },
        tenants = hub.tenant_ids().len(),
    );
    if let Some(h) = hub.cluster_handle() {
        let up = h.up.load(std::sync::atomic::Ordering::Relaxed);
        let _ = write!(
            page,
            "<dt>Redis</dt><dd id=\"redis\" data-up=\"{up}\">{}</dd>",
            if up { "connected" } else { "unreachable" }
        );
        let now = hub.now_ms();
        page.push_str("<dt>cluster members</dt><dd><ul id=\"members\">");
        for (member, last) in hub.cluster_nodes() {
            let age = now.saturating_sub(last) as f64 / 1000.0;
            let _ = write!(
                page,
                "<li data-node=\"{m}\">{m} <span class=\"muted\">(last heartbeat {age:.1} s ago)</span></li>",
                m = escape(&member),
            );
        }
        page.push_str("</ul></dd>");
    }
    page.push_str("</dl></section>\n");
}

/// The screens without a token: each takes a user's JWT in the fragment.
fn screens(page: &mut String) {
    page.push_str(
        "<section id=\"screens\"><h2>Screens</h2><p class=\"muted\">Each screen takes \
         a user's token in the URL fragment (<code>#token=&lt;JWT&gt;</code>), which \
         browsers never send; the ERP mints it.</p><ul>",
    );
    for s in Screen::ALL {
        let _ = write!(
            page,
            "<li><a href=\"{p}\">{p}</a> — {t}</li>",
            p = s.path(),
            t = s.title()
        );
    }
    page.push_str(
        "<li><a href=\"/sdk/presence.js\">/sdk/presence.js</a> — the browser SDK</li></ul></section>\n",
    );
}

/// `--dev`: the demo people's links, the admin API and the SDK.
fn dev_sections(page: &mut String, secrets: &DevSecrets, host: &str, now_s: u64) {
    let _ = write!(
        page,
        "<section id=\"screens\"><h2>Screens of the demo tenant <code>{DEMO_TENANT}</code></h2>\
         <p class=\"muted\">Open two people in two browser windows (a private one is \
         another tab) and move the mouse: the other screens follow live.</p><table>"
    );
    for (user, role, screens) in PEOPLE {
        let token = mint_hs256(
            secrets.jwt_secret.as_bytes(),
            DEMO_TENANT,
            user,
            now_s,
            DEV_TOKEN_TTL_S,
        );
        let _ = write!(
            page,
            "<tr data-user=\"{user}\"><th>{user}</th><td class=\"muted\">{role}</td><td>"
        );
        for (i, s) in screens.iter().enumerate() {
            let sep = if i == 0 { "" } else { " · " };
            let _ = write!(
                page,
                "{sep}<a data-screen=\"{name}\" href=\"{path}#token={token}\">{name}</a>",
                path = s.path(),
                name = s.title(),
                token = escape(&token),
            );
        }
        page.push_str("</td></tr>");
    }
    page.push_str("</table></section>\n");
    let _ = writeln!(
        page,
        "<section id=\"admin\"><h2>Admin API</h2><p>The ERP backend's key \
         (<code>PRESENCE_ADMIN_KEY</code>; the whole API is in \
         <a href=\"/v1/openapi.json\">/v1/openapi.json</a>):</p>\
         <pre><code id=\"curl\">curl -H 'Authorization: Bearer {key}' http://{host}/v1/tenants/{DEMO_TENANT}/stats</code></pre>\
         <p class=\"muted\">More tokens: <code>PRESENCE_JWT_SECRET=&lt;from dev-secrets.json in the \
         data directory&gt; presence-server token --tenant {DEMO_TENANT} --user elisa</code></p></section>",
        key = escape(&secrets.admin_key),
        host = escape(host),
    );
    page.push_str(
        "<section id=\"sdk\"><h2>Browser SDK</h2><p><a href=\"/sdk/presence.js\">/sdk/presence.js</a> \
         (<code>clients/js</code>, an ES module with types): the screens above are built on it.</p>\
         <pre><code>import { connect } from \"/sdk/presence.js\";\n\
         const presence = connect({ token: async () =&gt; (await fetch(\"/erp/presence-token\")).text() });\n\
         presence.watch(\"attendants\", (roster) =&gt; render(roster.users));</code></pre></section>\n",
    );
}

/// Where an operator looks: metrics, the API document, health.
fn operations(page: &mut String) {
    page.push_str(
        "<section id=\"operations\"><h2>Operations</h2><ul>\
         <li><a href=\"/metrics\">/metrics</a> — Prometheus</li>\
         <li><a href=\"/v1/openapi.json\">/v1/openapi.json</a> — the admin API</li>\
         <li><a href=\"/healthz\">/healthz</a> · <a href=\"/readyz\">/readyz</a></li>\
         </ul></section>\n",
    );
}

/// HTML text and attribute escaping.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
