//! `POST /v1/tenants/{tid}/batch`: the bulk directory sync, for an ERP that
//! pushes its whole directory (users, teams, memberships) at once. All
//! items or none, in one store commit, with every refused item named.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::admin::{BatchBody, BatchReport, ItemError};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::admin::TenantPath;
use crate::api::error::{directory_status, ApiError};
use crate::api::extract::{BulkJsonBody, Caller, Path, Query};
use crate::api::openapi::{StoreUnavailable, Unauthenticated};
use crate::directory::batch::{self, Plan, MAX_ITEMS};
use crate::directory::DirectoryError;
use crate::hub::Hub;

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![routes!(post_batch)]
}

/// Taken as text and checked by the handler, so a bad value is SPEC §6's
/// `400` naming the parameter (as the CSV import's).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct BatchQuery {
    /// `true`: check every item and report, change nothing.
    #[param(value_type = Option<bool>, nullable = false, default = false)]
    dry_run: Option<String>,
}

/// Apply many directory changes at once
///
/// Upserts and deletes of users, teams and memberships, applied in order (an item sees what the items before it did), all or none: one store commit, then every effect once (tabs of deleted users closed, subscriptions whose rights are gone ended, roster deltas; a watcher whose roster would get more than max(64, a quarter of the roster) deltas gets one fresh `snapshot` of it instead, with its subscription's id). Each item is checked as its single route checks it. At most 50,000 items; the body may be as large as a CSV import (`PRESENCE_MAX_IMPORT_BYTES`).
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/batch",
    operation_id = "postBatch",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath, BatchQuery),
    request_body = BatchBody,
    responses(
        (status = 200, description = "Applied (or, with `dry_run=true`, checked: refused items are listed in `errors` and nothing changed).", body = BatchReport),
        (status = 400, description = "Refused items (details: the BatchReport, each error with the item's position and the code its single route would answer), a malformed body, no items or a bad query; nothing changed.", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Neither the admin key nor an administrator of this tenant.", body = ErrorBody),
        (status = 404, description = "Unknown tenant.", body = ErrorBody),
        (status = 409, description = "Only the plan's `user_limit` refuses the batch (code `user_limit`; details: the BatchReport, `limit` and `wanted`); nothing changed.", body = ErrorBody),
        (status = 413, description = "More than 50,000 items (`too_many_items`, details `limit` and `items`), or a body larger than `PRESENCE_MAX_IMPORT_BYTES` (`payload_too_large`).", body = ErrorBody),
        (status = 415, description = "`Content-Type` is not `application/json`.", body = ErrorBody),
        StoreUnavailable,
    )
)]
async fn post_batch(
    _: Caller,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<BatchQuery>,
    BulkJsonBody(body): BulkJsonBody<BatchBody>,
) -> Result<Json<BatchReport>, ApiError> {
    let dry_run = match q.dry_run.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::BadQuery {
                param: "dry_run",
                reason: "expected true or false".into(),
            })
        }
    };
    let items = body.items;
    if items.is_empty() {
        return Err(ApiError::Directory(DirectoryError::Invalid {
            field: "items".into(),
            reason: "empty".into(),
        }));
    }
    if items.len() > MAX_ITEMS {
        return Err(ApiError::TooManyItems {
            limit: MAX_ITEMS,
            items: items.len(),
        });
    }
    let n = items.len() as u64;
    let report_of = |p: &Plan| BatchReport {
        dry_run,
        items: n,
        users: p.users,
        teams: p.teams,
        members: p.members,
        errors: p.refusals.iter().map(item_error).collect(),
    };
    if dry_run {
        // Planned on a copy, outside the tenant lock.
        let copy = hub.read(&tid, |t| t.dir.clone())?;
        return Ok(Json(report_of(&batch::plan(copy, &items))));
    }
    let result = hub
        .write_on_copy(&tid, move |d| {
            let limit = d.tenant.user_limit;
            let p = batch::plan(d, &items);
            drop(items);
            let report = report_of(&p);
            if report.errors.is_empty() {
                return Ok((p.writes, Ok(report)));
            }
            let refusal = if p.only_over_limit() {
                ApiError::BatchOverLimit {
                    report: Box::new(report),
                    limit,
                    wanted: p.wanted_active,
                }
            } else {
                ApiError::Batch(Box::new(report))
            };
            Ok((Vec::new(), Err(refusal)))
        })
        .await?;
    result.map(Json)
}

fn item_error(r: &batch::Refusal) -> ItemError {
    let field = match &r.error {
        DirectoryError::Invalid { field, .. } => Some(field.clone()),
        _ => r.field.clone(),
    };
    ItemError {
        item: r.item,
        code: directory_status(&r.error).1.to_owned(),
        field,
        reason: r.error.to_string(),
    }
}
