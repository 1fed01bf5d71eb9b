//! `POST /v1/tenants/{tid}/presence/query`: the presence of many users in
//! one call, for an ERP or CRM screen that shows a page or a queue of users
//! and would otherwise ask `GET .../users/{uid}` once per user.
//!
//! Readers are those of the history (SPEC §11, `visibility::history_scope`):
//! a supervisor asks about their teams' members, and any other id is
//! `unknown` to them.
//!
//! Every value comes from [`admin::user_status`], the same function the
//! user views of `admin.rs` are built from, so a user's `status`, `since`,
//! `last_seen` and `v` here are what `GET .../users` shows for them.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::admin::{PresenceQuery, PresenceQueryResult, MAX_QUERY_IDS};
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::admin::{self, TenantPath};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, Path, Reader};
use crate::api::openapi::{JsonTooLarge, NotFound, NotJson, Unauthenticated};
use crate::directory::DirectoryError;
use crate::hub::Hub;
use crate::presence::visibility::{history_scope, HistoryScope};

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![routes!(query)]
}

/// Presence of many users at once
///
/// `status`, `since`, `last_seen` and `v` of each asked user, exactly as `GET .../users` shows them (users in every state, deleted included). Answered in the order asked, a repeated id once; ids the directory does not hold are listed in `unknown`. Callers: the admin key and administrators (any user), team supervisors (the members of the active teams they supervise; other ids are listed in `unknown`, as if nobody held them). From 1 to 1,000 ids per call. Reads only: nothing changes, the store is not called.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/presence/query",
    operation_id = "queryPresence",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath),
    request_body = PresenceQuery,
    responses(
        (status = 200, description = "The asked users' presence, and the ids nobody holds.", body = PresenceQueryResult),
        (status = 400, description = "Malformed JSON, a wrong field type or an unknown field; no ids (details `field`: `ids`); more than 1,000 ids (details `field`: `ids`, `limit`: 1000, `ids`: how many were sent).", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Neither the admin key, an administrator of this tenant nor a team supervisor (a supervisor's ids outside their active teams are listed in `unknown`).", body = ErrorBody),
        NotFound, JsonTooLarge, NotJson,
    )
)]
async fn query(
    reader: Reader,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
    JsonBody(req): JsonBody<PresenceQuery>,
) -> Result<Json<PresenceQueryResult>, ApiError> {
    if req.ids.is_empty() {
        return Err(ApiError::Directory(DirectoryError::Invalid {
            field: "ids".into(),
            reason: "empty; name at least one user".into(),
        }));
    }
    // Counted as sent, repeats included: the limit bounds the work of a
    // call, and a caller can check it without knowing the directory.
    if req.ids.len() > MAX_QUERY_IDS {
        return Err(ApiError::TooManyIds {
            limit: MAX_QUERY_IDS,
            ids: req.ids.len(),
        });
    }
    // Under one lock of the tenant: every answer is of the same instant,
    // as one page of `GET .../users` is.
    let result = hub.read(&tid, |t| {
        let scope = match &reader {
            Reader::Backend => Some(HistoryScope::Everyone),
            Reader::User(u) => history_scope(&t.dir, u),
        }
        .ok_or(ApiError::Forbidden(
            "only the admin key, administrators and team supervisors may query presence",
        ))?;
        let mut asked = HashSet::with_capacity(req.ids.len());
        let mut users = Vec::with_capacity(req.ids.len());
        let mut unknown = Vec::new();
        for id in &req.ids {
            if !asked.insert(id.as_str()) {
                continue;
            }
            // A supervisor is told nothing of users outside their teams.
            let status = scope
                .covers(&t.dir, id)
                .then(|| admin::user_status(t, id))
                .flatten();
            match status {
                Some(s) => users.push(s),
                None => unknown.push(id.clone()),
            }
        }
        Ok::<_, ApiError>(PresenceQueryResult { users, unknown })
    })??;
    Ok(Json(result))
}
