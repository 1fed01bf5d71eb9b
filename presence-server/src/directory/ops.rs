//! Admin requests turned into [`Write`]s, after checking them against the
//! directory as it is. Pure: nothing here touches the store or a socket, so a
//! request that fails changes nothing by construction.

use presence_protocol::admin::{TeamPut, TenantPut, UserPut};
use presence_protocol::{MembershipRole, Profile, UserState};

use crate::directory::{
    valid_id, DirectoryError, TeamRecord, TenantDir, TenantRecord, UserRecord, Write,
};

fn invalid(field: &str, reason: impl Into<String>) -> DirectoryError {
    DirectoryError::Invalid {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

pub fn check_id(field: &str, id: &str) -> Result<(), DirectoryError> {
    if valid_id(id) {
        Ok(())
    } else {
        Err(invalid(
            field,
            "must be 1 to 128 bytes without '/' or control characters",
        ))
    }
}

const MAX_TEXT: usize = 512;

fn check_text(field: &str, v: &str) -> Result<(), DirectoryError> {
    if v.len() > MAX_TEXT {
        return Err(invalid(field, format!("longer than {MAX_TEXT} bytes")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(invalid(field, "contains control characters"));
    }
    Ok(())
}

/// The longest feed retention a tenant may ask for: a year.
pub const MAX_EVENT_RETENTION_S: u64 = 365 * 24 * 3600;

/// The record of a `PUT` of a tenant: `event_retention_s` and `time_zone`
/// left out keep what `current` has (a new tenant: the node's retention and
/// UTC, kept as `None`). A time zone is kept under its IANA name as the
/// bundled database spells it (`america/sao_paulo` → `America/Sao_Paulo`).
pub fn put_tenant(
    tid: &str,
    req: &TenantPut,
    current: Option<&TenantRecord>,
) -> Result<Vec<Write>, DirectoryError> {
    check_id("tenant", tid)?;
    if let Some(r) = req.event_retention_s {
        if !(1..=MAX_EVENT_RETENTION_S).contains(&r) {
            return Err(invalid(
                "event_retention_s",
                format!("must be from 1 to {MAX_EVENT_RETENTION_S} seconds"),
            ));
        }
    }
    if let Some(d) = req.history_retention_days {
        if !(1..=crate::history::MAX_RETENTION_DAYS).contains(&d) {
            return Err(invalid(
                "history_retention_days",
                format!(
                    "must be from 1 to {} days",
                    crate::history::MAX_RETENTION_DAYS
                ),
            ));
        }
    }
    let time_zone = match &req.time_zone {
        Some(name) => Some(iana_zone(name)?),
        None => current.and_then(|c| c.time_zone.clone()),
    };
    Ok(vec![Write::Tenant(TenantRecord {
        id: tid.to_owned(),
        user_limit: req.user_limit,
        event_retention_s: req
            .event_retention_s
            .or(current.and_then(|c| c.event_retention_s)),
        time_zone,
        history_retention_days: req
            .history_retention_days
            .or(current.and_then(|c| c.history_retention_days)),
    })])
}

/// The IANA name of a zone the bundled database knows (never a fixed
/// offset: a day's length changes with daylight saving).
fn iana_zone(name: &str) -> Result<String, DirectoryError> {
    let unknown = || {
        invalid(
            "time_zone",
            format!("{name:?} is not an IANA time zone (e.g. America/Sao_Paulo, UTC)"),
        )
    };
    if name.is_empty() || name.len() > 64 {
        return Err(unknown());
    }
    let tz = jiff::tz::db().get(name).map_err(|_| unknown())?;
    Ok(tz.iana_name().unwrap_or(name).to_owned())
}

/// The record a `PUT` of a user leads to (merged with the current one).
pub fn merged_user(
    dir: &TenantDir,
    uid: &str,
    body: &UserPut,
) -> Result<UserRecord, DirectoryError> {
    check_id("id", uid)?;
    let current = dir.users.get(uid);
    let pick = |new: &Option<String>, old: Option<&String>| {
        new.clone().or_else(|| old.cloned()).unwrap_or_default()
    };
    let rec = UserRecord {
        id: uid.to_owned(),
        name: pick(&body.name, current.map(|u| &u.name)),
        nickname: pick(&body.nickname, current.map(|u| &u.nickname)),
        email: pick(&body.email, current.map(|u| &u.email)),
        phone: pick(&body.phone, current.map(|u| &u.phone)),
        profile: body
            .profile
            .or(current.map(|u| u.profile))
            .unwrap_or(Profile::Standard),
        available: body
            .available
            .or(current.map(|u| u.available))
            .unwrap_or(true),
        away_message: pick(&body.away_message, current.map(|u| &u.away_message)),
        state: current.map_or(UserState::Active, |u| u.state),
    };
    if rec.name.trim().is_empty() {
        return Err(invalid("name", "required"));
    }
    for (field, v) in [
        ("name", &rec.name),
        ("nickname", &rec.nickname),
        ("email", &rec.email),
        ("phone", &rec.phone),
        ("away_message", &rec.away_message),
    ] {
        check_text(field, v)?;
    }
    if rec.email.is_empty() && rec.phone.is_empty() {
        return Err(invalid("email", "email or phone is required"));
    }
    if !rec.email.is_empty() && !rec.email.contains('@') {
        return Err(invalid("email", "not an email address"));
    }
    Ok(rec)
}

fn check_limit(dir: &TenantDir, added: u64) -> Result<(), DirectoryError> {
    let wanted = dir.count_in_state(UserState::Active) + added;
    if added > 0 && wanted > dir.tenant.user_limit {
        return Err(DirectoryError::UserLimit {
            limit: dir.tenant.user_limit,
            wanted,
        });
    }
    Ok(())
}

fn user_write(dir: &TenantDir, user: UserRecord) -> Write {
    Write::User {
        tenant: dir.tenant.id.clone(),
        user,
    }
}

pub fn put_user(dir: &TenantDir, uid: &str, body: &UserPut) -> Result<Vec<Write>, DirectoryError> {
    let rec = merged_user(dir, uid, body)?;
    if !dir.users.contains_key(uid) {
        check_limit(dir, 1)?;
    }
    Ok(vec![user_write(dir, rec)])
}

/// A user leaving the active state loses every membership.
fn leave_teams(dir: &TenantDir, uid: &str, out: &mut Vec<Write>) {
    for (team, _) in dir.teams_of(uid) {
        out.push(Write::DeleteMember {
            tenant: dir.tenant.id.clone(),
            team: team.clone(),
            user: uid.to_owned(),
        });
    }
}

fn known<'a>(dir: &'a TenantDir, uid: &str) -> Result<&'a UserRecord, DirectoryError> {
    dir.users
        .get(uid)
        .ok_or_else(|| DirectoryError::UnknownUser(uid.to_owned()))
}

pub fn delete_user(dir: &TenantDir, uid: &str) -> Result<Vec<Write>, DirectoryError> {
    let u = known(dir, uid)?;
    let mut out = vec![user_write(
        dir,
        UserRecord {
            state: UserState::Deleted,
            ..u.clone()
        },
    )];
    leave_teams(dir, uid, &mut out);
    Ok(out)
}

fn dedup(ids: &[String]) -> Result<Vec<&String>, DirectoryError> {
    if ids.is_empty() {
        return Err(invalid("ids", "empty"));
    }
    let mut seen = std::collections::HashSet::new();
    Ok(ids.iter().filter(|id| seen.insert(id.as_str())).collect())
}

/// Bulk deactivate: returns the writes and the ids whose state changes.
pub fn deactivate(
    dir: &TenantDir,
    ids: &[String],
) -> Result<(Vec<Write>, Vec<String>), DirectoryError> {
    let mut out = Vec::new();
    let mut changed = Vec::new();
    for uid in dedup(ids)? {
        let u = known(dir, uid)?;
        if u.state != UserState::Active {
            continue;
        }
        out.push(user_write(
            dir,
            UserRecord {
                state: UserState::Inactive,
                ..u.clone()
            },
        ));
        leave_teams(dir, uid, &mut out);
        changed.push(uid.clone());
    }
    Ok((out, changed))
}

/// Bulk reactivate (inactive or deleted users); fails whole if the plan's
/// limit would be passed.
pub fn reactivate(
    dir: &TenantDir,
    ids: &[String],
) -> Result<(Vec<Write>, Vec<String>), DirectoryError> {
    let mut out = Vec::new();
    let mut changed = Vec::new();
    for uid in dedup(ids)? {
        let u = known(dir, uid)?;
        if u.state == UserState::Active {
            continue;
        }
        out.push(user_write(
            dir,
            UserRecord {
                state: UserState::Active,
                ..u.clone()
            },
        ));
        changed.push(uid.clone());
    }
    check_limit(dir, changed.len() as u64)?;
    Ok((out, changed))
}

pub fn put_team(dir: &TenantDir, team: &str, body: &TeamPut) -> Result<Vec<Write>, DirectoryError> {
    check_id("team", team)?;
    if body.name.trim().is_empty() {
        return Err(invalid("name", "required"));
    }
    check_text("name", &body.name)?;
    Ok(vec![Write::Team {
        tenant: dir.tenant.id.clone(),
        team: TeamRecord {
            id: team.to_owned(),
            name: body.name.clone(),
            crm: body.crm,
            active: body.active,
        },
    }])
}

pub fn delete_team(dir: &TenantDir, team: &str) -> Result<Vec<Write>, DirectoryError> {
    if !dir.teams.contains_key(team) {
        return Err(DirectoryError::UnknownTeam(team.to_owned()));
    }
    Ok(vec![Write::DeleteTeam {
        tenant: dir.tenant.id.clone(),
        team: team.to_owned(),
    }])
}

pub fn put_member(
    dir: &TenantDir,
    team: &str,
    uid: &str,
    role: MembershipRole,
) -> Result<Vec<Write>, DirectoryError> {
    if !dir.teams.contains_key(team) {
        return Err(DirectoryError::UnknownTeam(team.to_owned()));
    }
    if known(dir, uid)?.state != UserState::Active {
        return Err(DirectoryError::UserNotActive(uid.to_owned()));
    }
    Ok(vec![Write::Member {
        tenant: dir.tenant.id.clone(),
        team: team.to_owned(),
        user: uid.to_owned(),
        role,
    }])
}

pub fn delete_member(dir: &TenantDir, team: &str, uid: &str) -> Result<Vec<Write>, DirectoryError> {
    if !dir.teams.contains_key(team) {
        return Err(DirectoryError::UnknownTeam(team.to_owned()));
    }
    if dir.role_in(uid, team).is_none() {
        return Err(DirectoryError::UnknownMember {
            team: team.to_owned(),
            user: uid.to_owned(),
        });
    }
    Ok(vec![Write::DeleteMember {
        tenant: dir.tenant.id.clone(),
        team: team.to_owned(),
        user: uid.to_owned(),
    }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(limit: u64) -> TenantDir {
        TenantDir::new(TenantRecord {
            id: "t".into(),
            user_limit: limit,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        })
    }

    fn body(name: &str) -> UserPut {
        UserPut {
            name: Some(name.into()),
            email: Some(format!("{name}@x")),
            ..Default::default()
        }
    }

    #[test]
    fn user_limit_refuses_creation_and_reactivation() {
        let mut d = dir(1);
        for w in put_user(&d, "a", &body("a")).unwrap() {
            d.apply(&w);
        }
        assert!(matches!(
            put_user(&d, "b", &body("b")),
            Err(DirectoryError::UserLimit { .. })
        ));
        // Updating an existing user is not creating one.
        assert!(put_user(
            &d,
            "a",
            &UserPut {
                nickname: Some("A".into()),
                ..Default::default()
            }
        )
        .is_ok());
        let (ws, changed) = deactivate(&d, &["a".into()]).unwrap();
        assert_eq!(changed, vec!["a".to_string()]);
        for w in ws {
            d.apply(&w);
        }
        for w in put_user(&d, "b", &body("b")).unwrap() {
            d.apply(&w);
        }
        assert!(matches!(
            reactivate(&d, &["a".into()]),
            Err(DirectoryError::UserLimit { .. })
        ));
    }

    #[test]
    fn bad_users_are_refused() {
        let d = dir(10);
        assert!(put_user(&d, "a", &UserPut::default()).is_err(), "no name");
        assert!(
            put_user(
                &d,
                "a",
                &UserPut {
                    name: Some("A".into()),
                    ..Default::default()
                }
            )
            .is_err(),
            "no login"
        );
        assert!(put_user(&d, "a/b", &body("x")).is_err());
        assert!(deactivate(&d, &["ghost".into()]).is_err());
        assert!(deactivate(&d, &[]).is_err());
    }
}
