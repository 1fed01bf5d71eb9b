//! The one error type of the HTTP edge (the admin API, the WebSocket
//! upgrade, and what the framework would otherwise answer in plain text):
//! every variant maps to a status and a stable code in one exhaustive
//! match, and store internals never reach the client.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use presence_protocol::admin::{ApiError as Body, ApiErrorBody, BatchReport, ImportReport};
use serde_json::json;

use crate::directory::DirectoryError;
use crate::hub::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such route")]
    NoRoute,
    #[error("this route does not take that method")]
    MethodNotAllowed,
    #[error("bad path: {0}")]
    BadPath(String),
    #[error("bad query string: {0}")]
    BadQueryString(String),
    #[error("bad query parameter {param}: {reason}")]
    BadQuery { param: &'static str, reason: String },
    #[error("the body must be {expected}")]
    UnsupportedMediaType { expected: &'static str },
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("the request line and headers are larger than {limit} bytes")]
    HeadersTooLarge { limit: usize },
    #[error("the request body could not be read")]
    BodyUnreadable,
    #[error("bad request body: {0}")]
    BadBody(String),
    #[error("this endpoint speaks WebSocket only")]
    NotWebSocket,
    #[error("WebSocket version 13 only")]
    WebSocketVersion,
    #[error("bad Sec-WebSocket-Key: {0}")]
    BadWebSocketKey(&'static str),
    #[error("origin not allowed")]
    OriginNotAllowed,
    #[error("node restarting; connect to another node")]
    NodeRestarting,
    #[error("not ready")]
    NotReady,
    #[error("too many connections waiting for hello; try again shortly")]
    TooManyPending,
    #[error("too many connections; try again shortly")]
    TooManyConnections,
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("the store is unavailable; nothing was changed")]
    StoreUnavailable,
    #[error("the events after this cursor are past the tenant's retention; resynchronise from GET .../users, then read on from the oldest cursor held")]
    EventsGone { oldest: u64 },
    #[error("the import has {} invalid rows; nothing was imported", .0.errors.len())]
    Import(ImportReport),
    #[error(
        "the import would make {wanted} active users on a plan of {limit}; nothing was imported"
    )]
    ImportOverLimit {
        report: ImportReport,
        limit: u64,
        wanted: u64,
    },
    #[error("the batch has {} refused items; nothing was changed", .0.errors.len())]
    Batch(Box<BatchReport>),
    #[error(
        "the batch would make {wanted} active users on a plan of {limit}; nothing was changed"
    )]
    BatchOverLimit {
        report: Box<BatchReport>,
        limit: u64,
        wanted: u64,
    },
    #[error("the batch has {items} items; at most {limit} are taken at once")]
    TooManyItems { limit: usize, items: usize },
    /// A presence query over its limit: a bad request (not a 413 like a
    /// batch's), since the caller splits it by count, not by bytes.
    #[error("the query has {ids} ids; at most {limit} are taken at once")]
    TooManyIds { limit: usize, ids: usize },
}

impl From<crate::feed::reader::ReadError> for ApiError {
    fn from(e: crate::feed::reader::ReadError) -> Self {
        use crate::feed::reader::ReadError;
        match e {
            ReadError::Directory(d) => ApiError::Directory(d),
            ReadError::Gone { oldest } => ApiError::EventsGone { oldest },
            ReadError::Store(s) => {
                tracing::error!(error = %s, "store read failed");
                ApiError::StoreUnavailable
            }
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(s: crate::store::StoreError) -> Self {
        tracing::error!(error = %s, "store call failed");
        ApiError::StoreUnavailable
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Directory(d) => ApiError::Directory(d),
            WriteError::Store(s) => {
                tracing::error!(error = %s, "store write failed");
                ApiError::StoreUnavailable
            }
        }
    }
}

/// Every `code` a variant can become, in the order SPEC §6 lists them: the
/// OpenAPI document's enum of `ErrorBody.code` (`api/openapi.rs`). The
/// test `every_code_is_listed` keeps it equal to what `wire` answers.
pub(crate) const CODES: &[&str] = &[
    "unauthenticated",
    "forbidden",
    "bad_request",
    "not_found",
    "user_limit",
    "user_not_active",
    "store_unavailable",
    "events_gone",
    "method_not_allowed",
    "unsupported_media_type",
    "payload_too_large",
    "too_many_items",
    "headers_too_large",
    "upgrade_required",
    "too_many_pending",
    "too_many_connections",
    "node_restarting",
    "not_ready",
];

/// The status and code of a refused directory request: what a single
/// admin call answers, and the `code` of a batch's refused item.
pub(crate) fn directory_status(d: &DirectoryError) -> (StatusCode, &'static str) {
    use StatusCode as S;
    match d {
        DirectoryError::UnknownTenant(_)
        | DirectoryError::UnknownUser(_)
        | DirectoryError::UnknownTeam(_)
        | DirectoryError::UnknownWebhook(_)
        | DirectoryError::UnknownMember { .. } => (S::NOT_FOUND, "not_found"),
        DirectoryError::Invalid { .. } => (S::BAD_REQUEST, "bad_request"),
        DirectoryError::UserLimit { .. } => (S::CONFLICT, "user_limit"),
        DirectoryError::UserNotActive(_) => (S::CONFLICT, "user_not_active"),
    }
}

/// What a variant becomes on the wire.
struct Wire {
    status: StatusCode,
    code: &'static str,
    details: Option<serde_json::Value>,
    /// Headers the status requires (RFC 9110 / RFC 6455), as static
    /// `(name, value)` pairs.
    headers: &'static [(&'static str, &'static str)],
}

fn wire(status: StatusCode, code: &'static str) -> Wire {
    Wire {
        status,
        code,
        details: None,
        headers: &[],
    }
}

impl Wire {
    fn details(self, details: serde_json::Value) -> Wire {
        Wire {
            details: Some(details),
            ..self
        }
    }

    fn headers(self, headers: &'static [(&'static str, &'static str)]) -> Wire {
        Wire { headers, ..self }
    }
}

/// A 426 must name the protocol to upgrade to, with `Connection: upgrade`
/// (RFC 9110 §15.5.22, §7.8).
const UPGRADE_TO_WEBSOCKET: &[(&str, &str)] =
    &[("upgrade", "websocket"), ("connection", "upgrade")];
/// The only version this hub speaks (RFC 6455 §4.4).
const WEBSOCKET_VERSION: &[(&str, &str)] = &[
    ("upgrade", "websocket"),
    ("connection", "upgrade"),
    ("sec-websocket-version", "13"),
];
/// The request was not (fully) read: the connection cannot be reused.
const CLOSE: &[(&str, &str)] = &[("connection", "close")];

impl ApiError {
    fn wire(&self) -> Wire {
        use StatusCode as S;
        match self {
            ApiError::Unauthenticated => {
                wire(S::UNAUTHORIZED, "unauthenticated").headers(&[("www-authenticate", "Bearer")])
            }
            ApiError::Forbidden(_) | ApiError::OriginNotAllowed => wire(S::FORBIDDEN, "forbidden"),
            ApiError::NoRoute => wire(S::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => wire(S::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::BadPath(_)
            | ApiError::BadQueryString(_)
            | ApiError::BodyUnreadable
            | ApiError::BadBody(_) => wire(S::BAD_REQUEST, "bad_request"),
            ApiError::BadWebSocketKey(_) => wire(S::BAD_REQUEST, "bad_request")
                .details(json!({ "header": "sec-websocket-key" })),
            ApiError::BadQuery { param, .. } => {
                wire(S::BAD_REQUEST, "bad_request").details(json!({ "param": param }))
            }
            ApiError::UnsupportedMediaType { expected } => {
                wire(S::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
                    .details(json!({ "expected": expected }))
            }
            ApiError::PayloadTooLarge { limit } => wire(S::PAYLOAD_TOO_LARGE, "payload_too_large")
                .details(json!({ "limit": limit }))
                .headers(CLOSE),
            ApiError::HeadersTooLarge { limit } => {
                wire(S::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large")
                    .details(json!({ "limit": limit }))
                    .headers(CLOSE)
            }
            ApiError::NotWebSocket => {
                wire(S::UPGRADE_REQUIRED, "upgrade_required").headers(UPGRADE_TO_WEBSOCKET)
            }
            ApiError::WebSocketVersion => {
                wire(S::UPGRADE_REQUIRED, "upgrade_required").headers(WEBSOCKET_VERSION)
            }
            ApiError::NodeRestarting => wire(S::SERVICE_UNAVAILABLE, "node_restarting"),
            ApiError::NotReady => wire(S::SERVICE_UNAVAILABLE, "not_ready"),
            ApiError::TooManyPending => wire(S::SERVICE_UNAVAILABLE, "too_many_pending"),
            ApiError::TooManyConnections => {
                wire(S::SERVICE_UNAVAILABLE, "too_many_connections").headers(CLOSE)
            }
            ApiError::StoreUnavailable => wire(S::SERVICE_UNAVAILABLE, "store_unavailable"),
            ApiError::EventsGone { oldest } => {
                wire(S::GONE, "events_gone").details(json!({ "oldest": oldest }))
            }
            ApiError::Import(report) => wire(S::BAD_REQUEST, "bad_request")
                .details(serde_json::to_value(report).unwrap_or_default()),
            ApiError::ImportOverLimit {
                report,
                limit,
                wanted,
            } => {
                let mut details = serde_json::to_value(report).unwrap_or_default();
                if let Some(d) = details.as_object_mut() {
                    d.insert("limit".into(), json!(limit));
                    d.insert("wanted".into(), json!(wanted));
                }
                wire(S::CONFLICT, "user_limit").details(details)
            }
            ApiError::Batch(report) => wire(S::BAD_REQUEST, "bad_request")
                .details(serde_json::to_value(report).unwrap_or_default()),
            ApiError::BatchOverLimit {
                report,
                limit,
                wanted,
            } => {
                let mut details = serde_json::to_value(report).unwrap_or_default();
                if let Some(d) = details.as_object_mut() {
                    d.insert("limit".into(), json!(limit));
                    d.insert("wanted".into(), json!(wanted));
                }
                wire(S::CONFLICT, "user_limit").details(details)
            }
            ApiError::TooManyItems { limit, items } => wire(S::PAYLOAD_TOO_LARGE, "too_many_items")
                .details(json!({ "limit": limit, "items": items })),
            ApiError::TooManyIds { limit, ids } => wire(S::BAD_REQUEST, "bad_request")
                .details(json!({ "field": "ids", "limit": limit, "ids": ids })),
            ApiError::Directory(d) => {
                let (status, code) = directory_status(d);
                match d {
                    DirectoryError::Invalid { field, .. } => {
                        wire(status, code).details(json!({ "field": field }))
                    }
                    DirectoryError::UserLimit { limit, wanted } => {
                        wire(status, code).details(json!({ "limit": limit, "wanted": wanted }))
                    }
                    _ => wire(status, code),
                }
            }
        }
    }

    /// The status, the headers it requires and the SPEC §6 body,
    /// `{"error":{"code","message","details"?}}`.
    fn render(&self) -> (StatusCode, &'static [(&'static str, &'static str)], Body) {
        let Wire {
            status,
            code,
            details,
            headers,
        } = self.wire();
        let body = Body {
            error: ApiErrorBody {
                code: code.to_owned(),
                message: self.to_string(),
                details,
            },
        };
        (status, headers, body)
    }

    /// The whole HTTP/1.1 response as bytes, for the accept loop, which
    /// refuses a connection before hyper (and the router) ever see it.
    pub fn http1_response(&self) -> Vec<u8> {
        let (status, headers, body) = self.render();
        // Serialising strings and a JSON value cannot fail.
        let body = serde_json::to_string(&body).unwrap_or_default();
        let mut out = format!(
            "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            body.len()
        );
        for (name, value) in headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&body);
        out.into_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, headers, body) = self.render();
        let mut res = (status, Json(body)).into_response();
        for (name, value) in headers {
            res.headers_mut().insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use presence_protocol::admin::{BatchCounts, BatchReport, ImportReport};

    use super::{ApiError, CODES};
    use crate::directory::DirectoryError;

    /// One of each variant (and of each `DirectoryError`): a variant added
    /// to `ApiError` without a line here fails `every_variant_is_sampled`.
    fn one_of_each() -> Vec<ApiError> {
        let report = ImportReport {
            dry_run: false,
            rows: 0,
            created: 0,
            updated: 0,
            errors: Vec::new(),
        };
        let batch = BatchReport {
            dry_run: false,
            items: 1,
            users: BatchCounts::default(),
            teams: BatchCounts::default(),
            members: BatchCounts::default(),
            errors: Vec::new(),
        };
        vec![
            ApiError::Unauthenticated,
            ApiError::Forbidden("x"),
            ApiError::NoRoute,
            ApiError::MethodNotAllowed,
            ApiError::BadPath("x".into()),
            ApiError::BadQueryString("x".into()),
            ApiError::BadQuery {
                param: "x",
                reason: "x".into(),
            },
            ApiError::UnsupportedMediaType { expected: "x" },
            ApiError::PayloadTooLarge { limit: 1 },
            ApiError::HeadersTooLarge { limit: 1 },
            ApiError::BodyUnreadable,
            ApiError::BadBody("x".into()),
            ApiError::NotWebSocket,
            ApiError::WebSocketVersion,
            ApiError::BadWebSocketKey("x"),
            ApiError::OriginNotAllowed,
            ApiError::NodeRestarting,
            ApiError::NotReady,
            ApiError::TooManyPending,
            ApiError::TooManyConnections,
            ApiError::Directory(DirectoryError::UnknownTenant("x".into())),
            ApiError::Directory(DirectoryError::UnknownUser("x".into())),
            ApiError::Directory(DirectoryError::UnknownTeam("x".into())),
            ApiError::Directory(DirectoryError::UnknownMember {
                team: "x".into(),
                user: "x".into(),
            }),
            ApiError::Directory(DirectoryError::Invalid {
                field: "x".into(),
                reason: "x".into(),
            }),
            ApiError::Directory(DirectoryError::UserLimit {
                limit: 1,
                wanted: 2,
            }),
            ApiError::Directory(DirectoryError::UserNotActive("x".into())),
            ApiError::StoreUnavailable,
            ApiError::EventsGone { oldest: 1 },
            ApiError::Import(report.clone()),
            ApiError::ImportOverLimit {
                report,
                limit: 1,
                wanted: 2,
            },
            ApiError::Directory(DirectoryError::UnknownWebhook("x".into())),
            ApiError::Batch(Box::new(batch.clone())),
            ApiError::BatchOverLimit {
                report: Box::new(batch),
                limit: 1,
                wanted: 2,
            },
            ApiError::TooManyItems { limit: 1, items: 2 },
            ApiError::TooManyIds { limit: 1, ids: 2 },
        ]
    }

    /// Exhaustive, so the compiler points here when a variant is added.
    fn sampled(e: &ApiError) -> usize {
        match e {
            ApiError::Unauthenticated => 0,
            ApiError::Forbidden(_) => 1,
            ApiError::NoRoute => 2,
            ApiError::MethodNotAllowed => 3,
            ApiError::BadPath(_) => 4,
            ApiError::BadQueryString(_) => 5,
            ApiError::BadQuery { .. } => 6,
            ApiError::UnsupportedMediaType { .. } => 7,
            ApiError::PayloadTooLarge { .. } => 8,
            ApiError::HeadersTooLarge { .. } => 9,
            ApiError::BodyUnreadable => 10,
            ApiError::BadBody(_) => 11,
            ApiError::NotWebSocket => 12,
            ApiError::WebSocketVersion => 13,
            ApiError::BadWebSocketKey(_) => 14,
            ApiError::OriginNotAllowed => 15,
            ApiError::NodeRestarting => 16,
            ApiError::NotReady => 17,
            ApiError::TooManyPending => 18,
            ApiError::TooManyConnections => 19,
            ApiError::Directory(d) => match d {
                DirectoryError::UnknownTenant(_) => 20,
                DirectoryError::UnknownUser(_) => 21,
                DirectoryError::UnknownTeam(_) => 22,
                DirectoryError::UnknownMember { .. } => 23,
                DirectoryError::Invalid { .. } => 24,
                DirectoryError::UserLimit { .. } => 25,
                DirectoryError::UserNotActive(_) => 26,
                DirectoryError::UnknownWebhook(_) => 31,
            },
            ApiError::StoreUnavailable => 27,
            ApiError::EventsGone { .. } => 28,
            ApiError::Import(_) => 29,
            ApiError::ImportOverLimit { .. } => 30,
            ApiError::Batch(_) => 32,
            ApiError::BatchOverLimit { .. } => 33,
            ApiError::TooManyItems { .. } => 34,
            ApiError::TooManyIds { .. } => 35,
        }
    }

    #[test]
    fn every_variant_is_sampled() {
        let seen: Vec<usize> = one_of_each().iter().map(sampled).collect();
        assert_eq!(seen, (0..36).collect::<Vec<_>>());
    }

    #[test]
    fn every_code_is_listed() {
        let answered: BTreeSet<&str> = one_of_each().iter().map(|e| e.wire().code).collect();
        let listed: BTreeSet<&str> = CODES.iter().copied().collect();
        assert_eq!(listed.len(), CODES.len(), "a code listed twice");
        assert_eq!(answered, listed);
    }

    #[test]
    fn a_refusal_before_hyper_is_a_complete_json_response() {
        let bytes = ApiError::TooManyConnections.http1_response();
        let text = std::str::from_utf8(&bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("connection: close"), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "too_many_connections");
    }
}
