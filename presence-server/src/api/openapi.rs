//! The OpenAPI document of `GET /v1/openapi.json`, generated: the paths and
//! operations come from the `#[utoipa::path]` of each handler, registered
//! with the router in the same call (`api/routes.rs`), the schemas from the
//! wire types of `presence-protocol` (its `openapi` feature). What no type
//! says lives here: the document's title and overview, the tags, the two
//! bearer schemes, the error responses the handlers share, and the list of
//! error codes.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use presence_protocol::admin::{ApiError as ErrorBody, ApiErrorBody};
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{IntoResponses, Modify};

use crate::api::error::CODES;

/// The security scheme of the ERP backend: `PRESENCE_ADMIN_KEY`.
const ADMIN_KEY: &str = "adminKey";
/// The security scheme of a tenant administrator: their own JWT.
const ADMIN_JWT: &str = "adminJwt";

const OVERVIEW: &str = "Admin HTTP API of the presence hub (SPEC §6), its WebSocket endpoint, \
health, readiness and metrics. Every admin route takes `Authorization: Bearer <admin key>` \
or the JWT of an active user whose profile is `admin`, limited to that user's tenant. \
Errors are `{\"error\":{\"code\",\"message\",\"details\"?}}`. The same shape answers what \
the HTTP stack refuses on any route: an unknown route (404 `not_found`), a method the \
route does not take (405 `method_not_allowed`), a path segment that is not UTF-8 once \
decoded or a bad query string (400 `bad_request`), a body of the wrong type (415 \
`unsupported_media_type`) or over its limit (413 `payload_too_large`), a request line and \
headers over `PRESENCE_MAX_HEADER_BYTES` (431 `headers_too_large`; past hyper's memory \
backstop, 64 KiB or four times that limit, the 431 has no body), and a connection over \
`PRESENCE_MAX_CONNECTIONS` (503 `too_many_connections`, then closed). The body of a \
request is read only once its credentials are accepted.";

/// The parts of the document that no handler carries.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "presence hub", description = OVERVIEW),
    tags(
        (name = "directory", description = "Tenants, users, teams and memberships."),
        (name = "history", description = "Presence history and attendance reports of SPEC §11: each user's online intervals, per-day attendance in the tenant's time zone, erasure."),
        (name = "feed", description = "The transition feed of SPEC §10: every online/offline transition, durable, in order, replayable."),
        (name = "operations", description = "Health, readiness, metrics, this document."),
        (name = "realtime", description = "The WebSocket protocol of SPEC §5."),
        (name = "clients", description = "The browser SDK and the dashboards the hub serves."),
    ),
    components(schemas(ErrorBody, ApiErrorBody, presence_protocol::EventsGone)),
)]
pub(crate) struct Base;

/// What the document needs once every route is in: registering a route
/// puts its schemas back as derived, so this comes last.
pub(crate) fn complete(doc: &mut OpenApi) {
    SecuritySchemes.modify(doc);
    ErrorCodes.modify(doc);
}

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        let mut key = Http::new(HttpAuthScheme::Bearer);
        key.description = Some("PRESENCE_ADMIN_KEY: the ERP backend, any tenant.".into());
        components.add_security_scheme(ADMIN_KEY, SecurityScheme::Http(key));
        let mut jwt = Http::new(HttpAuthScheme::Bearer);
        jwt.bearer_format = Some("JWT".into());
        jwt.description =
            Some("Token of an active user with profile admin: their own tenant only.".into());
        components.add_security_scheme(ADMIN_JWT, SecurityScheme::Http(jwt));
    }
}

/// `ErrorBody.code` is a `String` on the wire; the document lists the
/// values the hub sends, from `api/error.rs`.
struct ErrorCodes;

impl Modify for ErrorCodes {
    fn modify(&self, doc: &mut OpenApi) {
        let body = doc
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut("ErrorBody"));
        if let Some(RefOr::T(Schema::Object(body))) = body {
            let code: Object = ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(CODES.iter().copied()))
                .description(Some(
                    "Stable, machine-readable: clients branch on it, never on `message`.",
                ))
                .build();
            body.properties.insert("code".into(), code.into());
        }
    }
}

/// The document, built once from the router's own list of routes.
pub(crate) fn document() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let doc = crate::api::routes::documented().into_openapi();
        // Serialising the document's own types cannot fail.
        doc.to_pretty_json().unwrap_or_default()
    })
}

/// This document
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "operations",
    responses(
        (status = 200, description = "OpenAPI 3.1 document.", body = Object, content_type = "application/json"),
    )
)]
pub(crate) async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], document())
}

// The error responses the admin routes share: each route lists the ones it
// can answer in its `responses(...)`; a code whose meaning depends on the
// route (409, the import's 400, 413 and 415) is written out there instead.
// Never constructed: they exist for their `IntoResponses`.

/// Missing or invalid credentials.
#[derive(IntoResponses)]
#[response(
    status = 401,
    headers(("www-authenticate" = String, description = "`Bearer`"))
)]
#[allow(dead_code)]
pub(crate) struct Unauthenticated(ErrorBody);

/// The credentials may not act on this tenant (a non-admin user, or another tenant).
#[derive(IntoResponses)]
#[response(status = 403)]
#[allow(dead_code)]
pub(crate) struct Forbidden(ErrorBody);

/// Unknown tenant, user, team or membership.
#[derive(IntoResponses)]
#[response(status = 404)]
#[allow(dead_code)]
pub(crate) struct NotFound(ErrorBody);

/// Bad input: malformed JSON, a wrong field type, an unknown field, a bad id or value. Nothing changed.
#[derive(IntoResponses)]
#[response(status = 400)]
#[allow(dead_code)]
pub(crate) struct BadRequest(ErrorBody);

/// The body is larger than `PRESENCE_MAX_BODY_BYTES` (default 1 MiB).
#[derive(IntoResponses)]
#[response(status = 413)]
#[allow(dead_code)]
pub(crate) struct JsonTooLarge(ErrorBody);

/// `Content-Type` is not `application/json` (or another `*/*+json` type).
#[derive(IntoResponses)]
#[response(status = 415)]
#[allow(dead_code)]
pub(crate) struct NotJson(ErrorBody);

/// The store is unavailable; nothing changed.
#[derive(IntoResponses)]
#[response(status = 503)]
#[allow(dead_code)]
pub(crate) struct StoreUnavailable(ErrorBody);
