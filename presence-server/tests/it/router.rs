//! `api::app()`, the hub's whole router, driven with `oneshot` and no
//! socket: the routes that need none (health, readiness, metrics, the
//! OpenAPI document, the embedded pages and SDK), the JSON 404 and 405 of
//! SPEC §6, and the admin key on an admin route. The WebSocket and the
//! accept loop's own answers are in `ws_edge.rs` and `http_edge.rs`.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use presence_server::EmbeddedStore;
use presence_server::Hub;
use presence_server::Verifier;
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{test_config, ADMIN_KEY, SECRET};

/// A hub on an embedded store in a temporary directory, and its router.
pub struct Routed {
    pub app: axum::Router,
    _dir: tempfile::TempDir,
}

/// What the router answered.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("{e}: {}", String::from_utf8_lossy(&self.body));
        })
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    /// The SPEC §6 error code, asserting the body has that shape.
    pub fn error_code(&self) -> String {
        assert!(
            self.header(header::CONTENT_TYPE)
                .starts_with("application/json"),
            "{:?}",
            self.headers
        );
        let v = self.json();
        assert!(v["error"]["message"].is_string(), "{v}");
        v["error"]["code"]
            .as_str()
            .expect("an error code")
            .to_owned()
    }
}

impl Routed {
    pub async fn new() -> Routed {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let hub = Hub::new(
            test_config(),
            Verifier::hs256(SECRET.as_bytes()),
            Some(ADMIN_KEY.into()),
            store,
            None,
        )
        .await
        .unwrap();
        Routed {
            app: presence_server::app(hub),
            _dir: dir,
        }
    }

    pub async fn send(&self, req: Request<Body>) -> Answer {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = to_bytes(res.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(request(Method::GET, path).body(Body::empty()).unwrap())
            .await
    }
}

pub fn request(method: Method, path: &str) -> axum::http::request::Builder {
    Request::builder().method(method).uri(path)
}

#[tokio::test]
async fn healthz_answers_ok_in_text() {
    let r = Routed::new().await.get("/healthz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/plain"));
    assert_eq!(r.text(), "ok");
}

#[tokio::test]
async fn a_single_node_is_ready() {
    let r = Routed::new().await.get("/readyz").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.header(header::CONTENT_TYPE).starts_with("text/plain"));
    assert_eq!(r.text(), "ready");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let r = Routed::new().await.get("/metrics").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "text/plain; version=0.0.4");
    let open = r
        .text()
        .lines()
        .find(|l| l.starts_with("presence_open_tabs "))
        .unwrap_or_else(|| panic!("no presence_open_tabs in {}", r.text()));
    assert_eq!(open, "presence_open_tabs 0");
}

#[tokio::test]
async fn the_openapi_document_is_served_as_json() {
    let r = Routed::new().await.get("/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), "application/json");
    let doc = r.json();
    assert!(doc["paths"]["/v1/tenants/{tid}"].is_object(), "{doc}");
}

#[tokio::test]
async fn the_embedded_pages_and_sdk_are_served_with_their_types() {
    const JS: &str = "text/javascript; charset=utf-8";
    const HTML: &str = "text/html; charset=utf-8";
    let pages: [(&str, &str, &str); 7] = [
        (
            "/sdk/presence.js",
            JS,
            include_str!("../../../clients/js/presence.js"),
        ),
        (
            "/ui/common.js",
            JS,
            include_str!("../../../clients/pages/common.js"),
        ),
        (
            "/ui/common.css",
            "text/css; charset=utf-8",
            include_str!("../../../clients/pages/common.css"),
        ),
        (
            "/users",
            HTML,
            include_str!("../../../clients/pages/users.html"),
        ),
        (
            "/attendants",
            HTML,
            include_str!("../../../clients/pages/attendants.html"),
        ),
        (
            "/team",
            HTML,
            include_str!("../../../clients/pages/team.html"),
        ),
        (
            "/reports",
            HTML,
            include_str!("../../../clients/pages/reports.html"),
        ),
    ];
    let routed = Routed::new().await;
    for (path, content_type, file) in pages {
        let r = routed.get(path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.header(header::CONTENT_TYPE), content_type, "{path}");
        // A newer hub's SDK and pages are used at once.
        assert_eq!(r.header(header::CACHE_CONTROL), "no-cache", "{path}");
        assert!(r.text() == file, "{path} is not its file");
    }
    // The demo is a page to try by hand, served as plain HTML.
    let r = routed.get("/demo").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header(header::CONTENT_TYPE), HTML);
    assert!(r.text() == include_str!("../../../clients/demo/index.html"));
}

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let routed = Routed::new().await;
    for path in ["/nope", "/v1", "/v1/tenants", "/v1/tenants/acme/nope"] {
        let r = routed.get(path).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.error_code(), "not_found", "{path}");
    }
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_a_json_405() {
    let routed = Routed::new().await;
    for (method, path) in [
        (Method::POST, "/healthz"),
        (Method::DELETE, "/v1/tenants/acme"),
        (Method::PATCH, "/v1/tenants/acme/users/ann"),
    ] {
        let r = routed
            .send(request(method.clone(), path).body(Body::empty()).unwrap())
            .await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert_eq!(r.error_code(), "method_not_allowed", "{method} {path}");
    }
}

#[tokio::test]
async fn an_admin_route_takes_the_admin_key_and_refuses_without_it() {
    let routed = Routed::new().await;
    let put = request(Method::PUT, "/v1/tenants/acme")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"user_limit":10}"#))
        .unwrap();
    assert_eq!(routed.send(put).await.status, StatusCode::CREATED);

    let r = routed.get("/v1/tenants/acme").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header(header::WWW_AUTHENTICATE), "Bearer");
    assert_eq!(r.error_code(), "unauthenticated");

    let wrong = request(Method::GET, "/v1/tenants/acme")
        .header(header::AUTHORIZATION, "Bearer not-the-key")
        .body(Body::empty())
        .unwrap();
    let r = routed.send(wrong).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.error_code(), "unauthenticated");

    let with_key = request(Method::GET, "/v1/tenants/acme")
        .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
        .body(Body::empty())
        .unwrap();
    let r = routed.send(with_key).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r
        .header(header::CONTENT_TYPE)
        .starts_with("application/json"));
    let v = r.json();
    assert_eq!(v["id"], "acme");
    assert_eq!(v["user_limit"], 10);
}
