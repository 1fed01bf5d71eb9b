//! Who sees what (SPEC §4): which rosters a user may watch, which users a
//! roster holds, and which fields of an entry a watcher may see.
//!
//! Pure functions of the directory and presence, so every cell of the table
//! is decided here and nowhere else.

use presence_protocol::{Entry, MembershipRole, Profile, Roster, Stats, UserState};

use crate::directory::TenantDir;
use crate::presence::engine::UserPresence;

/// Why a subscription is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The watcher may not see this roster.
    Forbidden,
    /// The team does not exist.
    NotFound,
}

/// Whether `watcher` (an active user of this tenant) may watch `roster`.
pub fn may_watch(dir: &TenantDir, watcher: &str, roster: &Roster) -> Result<(), Denied> {
    let Some(user) = dir
        .users
        .get(watcher)
        .filter(|u| u.state == UserState::Active)
    else {
        return Err(Denied::Forbidden);
    };
    let admin = user.profile == Profile::Admin;
    match roster {
        Roster::Directory if admin => Ok(()),
        Roster::Directory => Err(Denied::Forbidden),
        Roster::Attendants if admin => Ok(()),
        Roster::Attendants if user.profile == Profile::Standard && dir.is_attendant(watcher) => {
            Ok(())
        }
        Roster::Attendants => Err(Denied::Forbidden),
        Roster::Team(t) if !dir.teams.contains_key(t) => Err(Denied::NotFound),
        Roster::Team(_) if admin => Ok(()),
        Roster::Team(t) if dir.role_in(watcher, t).is_some() => Ok(()),
        Roster::Team(_) => Err(Denied::Forbidden),
    }
}

/// Whose presence history a user may read (SPEC §11): an administrator
/// everyone's; a supervisor the members (supervisors included) of the
/// active teams they supervise; anyone else nobody's (`None`). The admin
/// key reads like an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryScope {
    Everyone,
    /// The ids of the teams supervised, sorted.
    Teams(Vec<String>),
}

pub fn history_scope(dir: &TenantDir, reader: &str) -> Option<HistoryScope> {
    let user = dir
        .users
        .get(reader)
        .filter(|u| u.state == UserState::Active)?;
    if user.profile == Profile::Admin {
        return Some(HistoryScope::Everyone);
    }
    let mut teams: Vec<String> = dir
        .teams_of(reader)
        .filter(|(t, role)| {
            !matches!(role, MembershipRole::Member) && dir.teams.get(*t).is_some_and(|t| t.active)
        })
        .map(|(t, _)| t.clone())
        .collect();
    teams.sort();
    (!teams.is_empty()).then_some(HistoryScope::Teams(teams))
}

impl HistoryScope {
    /// Whether `user`'s history is in the scope.
    pub fn covers(&self, dir: &TenantDir, user: &str) -> bool {
        match self {
            HistoryScope::Everyone => true,
            HistoryScope::Teams(ts) => ts.iter().any(|t| dir.role_in(user, t).is_some()),
        }
    }

    /// Whether team `team`'s figures are in the scope.
    pub fn covers_team(&self, team: &str) -> bool {
        match self {
            HistoryScope::Everyone => true,
            HistoryScope::Teams(ts) => ts.binary_search_by(|t| t.as_str().cmp(team)).is_ok(),
        }
    }
}

/// Whether a watcher sees every field (admins) or the public ones.
pub fn sees_everything(dir: &TenantDir, watcher: &str) -> bool {
    dir.users
        .get(watcher)
        .is_some_and(|u| u.profile == Profile::Admin)
}

/// Whether `user` belongs on `roster`.
pub fn on_roster(dir: &TenantDir, user: &str, roster: &Roster) -> bool {
    let Some(u) = dir.users.get(user) else {
        return false;
    };
    match roster {
        Roster::Directory => u.state != UserState::Deleted,
        Roster::Attendants => dir.is_attendant(user),
        Roster::Team(t) => u.state == UserState::Active && dir.role_in(user, t).is_some(),
    }
}

/// Who may be on `roster`, without scanning the directory for a team or
/// the attendants (a team's snapshot costs its size, not the tenant's).
/// Each candidate still goes through [`entry`], which decides.
pub fn candidates<'a>(dir: &'a TenantDir, roster: &Roster) -> Vec<&'a String> {
    match roster {
        Roster::Directory => dir.users.keys().collect(),
        Roster::Team(t) => dir.members_of(t).map(|(u, _)| u).collect(),
        Roster::Attendants => {
            let mut users: Vec<&String> = dir
                .teams
                .values()
                .filter(|t| t.crm && t.active)
                .flat_map(|t| dir.members_of(&t.id).map(|(u, _)| u))
                .collect();
            users.sort();
            users.dedup();
            users
        }
    }
}

/// The rosters `user` appears on, directory first.
pub fn rosters_of(dir: &TenantDir, user: &str) -> Vec<Roster> {
    let mut out = Vec::new();
    if on_roster(dir, user, &Roster::Directory) {
        out.push(Roster::Directory);
    }
    if dir.is_attendant(user) {
        out.push(Roster::Attendants);
    }
    if dir
        .users
        .get(user)
        .is_some_and(|u| u.state == UserState::Active)
    {
        out.extend(dir.teams_of(user).map(|(t, _)| Roster::Team(t.clone())));
    }
    out
}

/// The entry of `user` on `roster` as a watcher sees it, or `None` if the
/// user is not on that roster.
pub fn entry(
    dir: &TenantDir,
    p: &UserPresence,
    user: &str,
    roster: &Roster,
    full: bool,
) -> Option<Entry> {
    if !on_roster(dir, user, roster) {
        return None;
    }
    let u = dir.users.get(user)?;
    let teams = match (full, roster) {
        (true, _) => Some(dir.memberships_of(user)),
        // Non-admins see the role in the team they watch: supervisors are
        // shown with their role.
        (false, Roster::Team(t)) => dir.role_in(user, t).map(|role| {
            vec![presence_protocol::Membership {
                id: t.clone(),
                role,
            }]
        }),
        (false, _) => None,
    };
    Some(Entry {
        id: u.id.clone(),
        nickname: u.nickname.clone(),
        name: full.then(|| u.name.clone()),
        status: p.status,
        since: p.since,
        last_seen: p.last_seen,
        v: p.v,
        available: u.available,
        away_message: u.away_message.clone(),
        profile: full.then_some(u.profile),
        teams,
        state: full.then_some(u.state),
    })
}

/// Counters of SPEC §3, given how many active users are online.
pub fn stats(dir: &TenantDir, online_active: u64) -> Stats {
    let active = dir.count_in_state(UserState::Active);
    Stats {
        online: online_active,
        offline: active.saturating_sub(online_active),
        active,
        inactive: dir.count_in_state(UserState::Inactive),
    }
}
