//! The transition feed of SPEC §10: one event per global transition, read
//! by the ERP backend through `GET /v1/tenants/{tid}/events` (pages) and
//! `.../events/stream` (Server-Sent Events, one event per message).

use serde::{Deserialize, Serialize};

use crate::Status;

/// Why a user's status changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Reason {
    /// Proof of interaction made the user online.
    Activity,
    /// The margin passed with no proof: offline.
    Idle,
    /// Explicit logout: offline at once.
    Logout,
    /// The user was deactivated: offline at once.
    Deactivated,
    /// The user was deleted: offline at once.
    Deleted,
    /// The node that held the user's only claim died (cluster mode).
    NodeLost,
    /// The hub corrected a status it had shown without the store (cluster
    /// mode, after Redis was unreachable), or a restarted single node
    /// ended the presence of users who were online when it stopped: the
    /// feed catches up on the truth.
    Reconciled,
}

impl Reason {
    /// The wire name, as in the JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Activity => "activity",
            Reason::Idle => "idle",
            Reason::Logout => "logout",
            Reason::Deactivated => "deactivated",
            Reason::Deleted => "deleted",
            Reason::NodeLost => "node_lost",
            Reason::Reconciled => "reconciled",
        }
    }

    /// The reason of a wire name.
    pub fn parse(s: &str) -> Option<Reason> {
        Some(match s {
            "activity" => Reason::Activity,
            "idle" => Reason::Idle,
            "logout" => Reason::Logout,
            "deactivated" => Reason::Deactivated,
            "deleted" => Reason::Deleted,
            "node_lost" => Reason::NodeLost,
            "reconciled" => Reason::Reconciled,
            _ => return None,
        })
    }
}

/// One transition of one user, as the feed holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Event))]
pub struct Event {
    /// `<tid>:<uid>:<v>`: the same transition always has the same id, so a
    /// consumer de-duplicates on it.
    pub id: String,
    /// The event's place in its tenant's feed: grows with every event of
    /// the tenant. Pass it as `after` (or `Last-Event-ID`) to read on.
    pub cursor: u64,
    pub tenant: String,
    pub user: String,
    pub status: Status,
    /// When the new status began (ms since the Unix epoch).
    pub at: u64,
    /// The user's transition counter after this event (as in the WebSocket
    /// protocol's `presence` frames).
    pub v: u64,
    pub reason: Reason,
}

impl Event {
    /// The event id of a user's transition `v`.
    pub fn id_of(tenant: &str, user: &str, v: u64) -> String {
        format!("{tenant}:{user}:{v}")
    }
}

/// `GET /v1/tenants/{tid}/events`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = EventPage))]
pub struct EventPage {
    /// In cursor order (so in `v` order for each user).
    pub events: Vec<Event>,
    /// Pass as `after` for the next page: the last event's cursor, or the
    /// `after` asked for when the page is empty.
    pub next: u64,
}

/// The `details` of `410 events_gone`: the events after the cursor asked
/// for were trimmed (older than the tenant's retention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventsGone {
    /// The oldest cursor the feed may still hold: resynchronise from
    /// `GET .../users`, then read on with `after = oldest - 1`.
    pub oldest: u64,
}
