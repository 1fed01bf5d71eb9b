//! The admin HTTP API of SPEC §6, for the ERP backend and the
//! administrators' screen.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::admin::*;
use presence_protocol::{Stats, Status, UserState};
use serde::Deserialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::error::ApiError;
use crate::api::extract::{Backend, Caller, CsvBody, JsonBody, Path, Query};
use crate::api::openapi::{
    BadRequest, Forbidden, JsonTooLarge, NotFound, NotJson, StoreUnavailable, Unauthenticated,
};
use crate::directory::csv_import;
use crate::directory::{ops, DirectoryError};
use crate::hub::Hub;
use crate::presence::tenant::Tenant;

type Hs = State<Arc<Hub>>;
type R<T> = Result<T, ApiError>;

/// The admin routes, each with its documentation (`routes!` takes the
/// path and the methods from the handler's `#[utoipa::path]`), one path
/// per entry. `api/routes.rs` builds the router from these only.
pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![
        routes!(put_tenant, get_tenant),
        routes!(stats),
        routes!(list_users),
        routes!(deactivate),
        routes!(reactivate),
        routes!(import),
        routes!(put_user, get_user, delete_user),
        routes!(put_team, get_team, delete_team),
        routes!(put_member, delete_member),
        routes!(eligible),
    ]
}

// The path parameters, named as in the route templates: axum fills them by
// name, and the document's parameters are derived from the same fields.

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct TenantPath {
    /// Tenant id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    pub(crate) tid: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct UserPath {
    /// Tenant id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    pub(crate) tid: String,
    /// User id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    pub(crate) uid: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct TeamPath {
    /// Tenant id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    tid: String,
    /// Team id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    team: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MemberPath {
    /// Tenant id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    tid: String,
    /// Team id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    team: String,
    /// User id, as the ERP names it.
    #[param(min_length = 1, max_length = 128)]
    uid: String,
}

/// A string query parameter that takes one of `values`. (utoipa drops a
/// field's doc comment when its schema is given, so it comes in here.)
fn one_of(values: &[&str], default: Option<&str>, description: Option<&str>) -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values.iter().copied()))
        .default(default.map(Into::into))
        .description(description)
        .into()
}

/// Create or update a tenant
///
/// Only the ERP backend (admin key) may create or change a tenant; an administrator's JWT gets 403.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}",
    operation_id = "putTenant",
    tag = "directory",
    security(("adminKey" = [])),
    params(TenantPath),
    request_body = TenantPut,
    responses(
        (status = 200, description = "Updated.", body = TenantView),
        (status = 201, description = "Created.", body = TenantView),
        BadRequest, Unauthenticated, Forbidden, JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn put_tenant(
    _: Backend,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
    JsonBody(req): JsonBody<TenantPut>,
) -> R<impl IntoResponse> {
    let created = hub.put_tenant(&tid, &req).await?;
    let view = hub.read(&tid, |t| tenant_view(&hub, t))?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

fn tenant_view(hub: &Hub, t: &Tenant) -> TenantView {
    TenantView {
        id: t.dir.tenant.id.clone(),
        user_limit: t.dir.tenant.user_limit,
        event_retention_s: hub.event_retention_s(&t.dir.tenant),
        time_zone: t.dir.tenant.time_zone_name().to_owned(),
        history_retention_days: t.dir.tenant.history_days(),
        stats: t.stats(),
    }
}

/// Read a tenant and its counters
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}",
    operation_id = "getTenant",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath),
    responses(
        (status = 200, description = "The tenant.", body = TenantView),
        Unauthenticated, Forbidden, NotFound,
    )
)]
async fn get_tenant(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
) -> R<Json<TenantView>> {
    Ok(Json(hub.read(&tid, |t| tenant_view(&hub, t))?))
}

/// Counters of a tenant
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/stats",
    operation_id = "getStats",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath),
    responses(
        (status = 200, description = "online + offline = active; deleted users count nowhere.", body = Stats),
        Unauthenticated, Forbidden, NotFound,
    )
)]
async fn stats(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
) -> R<Json<Stats>> {
    Ok(Json(hub.read(&tid, |t| t.stats())?))
}

/// A user's presence as every admin view shows it: [`user_view`] (one
/// user, the list) and the bulk query (`api/query.rs`) both take it from
/// here, so what they show of the same user cannot differ. `None` for an id
/// the directory does not hold.
pub(crate) fn user_status(t: &Tenant, uid: &str) -> Option<UserStatus> {
    let u = t.dir.users.get(uid)?;
    let p = t.presence(uid);
    Some(UserStatus {
        id: u.id.clone(),
        status: p.status,
        since: p.since,
        last_seen: p.last_seen,
        v: p.v,
    })
}

fn user_view(t: &Tenant, uid: &str) -> Option<UserView> {
    let u = t.dir.users.get(uid)?;
    let UserStatus {
        id,
        status,
        since,
        last_seen,
        v,
    } = user_status(t, uid)?;
    Some(UserView {
        id,
        name: u.name.clone(),
        nickname: u.nickname.clone(),
        email: u.email.clone(),
        phone: u.phone.clone(),
        profile: u.profile,
        available: u.available,
        away_message: u.away_message.clone(),
        state: u.state,
        status,
        since,
        last_seen,
        v,
        teams: t.dir.memberships_of(uid),
    })
}

/// Read a user with live presence
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/users/{uid}",
    operation_id = "getUser",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(UserPath),
    responses(
        (status = 200, description = "The user, whatever their state.", body = UserView),
        Unauthenticated, Forbidden, NotFound,
    )
)]
async fn get_user(
    _: Caller,
    State(hub): Hs,
    Path(UserPath { tid, uid }): Path<UserPath>,
) -> R<Json<UserView>> {
    hub.read(&tid, |t| user_view(t, &uid))?
        .map(Json)
        .ok_or(ApiError::Directory(DirectoryError::UnknownUser(uid)))
}

/// Create or update a user
///
/// Fields left out keep their value on update and take their default on create; `name` and one of `email`/`phone` are required on create.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/users/{uid}",
    operation_id = "putUser",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(UserPath),
    request_body = UserPut,
    responses(
        (status = 200, description = "Updated.", body = UserView),
        (status = 201, description = "Created.", body = UserView),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "Creating the user would pass the plan's user limit (`user_limit`).", body = ErrorBody),
        JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn put_user(
    _: Caller,
    State(hub): Hs,
    Path(UserPath { tid, uid }): Path<UserPath>,
    JsonBody(req): JsonBody<UserPut>,
) -> R<impl IntoResponse> {
    let created = hub
        .write(&tid, |d| {
            Ok((ops::put_user(d, &uid, &req)?, !d.users.contains_key(&uid)))
        })
        .await?;
    let view = hub.read(&tid, |t| user_view(t, &uid))?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

/// Delete a user (logical)
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/users/{uid}",
    operation_id = "deleteUser",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(UserPath),
    responses(
        (status = 204, description = "Deleted: hidden from rosters and counters, tabs closed with 4003, record kept."),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn delete_user(
    _: Caller,
    State(hub): Hs,
    Path(UserPath { tid, uid }): Path<UserPath>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_user(d, &uid)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deactivate users
///
/// State → inactive, offline at once, every tab closed with 4003, removed from every team. The record and last_seen stay readable. One unknown id fails the whole batch with 404.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/users/deactivate",
    operation_id = "deactivateUsers",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath),
    request_body = IdsBody,
    responses(
        (status = 200, description = "Done, for every id or none.", body = BulkResult),
        BadRequest, Unauthenticated, Forbidden, NotFound, JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn deactivate(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
    JsonBody(req): JsonBody<IdsBody>,
) -> R<Json<BulkResult>> {
    let changed = hub.write(&tid, |d| ops::deactivate(d, &req.ids)).await?;
    Ok(Json(bulk(&req.ids, changed)))
}

/// Reactivate users
///
/// State → active; tokens for these users are accepted again; they belong to no team.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/users/reactivate",
    operation_id = "reactivateUsers",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath),
    request_body = IdsBody,
    responses(
        (status = 200, description = "Done, for every id or none.", body = BulkResult),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "The plan's user limit would be passed (`user_limit`); nothing changed.", body = ErrorBody),
        JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn reactivate(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
    JsonBody(req): JsonBody<IdsBody>,
) -> R<Json<BulkResult>> {
    let changed = hub.write(&tid, |d| ops::reactivate(d, &req.ids)).await?;
    Ok(Json(bulk(&req.ids, changed)))
}

fn bulk(ids: &[String], changed: Vec<String>) -> BulkResult {
    let mut unchanged: Vec<String> = ids
        .iter()
        .filter(|i| !changed.contains(i))
        .cloned()
        .collect();
    unchanged.dedup();
    BulkResult { changed, unchanged }
}

/// Taken as text and checked by the handler, so a bad value is SPEC §6's
/// `400` naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ImportQuery {
    #[param(value_type = Option<bool>, nullable = false, default = false)]
    dry_run: Option<String>,
}

const CSV_EXAMPLE: &str = "id;name;email;phone\n007;\"Silva; Ana\";ana@example.com;0119\n";

/// Import users from CSV
///
/// `;`-separated, UTF-8 with or without BOM, header row naming the columns in any order (`id` and `name` required; `nickname`, `email`, `phone`, `profile`, `available`, `away_message`). Every value is text. A real import is atomic.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/users/import",
    operation_id = "importUsers",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath, ImportQuery),
    request_body(content = String, content_type = "text/csv", example = json!(CSV_EXAMPLE)),
    responses(
        (status = 200, description = "The dry-run report, or the import that happened.", body = ImportReport),
        (status = 400, description = "Bad rows (details: the ImportReport) or a bad query; nothing was imported.", body = ErrorBody),
        Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "The import would take the tenant past its `user_limit` (code `user_limit`; details: the ImportReport naming the rows beyond it, plus `limit` and `wanted`); nothing was imported. A dry run reports those rows with 200.", body = ErrorBody),
        (status = 413, description = "The file is larger than `PRESENCE_MAX_IMPORT_BYTES` (default 64 MiB); nothing was read past the limit.", body = ErrorBody),
        (status = 415, description = "`Content-Type` is not `text/csv`.", body = ErrorBody),
        StoreUnavailable,
    )
)]
async fn import(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<ImportQuery>,
    CsvBody(b): CsvBody,
) -> R<Json<ImportReport>> {
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
    let parsed = csv_import::parse(&b);
    // Every value is copied out of the file by now: let it go before the
    // commit, which holds a copy of its own (a 33 MiB file, 100,000 users).
    drop(b);
    let rows = match parsed {
        Ok(rows) => rows,
        Err(errors) => {
            let report = ImportReport {
                dry_run,
                rows: 0,
                created: 0,
                updated: 0,
                errors,
            };
            return if dry_run {
                Ok(Json(report))
            } else {
                Err(ApiError::Import(report))
            };
        }
    };
    let n = rows.len() as u64;
    let report_of = |p: &csv_import::Plan| ImportReport {
        dry_run,
        rows: n,
        created: p.created,
        updated: p.updated,
        errors: p.errors.clone(),
    };
    if dry_run {
        return Ok(Json(
            hub.read(&tid, |t| report_of(&csv_import::plan(&t.dir, &rows)))?,
        ));
    }
    let result = hub
        .write(&tid, move |d| {
            let p = csv_import::plan(d, &rows);
            // The writes hold their own copy of every row.
            drop(rows);
            let report = report_of(&p);
            if report.errors.is_empty() {
                return Ok((p.writes, Ok(report)));
            }
            // Only too many users for the plan: a conflict with the tenant
            // (SPEC §6), not bad input.
            let refusal = match (p.over_limit, p.invalid) {
                (Some(wanted), 0) => ApiError::ImportOverLimit {
                    report,
                    limit: d.tenant.user_limit,
                    wanted,
                },
                (Some(_), _) | (None, _) => ApiError::Import(report),
            };
            Ok((Vec::new(), Err(refusal)))
        })
        .await?;
    result.map(Json)
}

/// Taken as text and checked by the handler, so a bad value is SPEC §6's
/// `400` naming the parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    #[param(schema_with = activity_filter)]
    activity: Option<String>,
    #[param(schema_with = state_filter)]
    state: Option<String>,
    /// Case-insensitive substring of id, name, nickname, email or phone.
    #[param(nullable = false)]
    q: Option<String>,
    #[param(value_type = Option<u32>, nullable = false, minimum = 1, maximum = 1000, default = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(nullable = false)]
    cursor: Option<String>,
}

fn activity_filter() -> Schema {
    one_of(&["online", "offline", "all"], Some("all"), None)
}

fn state_filter() -> Schema {
    one_of(
        &["active", "inactive", "deleted", "all"],
        None,
        Some("Default: active and inactive (deleted users are hidden)."),
    )
}

/// List, filter, search and paginate users
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/users",
    operation_id = "listUsers",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath, ListQuery),
    responses(
        (status = 200, description = "One page, in user id order.", body = UserPage),
        BadRequest, Unauthenticated, Forbidden, NotFound,
    )
)]
async fn list_users(
    _: Caller,
    State(hub): Hs,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<ListQuery>,
) -> R<Json<UserPage>> {
    let activity = match q.activity.as_deref() {
        None | Some("all") => None,
        Some("online") => Some(Status::Online),
        Some("offline") => Some(Status::Offline),
        Some(_) => {
            return Err(ApiError::BadQuery {
                param: "activity",
                reason: "expected online, offline or all".into(),
            })
        }
    };
    let states: &[UserState] = match q.state.as_deref() {
        None => &[UserState::Active, UserState::Inactive],
        Some("active") => &[UserState::Active],
        Some("inactive") => &[UserState::Inactive],
        Some("deleted") => &[UserState::Deleted],
        Some("all") => &[UserState::Active, UserState::Inactive, UserState::Deleted],
        Some(_) => {
            return Err(ApiError::BadQuery {
                param: "state",
                reason: "expected active, inactive, deleted or all".into(),
            })
        }
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n)) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(ApiError::BadQuery {
                param: "limit",
                reason: "expected 1 to 1000".into(),
            })
        }
    };
    let needle =
        q.q.as_deref()
            .map(str::to_lowercase)
            .filter(|s| !s.is_empty());
    let page = hub.read(&tid, |t| {
        let range = match &q.cursor {
            Some(c) => t.dir.users.range::<String, _>((
                std::ops::Bound::Excluded(c.clone()),
                std::ops::Bound::Unbounded,
            )),
            None => t.dir.users.range::<String, _>(..),
        };
        let mut users = Vec::new();
        let mut more = false;
        for (uid, u) in range {
            if !states.contains(&u.state) {
                continue;
            }
            if let Some(a) = activity {
                if t.presence(uid).status != a {
                    continue;
                }
            }
            if let Some(n) = &needle {
                let hit = [&u.id, &u.name, &u.nickname, &u.email, &u.phone]
                    .iter()
                    .any(|f| f.to_lowercase().contains(n.as_str()));
                if !hit {
                    continue;
                }
            }
            if users.len() == limit {
                more = true;
                break;
            }
            users.extend(user_view(t, uid));
        }
        let next_cursor = more
            .then(|| users.last().map(|u: &UserView| u.id.clone()))
            .flatten();
        UserPage { users, next_cursor }
    })?;
    Ok(Json(page))
}

/// Create or update a team
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/teams/{team}",
    operation_id = "putTeam",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TeamPath),
    request_body = TeamPut,
    responses(
        (status = 200, description = "Updated.", body = TeamView),
        (status = 201, description = "Created.", body = TeamView),
        BadRequest, Unauthenticated, Forbidden, NotFound, JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn put_team(
    _: Caller,
    State(hub): Hs,
    Path(TeamPath { tid, team }): Path<TeamPath>,
    JsonBody(req): JsonBody<TeamPut>,
) -> R<impl IntoResponse> {
    let created = hub
        .write(&tid, |d| {
            Ok((ops::put_team(d, &team, &req)?, !d.teams.contains_key(&team)))
        })
        .await?;
    let view = hub.read(&tid, |t| team_view(t, &team))?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

fn team_view(t: &Tenant, team: &str) -> Option<TeamView> {
    let rec = t.dir.teams.get(team)?;
    Some(TeamView {
        id: rec.id.clone(),
        name: rec.name.clone(),
        crm: rec.crm,
        active: rec.active,
        members: t
            .dir
            .members_of(team)
            .map(|(u, role)| TeamMemberView {
                user: u.clone(),
                role,
            })
            .collect(),
    })
}

/// Read a team and its members
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/teams/{team}",
    operation_id = "getTeam",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TeamPath),
    responses(
        (status = 200, description = "The team.", body = TeamView),
        Unauthenticated, Forbidden, NotFound,
    )
)]
async fn get_team(
    _: Caller,
    State(hub): Hs,
    Path(TeamPath { tid, team }): Path<TeamPath>,
) -> R<Json<TeamView>> {
    hub.read(&tid, |t| team_view(t, &team))?
        .map(Json)
        .ok_or(ApiError::Directory(DirectoryError::UnknownTeam(team)))
}

/// Delete a team and its memberships
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/teams/{team}",
    operation_id = "deleteTeam",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TeamPath),
    responses(
        (status = 204, description = "Deleted."),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn delete_team(
    _: Caller,
    State(hub): Hs,
    Path(TeamPath { tid, team }): Path<TeamPath>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_team(d, &team)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a member or change their role
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/teams/{team}/members/{uid}",
    operation_id = "putMember",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(MemberPath),
    request_body = MemberPut,
    responses(
        (status = 200, description = "The team after the change.", body = TeamView),
        BadRequest, Unauthenticated, Forbidden, NotFound,
        (status = 409, description = "The user is not active (`user_not_active`).", body = ErrorBody),
        JsonTooLarge, NotJson, StoreUnavailable,
    )
)]
async fn put_member(
    _: Caller,
    State(hub): Hs,
    Path(MemberPath { tid, team, uid }): Path<MemberPath>,
    JsonBody(req): JsonBody<MemberPut>,
) -> R<Json<TeamView>> {
    hub.write(&tid, |d| {
        Ok((ops::put_member(d, &team, &uid, req.role)?, ()))
    })
    .await?;
    hub.read(&tid, |t| team_view(t, &team))?
        .map(Json)
        .ok_or(ApiError::Directory(DirectoryError::UnknownTeam(team)))
}

/// Remove a member
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/teams/{team}/members/{uid}",
    operation_id = "deleteMember",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(MemberPath),
    responses(
        (status = 204, description = "Removed."),
        Unauthenticated, Forbidden, NotFound, StoreUnavailable,
    )
)]
async fn delete_member(
    _: Caller,
    State(hub): Hs,
    Path(MemberPath { tid, team, uid }): Path<MemberPath>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_member(d, &team, &uid)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Users who can take work now
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/teams/{team}/eligible",
    operation_id = "getEligible",
    tag = "directory",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TeamPath),
    responses(
        (status = 200, description = "Members (`member` or `both`) who are active, online and available.", body = EligibleList),
        Unauthenticated, Forbidden, NotFound,
    )
)]
async fn eligible(
    _: Caller,
    State(hub): Hs,
    Path(TeamPath { tid, team }): Path<TeamPath>,
) -> R<Json<EligibleList>> {
    let users = hub.read(&tid, |t| {
        if !t.dir.teams.contains_key(&team) {
            return None;
        }
        Some(
            t.dir
                .members_of(&team)
                .filter(|(_, role)| role.takes_work())
                .filter(|(uid, _)| {
                    t.dir
                        .users
                        .get(*uid)
                        .is_some_and(|u| u.state == UserState::Active && u.available)
                })
                .filter(|(uid, _)| t.presence(uid).status == Status::Online)
                .map(|(uid, _)| uid.clone())
                .collect(),
        )
    })?;
    let users =
        users.ok_or_else(|| ApiError::Directory(DirectoryError::UnknownTeam(team.clone())))?;
    Ok(Json(EligibleList { team, users }))
}
