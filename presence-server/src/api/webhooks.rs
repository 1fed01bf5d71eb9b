//! The webhook routes of SPEC §10: `PUT/GET/DELETE
//! /v1/tenants/{tid}/webhooks/{id}` and the list. Only the admin key (the
//! ERP backend) may use them: a webhook's target and secret decide where
//! the tenant's presence goes, which is not a tenant administrator's call.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::{WebhookList, WebhookPut, WebhookView};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::admin::TenantPath;
use crate::api::error::ApiError;
use crate::api::extract::{Backend, JsonBody, Path};
use crate::api::openapi::{
    Forbidden, JsonTooLarge, NotFound, NotJson, StoreUnavailable, Unauthenticated,
};
use crate::directory::{webhooks as ops, DirectoryError};
use crate::hub::Hub;
use crate::webhook::{target, view::view};

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![
        routes!(put_webhook, get_webhook, delete_webhook),
        routes!(list_webhooks),
    ]
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct WebhookPath {
    /// Tenant id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    tid: String,
    /// The webhook's id, chosen by the caller.
    #[param(min_length = 1, max_length = 128)]
    id: String,
}

fn bad_url(e: target::TargetError) -> ApiError {
    ApiError::Directory(DirectoryError::Invalid {
        field: "url".into(),
        reason: e.to_string(),
    })
}

/// Create or update a webhook
///
/// Deliveries are `POST`s of `{"events":[...]}` (up to `PRESENCE_WEBHOOK_BATCH_MAX` events, sent after at most `PRESENCE_WEBHOOK_BATCH_WAIT_MS`) to `url`, signed in `Presence-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`. Per user, events arrive in `v` order, and an event is sent only after every earlier one was acknowledged with a 2xx; failures are retried with backoff for as long as the events are retained. A new webhook starts with the events after `after` (default: from now on); an existing one keeps its place, and a `PUT` clears its `failing` mark. A `url` whose host resolves to a private, loopback or link-local address is refused unless the operator allows it (`PRESENCE_WEBHOOK_ALLOWED_HOSTS`). Admin key only.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/webhooks/{id}",
    operation_id = "putWebhook",
    tag = "feed",
    security(("adminKey" = [])),
    params(WebhookPath),
    request_body = WebhookPut,
    responses(
        (status = 200, description = "Updated.", body = WebhookView),
        (status = 201, description = "Created.", body = WebhookView),
        (status = 400, description = "A bad id, URL (or a target not allowed), secret or filter; `details.field` names it.", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not the admin key (a tenant administrator may not configure webhooks).", body = ErrorBody),
        NotFound, JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn put_webhook(
    _: Backend,
    State(hub): State<Arc<Hub>>,
    Path(WebhookPath { tid, id }): Path<WebhookPath>,
    JsonBody(req): JsonBody<WebhookPut>,
) -> Result<impl IntoResponse, ApiError> {
    let url = target::parse_url(&req.url).map_err(bad_url)?;
    let cursor = hub.read(&tid, |t| *t.feed_watch().borrow())?;
    target::check(&hub.config.webhooks.allowed_hosts, &url)
        .await
        .map_err(bad_url)?;
    let generation = uuid::Uuid::new_v4().to_string();
    let now = hub.now_ms();
    let created = hub
        .write(&tid, |d| {
            ops::put_webhook(d, &id, &req, cursor, &generation, now)
        })
        .await?;
    hub.notify_webhooks();
    let v = current(&hub, &tid, &id).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(v)))
}

async fn current(hub: &Hub, tid: &str, id: &str) -> Result<WebhookView, ApiError> {
    let rec = hub
        .read(tid, |t| t.dir.webhooks.get(id).cloned())?
        .ok_or_else(|| DirectoryError::UnknownWebhook(id.to_owned()))?;
    Ok(view(hub, tid, &rec).await?)
}

/// Read a webhook and its delivery state
///
/// The settings without the secret, and how delivery goes: `status` (`ok`, `retrying`, or `failing` when undelivered events were trimmed past the retention: resynchronise from `GET .../users` and the pull API, then `PUT` the webhook), the cursor delivered up to, `pending` events, `oldest_pending_age_ms`, `last_success_at`, `last_error`. Admin key only.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/webhooks/{id}",
    operation_id = "getWebhook",
    tag = "feed",
    security(("adminKey" = [])),
    params(WebhookPath),
    responses(
        (status = 200, description = "The webhook.", body = WebhookView),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn get_webhook(
    _: Backend,
    State(hub): State<Arc<Hub>>,
    Path(WebhookPath { tid, id }): Path<WebhookPath>,
) -> Result<Json<WebhookView>, ApiError> {
    Ok(Json(current(&hub, &tid, &id).await?))
}

/// Delete a webhook
///
/// Deliveries stop (one in flight may still arrive). Admin key only.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/webhooks/{id}",
    operation_id = "deleteWebhook",
    tag = "feed",
    security(("adminKey" = [])),
    params(WebhookPath),
    responses(
        (status = 204, description = "Deleted."),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn delete_webhook(
    _: Backend,
    State(hub): State<Arc<Hub>>,
    Path(WebhookPath { tid, id }): Path<WebhookPath>,
) -> Result<StatusCode, ApiError> {
    hub.write(&tid, |d| Ok((ops::delete_webhook(d, &id)?, ())))
        .await?;
    hub.notify_webhooks();
    // A left-over progress is of an old generation and never read again;
    // removing it only saves space.
    if let Err(e) = hub.store().delete_webhook_progress(&tid, &id).await {
        tracing::warn!(tenant = %tid, webhook = %id, error = %e, "cannot remove a deleted webhook's progress");
    }
    Ok(StatusCode::NO_CONTENT)
}

/// List the tenant's webhooks
///
/// Each as `GET .../webhooks/{id}` shows it. Admin key only.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/webhooks",
    operation_id = "listWebhooks",
    tag = "feed",
    security(("adminKey" = [])),
    params(TenantPath),
    responses(
        (status = 200, description = "The webhooks, by id.", body = WebhookList),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn list_webhooks(
    _: Backend,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
) -> Result<Json<WebhookList>, ApiError> {
    let recs: Vec<_> = hub.read(&tid, |t| t.dir.webhooks.values().cloned().collect())?;
    let mut webhooks = Vec::with_capacity(recs.len());
    for rec in &recs {
        webhooks.push(view(&hub, &tid, rec).await?);
    }
    Ok(Json(WebhookList { webhooks }))
}
