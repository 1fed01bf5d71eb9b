//! The transition feed's routes (SPEC §10): a page of events with long
//! poll, and the same feed as Server-Sent Events. Readers: the admin key or
//! the tenant's administrators, like `GET .../users`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use futures_util::StreamExt;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::{Event, EventPage};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::admin::TenantPath;
use crate::api::error::ApiError;
use crate::api::extract::{Caller, Path, Query};
use crate::api::openapi::{Forbidden, NotFound, StoreUnavailable, Unauthenticated};
use crate::feed::reader::{self, DEFAULT_LIMIT, MAX_LIMIT, MAX_WAIT_MS};
use crate::hub::Hub;

/// How often an idle stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![routes!(events), routes!(stream)]
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Events after this cursor (0: from the oldest held).
    #[param(default = 0)]
    after: Option<u64>,
    /// Most events in the page, from 1 to 1000.
    #[param(default = 100, minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// When there is no event after `after` yet, wait up to this long (ms,
    /// at most 30000) for one; 0 answers at once.
    #[param(default = 0, minimum = 0, maximum = 30000)]
    wait_ms: Option<u64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Start after this cursor when there is no `Last-Event-ID` header
    /// (0: from the oldest held).
    #[param(default = 0)]
    after: Option<u64>,
}

/// Read the transition feed
///
/// Every global online/offline transition of the tenant, in cursor order (so in `v` order per user), each with a stable `id` (`<tid>:<uid>:<v>`) to de-duplicate on. With `wait_ms`, a long poll: answered at once when events exist after `after`, else as soon as one is committed, else empty after `wait_ms`. Read on with `after = next`.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/events",
    operation_id = "getEvents",
    tag = "feed",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath, PageQuery),
    responses(
        (status = 200, description = "A page, possibly empty.", body = EventPage),
        (status = 400, description = "`limit` or `wait_ms` out of bounds, or not a number.", body = ErrorBody),
        Unauthenticated, Forbidden, NotFound,
        (status = 410, description = "`events_gone`: events after `after` are past the tenant's retention. `details` is an EventsGone: resynchronise from `GET .../users`, then read on after `oldest - 1`.", body = ErrorBody),
        StoreUnavailable,
    )
)]
async fn events(
    _: Caller,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<PageQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT as u64);
    if !(1..=MAX_LIMIT as u64).contains(&limit) {
        return Err(ApiError::BadQuery {
            param: "limit",
            reason: format!("must be from 1 to {MAX_LIMIT}"),
        });
    }
    let wait_ms = q.wait_ms.unwrap_or(0);
    if wait_ms > MAX_WAIT_MS {
        return Err(ApiError::BadQuery {
            param: "wait_ms",
            reason: format!("must be at most {MAX_WAIT_MS}"),
        });
    }
    let page = reader::page(
        &hub,
        &tid,
        q.after.unwrap_or(0),
        limit as usize,
        Duration::from_millis(wait_ms),
    )
    .await?;
    Ok(Json(page))
}

/// Follow the transition feed (Server-Sent Events)
///
/// The feed as `text/event-stream`: each message's `id:` is the event's cursor and its `data:` the event (an Event as JSON). Reconnect with `Last-Event-ID` (what `EventSource` does by itself) to resume after the last event received; without it, `after` says where to start. An idle stream sends a comment every 15 s. When the resume point is past the retention the answer is 410 before any stream.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/events/stream",
    operation_id = "streamEvents",
    tag = "feed",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(
        TenantPath,
        StreamQuery,
        ("Last-Event-ID" = Option<u64>, Header, description = "The cursor of the last event received; takes precedence over `after`."),
    ),
    responses(
        (status = 200, description = "The stream; each message's data is an Event.", body = Event, content_type = "text/event-stream"),
        (status = 400, description = "`Last-Event-ID` or `after` is not a cursor.", body = ErrorBody),
        Unauthenticated, Forbidden, NotFound,
        (status = 410, description = "`events_gone`: the resume point is past the tenant's retention (`details`: EventsGone).", body = ErrorBody),
        StoreUnavailable,
    )
)]
async fn stream(
    _: Caller,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let after = match headers.get("last-event-id") {
        None => q.after.unwrap_or(0),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .ok_or(ApiError::BadQuery {
                param: "Last-Event-ID",
                reason: "expected a cursor (a non-negative integer)".into(),
            })?,
    };
    reader::check(&hub, &tid, after).await?;
    let events = reader::follow(hub, tid, after)?.map(|item| {
        let message = match item {
            // A plain struct of strings, numbers and enums: cannot fail.
            Ok(e) => SseEvent::default()
                .id(e.cursor.to_string())
                .json_data(&e)
                .expect("events serialise"),
            // The stream ends after this; the cause is in the log.
            Err(e) => {
                tracing::error!(error = %e, "event stream: store read failed");
                SseEvent::default().event("error").data("store_unavailable")
            }
        };
        Ok::<_, Infallible>(message)
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
