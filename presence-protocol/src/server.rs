//! Messages the hub sends to a tab, and the roster entry they carry.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{ReqId, Roster};

/// Online or offline, per the presence rule of SPEC §2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Status {
    Online,
    #[default]
    Offline,
}

/// What a user may do in the directory and which rosters they may watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Profile {
    Admin,
    #[default]
    Standard,
    Restricted,
}

/// Lifecycle of a directory user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum UserState {
    #[default]
    Active,
    Inactive,
    Deleted,
}

/// A user's role in a team.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Role))]
pub enum MembershipRole {
    Member,
    Supervisor,
    Both,
}

impl MembershipRole {
    /// Only members take work; a pure supervisor is never eligible.
    pub fn takes_work(self) -> bool {
        matches!(self, MembershipRole::Member | MembershipRole::Both)
    }
}

/// One team a user belongs to, as shown in an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Membership {
    pub id: String,
    #[serde(rename = "as")]
    pub role: MembershipRole,
}

/// The counters of SPEC §3: `online + offline = active`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stats {
    pub online: u64,
    pub offline: u64,
    pub active: u64,
    pub inactive: u64,
}

/// A user as a roster shows them. Optional fields are present only where the
/// subscriber may see them (admins see everything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub nickname: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub status: Status,
    /// When the current status began (ms since the Unix epoch); 0 if never seen.
    pub since: u64,
    /// Last proven interaction (ms since the Unix epoch); 0 if never seen.
    pub last_seen: u64,
    /// Per-user transition counter: apply a delta only if its `v` is newer.
    pub v: u64,
    pub available: bool,
    pub away_message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<Membership>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<UserState>,
}

/// The connected user, as `welcome` describes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WelcomeUser {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub nickname: String,
    pub profile: Profile,
    /// True when the user is an attendant (may watch `attendants`).
    pub attendant: bool,
    pub teams: Vec<Membership>,
}

/// Stable error codes of `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    Forbidden,
    BadRequest,
    NotFound,
    RateLimited,
    /// Too many subscriptions on this tab.
    LimitExceeded,
    Unauthenticated,
    /// A subscription ended because the subscriber's rights changed.
    Revoked,
}

/// Hub → client frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMessage {
    Welcome {
        user: WelcomeUser,
        tab: Uuid,
        idle_timeout_ms: u64,
        activity_interval_ms: u64,
        server_time: u64,
    },
    Snapshot {
        id: ReqId,
        roster: Roster,
        users: Vec<Entry>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stats: Option<Stats>,
    },
    Presence {
        roster: Roster,
        user: String,
        status: Status,
        at: u64,
        v: u64,
    },
    User {
        roster: Roster,
        user: Entry,
    },
    UserRemoved {
        roster: Roster,
        user: String,
    },
    Stats {
        roster: Roster,
        #[serde(flatten)]
        stats: Stats,
    },
    /// Reply to `subscribe`/`unsubscribe` success when there is no snapshot
    /// to send (unsubscribe).
    Unsubscribed {
        id: ReqId,
        roster: Roster,
    },
    Error {
        id: Option<ReqId>,
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        roster: Option<Roster>,
    },
}

impl ServerMessage {
    /// Serialises to the JSON text of a frame.
    pub fn to_json(&self) -> String {
        // Serialising these types cannot fail: every map key is a string and
        // no custom Serialize impl returns an error.
        serde_json::to_string(self).expect("server messages always serialise")
    }
}
