//! Webhooks of the transition feed (SPEC §10): what the ERP backend sends
//! to configure one, what it reads back (never the secret), and the body of
//! a delivery.

use serde::{Deserialize, Serialize};

use crate::{Event, Reason, Status};

/// `PUT /v1/tenants/{tid}/webhooks/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookPut {
    /// Where deliveries are POSTed (`http` or `https`). A host that
    /// resolves to a private, loopback or link-local address is refused
    /// unless the operator allows it (`PRESENCE_WEBHOOK_ALLOWED_HOSTS`).
    #[cfg_attr(feature = "openapi", schema(max_length = 2048))]
    pub url: String,
    /// The HMAC-SHA256 key of `Presence-Signature` (16 to 512 bytes).
    /// Write-only: never returned.
    #[cfg_attr(feature = "openapi", schema(min_length = 16, max_length = 512))]
    pub secret: String,
    /// Only events with one of these statuses; left out: every status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub statuses: Option<Vec<Status>>,
    /// Only events with one of these reasons; left out: every reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reasons: Option<Vec<Reason>>,
    /// A new webhook's first delivery is the first event after this cursor
    /// (0: every event still retained); left out: the events from now on.
    /// Ignored when the webhook exists (it goes on where it was).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub after: Option<u64>,
}

/// How a webhook's deliveries go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum DeliveryStatus {
    /// Nothing waits, or the last attempt succeeded.
    Ok,
    /// The last attempt failed; the same batch is retried with backoff.
    Retrying,
    /// Events the webhook had not delivered were trimmed (past the
    /// tenant's retention): the consumer must resynchronise from
    /// `GET .../users` and the pull API. Deliveries go on after the gap;
    /// a `PUT` of the webhook clears the mark.
    Failing,
}

/// The last failed attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryError {
    /// When it failed (ms since the Unix epoch).
    pub at: u64,
    /// The receiver's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub status: Option<u16>,
    /// What went wrong, e.g. `HTTP 500` or `connection refused`.
    pub message: String,
}

/// A webhook's delivery state, as its deliverer last recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeliveryState {
    pub status: DeliveryStatus,
    /// Every event up to this cursor was delivered (acknowledged with a
    /// 2xx) or did not match the filter.
    pub delivered_cursor: u64,
    /// Events after `delivered_cursor` that match the filter and wait.
    pub pending: u64,
    /// How long the oldest pending event has waited since it happened (ms);
    /// 0 when nothing waits.
    pub oldest_pending_age_ms: u64,
    /// When a delivery last succeeded (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub last_success_at: Option<u64>,
    /// The last failure, kept after later successes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub last_error: Option<DeliveryError>,
    /// Failed attempts in a row (0 after a success).
    pub attempts: u32,
}

/// A webhook as the API returns it: its settings without the secret, and
/// its delivery state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Webhook))]
pub struct WebhookView {
    pub id: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub statuses: Option<Vec<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reasons: Option<Vec<Reason>>,
    pub delivery: DeliveryState,
}

/// `GET /v1/tenants/{tid}/webhooks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookList {
    pub webhooks: Vec<WebhookView>,
}

/// The body of one delivery (`POST` to the webhook's URL), signed in
/// `Presence-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WebhookBatch {
    /// In cursor order, so in `v` order for each user.
    pub events: Vec<Event>,
}
