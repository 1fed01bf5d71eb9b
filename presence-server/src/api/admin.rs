//! The admin HTTP API of SPEC §6, for the ERP backend and the
//! administrators' screen.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use presence_protocol::admin::*;
use presence_protocol::{Status, UserState};
use serde::Deserialize;

use crate::api::error::ApiError;
use crate::api::extract::{Backend, Caller, CsvBody, JsonBody, Path, Query};
use crate::directory::csv_import;
use crate::directory::{ops, DirectoryError};
use crate::hub::Hub;
use crate::presence::tenant::Tenant;

type Hs = State<Arc<Hub>>;
type R<T> = Result<T, ApiError>;

pub fn routes() -> Router<Arc<Hub>> {
    Router::new()
        .route("/v1/tenants/{tid}", put(put_tenant).get(get_tenant))
        .route("/v1/tenants/{tid}/stats", get(stats))
        .route("/v1/tenants/{tid}/users", get(list_users))
        .route("/v1/tenants/{tid}/users/deactivate", post(deactivate))
        .route("/v1/tenants/{tid}/users/reactivate", post(reactivate))
        .route("/v1/tenants/{tid}/users/import", post(import))
        .route(
            "/v1/tenants/{tid}/users/{uid}",
            put(put_user).get(get_user).delete(delete_user),
        )
        .route(
            "/v1/tenants/{tid}/teams/{team}",
            put(put_team).get(get_team).delete(delete_team),
        )
        .route(
            "/v1/tenants/{tid}/teams/{team}/members/{uid}",
            put(put_member).delete(delete_member),
        )
        .route("/v1/tenants/{tid}/teams/{team}/eligible", get(eligible))
}

async fn put_tenant(
    _: Backend,
    State(hub): Hs,
    Path(tid): Path<String>,
    JsonBody(req): JsonBody<TenantPut>,
) -> R<impl IntoResponse> {
    let created = hub.put_tenant(&tid, req.user_limit).await?;
    let view = hub.read(&tid, tenant_view)?;
    Ok((
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        Json(view),
    ))
}

fn tenant_view(t: &Tenant) -> TenantView {
    TenantView {
        id: t.dir.tenant.id.clone(),
        user_limit: t.dir.tenant.user_limit,
        stats: t.stats(),
    }
}

async fn get_tenant(_: Caller, State(hub): Hs, Path(tid): Path<String>) -> R<Json<TenantView>> {
    Ok(Json(hub.read(&tid, tenant_view)?))
}

async fn stats(
    _: Caller,
    State(hub): Hs,
    Path(tid): Path<String>,
) -> R<Json<presence_protocol::Stats>> {
    Ok(Json(hub.read(&tid, |t| t.stats())?))
}

fn user_view(t: &Tenant, uid: &str) -> Option<UserView> {
    let u = t.dir.users.get(uid)?;
    let p = t.presence(uid);
    Some(UserView {
        id: u.id.clone(),
        name: u.name.clone(),
        nickname: u.nickname.clone(),
        email: u.email.clone(),
        phone: u.phone.clone(),
        profile: u.profile,
        available: u.available,
        away_message: u.away_message.clone(),
        state: u.state,
        status: p.status,
        since: p.since,
        last_seen: p.last_seen,
        v: p.v,
        teams: t.dir.memberships_of(uid),
    })
}

async fn get_user(
    _: Caller,
    State(hub): Hs,
    Path((tid, uid)): Path<(String, String)>,
) -> R<Json<UserView>> {
    hub.read(&tid, |t| user_view(t, &uid))?
        .map(Json)
        .ok_or(ApiError::Directory(DirectoryError::UnknownUser(uid)))
}

async fn put_user(
    _: Caller,
    State(hub): Hs,
    Path((tid, uid)): Path<(String, String)>,
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

async fn delete_user(
    _: Caller,
    State(hub): Hs,
    Path((tid, uid)): Path<(String, String)>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_user(d, &uid)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn deactivate(
    _: Caller,
    State(hub): Hs,
    Path(tid): Path<String>,
    JsonBody(req): JsonBody<IdsBody>,
) -> R<Json<BulkResult>> {
    let changed = hub.write(&tid, |d| ops::deactivate(d, &req.ids)).await?;
    Ok(Json(bulk(&req.ids, changed)))
}

async fn reactivate(
    _: Caller,
    State(hub): Hs,
    Path(tid): Path<String>,
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

#[derive(Deserialize)]
struct ImportQuery {
    dry_run: Option<String>,
}

async fn import(
    _: Caller,
    State(hub): Hs,
    Path(tid): Path<String>,
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

#[derive(Deserialize)]
struct ListQuery {
    activity: Option<String>,
    state: Option<String>,
    q: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

async fn list_users(
    _: Caller,
    State(hub): Hs,
    Path(tid): Path<String>,
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

async fn put_team(
    _: Caller,
    State(hub): Hs,
    Path((tid, team)): Path<(String, String)>,
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

async fn get_team(
    _: Caller,
    State(hub): Hs,
    Path((tid, team)): Path<(String, String)>,
) -> R<Json<TeamView>> {
    hub.read(&tid, |t| team_view(t, &team))?
        .map(Json)
        .ok_or(ApiError::Directory(DirectoryError::UnknownTeam(team)))
}

async fn delete_team(
    _: Caller,
    State(hub): Hs,
    Path((tid, team)): Path<(String, String)>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_team(d, &team)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn put_member(
    _: Caller,
    State(hub): Hs,
    Path((tid, team, uid)): Path<(String, String, String)>,
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

async fn delete_member(
    _: Caller,
    State(hub): Hs,
    Path((tid, team, uid)): Path<(String, String, String)>,
) -> R<StatusCode> {
    hub.write(&tid, |d| Ok((ops::delete_member(d, &team, &uid)?, ())))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn eligible(
    _: Caller,
    State(hub): Hs,
    Path((tid, team)): Path<(String, String)>,
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
