//! Bodies of the history API (SPEC §11). The attendance report's body is
//! built by the hub (`history/report.rs`); its shape is in the OpenAPI
//! document.

use serde::{Deserialize, Serialize};

use crate::{Reason, Status};

/// One interval of a user's history: online from `from` to `to`, or
/// offline between two online ones. Times in ms since the Unix epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryInterval {
    pub from: u64,
    /// `null` while it goes on.
    pub to: Option<u64>,
    pub status: Status,
    /// Why it ended (the reason of the next transition); `null` while it
    /// goes on.
    pub reason: Option<Reason>,
}

/// `GET /v1/tenants/{tid}/users/{uid}/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HistoryView {
    pub user: String,
    /// The tenant's zone, in which `from`/`to` days were read.
    pub time_zone: String,
    /// The range asked (ms; `to` exclusive).
    pub from: u64,
    pub to: u64,
    /// The online intervals that overlap the range (whole, not cut to
    /// it), with the offline gaps between them, in time order.
    pub intervals: Vec<HistoryInterval>,
    /// When the user's history was last erased (`DELETE .../history`):
    /// nothing before it is kept.
    pub erased_at: Option<u64>,
}
