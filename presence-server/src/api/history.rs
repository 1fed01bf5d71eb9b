//! The history routes (SPEC §11): a user's intervals, the attendance
//! report (JSON or CSV) and the erasure of a user's history.
//!
//! Who may read is decided by `visibility::history_scope` (an
//! administrator: everyone; a supervisor: their teams' members); the admin
//! key reads everything. Only the admin key and administrators erase.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jiff::tz::TimeZone;
use presence_protocol::admin::ApiError as ErrorBody;
use presence_protocol::history::{HistoryInterval, HistoryView};
use presence_protocol::{Reason, Status, UserState};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::UtoipaMethodRouter;
use utoipa_axum::routes;

use crate::api::admin::{TenantPath, UserPath};
use crate::api::error::ApiError;
use crate::api::extract::{Caller, Path, Query, Reader};
use crate::api::openapi::{NotFound, StoreUnavailable, Unauthenticated};
use crate::directory::DirectoryError;
use crate::history::range::{self, RangeError, Span};
use crate::history::report::{self, Report, ReportTeam, ReportUser};
use crate::history::{read, Interval};
use crate::hub::Hub;
use crate::presence::visibility::{history_scope, HistoryScope};

pub(crate) fn routes() -> Vec<UtoipaMethodRouter<Arc<Hub>>> {
    vec![routes!(history, erase), routes!(attendance)]
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct RangeQuery {
    /// A day `YYYY-MM-DD` in the tenant's time zone (its first instant) or
    /// an RFC 3339 instant; default: today.
    from: Option<String>,
    /// A day `YYYY-MM-DD` (included) or an RFC 3339 instant (excluded);
    /// default: today.
    to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// As for the history: a day or an RFC 3339 instant; default: today.
    from: Option<String>,
    /// As for the history; default: today.
    to: Option<String>,
    /// Only the members of this team.
    team: Option<String>,
    /// Only this user.
    user: Option<String>,
    /// `json` (default) or `csv` (`;`-separated, UTF-8 with a BOM).
    format: Option<String>,
    /// With each day's online pieces (`[from, to]` pairs), for timelines.
    #[param(default = false)]
    intervals: Option<bool>,
}

/// What every history route reads of the tenant first, under its lock.
struct Context {
    tz_name: String,
    tz: TimeZone,
    retention_days: u32,
    scope: HistoryScope,
}

const NOT_A_READER: &str =
    "only the admin key, administrators and team supervisors may read presence history";

fn context(t: &crate::presence::tenant::Tenant, reader: &Reader) -> Result<Context, ApiError> {
    let scope = match reader {
        Reader::Backend => Some(HistoryScope::Everyone),
        Reader::User(u) => history_scope(&t.dir, u),
    }
    .ok_or(ApiError::Forbidden(NOT_A_READER))?;
    let tz_name = t.dir.tenant.time_zone_name().to_owned();
    // Checked when it was set; a zone the database lost reads as UTC.
    let tz = jiff::tz::db().get(&tz_name).unwrap_or(TimeZone::UTC);
    Ok(Context {
        tz_name,
        tz,
        retention_days: t.dir.tenant.history_days(),
        scope,
    })
}

fn bad_range(e: RangeError) -> ApiError {
    ApiError::BadQuery {
        param: e.field(),
        reason: e.to_string(),
    }
}

fn span(hub: &Hub, c: &Context, from: Option<&str>, to: Option<&str>) -> Result<Span, ApiError> {
    range::parse(from, to, &c.tz, hub.now_ms(), c.retention_days).map_err(bad_range)
}

/// A user's presence history
///
/// The user's online intervals that overlap the range, whole (`from` and `to` are not cut to the range; an interval still going on has `to: null`), with the offline gaps between them; the reason of each is why it ended (`idle`, `logout`, `deactivated`, `deleted`, `node_lost`, `reconciled`; `activity` for a gap). A deactivated or deleted user's history stays readable. Readers: the admin key, administrators, and supervisors of a team the user belongs to.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/users/{uid}/history",
    operation_id = "getUserHistory",
    tag = "history",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(UserPath, RangeQuery),
    responses(
        (status = 200, description = "The intervals.", body = HistoryView),
        (status = 400, description = "A malformed `from`/`to`, `from` after `to`, a range before the retention or over 366 days; `details.param` names the parameter.", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not a reader of this user's history.", body = ErrorBody),
        NotFound, StoreUnavailable,
    )
)]
async fn history(
    reader: Reader,
    State(hub): State<Arc<Hub>>,
    Path(UserPath { tid, uid }): Path<UserPath>,
    Query(q): Query<RangeQuery>,
) -> Result<Json<HistoryView>, ApiError> {
    let c = hub.read(&tid, |t| {
        let c = context(t, &reader)?;
        if !c.scope.covers(&t.dir, &uid) {
            return Err(ApiError::Forbidden(NOT_A_READER));
        }
        if !t.dir.users.contains_key(&uid) {
            return Err(DirectoryError::UnknownUser(uid.clone()).into());
        }
        Ok(c)
    })??;
    let span = span(&hub, &c, q.from.as_deref(), q.to.as_deref())?;
    let found = read::intervals(
        &hub,
        &tid,
        span.from_ms,
        span.to_ms,
        Some(std::slice::from_ref(&uid)),
    )
    .await?;
    let online = found.intervals.get(&uid).map_or(&[][..], Vec::as_slice);
    Ok(Json(HistoryView {
        user: uid.clone(),
        time_zone: c.tz_name,
        from: span.from_ms,
        to: span.to_ms,
        intervals: with_gaps(online, span.to_ms >= hub.now_ms()),
        erased_at: found.erased.get(&uid).copied(),
    }))
}

/// Online intervals with the offline gaps between them; `to_now`: the range
/// reaches now, so the gap after the last one (if closed) goes on.
fn with_gaps(online: &[Interval], to_now: bool) -> Vec<HistoryInterval> {
    let mut out = Vec::with_capacity(online.len() * 2);
    for (i, iv) in online.iter().enumerate() {
        out.push(HistoryInterval {
            from: iv.from,
            to: iv.to,
            status: Status::Online,
            reason: iv.reason,
        });
        let Some(end) = iv.to else { continue };
        match online.get(i + 1) {
            Some(next) => out.push(HistoryInterval {
                from: end,
                to: Some(next.from),
                status: Status::Offline,
                reason: Some(Reason::Activity),
            }),
            None if to_now => out.push(HistoryInterval {
                from: end,
                to: None,
                status: Status::Offline,
                reason: None,
            }),
            None => {}
        }
    }
    out
}

/// Erase a user's presence history
///
/// Removes every interval of the user (an LGPD/GDPR erasure); their transitions until now are never folded into history again, and `erased_at` of `GET .../history` records when it happened (the audit record; the erased data is not kept). The transition feed (SPEC §10) is not changed: it ages out with its own retention. Admin key and administrators only.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/users/{uid}/history",
    operation_id = "eraseUserHistory",
    tag = "history",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(UserPath),
    responses(
        (status = 204, description = "Erased."),
        Unauthenticated,
        (status = 403, description = "Neither the admin key nor an administrator of this tenant.", body = ErrorBody),
        NotFound, StoreUnavailable,
    )
)]
async fn erase(
    caller: Caller,
    State(hub): State<Arc<Hub>>,
    Path(UserPath { tid, uid }): Path<UserPath>,
) -> Result<StatusCode, ApiError> {
    hub.read(&tid, |t| {
        if t.dir.users.contains_key(&uid) {
            Ok(())
        } else {
            Err(DirectoryError::UnknownUser(uid.clone()))
        }
    })??;
    let at = hub.now_ms();
    hub.store().erase_history(&tid, &uid, at).await?;
    tracing::info!(
        target: "audit",
        tenant = %tid,
        user = %uid,
        by = ?caller,
        at,
        "presence history erased"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// Attendance report
///
/// Per user per day (in the tenant's time zone): time online, first online, last offline (`null` while still online; the day's end when a period goes on past midnight), number of online periods and the longest offline gap between two of them; totals per user and per team. Only days with presence are listed. `format=csv` gives the same as `;`-separated UTF-8 with a BOM (one row per user per day, then a `total` row per user and per team), for spreadsheets. Readers: the admin key and administrators (every user), supervisors (the members of the teams they supervise).
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/reports/attendance",
    operation_id = "getAttendanceReport",
    tag = "history",
    security(("adminKey" = []), ("adminJwt" = [])),
    params(TenantPath, ReportQuery),
    responses(
        (status = 200, description = "The report (JSON, or CSV with `format=csv`).", body = Report),
        (status = 400, description = "A malformed `from`/`to`, `from` after `to`, a range before the retention or over 366 days, or an unknown `format`; `details.param` names the parameter.", body = ErrorBody),
        Unauthenticated,
        (status = 403, description = "Not a reader of presence history, or of that team or user.", body = ErrorBody),
        NotFound, StoreUnavailable,
    )
)]
async fn attendance(
    reader: Reader,
    State(hub): State<Arc<Hub>>,
    Path(TenantPath { tid }): Path<TenantPath>,
    Query(q): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(ApiError::BadQuery {
                param: "format",
                reason: "must be json or csv".into(),
            })
        }
    };
    let (c, mut users, teams, deleted) = hub.read(&tid, |t| {
        let c = context(t, &reader)?;
        let dir = &t.dir;
        if let Some(team) = &q.team {
            if !dir.teams.contains_key(team) {
                return Err(DirectoryError::UnknownTeam(team.clone()).into());
            }
            if !c.scope.covers_team(team) {
                return Err(ApiError::Forbidden(NOT_A_READER));
            }
        }
        if let Some(user) = &q.user {
            if !c.scope.covers(dir, user) {
                return Err(ApiError::Forbidden(NOT_A_READER));
            }
            if !dir.users.contains_key(user) {
                return Err(DirectoryError::UnknownUser(user.clone()).into());
            }
        }
        let users: Vec<ReportUser> = dir
            .users
            .values()
            .filter(|u| q.user.as_ref().is_none_or(|w| *w == u.id))
            .filter(|u| {
                q.team
                    .as_ref()
                    .is_none_or(|team| dir.role_in(&u.id, team).is_some())
            })
            .filter(|u| c.scope.covers(dir, &u.id))
            .map(|u| ReportUser {
                id: u.id.clone(),
                name: u.name.clone(),
                teams: dir.teams_of(&u.id).map(|(t, _)| t.clone()).collect(),
                intervals: Vec::new(),
            })
            .collect();
        let teams: Vec<ReportTeam> = dir
            .teams
            .values()
            .filter(|team| c.scope.covers_team(&team.id))
            .filter(|team| q.team.as_ref().is_none_or(|w| *w == team.id))
            .map(|team| ReportTeam {
                id: team.id.clone(),
                name: team.name.clone(),
                members: dir.members_of(&team.id).map(|(u, _)| u.clone()).collect(),
            })
            .collect();
        let deleted: HashSet<String> = users
            .iter()
            .filter(|u| {
                dir.users
                    .get(&u.id)
                    .is_some_and(|r| r.state == UserState::Deleted)
            })
            .map(|u| u.id.clone())
            .collect();
        Ok((c, users, teams, deleted))
    })??;
    let span = span(&hub, &c, q.from.as_deref(), q.to.as_deref())?;
    // Everyone's days when the report covers the tenant; for a team, a
    // supervisor's teams or one user, only theirs.
    let only: Option<Vec<String>> =
        (q.user.is_some() || q.team.is_some() || c.scope != HistoryScope::Everyone)
            .then(|| users.iter().map(|u| u.id.clone()).collect());
    let mut found = read::intervals(&hub, &tid, span.from_ms, span.to_ms, only.as_deref()).await?;
    for u in &mut users {
        u.intervals = found.intervals.remove(&u.id).unwrap_or_default();
    }
    // A deleted user is listed only for the time they were there.
    users.retain(|u| !u.intervals.is_empty() || !deleted.contains(&u.id));
    let with_intervals = q.intervals.unwrap_or(false);
    let now = hub.now_ms();
    // A whole tenant's month is a second of CPU: off the runtime's
    // workers, so the tabs they serve do not wait for it.
    let body = tokio::task::spawn_blocking(move || {
        let report = report::attendance(&c.tz_name, &span, users, &teams, now, with_intervals);
        if csv {
            let name = format!(
                "attachment; filename=\"attendance-{}-{}.csv\"",
                report.from, report.to
            );
            (CSV, Some(name), report::to_csv(&report, &c.tz))
        } else {
            (JSON, None, json_body(&report, with_intervals))
        }
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "the attendance report failed");
        ApiError::StoreUnavailable
    })?;
    let (content_type, disposition, bytes) = body;
    let mut resp = ([(header::CONTENT_TYPE, content_type)], bytes).into_response();
    if let Some(d) = disposition.and_then(|d| header::HeaderValue::from_str(&d).ok()) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, d);
    }
    Ok(resp)
}

const CSV: &str = "text/csv; charset=utf-8";
const JSON: &str = "application/json";

/// The report as JSON, written into a buffer sized for it at once (a
/// tenant's month is tens of megabytes: growing by doubling would copy it
/// over and over).
fn json_body(report: &Report, with_intervals: bool) -> Vec<u8> {
    let days: usize = report.users.iter().map(|u| u.days.len()).sum();
    let per_day = if with_intervals { 500 } else { 160 };
    let mut out =
        Vec::with_capacity(256 * (report.users.len() + report.teams.len()) + per_day * days);
    // Plain structs of strings and numbers: cannot fail.
    serde_json::to_writer(&mut out, report).expect("the report serialises");
    out
}
