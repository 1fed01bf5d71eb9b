//! The one error type of the admin HTTP API: every variant maps to a status
//! and a stable code, and store internals never reach the client.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use presence_protocol::admin::{ApiError as Body, ApiErrorBody};
use serde_json::json;

use crate::admin_ops::DirectoryError;
use crate::hub::WriteError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("bad request body: {0}")]
    BadBody(String),
    #[error("bad query parameter {param}: {reason}")]
    BadQuery { param: &'static str, reason: String },
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("the store is unavailable; nothing was changed")]
    StoreUnavailable,
    #[error("the import has {} invalid rows; nothing was imported", .0.errors.len())]
    Import(presence_protocol::admin::ImportReport),
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

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, Option<serde_json::Value>) {
        match self {
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated", None),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", None),
            ApiError::BadBody(_) => (StatusCode::BAD_REQUEST, "bad_request", None),
            ApiError::BadQuery { param, .. } => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(json!({ "param": param })),
            ),
            ApiError::StoreUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", None)
            }
            ApiError::Import(report) => (
                StatusCode::BAD_REQUEST,
                "bad_request",
                Some(serde_json::to_value(report).unwrap_or_default()),
            ),
            ApiError::Directory(d) => match d {
                DirectoryError::UnknownTenant(_)
                | DirectoryError::UnknownUser(_)
                | DirectoryError::UnknownTeam(_)
                | DirectoryError::UnknownMember { .. } => {
                    (StatusCode::NOT_FOUND, "not_found", None)
                }
                DirectoryError::Invalid { field, .. } => (
                    StatusCode::BAD_REQUEST,
                    "bad_request",
                    Some(json!({ "field": field })),
                ),
                DirectoryError::UserLimit { limit, wanted } => (
                    StatusCode::CONFLICT,
                    "user_limit",
                    Some(json!({ "limit": limit, "wanted": wanted })),
                ),
                DirectoryError::UserNotActive(_) => (StatusCode::CONFLICT, "user_not_active", None),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, details) = self.parts();
        let body = Body {
            error: ApiErrorBody {
                code: code.to_owned(),
                message: self.to_string(),
                details,
            },
        };
        (status, Json(body)).into_response()
    }
}
