//! What the admin API takes from a request, each piece rejected with an
//! [`ApiError`] (so with SPEC §6's JSON shape, never axum's plain text):
//! the caller, path parameters, the query string, a JSON body and a CSV
//! body.
//!
//! Handlers list [`Caller`] (or [`Backend`]) before their body extractor;
//! axum runs extractors in order and only the last one may read the body,
//! so a request is authorised before a byte of its body is read, and an
//! unauthenticated upload costs the hub its headers only.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, RawPathParams, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use futures_util::StreamExt;
use presence_protocol::{Profile, UserState};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::hub::Hub;

/// Who is calling: the ERP backend with the admin key (any tenant), or an
/// administrator of the tenant named in the path, with their own token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    Backend,
    TenantAdmin,
}

impl FromRequestParts<Arc<Hub>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let tid = path_tenant(parts, hub).await?;
        authorize(hub, &parts.headers, &tid)
    }
}

/// The ERP backend only (the admin key): tenant administrators may not
/// change their own tenant's plan.
pub struct Backend;

impl FromRequestParts<Arc<Hub>> for Backend {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        match Caller::from_request_parts(parts, hub).await? {
            Caller::Backend => Ok(Backend),
            Caller::TenantAdmin => Err(ApiError::Forbidden(
                "only the ERP backend may change a tenant",
            )),
        }
    }
}

/// A reader of presence history (SPEC §11): the admin key, or any user of
/// the tenant named in the path with their own token; what a user may read
/// is decided with the directory (`visibility::history_scope`), so a
/// supervisor gets in here and is limited there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reader {
    Backend,
    User(String),
}

impl FromRequestParts<Arc<Hub>> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        let tid = path_tenant(parts, hub).await?;
        identify(hub, &parts.headers, &tid)
    }
}

/// The `{tid}` of the path: every admin route is under `/v1/tenants/{tid}`.
async fn path_tenant(parts: &mut Parts, hub: &Arc<Hub>) -> Result<String, ApiError> {
    let params = RawPathParams::from_request_parts(parts, hub)
        .await
        .map_err(|e| ApiError::BadPath(e.body_text()))?;
    params
        .iter()
        .find_map(|(k, v)| (k == "tid").then(|| v.to_owned()))
        .ok_or(ApiError::NoRoute)
}

fn bearer(headers: &HeaderMap) -> Result<&str, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthenticated)
}

/// Whether `token` is the admin key (compared in constant time).
fn is_admin_key(hub: &Hub, token: &str) -> bool {
    hub.admin_key()
        .is_some_and(|key| bool::from(key.as_bytes().ct_eq(token.as_bytes())))
}

/// Who holds the bearer token: the admin key, or a user of `tid` (a valid
/// token of another tenant is refused).
fn identify(hub: &Hub, headers: &HeaderMap, tid: &str) -> Result<Reader, ApiError> {
    let token = bearer(headers)?;
    if is_admin_key(hub, token) {
        return Ok(Reader::Backend);
    }
    let claims = hub
        .verifier
        .verify(token)
        .map_err(|_| ApiError::Unauthenticated)?;
    if claims.tid != tid {
        return Err(ApiError::Forbidden("token is for another tenant"));
    }
    Ok(Reader::User(claims.sub))
}

fn authorize(hub: &Hub, headers: &HeaderMap, tid: &str) -> Result<Caller, ApiError> {
    let sub = match identify(hub, headers, tid)? {
        Reader::Backend => return Ok(Caller::Backend),
        Reader::User(sub) => sub,
    };
    let admin = hub
        .read(tid, |t| {
            t.dir
                .users
                .get(&sub)
                .is_some_and(|u| u.state == UserState::Active && u.profile == Profile::Admin)
        })
        .unwrap_or(false);
    if admin {
        Ok(Caller::TenantAdmin)
    } else {
        Err(ApiError::Forbidden(
            "only administrators may use the admin API",
        ))
    }
}

/// axum's `Path`, rejected as `400 bad_request` (e.g. `%FF`, which is not
/// UTF-8 once decoded).
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Path(p.0))
            .map_err(|e| ApiError::BadPath(e.body_text()))
    }
}

/// axum's `Query`, rejected as `400 bad_request`.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| ApiError::BadQueryString(e.body_text()))
    }
}

/// A JSON body: `Content-Type: application/json` (or any `*/*+json`), at
/// most `PRESENCE_MAX_BODY_BYTES`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Hub>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                expected: "application/json",
            });
        }
        let bytes = read_body(req, hub.config.max_body_bytes).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::BadBody(e.to_string()))
    }
}

/// A bulk JSON body (`POST .../batch`): like [`JsonBody`], but as large as
/// a CSV import may be (`PRESENCE_MAX_IMPORT_BYTES`), since a batch carries
/// what an import would: 20,000 memberships are about 1.4 MB of JSON.
pub struct BulkJsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<Hub>> for BulkJsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType {
                expected: "application/json",
            });
        }
        let bytes = read_body(req, hub.config.max_import_bytes).await?;
        serde_json::from_slice(&bytes)
            .map(BulkJsonBody)
            .map_err(|e| ApiError::BadBody(e.to_string()))
    }
}

/// A CSV body: `Content-Type: text/csv`, at most
/// `PRESENCE_MAX_IMPORT_BYTES`.
pub struct CsvBody(pub Bytes);

impl FromRequest<Arc<Hub>> for CsvBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, hub: &Arc<Hub>) -> Result<Self, ApiError> {
        if !media_type(req.headers())
            .is_some_and(|(t, s)| t.eq_ignore_ascii_case("text") && s.eq_ignore_ascii_case("csv"))
        {
            return Err(ApiError::UnsupportedMediaType {
                expected: "text/csv",
            });
        }
        read_body(req, hub.config.max_import_bytes)
            .await
            .map(CsvBody)
    }
}

/// The type and subtype of `Content-Type`, parameters (`charset`) ignored.
fn media_type(headers: &HeaderMap) -> Option<(&str, &str)> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.split_once('/')
}

fn is_json(headers: &HeaderMap) -> bool {
    media_type(headers).is_some_and(|(t, s)| {
        (t.eq_ignore_ascii_case("application") && s.eq_ignore_ascii_case("json"))
            || s.len() > 5 && s.as_bytes()[s.len() - 5..].eq_ignore_ascii_case(b"+json")
    })
}

/// Reads the whole body, refusing it as soon as it is known to exceed
/// `limit`: at once when `Content-Length` says so, otherwise on the chunk
/// that crosses it, so the hub never holds more than `limit` of it.
///
/// With a `Content-Length`, the buffer is allocated once at its size: a
/// 32 MiB import is then one 32 MiB buffer, not a doubling series of copies.
async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    // At most `limit`, checked above.
    let mut buf = Vec::with_capacity(declared.unwrap_or(0) as usize);
    let mut chunks = Body::into_data_stream(req.into_body());
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| {
            tracing::debug!(error = %e, "request body unreadable");
            ApiError::BodyUnreadable
        })?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(buf))
}

#[cfg(test)]
mod tests {
    use axum::http::{header, HeaderMap, HeaderValue};

    fn with_type(t: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(t));
        h
    }

    #[test]
    fn json_media_types_include_suffixes_and_parameters() {
        for t in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
            "application/vnd.presence+JSON",
        ] {
            assert!(super::is_json(&with_type(t)), "{t}");
        }
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "text/csv",
            "+json",
            "application/jsonx",
        ] {
            assert!(!super::is_json(&with_type(t)), "{t}");
        }
        assert!(!super::is_json(&HeaderMap::new()));
    }
}
