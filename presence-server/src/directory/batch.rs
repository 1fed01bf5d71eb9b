//! The bulk directory sync of `POST .../batch`: items checked in order, each
//! against the directory as the items before it leave it, and turned into
//! one list of writes (committed as one store batch), or every item that is
//! wrong. Pure, like the single operations it reuses from [`ops`].

use presence_protocol::admin::{BatchCounts, BatchItem};

use crate::directory::{ops, DirectoryError, TenantDir, Write};

/// The most items one batch may hold: 50,000 is a whole directory of
/// 20,000 users with their memberships, and bounds what one store commit
/// (one redb transaction, one `commit.lua` call) and one directory-log
/// entry carry.
pub const MAX_ITEMS: usize = 50_000;

/// An item that cannot be applied: its position, the field of the item at
/// fault (when the error names none) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub item: u64,
    pub field: Option<String>,
    pub error: DirectoryError,
}

/// What applying a batch to a directory would write, or every refused item.
#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    pub users: BatchCounts,
    pub teams: BatchCounts,
    pub members: BatchCounts,
    pub refusals: Vec<Refusal>,
    /// Active users the batch would leave: the directory's after every
    /// accepted item, plus the creations refused for the plan's limit.
    pub wanted_active: u64,
}

impl Plan {
    /// Refused only because the plan's `user_limit` would be passed: a
    /// conflict with the tenant (409), not bad input (SPEC §6).
    pub fn only_over_limit(&self) -> bool {
        !self.refusals.is_empty()
            && self
                .refusals
                .iter()
                .all(|r| matches!(r.error, DirectoryError::UserLimit { .. }))
    }
}

/// Plans `items` against `dir`, a copy of the tenant's directory that is
/// consumed. Each item is checked by the operation its single route uses,
/// against the copy as the accepted items before it left it; a refused
/// item changes nothing in it, so later items that need it are refused too
/// (and say why).
pub fn plan(mut scratch: TenantDir, items: &[BatchItem]) -> Plan {
    let mut p = Plan::default();
    let mut over_limit = 0;
    for (i, item) in items.iter().enumerate() {
        let (writes, field) = step(&scratch, item, &mut p);
        match writes {
            Ok(ws) => {
                for w in &ws {
                    scratch.apply(w);
                }
                p.writes.extend(ws);
            }
            Err(error) => {
                if matches!(error, DirectoryError::UserLimit { .. }) {
                    over_limit += 1;
                }
                let field = match &error {
                    DirectoryError::Invalid { .. } | DirectoryError::UserLimit { .. } => None,
                    _ => Some(field.to_owned()),
                };
                p.refusals.push(Refusal {
                    item: i as u64,
                    field,
                    error,
                });
            }
        }
    }
    p.wanted_active = scratch.count_in_state(presence_protocol::UserState::Active) + over_limit;
    if !p.refusals.is_empty() {
        // Counted as the item went, but nothing will happen.
        p.users = BatchCounts::default();
        p.teams = BatchCounts::default();
        p.members = BatchCounts::default();
    }
    p
}

/// One item's writes (counted in `p` when accepted) and the field an
/// unknown-id error of it is about.
fn step(
    d: &TenantDir,
    item: &BatchItem,
    p: &mut Plan,
) -> (Result<Vec<Write>, DirectoryError>, &'static str) {
    match item {
        BatchItem::UpsertUser { id, user } => {
            let known = d.users.contains_key(id);
            let ws = ops::put_user(d, id, user);
            count(&ws, &mut p.users, known);
            (ws, "id")
        }
        BatchItem::DeleteUser { id } => {
            let ws = ops::delete_user(d, id);
            if ws.is_ok() {
                p.users.deleted += 1;
            }
            (ws, "id")
        }
        BatchItem::UpsertTeam { id, team } => {
            let known = d.teams.contains_key(id);
            let ws = ops::put_team(d, id, team);
            count(&ws, &mut p.teams, known);
            (ws, "id")
        }
        BatchItem::DeleteTeam { id } => {
            let ws = ops::delete_team(d, id);
            if ws.is_ok() {
                p.teams.deleted += 1;
            }
            (ws, "id")
        }
        BatchItem::UpsertMember { team, user, role } => {
            let known = d.role_in(user, team).is_some();
            let ws = ops::put_member(d, team, user, *role);
            count(&ws, &mut p.members, known);
            let field = if d.teams.contains_key(team) {
                "user"
            } else {
                "team"
            };
            (ws, field)
        }
        BatchItem::DeleteMember { team, user } => {
            let ws = ops::delete_member(d, team, user);
            if ws.is_ok() {
                p.members.deleted += 1;
            }
            let field = if d.teams.contains_key(team) {
                "user"
            } else {
                "team"
            };
            (ws, field)
        }
    }
}

fn count(ws: &Result<Vec<Write>, DirectoryError>, c: &mut BatchCounts, known: bool) {
    if ws.is_ok() {
        if known {
            c.updated += 1;
        } else {
            c.created += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use presence_protocol::admin::{TeamPut, UserPut};
    use presence_protocol::MembershipRole;

    use super::*;
    use crate::directory::TenantRecord;

    fn dir(limit: u64) -> TenantDir {
        TenantDir::new(TenantRecord {
            id: "t".into(),
            user_limit: limit,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        })
    }

    fn user(id: &str) -> BatchItem {
        BatchItem::UpsertUser {
            id: id.into(),
            user: UserPut {
                name: Some(id.into()),
                email: Some(format!("{id}@x")),
                ..Default::default()
            },
        }
    }

    fn team(id: &str) -> BatchItem {
        BatchItem::UpsertTeam {
            id: id.into(),
            team: TeamPut {
                name: id.into(),
                crm: false,
                active: true,
            },
        }
    }

    fn member(team: &str, user: &str) -> BatchItem {
        BatchItem::UpsertMember {
            team: team.into(),
            user: user.into(),
            role: MembershipRole::Member,
        }
    }

    #[test]
    fn later_items_see_earlier_ones() {
        let mut d = dir(10);
        let p = plan(
            d.clone(),
            &[
                user("a"),
                team("s"),
                member("s", "a"),
                BatchItem::DeleteMember {
                    team: "s".into(),
                    user: "a".into(),
                },
                member("s", "a"),
                user("a"),
            ],
        );
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
        assert_eq!((p.users.created, p.users.updated), (1, 1));
        assert_eq!((p.members.created, p.members.deleted), (2, 1));
        for w in &p.writes {
            d.apply(w);
        }
        assert_eq!(d.role_in("a", "s"), Some(MembershipRole::Member));
    }

    #[test]
    fn every_bad_item_is_named_and_nothing_is_counted() {
        let d = dir(10);
        let p = plan(
            d.clone(),
            &[
                user("a"),
                member("nope", "a"),
                member("nope2", "a"),
                BatchItem::UpsertUser {
                    id: "b".into(),
                    user: UserPut::default(),
                },
                team("s"),
                member("s", "ghost"),
            ],
        );
        let got: Vec<(u64, Option<&str>)> = p
            .refusals
            .iter()
            .map(|r| (r.item, r.field.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                (1, Some("team")),
                (2, Some("team")),
                (3, None),
                (5, Some("user"))
            ]
        );
        assert_eq!(p.users, BatchCounts::default());
        assert!(!p.only_over_limit());
    }

    #[test]
    fn the_user_limit_counts_the_whole_batch() {
        let d = dir(2);
        let p = plan(d.clone(), &[user("a"), user("b"), user("c"), user("d")]);
        assert_eq!(
            p.refusals.iter().map(|r| r.item).collect::<Vec<_>>(),
            [2, 3]
        );
        assert!(p.only_over_limit());
        assert_eq!(p.wanted_active, 4);
        // Deleting one first makes room for one.
        let mut d = dir(2);
        for w in plan(d.clone(), &[user("a"), user("b")]).writes {
            d.apply(&w);
        }
        let p = plan(
            d.clone(),
            &[BatchItem::DeleteUser { id: "a".into() }, user("c")],
        );
        assert!(p.refusals.is_empty(), "{:?}", p.refusals);
    }
}
