//! Bodies of the admin HTTP API (SPEC §6).

use serde::{Deserialize, Serialize};

use crate::{Membership, MembershipRole, Profile, Stats, Status, UserState};

/// `PUT /v1/tenants/{tid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantPut {
    /// Maximum number of active users.
    pub user_limit: u64,
    /// How long the tenant's transition feed keeps events, in seconds; left
    /// out: unchanged (a new tenant takes `PRESENCE_EVENT_RETENTION_S`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 31_536_000, nullable = false)
    )]
    pub event_retention_s: Option<u64>,
    /// The IANA time zone where the tenant's days start (attendance
    /// reports), e.g. `America/Sao_Paulo`; left out: unchanged (a new
    /// tenant: `UTC`). An unknown zone is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false, max_length = 64))]
    pub time_zone: Option<String>,
    /// How many days the tenant's presence history (attendance reports)
    /// is kept; left out: unchanged (a new tenant: 90).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(minimum = 1, maximum = 3650, nullable = false)
    )]
    pub history_retention_days: Option<u32>,
}

/// A tenant as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Tenant))]
pub struct TenantView {
    pub id: String,
    pub user_limit: u64,
    /// How long the transition feed keeps events, in seconds.
    pub event_retention_s: u64,
    /// The IANA time zone where the tenant's days start.
    pub time_zone: String,
    /// How many days the presence history is kept.
    pub history_retention_days: u32,
    pub stats: Stats,
}

/// `PUT /v1/tenants/{tid}/users/{uid}`: fields left out keep their current
/// value on update and take their default on create (`name` and one of
/// `email`/`phone` are required on create).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPut {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub nickname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub away_message: Option<String>,
}

/// A user as the API returns it: the directory record plus live presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = User))]
pub struct UserView {
    pub id: String,
    pub name: String,
    pub nickname: String,
    pub email: String,
    pub phone: String,
    pub profile: Profile,
    pub available: bool,
    pub away_message: String,
    pub state: UserState,
    pub status: Status,
    /// When the current status began (ms since the Unix epoch); 0 if never seen.
    pub since: u64,
    /// Last proven interaction (ms since the Unix epoch); 0 if never.
    pub last_seen: u64,
    /// Transition counter of the user.
    pub v: u64,
    pub teams: Vec<Membership>,
}

/// `GET /v1/tenants/{tid}/users`: one page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserPage {
    pub users: Vec<UserView>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub next_cursor: Option<String>,
}

/// `POST .../users/deactivate` and `.../reactivate`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Ids))]
pub struct IdsBody {
    #[cfg_attr(feature = "openapi", schema(min_items = 1))]
    pub ids: Vec<String>,
}

/// Result of a bulk state change: the users whose state changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BulkResult {
    pub changed: Vec<String>,
    /// Ids that already were in the requested state.
    pub unchanged: Vec<String>,
}

/// `POST /v1/tenants/{tid}/presence/query`: the users whose presence is
/// wanted, at most [`MAX_QUERY_IDS`] of them (a dashboard's visible page, a
/// CRM queue), so one call replaces as many `GET .../users/{uid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceQuery {
    /// Answered in this order, each id once (a repeated id is answered at
    /// its first place).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 1000))]
    pub ids: Vec<String>,
}

/// The most ids one [`PresenceQuery`] takes: a bound on the time the
/// query holds the tenant's lock and on the answer's size (64 KB for 1,000
/// five-character ids, under 200 KB for the longest ids).
pub const MAX_QUERY_IDS: usize = 1000;

/// One user's presence, as `GET .../users` shows it, without the
/// directory record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserStatus {
    pub id: String,
    pub status: Status,
    /// When the current status began (ms since the Unix epoch); 0 if never seen.
    pub since: u64,
    /// Last proven interaction (ms since the Unix epoch); 0 if never.
    pub last_seen: u64,
    /// Transition counter of the user.
    pub v: u64,
}

/// Result of `POST .../presence/query`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PresenceQueryResult {
    /// Every asked id the directory holds, whatever its state, in the
    /// order asked.
    pub users: Vec<UserStatus>,
    /// Asked ids the directory does not hold, in the order asked: named
    /// rather than left out, so a caller can tell them from a typo of its
    /// own.
    pub unknown: Vec<String>,
}

/// `PUT /v1/tenants/{tid}/teams/{team}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TeamPut {
    #[cfg_attr(feature = "openapi", schema(max_length = 512))]
    pub name: String,
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub crm: bool,
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub active: bool,
}

fn yes() -> bool {
    true
}

/// A team as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Team))]
pub struct TeamView {
    pub id: String,
    pub name: String,
    pub crm: bool,
    pub active: bool,
    pub members: Vec<TeamMemberView>,
}

/// One membership of a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = TeamMember))]
pub struct TeamMemberView {
    pub user: String,
    #[serde(rename = "as")]
    pub role: MembershipRole,
}

/// `PUT /v1/tenants/{tid}/teams/{team}/members/{uid}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberPut {
    #[serde(rename = "as")]
    pub role: MembershipRole,
}

/// `GET .../teams/{team}/eligible`: users who can take work now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Eligible))]
pub struct EligibleList {
    pub team: String,
    pub users: Vec<String>,
}

/// One rejected row of a CSV import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RowError {
    /// Line number in the file, the header being line 1.
    pub row: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub column: Option<String>,
    pub reason: String,
}

/// Result of `POST .../users/import`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    pub dry_run: bool,
    pub rows: u64,
    pub created: u64,
    pub updated: u64,
    pub errors: Vec<RowError>,
}

/// Every admin API error: `{"error":{"code","message","details"?}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error))]
pub struct ApiError {
    pub error: ApiErrorBody,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ErrorBody))]
pub struct ApiErrorBody {
    /// Stable, machine-readable; the hub's document lists every value.
    pub code: String,
    /// For people; may change between versions.
    pub message: String,
    /// What the code needs to be acted on (the field, the limit, the
    /// import report), when it needs anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object, additional_properties = true, nullable = false))]
    pub details: Option<serde_json::Value>,
}

/// `POST /v1/tenants/{tid}/batch`: directory changes applied in order, all
/// or none, in one store commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Batch))]
pub struct BatchBody {
    /// Applied in this order: a later item sees what earlier ones did (a
    /// user created by item 3 may join a team in item 4).
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 50_000))]
    pub items: Vec<BatchItem>,
}

/// One change of a batch, named by `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BatchItem {
    /// Create or update a user (as `PUT .../users/{uid}`).
    UpsertUser { id: String, user: UserPut },
    /// Logical delete (as `DELETE .../users/{uid}`).
    DeleteUser { id: String },
    /// Create or update a team (as `PUT .../teams/{team}`).
    UpsertTeam { id: String, team: TeamPut },
    /// Delete a team and its memberships.
    DeleteTeam { id: String },
    /// Add a member or change their role.
    UpsertMember {
        team: String,
        user: String,
        #[serde(rename = "as")]
        role: MembershipRole,
    },
    /// Remove a member.
    DeleteMember { team: String, user: String },
}

/// One refused item of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemError {
    /// Position of the item in `items`, from 0.
    pub item: u64,
    /// What is wrong, as the single call would answer it: `bad_request`,
    /// `not_found`, `user_limit` or `user_not_active`.
    pub code: String,
    /// The field of the item at fault, when one is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub field: Option<String>,
    pub reason: String,
}

/// How many records of one kind a batch creates, updates and deletes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchCounts {
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
}

/// Result of `POST .../batch`: what it did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BatchReport {
    pub dry_run: bool,
    pub items: u64,
    pub users: BatchCounts,
    pub teams: BatchCounts,
    pub members: BatchCounts,
    /// Every refused item, in order; empty when the batch was (or would
    /// be) applied.
    pub errors: Vec<ItemError>,
}
