//! The directory of SPEC §3 held in memory: tenants, users, teams and
//! memberships, changed only by applying [`Write`]s.
//!
//! The same `apply` replays the store at start-up and applies an admin write
//! after the store accepted it, so memory and disk cannot disagree on what a
//! write means.

use std::collections::{BTreeMap, HashMap};

use presence_protocol::{
    Membership, MembershipRole, Profile, Reason, Status, UserState, WelcomeUser,
};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub id: String,
    pub user_limit: u64,
    /// How long the transition feed keeps events, in seconds; `None`: the
    /// node's `PRESENCE_EVENT_RETENTION_S` (records written before the feed
    /// existed have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_retention_s: Option<u64>,
    /// The IANA time zone where the tenant's days start; `None`: UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// How many days presence history is kept; `None`: 90.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_retention_days: Option<u32>,
}

impl TenantRecord {
    /// The tenant's time zone as shown and used: its IANA name, `UTC` when
    /// it set none.
    pub fn time_zone_name(&self) -> &str {
        self.time_zone.as_deref().unwrap_or("UTC")
    }

    /// How many days the tenant's history is kept (90 when it set none).
    pub fn history_days(&self) -> u32 {
        self.history_retention_days
            .unwrap_or(crate::history::DEFAULT_RETENTION_DAYS)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    pub id: String,
    pub name: String,
    pub nickname: String,
    pub email: String,
    pub phone: String,
    pub profile: Profile,
    pub available: bool,
    pub away_message: String,
    pub state: UserState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    pub id: String,
    pub name: String,
    pub crm: bool,
    pub active: bool,
}

/// A webhook of the transition feed (SPEC §10). Kept with the directory so
/// every node of a cluster learns it through the directory log, like a team;
/// its delivery progress changes too often for that and is kept apart
/// (`Store::webhook_state`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    pub id: String,
    pub url: String,
    pub secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statuses: Option<Vec<Status>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<Reason>>,
    /// Deliveries start after this cursor (the feed's position when the
    /// webhook was created, or the `after` it was created with).
    pub start_after: u64,
    /// Set anew each time the webhook is created, so the delivery state of
    /// a deleted webhook of the same id is never taken for this one's.
    pub generation: String,
    /// The consumer acknowledged a gap (a `PUT` after the webhook was
    /// `failing`): the state's mark is cleared when its `cleared` is older.
    #[serde(default)]
    pub cleared_at: u64,
}

impl WebhookRecord {
    /// Whether an event with this status and reason is delivered.
    pub fn matches(&self, status: Status, reason: Reason) -> bool {
        self.statuses.as_ref().is_none_or(|s| s.contains(&status))
            && self.reasons.as_ref().is_none_or(|r| r.contains(&reason))
    }
}

/// What a user's presence was when last persisted, so `last_seen` and `v`
/// survive a restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PresenceRecord {
    pub last_seen: u64,
    pub since: u64,
    pub v: u64,
    /// The status of the user's latest feed event (a single node commits
    /// the record with the event), so a restarted hub knows whom the feed
    /// still shows online (`feed::reconcile`). `None` in records written
    /// before the record held it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl PresenceRecord {
    /// Whether the feed's latest event for this user says online. Records
    /// from before `status` was kept tell it by their times: an online
    /// user's `since` is the activity that made them online (so at most
    /// `last_seen`), an offline user's is their deadline or the forced
    /// offline, after it.
    pub fn feed_says_online(&self) -> bool {
        match self.status {
            Some(s) => s == Status::Online,
            None => self.v > 0 && self.since > 0 && self.since <= self.last_seen,
        }
    }
}

/// One durable change. A batch of writes is committed atomically by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    Tenant(TenantRecord),
    User {
        tenant: String,
        user: UserRecord,
    },
    Team {
        tenant: String,
        team: TeamRecord,
    },
    DeleteTeam {
        tenant: String,
        team: String,
    },
    Member {
        tenant: String,
        team: String,
        user: String,
        role: MembershipRole,
    },
    DeleteMember {
        tenant: String,
        team: String,
        user: String,
    },
    Presence {
        tenant: String,
        user: String,
        presence: PresenceRecord,
    },
    Webhook {
        tenant: String,
        webhook: WebhookRecord,
    },
    DeleteWebhook {
        tenant: String,
        id: String,
    },
}

impl Write {
    pub fn tenant(&self) -> &str {
        match self {
            Write::Tenant(t) => &t.id,
            Write::User { tenant, .. }
            | Write::Team { tenant, .. }
            | Write::DeleteTeam { tenant, .. }
            | Write::Member { tenant, .. }
            | Write::DeleteMember { tenant, .. }
            | Write::Presence { tenant, .. }
            | Write::Webhook { tenant, .. }
            | Write::DeleteWebhook { tenant, .. } => tenant,
        }
    }
}

/// One tenant's directory.
#[derive(Debug, Clone)]
pub struct TenantDir {
    pub tenant: TenantRecord,
    pub users: BTreeMap<String, UserRecord>,
    pub teams: BTreeMap<String, TeamRecord>,
    /// team → user → role.
    members: BTreeMap<String, BTreeMap<String, MembershipRole>>,
    /// user → team → role; the same facts indexed the other way.
    user_teams: HashMap<String, BTreeMap<String, MembershipRole>>,
    /// Presence as last persisted; read once at start-up.
    pub presence: HashMap<String, PresenceRecord>,
    /// The feed's webhooks, by id.
    pub webhooks: BTreeMap<String, WebhookRecord>,
    /// Users per state (active, inactive, deleted), kept as writes apply:
    /// counters go out after every transition and must not cost a scan.
    in_state: [u64; 3],
}

fn state_slot(s: UserState) -> usize {
    match s {
        UserState::Active => 0,
        UserState::Inactive => 1,
        UserState::Deleted => 2,
    }
}

impl TenantDir {
    /// The `welcome` description of a user: who the hub says they are.
    pub fn welcome_user(&self, uid: &str) -> Option<WelcomeUser> {
        let u = self.users.get(uid)?;
        Some(WelcomeUser {
            id: u.id.clone(),
            tenant: self.tenant.id.clone(),
            name: u.name.clone(),
            nickname: u.nickname.clone(),
            profile: u.profile,
            attendant: self.is_attendant(uid),
            teams: self.memberships_of(uid),
        })
    }

    pub fn new(tenant: TenantRecord) -> Self {
        TenantDir {
            tenant,
            users: BTreeMap::new(),
            teams: BTreeMap::new(),
            members: BTreeMap::new(),
            user_teams: HashMap::new(),
            presence: HashMap::new(),
            webhooks: BTreeMap::new(),
            in_state: [0; 3],
        }
    }

    /// Applies one write of this tenant. Writes were validated before they
    /// were stored, so applying never fails; a membership whose user or team
    /// is missing (impossible through the API) is kept out of the indexes.
    pub fn apply(&mut self, w: &Write) {
        match w {
            Write::Tenant(t) => self.tenant = t.clone(),
            Write::User { user, .. } => {
                if let Some(old) = self.users.insert(user.id.clone(), user.clone()) {
                    self.in_state[state_slot(old.state)] -= 1;
                }
                self.in_state[state_slot(user.state)] += 1;
            }
            Write::Team { team, .. } => {
                self.teams.insert(team.id.clone(), team.clone());
            }
            Write::DeleteTeam { team, .. } => {
                self.teams.remove(team);
                if let Some(ms) = self.members.remove(team) {
                    for uid in ms.keys() {
                        if let Some(ts) = self.user_teams.get_mut(uid) {
                            ts.remove(team);
                        }
                    }
                }
            }
            Write::Member {
                team, user, role, ..
            } => {
                self.members
                    .entry(team.clone())
                    .or_default()
                    .insert(user.clone(), *role);
                self.user_teams
                    .entry(user.clone())
                    .or_default()
                    .insert(team.clone(), *role);
            }
            Write::DeleteMember { team, user, .. } => {
                if let Some(ms) = self.members.get_mut(team) {
                    ms.remove(user);
                }
                if let Some(ts) = self.user_teams.get_mut(user) {
                    ts.remove(team);
                }
            }
            Write::Presence { user, presence, .. } => {
                self.presence.insert(user.clone(), *presence);
            }
            Write::Webhook { webhook, .. } => {
                self.webhooks.insert(webhook.id.clone(), webhook.clone());
            }
            Write::DeleteWebhook { id, .. } => {
                self.webhooks.remove(id);
            }
        }
    }

    /// Teams of a user, with their role, ordered by team id.
    pub fn teams_of<'a>(
        &'a self,
        user: &str,
    ) -> impl Iterator<Item = (&'a String, MembershipRole)> + 'a {
        self.user_teams
            .get(user)
            .into_iter()
            .flat_map(|ts| ts.iter().map(|(t, r)| (t, *r)))
    }

    pub fn memberships_of(&self, user: &str) -> Vec<Membership> {
        self.teams_of(user)
            .map(|(id, role)| Membership {
                id: id.clone(),
                role,
            })
            .collect()
    }

    pub fn role_in(&self, user: &str, team: &str) -> Option<MembershipRole> {
        self.members.get(team).and_then(|ms| ms.get(user)).copied()
    }

    /// Members of a team with their role, ordered by user id.
    pub fn members_of<'a>(
        &'a self,
        team: &str,
    ) -> impl Iterator<Item = (&'a String, MembershipRole)> + 'a {
        self.members
            .get(team)
            .into_iter()
            .flat_map(|ms| ms.iter().map(|(u, r)| (u, *r)))
    }

    /// An attendant is an active user in at least one active CRM team.
    pub fn is_attendant(&self, user: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.state == UserState::Active)
            && self
                .teams_of(user)
                .any(|(t, _)| self.teams.get(t).is_some_and(|t| t.crm && t.active))
    }

    pub fn count_in_state(&self, state: UserState) -> u64 {
        self.in_state[state_slot(state)]
    }
}

/// Ids from the ERP: non-empty, at most 128 bytes, no control characters and
/// no `/` (they appear in URL paths and store keys).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && !id.chars().any(|c| c.is_control() || c == '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> UserRecord {
        UserRecord {
            id: id.into(),
            name: id.into(),
            nickname: String::new(),
            email: format!("{id}@x"),
            phone: String::new(),
            profile: Profile::Standard,
            available: true,
            away_message: String::new(),
            state: UserState::Active,
        }
    }

    #[test]
    fn attendant_needs_an_active_crm_team() {
        let t = "t".to_string();
        let mut d = TenantDir::new(TenantRecord {
            id: t.clone(),
            user_limit: 10,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        });
        d.apply(&Write::User {
            tenant: t.clone(),
            user: user("a"),
        });
        let team = TeamRecord {
            id: "crm".into(),
            name: "CRM".into(),
            crm: true,
            active: true,
        };
        d.apply(&Write::Team {
            tenant: t.clone(),
            team: team.clone(),
        });
        assert!(!d.is_attendant("a"));
        d.apply(&Write::Member {
            tenant: t.clone(),
            team: "crm".into(),
            user: "a".into(),
            role: MembershipRole::Supervisor,
        });
        assert!(d.is_attendant("a"));
        d.apply(&Write::Team {
            tenant: t.clone(),
            team: TeamRecord {
                active: false,
                ..team
            },
        });
        assert!(!d.is_attendant("a"));
        d.apply(&Write::DeleteTeam {
            tenant: t.clone(),
            team: "crm".into(),
        });
        assert_eq!(d.memberships_of("a"), vec![]);
    }

    #[test]
    fn ids_are_checked() {
        assert!(valid_id("123.abc@x"));
        assert!(!valid_id(""));
        assert!(!valid_id("a/b"));
        assert!(!valid_id("a\nb"));
        assert!(!valid_id(&"x".repeat(129)));
    }
}
