//! `GET /v1/openapi.json` documents exactly the routes the hub serves.
//!
//! The document is generated from the same registrations the router is
//! built from (`api/routes.rs::documented`), so a route cannot be served
//! without an entry. This checks the result from outside, through the
//! router: every documented (path, method) reaches a handler, every other
//! method on a documented path is the JSON 405, and the document is
//! well-formed OpenAPI 3 carrying what a client needs (credentials, bodies,
//! parameters, the SPEC §6 error shape).

use std::collections::BTreeSet;

use axum::body::Body;
use axum::http::{header, Method, StatusCode};
use serde_json::Value;

use crate::router::{request, Routed};
use crate::support::ADMIN_KEY;

/// Every method a request line can carry that a route could take.
const METHODS: [&str; 8] = [
    "get", "head", "put", "post", "delete", "patch", "options", "trace",
];

/// What the hub serves and a client relies on. A route added to the router
/// is added here; one missing from the document fails here.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/ws"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/v1/openapi.json"),
    ("get", "/"),
    ("get", "/demo"),
    ("get", "/sdk/presence.js"),
    ("get", "/ui/common.js"),
    ("get", "/ui/common.css"),
    ("get", "/users"),
    ("get", "/attendants"),
    ("get", "/team"),
    ("get", "/reports"),
    ("put", "/v1/tenants/{tid}"),
    ("get", "/v1/tenants/{tid}"),
    ("get", "/v1/tenants/{tid}/stats"),
    ("get", "/v1/tenants/{tid}/users"),
    ("post", "/v1/tenants/{tid}/users/deactivate"),
    ("post", "/v1/tenants/{tid}/users/reactivate"),
    ("post", "/v1/tenants/{tid}/users/import"),
    ("post", "/v1/tenants/{tid}/batch"),
    ("post", "/v1/tenants/{tid}/presence/query"),
    ("get", "/v1/tenants/{tid}/users/{uid}/history"),
    ("delete", "/v1/tenants/{tid}/users/{uid}/history"),
    ("get", "/v1/tenants/{tid}/reports/attendance"),
    ("get", "/v1/tenants/{tid}/webhooks"),
    ("put", "/v1/tenants/{tid}/webhooks/{id}"),
    ("get", "/v1/tenants/{tid}/webhooks/{id}"),
    ("delete", "/v1/tenants/{tid}/webhooks/{id}"),
    ("put", "/v1/tenants/{tid}/users/{uid}"),
    ("get", "/v1/tenants/{tid}/users/{uid}"),
    ("delete", "/v1/tenants/{tid}/users/{uid}"),
    ("put", "/v1/tenants/{tid}/teams/{team}"),
    ("get", "/v1/tenants/{tid}/teams/{team}"),
    ("delete", "/v1/tenants/{tid}/teams/{team}"),
    ("put", "/v1/tenants/{tid}/teams/{team}/members/{uid}"),
    ("delete", "/v1/tenants/{tid}/teams/{team}/members/{uid}"),
    ("get", "/v1/tenants/{tid}/teams/{team}/eligible"),
    ("get", "/v1/tenants/{tid}/events"),
    ("get", "/v1/tenants/{tid}/events/stream"),
];

async fn served() -> (Routed, Value) {
    let routed = Routed::new().await;
    let r = routed.get("/v1/openapi.json").await;
    assert_eq!(r.status, StatusCode::OK);
    let doc = r.json();
    (routed, doc)
}

/// `(method, path, operation)` of every operation in the document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (key, op) in item.as_object().expect("a path item is an object") {
            assert!(
                METHODS.contains(&key.as_str()),
                "unexpected key {key} under {path}"
            );
            out.push((key.clone(), path.clone(), op.clone()));
        }
    }
    out
}

/// Resolves every `$ref`, failing on a dangling one.
fn check_refs(doc: &Value, v: &Value) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                let r = r.as_str().unwrap();
                let target = r
                    .strip_prefix("#/")
                    .unwrap_or_else(|| panic!("not a local $ref: {r}"))
                    .split('/')
                    .fold(doc, |at, key| &at[key]);
                assert!(target.is_object(), "dangling $ref {r}");
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
async fn the_document_is_well_formed_openapi_3() {
    let (_, doc) = served().await;
    // utoipa's own model of the specification reads it back.
    let parsed: utoipa::openapi::OpenApi =
        serde_json::from_value(doc.clone()).expect("an OpenAPI document");
    assert!(!parsed.paths.paths.is_empty());
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    check_refs(&doc, &doc);

    let schemes = &doc["components"]["securitySchemes"];
    for name in ["adminKey", "adminJwt"] {
        assert_eq!(schemes[name]["type"], "http", "{name}");
        assert_eq!(schemes[name]["scheme"], "bearer", "{name}");
    }
    let tags: BTreeSet<&str> = doc["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();

    let mut ids = BTreeSet::new();
    for (m, path, op) in operations(&doc) {
        let at = format!("{m} {path}");
        assert!(op["summary"].is_string(), "{at} has no summary");
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_owned()), "{at}: operationId {id} twice");
        for t in op["tags"].as_array().expect("tags") {
            assert!(tags.contains(t.as_str().unwrap()), "{at}: tag {t}");
        }
        // Every `{param}` of the template is a declared, required path
        // parameter, and nothing else is.
        let declared: BTreeSet<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], true, "{at}: {p}"))
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let in_template: BTreeSet<&str> = path
            .split('/')
            .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .collect();
        assert_eq!(declared, in_template, "path parameters of {at}");
        // Each security requirement names a declared scheme.
        for req in op["security"].as_array().into_iter().flatten() {
            for name in req.as_object().unwrap().keys() {
                assert!(schemes[name].is_object(), "{at}: scheme {name}");
            }
        }
        // Every error answer is SPEC §6's JSON shape.
        let responses = op["responses"].as_object().expect("responses");
        assert!(!responses.is_empty(), "{at} has no responses");
        for (status, r) in responses {
            assert!(r["description"].is_string(), "{at} {status}");
            if status.starts_with('4') || status.starts_with('5') {
                assert_eq!(
                    r["content"]["application/json"]["schema"]["$ref"],
                    "#/components/schemas/Error",
                    "{at} {status}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_document_lists_every_route_a_client_relies_on() {
    let (_, doc) = served().await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let expected: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, expected);
}

#[tokio::test]
async fn every_documented_route_reaches_a_handler_and_no_other_method_does() {
    let (routed, doc) = served().await;
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.len() >= 20, "{:?}", paths.keys());
    for (path, item) in paths {
        for m in METHODS {
            let method: Method = m.to_uppercase().parse().unwrap();
            let req = request(method, &concrete(path))
                .header(header::AUTHORIZATION, format!("Bearer {ADMIN_KEY}"))
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let r = routed.send(req).await;
            let documented = !item[m].is_null();
            // axum answers HEAD with the GET handler, without a body.
            let head_of_get = m == "head" && !item["get"].is_null();
            if documented || head_of_get {
                // Not the router's fallbacks; a handler may still say the
                // tenant is unknown, the body is wrong or it wants a
                // WebSocket.
                let fallback_404 = r.status == StatusCode::NOT_FOUND
                    && !r.body.is_empty()
                    && r.json()["error"]["message"] == "no such route";
                assert!(
                    r.status != StatusCode::METHOD_NOT_ALLOWED && !fallback_404,
                    "{m} {path} is documented but not routed: {} {}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                );
            } else {
                assert_eq!(
                    r.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{m} {path} is served but not documented"
                );
                // A HEAD answer has no body to carry the code.
                if m != "head" {
                    assert_eq!(r.error_code(), "method_not_allowed", "{m} {path}");
                }
            }
        }
    }
}

#[tokio::test]
async fn admin_routes_document_their_credentials_bodies_and_errors() {
    let (_, doc) = served().await;
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorBody"]["properties"]["code"]
        ["enum"]
        .as_array()
        .expect("the error codes are listed")
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    for code in [
        "unauthenticated",
        "forbidden",
        "not_found",
        "method_not_allowed",
        "bad_request",
        "user_limit",
        "store_unavailable",
    ] {
        assert!(codes.contains(code), "{code} not in {codes:?}");
    }

    let schemes = |op: &Value| -> BTreeSet<String> {
        op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|r| r.as_object().unwrap().keys().cloned())
            .collect()
    };
    let both: BTreeSet<String> = ["adminKey".to_owned(), "adminJwt".to_owned()].into();
    for (m, path, op) in operations(&doc) {
        let at = format!("{m} {path}");
        if !path.starts_with("/v1/tenants/") {
            assert!(schemes(&op).is_empty(), "{at} takes no credentials");
            continue;
        }
        // Only the ERP backend changes a tenant's plan or its webhooks.
        if op["operationId"] == "putTenant" || path.contains("/webhooks") {
            assert_eq!(schemes(&op), ["adminKey".to_owned()].into(), "{at}");
        } else {
            assert_eq!(schemes(&op), both, "{at}");
        }
        let responses = &op["responses"];
        for status in ["401", "403"] {
            assert!(responses[status].is_object(), "{at} lacks {status}");
        }
        if m == "put" || m == "post" {
            let body = &op["requestBody"];
            assert_eq!(body["required"], true, "{at}");
            let content = body["content"].as_object().unwrap();
            let types: Vec<&str> = content.keys().map(String::as_str).collect();
            if path.ends_with("/import") {
                assert_eq!(types, ["text/csv"], "{at}");
            } else {
                assert_eq!(types, ["application/json"], "{at}");
                assert!(
                    content["application/json"]["schema"]["$ref"].is_string(),
                    "{at}"
                );
            }
            for status in ["400", "413", "415"] {
                assert!(responses[status].is_object(), "{at} lacks {status}");
            }
            // The presence query is a read that never calls the store, so
            // it cannot answer 503; every other body is a write that can.
            let reads = op["operationId"] == "queryPresence";
            assert_eq!(responses["503"].is_object(), !reads, "{at} and 503");
        } else {
            assert!(op["requestBody"].is_null(), "{at}");
        }
    }

    let list = &doc["paths"]["/v1/tenants/{tid}/users"]["get"]["parameters"];
    let query: BTreeSet<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["in"] == "query")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        query,
        ["activity", "state", "q", "limit", "cursor"].into(),
        "{list}"
    );
    let import = &doc["paths"]["/v1/tenants/{tid}/users/import"]["post"]["parameters"];
    assert!(
        import
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["in"] == "query" && p["name"] == "dry_run"),
        "{import}"
    );
}
