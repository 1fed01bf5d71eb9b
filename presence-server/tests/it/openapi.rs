//! `GET /v1/openapi.json` documents exactly the routes the hub serves.
//!
//! The routes are read from the router's source (`app.rs` and
//! `admin_api.rs::routes`), so a route added without documentation, or
//! documentation of a route that does not exist, fails here; each one is
//! then probed on a live hub.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::support::*;

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// `(path, method)` of every `.route(...)` call in `src`.
fn routes_in(src: &str) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let calls: Vec<&str> = src.split(".route(").skip(1).collect();
    for call in calls {
        // The part of the call before the next builder method.
        let call = call
            .split(".merge(")
            .next()
            .and_then(|c| c.split(".with_state(").next())
            .unwrap_or(call);
        let path = call
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("a route without a path literal: {call}"));
        let rest = &call[call.find(path).unwrap() + path.len()..];
        let mut any = false;
        for m in METHODS {
            let needle = format!("{m}(");
            let found = rest.match_indices(&needle).any(|(i, _)| {
                i == 0
                    || !rest.as_bytes()[i - 1].is_ascii_alphanumeric()
                        && rest.as_bytes()[i - 1] != b'_'
            });
            if found {
                out.insert((path.to_owned(), m.to_owned()));
                any = true;
            }
        }
        assert!(any, "no method found for route {path}");
    }
    out
}

/// Routes the router is built from.
fn served_routes() -> BTreeSet<(String, String)> {
    let app = include_str!("../../src/api/routes.rs");
    let admin = include_str!("../../src/api/admin.rs");
    let start = admin
        .find("pub fn routes()")
        .expect("admin_api.rs defines routes()");
    let body = &admin[start..];
    let body = &body[..body.find("\n}\n").expect("routes() ends")];
    let mut all = routes_in(app);
    all.extend(routes_in(body));
    all.extend(routes_in(include_str!("../../src/api/pages.rs")));
    all
}

fn documented_routes(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (key, _) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&key.as_str()) {
                out.insert((path.clone(), key.clone()));
            } else {
                assert!(
                    ["parameters", "summary", "description"].contains(&key.as_str()),
                    "unexpected key {key} under {path}"
                );
            }
        }
    }
    out
}

/// Resolves `#/components/schemas/X` references, failing on dangling ones.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                let r = r.as_str().unwrap();
                let name = r
                    .strip_prefix("#/components/schemas/")
                    .unwrap_or_else(|| panic!("unexpected $ref {r}"));
                assert!(
                    doc["components"]["schemas"].get(name).is_some(),
                    "dangling $ref {r}"
                );
            }
            m.values().for_each(|x| check_refs(doc, x));
        }
        Value::Array(a) => a.iter().for_each(|x| check_refs(doc, x)),
        _ => {}
    }
}

fn concrete(path: &str) -> String {
    path.replace("{tid}", "no-such-tenant")
        .replace("{uid}", "no-such-user")
        .replace("{team}", "no-such-team")
}

#[tokio::test]
async fn openapi_document_covers_exactly_the_served_routes() {
    let h = TestHub::start().await;
    let resp = reqwest::get(format!("http://{}/v1/openapi.json", h.addr))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let doc: Value = resp.json().await.expect("the document is JSON");
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.0")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    check_refs(&doc, &doc);

    let served = served_routes();
    assert!(served.len() >= 20, "parsed too few routes: {served:?}");
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served but not documented: {undocumented:?}"
    );
    assert!(phantom.is_empty(), "documented but not served: {phantom:?}");

    for (path, item) in doc["paths"].as_object().unwrap() {
        // Every `{param}` of the template is declared as a path parameter.
        let declared: BTreeSet<&str> = item["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, in_template, "path parameters of {path}");
        for m in METHODS {
            let op = &item[m];
            if !op.is_null() {
                assert!(op["summary"].is_string(), "{m} {path} has no summary");
                assert!(
                    op["responses"].as_object().is_some_and(|r| !r.is_empty()),
                    "{m} {path} has no responses"
                );
            }
        }
    }

    // Each documented route is routed (a handler answers, even if only to
    // say the tenant is unknown), and no undocumented method is.
    let http = reqwest::Client::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            let url = format!("http://{}{}", h.addr, concrete(path));
            let resp = http
                .request(m.to_uppercase().parse().unwrap(), &url)
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap();
            if item[m].is_null() {
                assert_eq!(status, 405, "{m} {path} is served but not documented");
            } else {
                // The router's fallback, not a handler's "unknown tenant".
                let router_404 = status == 404 && body.contains("no such route");
                assert!(
                    status != 405 && !router_404,
                    "{m} {path} is documented but not routed: {status} {body}"
                );
            }
        }
    }
}
