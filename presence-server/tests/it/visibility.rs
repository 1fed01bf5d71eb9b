//! Who sees what (SPEC §4) and how rosters change (SPEC §5), observed over
//! real sockets: every cell of the visibility table, snapshot-then-deltas,
//! tenant isolation, and subscriptions ending when rights change.
//!
//! Watchers connect with `idle_ms` = the idle timeout (no proof of
//! interaction), so their own presence never changes and every frame they
//! receive is caused by what the test does: each test can then assert the
//! exact sequence of frames instead of skipping over noise.

use std::collections::BTreeSet;
use std::time::Duration;

use presence_protocol::{
    Entry, ErrorCode, Membership, MembershipRole, ReqId, Roster, ServerMessage, Stats, Status,
    UserState,
};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = test_config();
    admin_sees_directory_with_every_field_and_counters,
    admin_sees_attendants_with_every_field_and_no_counters,
    admin_sees_a_team_they_belong_to,
    admin_sees_a_team_they_do_not_belong_to,
    unknown_team_is_not_found_for_admins_and_members,
    attendant_cannot_watch_directory,
    attendant_sees_attendants_without_admin_fields,
    attendant_sees_their_team_with_roles_only_for_that_team,
    attendant_cannot_watch_a_team_they_are_not_in,
    non_attendant_cannot_watch_directory,
    non_attendant_in_an_inactive_crm_team_cannot_watch_attendants,
    non_attendant_sees_their_team_without_admin_fields,
    non_attendant_cannot_watch_a_team_they_are_not_in,
    restricted_user_cannot_watch_directory,
    restricted_user_cannot_watch_attendants_even_in_a_crm_team,
    restricted_user_sees_their_team_without_admin_fields,
    restricted_user_cannot_watch_a_team_they_are_not_in,
    directory_watcher_gets_online_then_offline_with_versions_and_counters,
    attendants_and_team_watchers_get_presence_deltas_without_counters,
    transitions_of_users_off_a_roster_are_not_sent_to_it,
    nickname_change_reaches_every_roster_showing_the_user,
    deleted_user_is_removed_from_every_roster_and_counted_nowhere,
    membership_changes_move_users_on_and_off_team_and_attendants_rosters,
    admin_sees_nothing_of_the_same_user_id_in_another_tenant,
    tokens_of_one_tenant_cannot_watch_another_tenants_rosters,
    admin_token_of_one_tenant_is_refused_by_another_tenants_admin_api,
    attendant_removed_from_their_only_crm_team_loses_attendants,
    member_removed_from_a_team_loses_that_team_roster,
    deactivated_crm_team_ends_attendants_for_its_only_crm_members,
    admin_demoted_to_standard_loses_directory_and_attendants_keeps_their_team,
    admin_demoted_by_an_import_receives_no_directory_data_after_it,
    deleted_team_ends_its_subscriptions_with_not_found,
    successive_writes_reach_every_watcher_once_each_in_order,
);

const T: &str = "acme";
/// How long a watcher must stay silent to show that nothing was sent.
const SILENCE: Duration = Duration::from_millis(300);

/// Tenant `acme`:
///
/// | user | profile    | teams                                   | attendant |
/// |------|------------|-----------------------------------------|-----------|
/// | boss | admin      | ops (supervisor)                        | no        |
/// | att  | standard   | sales (member)                          | yes       |
/// | duo  | standard   | sales (member), support (supervisor)    | yes       |
/// | std  | standard   | ops (member), legacy (member)           | no: legacy is an inactive CRM team |
/// | res  | restricted | sales (member)                          | on the roster, may not watch it |
/// | old  | standard   | — (deactivated)                         | no        |
/// | gone | standard   | — (deleted)                             | no        |
async fn fixture(d: &Deployment) {
    d.seed(T, &["boss", "att", "duo", "std", "res", "old", "gone"])
        .await;
    let a = d.admin();
    for (uid, profile) in [("boss", "admin"), ("res", "restricted")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/{uid}"),
            json!({ "profile": profile }),
        )
        .await;
    }
    for (team, crm, active) in [
        ("sales", true, true),
        ("support", true, true),
        ("ops", false, true),
        ("legacy", true, false),
    ] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/{team}"),
            json!({ "name": team, "crm": crm, "active": active }),
        )
        .await;
    }
    for (team, uid, role) in [
        ("sales", "att", "member"),
        ("sales", "duo", "member"),
        ("sales", "res", "member"),
        ("support", "duo", "supervisor"),
        ("ops", "std", "member"),
        ("ops", "boss", "supervisor"),
        ("legacy", "std", "member"),
    ] {
        member(d, team, uid, role).await;
    }
    a.ok(
        "POST",
        &format!("/v1/tenants/{T}/users/deactivate"),
        json!({ "ids": ["old"] }),
    )
    .await;
    a.ok(
        "DELETE",
        &format!("/v1/tenants/{T}/users/gone"),
        json!(null),
    )
    .await;
    d.synced(T).await;
}

/// Puts `uid` in `team` and waits until every node shows it.
async fn member(d: &Deployment, team: &str, uid: &str, role: &str) {
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/{team}/members/{uid}"),
            json!({ "as": role }),
        )
        .await;
    d.synced(T).await;
}

/// A tab that proves no interaction, so its user stays offline (on the
/// next node).
async fn watcher(d: &Deployment, tenant: &str, user: &str) -> Tab {
    let idle_ms = test_config().idle_timeout.as_millis() as u64;
    d.open_tab(&token(tenant, user), Uuid::new_v4(), idle_ms)
        .await
}

fn roster(s: &str) -> Roster {
    s.parse().unwrap()
}

/// Subscribes and returns the snapshot's entries and stats; any other reply
/// fails the test.
async fn snapshot(tab: &mut Tab, id: u64, name: &str) -> (Vec<Entry>, Option<Stats>) {
    match tab.subscribe(id, name).await {
        ServerMessage::Snapshot {
            id: got,
            roster: r,
            users,
            stats,
        } => {
            assert_eq!(got, ReqId::Num(id));
            assert_eq!(r, roster(name));
            (users, stats)
        }
        other => panic!("expected a snapshot of {name}, got {other:?}"),
    }
}

fn ids(users: &[Entry]) -> BTreeSet<&str> {
    users.iter().map(|e| e.id.as_str()).collect()
}

fn set<'a>(ids: &[&'a str]) -> BTreeSet<&'a str> {
    ids.iter().copied().collect()
}

fn assert_admin_fields(e: &Entry) {
    assert!(
        e.name.is_some() && e.profile.is_some() && e.teams.is_some() && e.state.is_some(),
        "admins see every field: {e:?}"
    );
}

/// Non-admins never see name, profile or state; `teams` only on a team
/// roster, and then only that team.
fn assert_public_fields(e: &Entry, team: Option<&str>) {
    assert_eq!(e.name, None, "{e:?}");
    assert_eq!(e.profile, None, "{e:?}");
    assert_eq!(e.state, None, "{e:?}");
    match team {
        None => assert_eq!(e.teams, None, "{e:?}"),
        Some(t) => {
            let teams = e.teams.as_ref().expect("the role in the watched team");
            assert_eq!(teams.len(), 1, "{e:?}");
            assert_eq!(teams[0].id, t, "{e:?}");
        }
    }
}

fn assert_error(m: &ServerMessage, id: Option<u64>, code: ErrorCode, ended: Option<&str>) {
    match m {
        ServerMessage::Error {
            id: got_id,
            code: got_code,
            roster: got_roster,
            ..
        } => {
            assert_eq!(*got_id, id.map(ReqId::Num), "{m:?}");
            assert_eq!(*got_code, code, "{m:?}");
            assert_eq!(*got_roster, ended.map(roster), "{m:?}");
        }
        other => panic!("expected a {code:?} error, got {other:?}"),
    }
}

/// The subscription is refused with `code`, and no data follows: not even
/// when `wake` (a user on that roster) goes online.
async fn assert_refused(d: &Deployment, tab: &mut Tab, name: &str, code: ErrorCode, wake: &str) {
    let reply = tab.subscribe(9, name).await;
    assert_error(&reply, Some(9), code, None);
    let _w = d.tab(T, wake).await;
    tab.silent_for(SILENCE).await;
}

fn presence(m: &ServerMessage) -> (Roster, &str, Status, u64) {
    match m {
        ServerMessage::Presence {
            roster,
            user,
            status,
            v,
            ..
        } => (roster.clone(), user.as_str(), *status, *v),
        other => panic!("expected a presence delta, got {other:?}"),
    }
}

fn stats_frame(m: &ServerMessage) -> Stats {
    match m {
        ServerMessage::Stats { roster: r, stats } => {
            assert_eq!(*r, Roster::Directory);
            assert_eq!(stats.online + stats.offline, stats.active, "{stats:?}");
            *stats
        }
        other => panic!("expected stats, got {other:?}"),
    }
}

fn counters(online: u64, offline: u64, active: u64, inactive: u64) -> Stats {
    Stats {
        online,
        offline,
        active,
        inactive,
    }
}

// ---- The §4 table: admin --------------------------------------------------

async fn admin_sees_directory_with_every_field_and_counters(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut boss, 1, "directory").await;
    // Deactivated users stay on the directory; deleted ones do not.
    assert_eq!(
        ids(&users),
        set(&["boss", "att", "duo", "std", "res", "old"])
    );
    users.iter().for_each(assert_admin_fields);
    let old = users.iter().find(|e| e.id == "old").unwrap();
    assert_eq!(old.state, Some(UserState::Inactive));
    let std = users.iter().find(|e| e.id == "std").unwrap();
    assert_eq!(std.name.as_deref(), Some("std name"));
    assert_eq!(
        std.teams.as_deref(),
        Some(
            &[
                Membership {
                    id: "legacy".into(),
                    role: MembershipRole::Member
                },
                Membership {
                    id: "ops".into(),
                    role: MembershipRole::Member
                }
            ][..]
        )
    );
    assert_eq!(stats, Some(counters(0, 5, 5, 1)));
}

async fn admin_sees_attendants_with_every_field_and_no_counters(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut boss, 1, "attendants").await;
    // Restricted users publish their presence too; std's only CRM team is
    // inactive, so std is no attendant.
    assert_eq!(ids(&users), set(&["att", "duo", "res"]));
    users.iter().for_each(assert_admin_fields);
    assert_eq!(stats, None);
}

async fn admin_sees_a_team_they_belong_to(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut boss, 1, "team:ops").await;
    assert_eq!(ids(&users), set(&["boss", "std"]));
    users.iter().for_each(assert_admin_fields);
    let me = users.iter().find(|e| e.id == "boss").unwrap();
    assert_eq!(
        me.teams.as_deref(),
        Some(
            &[Membership {
                id: "ops".into(),
                role: MembershipRole::Supervisor
            }][..]
        )
    );
    assert_eq!(stats, None);
}

async fn admin_sees_a_team_they_do_not_belong_to(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut boss, 1, "team:sales").await;
    assert_eq!(ids(&users), set(&["att", "duo", "res"]));
    users.iter().for_each(assert_admin_fields);
    assert_eq!(stats, None);
}

async fn unknown_team_is_not_found_for_admins_and_members(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    assert_refused(d, &mut boss, "team:nope", ErrorCode::NotFound, "std").await;
    let mut std = watcher(d, T, "std").await;
    assert_refused(d, &mut std, "team:nope", ErrorCode::NotFound, "att").await;
}

// ---- The §4 table: standard attendant -------------------------------------

async fn attendant_cannot_watch_directory(d: &Deployment) {
    fixture(d).await;
    let mut att = watcher(d, T, "att").await;
    assert_refused(d, &mut att, "directory", ErrorCode::Forbidden, "std").await;
}

async fn attendant_sees_attendants_without_admin_fields(d: &Deployment) {
    fixture(d).await;
    let mut att = watcher(d, T, "att").await;
    let (users, stats) = snapshot(&mut att, 1, "attendants").await;
    assert_eq!(ids(&users), set(&["att", "duo", "res"]));
    for e in &users {
        assert_public_fields(e, None);
    }
    assert_eq!(stats, None);
}

async fn attendant_sees_their_team_with_roles_only_for_that_team(d: &Deployment) {
    fixture(d).await;
    let mut att = watcher(d, T, "att").await;
    let (users, stats) = snapshot(&mut att, 1, "team:sales").await;
    assert_eq!(ids(&users), set(&["att", "duo", "res"]));
    for e in &users {
        // duo is also in support: a non-admin sees only the watched team.
        assert_public_fields(e, Some("sales"));
    }
    assert_eq!(stats, None);
}

async fn attendant_cannot_watch_a_team_they_are_not_in(d: &Deployment) {
    fixture(d).await;
    let mut att = watcher(d, T, "att").await;
    assert_refused(d, &mut att, "team:ops", ErrorCode::Forbidden, "std").await;
}

// ---- The §4 table: standard user who is not an attendant ------------------

async fn non_attendant_cannot_watch_directory(d: &Deployment) {
    fixture(d).await;
    let mut std = watcher(d, T, "std").await;
    assert_refused(d, &mut std, "directory", ErrorCode::Forbidden, "att").await;
}

async fn non_attendant_in_an_inactive_crm_team_cannot_watch_attendants(d: &Deployment) {
    fixture(d).await;
    let mut std = watcher(d, T, "std").await;
    assert_refused(d, &mut std, "attendants", ErrorCode::Forbidden, "att").await;
}

async fn non_attendant_sees_their_team_without_admin_fields(d: &Deployment) {
    fixture(d).await;
    let mut std = watcher(d, T, "std").await;
    let (users, stats) = snapshot(&mut std, 1, "team:ops").await;
    assert_eq!(ids(&users), set(&["boss", "std"]));
    for e in &users {
        assert_public_fields(e, Some("ops"));
    }
    assert_eq!(stats, None);
}

async fn non_attendant_cannot_watch_a_team_they_are_not_in(d: &Deployment) {
    fixture(d).await;
    let mut std = watcher(d, T, "std").await;
    assert_refused(d, &mut std, "team:sales", ErrorCode::Forbidden, "att").await;
}

// ---- The §4 table: restricted ---------------------------------------------

async fn restricted_user_cannot_watch_directory(d: &Deployment) {
    fixture(d).await;
    let mut res = watcher(d, T, "res").await;
    assert_refused(d, &mut res, "directory", ErrorCode::Forbidden, "att").await;
}

async fn restricted_user_cannot_watch_attendants_even_in_a_crm_team(d: &Deployment) {
    fixture(d).await;
    let mut res = watcher(d, T, "res").await;
    assert_refused(d, &mut res, "attendants", ErrorCode::Forbidden, "att").await;
}

async fn restricted_user_sees_their_team_without_admin_fields(d: &Deployment) {
    fixture(d).await;
    let mut res = watcher(d, T, "res").await;
    let (users, stats) = snapshot(&mut res, 1, "team:sales").await;
    assert_eq!(ids(&users), set(&["att", "duo", "res"]));
    for e in &users {
        assert_public_fields(e, Some("sales"));
    }
    assert_eq!(stats, None);
}

async fn restricted_user_cannot_watch_a_team_they_are_not_in(d: &Deployment) {
    fixture(d).await;
    let mut res = watcher(d, T, "res").await;
    assert_refused(d, &mut res, "team:ops", ErrorCode::Forbidden, "std").await;
}

// ---- Snapshot, then deltas ------------------------------------------------

async fn directory_watcher_gets_online_then_offline_with_versions_and_counters(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut boss, 1, "directory").await;
    let before = users.iter().find(|e| e.id == "att").unwrap();
    assert_eq!((before.status, before.v), (Status::Offline, 0));
    assert_eq!(stats, Some(counters(0, 5, 5, 1)));

    let _att = d.tab(T, "att").await;
    let on = boss.recv().await;
    assert_eq!(presence(&on), (Roster::Directory, "att", Status::Online, 1));
    assert_eq!(stats_frame(&boss.recv().await), counters(1, 4, 5, 1));

    // A snapshot taken now agrees with the deltas. (In the cluster, `late`
    // is on the other node: it is taken once that node has the transition
    // too, which on one node is already the case.)
    d.on_every_node(&format!("/v1/tenants/{T}/users/att"), |u| {
        u["status"] == "online"
    })
    .await;
    let mut late = watcher(d, T, "boss").await;
    let (users, stats) = snapshot(&mut late, 2, "directory").await;
    let now = users.iter().find(|e| e.id == "att").unwrap();
    assert_eq!((now.status, now.v), (Status::Online, 1));
    assert_eq!(stats, Some(counters(1, 4, 5, 1)));

    // Nobody touches att's tab: idle expiry.
    let off = boss.recv().await;
    assert_eq!(
        presence(&off),
        (Roster::Directory, "att", Status::Offline, 2)
    );
    assert_eq!(stats_frame(&boss.recv().await), counters(0, 5, 5, 1));
}

async fn attendants_and_team_watchers_get_presence_deltas_without_counters(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "attendants").await;
    let mut res = watcher(d, T, "res").await;
    snapshot(&mut res, 1, "team:sales").await;

    let _att = d.tab(T, "att").await;
    assert_eq!(
        presence(&boss.recv().await),
        (Roster::Attendants, "att", Status::Online, 1)
    );
    assert_eq!(
        presence(&res.recv().await),
        (roster("team:sales"), "att", Status::Online, 1)
    );
    assert_eq!(
        presence(&boss.recv().await),
        (Roster::Attendants, "att", Status::Offline, 2)
    );
    assert_eq!(
        presence(&res.recv().await),
        (roster("team:sales"), "att", Status::Offline, 2)
    );
    // No stats frame on these rosters, before or after.
    boss.silent_for(SILENCE).await;
    res.silent_for(SILENCE).await;
}

async fn transitions_of_users_off_a_roster_are_not_sent_to_it(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "attendants").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "team:sales").await;
    // std is neither an attendant nor in sales.
    let _std = d.tab(T, "std").await;
    boss.silent_for(SILENCE).await;
    att.silent_for(SILENCE).await;
}

async fn nickname_change_reaches_every_roster_showing_the_user(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "attendants").await;
    snapshot(&mut att, 2, "team:sales").await;
    let mut std = watcher(d, T, "std").await;
    snapshot(&mut std, 1, "team:ops").await;

    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/res"),
            json!({ "nickname": "Rex" }),
        )
        .await;

    match boss.recv().await {
        ServerMessage::User {
            roster: Roster::Directory,
            user,
        } => {
            assert_eq!((user.id.as_str(), user.nickname.as_str()), ("res", "Rex"));
            assert_admin_fields(&user);
        }
        other => panic!("expected a directory user delta, got {other:?}"),
    }
    let mut seen = BTreeSet::new();
    for _ in 0..2 {
        match att.recv().await {
            ServerMessage::User { roster: r, user } => {
                assert_eq!((user.id.as_str(), user.nickname.as_str()), ("res", "Rex"));
                let team = match &r {
                    Roster::Team(t) => Some(t.as_str()),
                    _ => None,
                };
                assert_public_fields(&user, team);
                seen.insert(r);
            }
            other => panic!("expected a user delta, got {other:?}"),
        }
    }
    assert_eq!(
        seen,
        BTreeSet::from([Roster::Attendants, roster("team:sales")])
    );
    // A nickname changes no counter, and res is not on ops.
    boss.silent_for(SILENCE).await;
    std.silent_for(SILENCE).await;
}

async fn deleted_user_is_removed_from_every_roster_and_counted_nowhere(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "attendants").await;
    snapshot(&mut att, 2, "team:sales").await;

    d.admin()
        .ok("DELETE", &format!("/v1/tenants/{T}/users/res"), json!(null))
        .await;

    assert_eq!(
        boss.recv().await,
        ServerMessage::UserRemoved {
            roster: Roster::Directory,
            user: "res".into()
        }
    );
    assert_eq!(stats_frame(&boss.recv().await), counters(0, 4, 4, 1));
    let mut seen = Vec::new();
    for _ in 0..2 {
        match att.recv().await {
            ServerMessage::UserRemoved { roster: r, user } => {
                assert_eq!(user, "res");
                seen.push(r);
            }
            other => panic!("expected user_removed, got {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, vec![Roster::Attendants, roster("team:sales")]);
    boss.silent_for(SILENCE).await;
    att.silent_for(SILENCE).await;
}

async fn membership_changes_move_users_on_and_off_team_and_attendants_rosters(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "attendants").await;
    snapshot(&mut att, 2, "team:sales").await;

    // duo leaves sales but stays an attendant through support.
    d.admin()
        .ok(
            "DELETE",
            &format!("/v1/tenants/{T}/teams/sales/members/duo"),
            json!(null),
        )
        .await;
    assert_eq!(
        att.recv().await,
        ServerMessage::UserRemoved {
            roster: roster("team:sales"),
            user: "duo".into()
        }
    );
    match boss.recv().await {
        ServerMessage::User {
            roster: Roster::Directory,
            user,
        } => {
            assert_eq!(user.id, "duo");
            assert_eq!(
                user.teams,
                Some(vec![Membership {
                    id: "support".into(),
                    role: MembershipRole::Supervisor
                }])
            );
        }
        other => panic!("expected duo's new teams on the directory, got {other:?}"),
    }
    // Still on attendants: nothing there.
    att.silent_for(SILENCE).await;

    // std joins sales: now an attendant, and on the sales roster.
    member(d, "sales", "std", "both").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        match att.recv().await {
            ServerMessage::User { roster: r, user } => {
                assert_eq!(user.id, "std");
                seen.push(r);
            }
            other => panic!("expected std added, got {other:?}"),
        }
    }
    seen.sort();
    assert_eq!(seen, vec![Roster::Attendants, roster("team:sales")]);
    // And std's transitions now reach both rosters.
    let _std = d.tab(T, "std").await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let m = att.recv().await;
        let (r, user, status, v) = presence(&m);
        assert_eq!((user, status, v), ("std", Status::Online, 1));
        seen.push(r);
    }
    seen.sort();
    assert_eq!(seen, vec![Roster::Attendants, roster("team:sales")]);
}

// ---- Tenant isolation -----------------------------------------------------

async fn two_tenants(d: &Deployment) {
    d.seed("a", &["boss", "ann", "carl"]).await;
    d.seed("b", &["bea", "ann"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        "/v1/tenants/a/users/boss",
        json!({ "profile": "admin" }),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/b/users/bea",
        json!({ "profile": "admin" }),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/b/users/ann",
        json!({ "nickname": "Ann of B" }),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/a/teams/sales",
        json!({ "name": "Sales", "crm": true }),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/a/teams/sales/members/ann",
        json!({ "as": "member" }),
    )
    .await;
    d.synced("a").await;
    d.synced("b").await;
}

async fn admin_sees_nothing_of_the_same_user_id_in_another_tenant(d: &Deployment) {
    two_tenants(d).await;
    let mut boss = watcher(d, "a", "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    snapshot(&mut boss, 2, "attendants").await;
    snapshot(&mut boss, 3, "team:sales").await;

    let _ann_b = d.tab("b", "ann").await;
    boss.silent_for(Duration::from_millis(500)).await;

    // The watcher is live: A's ann going online does reach it.
    let _ann_a = d.tab("a", "ann").await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let m = boss.recv().await;
        let (r, user, status, v) = presence(&m);
        assert_eq!((user, status, v), ("ann", Status::Online, 1));
        seen.push(r);
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![Roster::Directory, Roster::Attendants, roster("team:sales")]
    );
}

async fn tokens_of_one_tenant_cannot_watch_another_tenants_rosters(d: &Deployment) {
    two_tenants(d).await;
    let mut bea = watcher(d, "b", "bea").await;
    let (users, stats) = snapshot(&mut bea, 1, "directory").await;
    assert_eq!(ids(&users), set(&["ann", "bea"]));
    let ann = users.iter().find(|e| e.id == "ann").unwrap();
    assert_eq!(ann.nickname, "Ann of B");
    assert_eq!(ann.teams, Some(vec![]), "A's team must not show");
    assert_eq!(stats, Some(counters(0, 2, 2, 0)));
    let (users, _) = snapshot(&mut bea, 2, "attendants").await;
    assert!(users.is_empty(), "A's attendants leaked: {users:?}");
    let reply = bea.subscribe(3, "team:sales").await;
    assert_error(&reply, Some(3), ErrorCode::NotFound, None);
    // A's users going online are not B's business.
    let _ann_a = d.tab("a", "ann").await;
    let _carl = d.tab("a", "carl").await;
    bea.silent_for(SILENCE).await;

    // A user of A cannot connect with a token of B.
    assert_eq!(d.refused_everywhere(&token("b", "carl")).await, 4003);
}

async fn admin_token_of_one_tenant_is_refused_by_another_tenants_admin_api(d: &Deployment) {
    two_tenants(d).await;
    let boss_a = d.admin().with_key(&token("a", "boss"));
    let (s, _) = boss_a.call("GET", "/v1/tenants/a/stats", None).await;
    assert_eq!(s, 200, "a tenant admin may use their own tenant's API");

    let (s, body) = boss_a.call("GET", "/v1/tenants/b/stats", None).await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (s, _) = boss_a.call("GET", "/v1/tenants/b/users/ann", None).await;
    assert_eq!(s, 403);
    let (s, _) = boss_a
        .call(
            "PUT",
            "/v1/tenants/b/users/ann",
            Some(json!({ "nickname": "hijacked" })),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = boss_a.call("DELETE", "/v1/tenants/b/users/ann", None).await;
    assert_eq!(s, 403);
    let ann_b = d
        .admin()
        .ok("GET", "/v1/tenants/b/users/ann", json!(null))
        .await;
    assert_eq!(ann_b["nickname"], "Ann of B");
    assert_eq!(ann_b["state"], "active");
}

// ---- Rights change end subscriptions --------------------------------------

async fn attendant_removed_from_their_only_crm_team_loses_attendants(d: &Deployment) {
    fixture(d).await;
    member(d, "ops", "att", "member").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "attendants").await;
    snapshot(&mut att, 2, "team:ops").await;
    let mut duo = watcher(d, T, "duo").await;
    snapshot(&mut duo, 1, "attendants").await;

    d.admin()
        .ok(
            "DELETE",
            &format!("/v1/tenants/{T}/teams/sales/members/att"),
            json!(null),
        )
        .await;
    assert_error(
        &att.recv().await,
        None,
        ErrorCode::Revoked,
        Some("attendants"),
    );
    // Other attendants see att leave their roster.
    assert_eq!(
        duo.recv().await,
        ServerMessage::UserRemoved {
            roster: Roster::Attendants,
            user: "att".into()
        }
    );
    // The ended subscription carries nothing more; the team one goes on.
    let _duo = d.tab(T, "duo").await;
    att.silent_for(SILENCE).await;
    let _std = d.tab(T, "std").await;
    assert_eq!(
        presence(&att.recv().await),
        (roster("team:ops"), "std", Status::Online, 1)
    );
    let again = att.subscribe(3, "attendants").await;
    assert_error(&again, Some(3), ErrorCode::Forbidden, None);
}

async fn member_removed_from_a_team_loses_that_team_roster(d: &Deployment) {
    fixture(d).await;
    let mut res = watcher(d, T, "res").await;
    snapshot(&mut res, 1, "team:sales").await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "team:sales").await;

    d.admin()
        .ok(
            "DELETE",
            &format!("/v1/tenants/{T}/teams/sales/members/res"),
            json!(null),
        )
        .await;
    assert_error(
        &res.recv().await,
        None,
        ErrorCode::Revoked,
        Some("team:sales"),
    );
    assert_eq!(
        att.recv().await,
        ServerMessage::UserRemoved {
            roster: roster("team:sales"),
            user: "res".into()
        }
    );
    let _duo = d.tab(T, "duo").await;
    res.silent_for(SILENCE).await;
    assert_eq!(
        presence(&att.recv().await),
        (roster("team:sales"), "duo", Status::Online, 1)
    );
}

async fn deactivated_crm_team_ends_attendants_for_its_only_crm_members(d: &Deployment) {
    fixture(d).await;
    let mut att = watcher(d, T, "att").await;
    snapshot(&mut att, 1, "attendants").await;
    let mut duo = watcher(d, T, "duo").await;
    snapshot(&mut duo, 1, "attendants").await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "attendants").await;

    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/sales"),
            json!({ "name": "sales", "crm": true, "active": false }),
        )
        .await;

    assert_error(
        &att.recv().await,
        None,
        ErrorCode::Revoked,
        Some("attendants"),
    );
    // duo is still an attendant through support; admins always may watch.
    for tab in [&mut duo, &mut boss] {
        let mut gone = Vec::new();
        for _ in 0..2 {
            match tab.recv().await {
                ServerMessage::UserRemoved {
                    roster: Roster::Attendants,
                    user,
                } => gone.push(user),
                other => panic!("expected user_removed on attendants, got {other:?}"),
            }
        }
        gone.sort();
        assert_eq!(gone, vec!["att".to_string(), "res".to_string()]);
    }
    let _duo_tab = d.tab(T, "duo").await;
    for tab in [&mut duo, &mut boss] {
        assert_eq!(
            presence(&tab.recv().await),
            (Roster::Attendants, "duo", Status::Online, 1)
        );
    }
    att.silent_for(SILENCE).await;
}

async fn admin_demoted_to_standard_loses_directory_and_attendants_keeps_their_team(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    snapshot(&mut boss, 2, "attendants").await;
    snapshot(&mut boss, 3, "team:ops").await;

    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/boss"),
            json!({ "profile": "standard" }),
        )
        .await;

    // Exactly the two endings (boss is no attendant), nothing before them.
    let mut ended = Vec::new();
    for _ in 0..2 {
        let m = boss.recv().await;
        match &m {
            ServerMessage::Error {
                roster: Some(r), ..
            } => {
                assert_error(&m, None, ErrorCode::Revoked, Some(&r.to_string()));
                ended.push(r.clone());
            }
            other => panic!("expected the end of a subscription, got {other:?}"),
        }
    }
    ended.sort();
    assert_eq!(ended, vec![Roster::Directory, Roster::Attendants]);
    boss.silent_for(SILENCE).await;

    // The team roster goes on, now without admin-only fields.
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/std"),
            json!({ "nickname": "Stan" }),
        )
        .await;
    match boss.recv().await {
        ServerMessage::User { roster: r, user } => {
            assert_eq!(r, roster("team:ops"));
            assert_eq!(user.nickname, "Stan");
            assert_public_fields(&user, Some("ops"));
        }
        other => panic!("expected std's new nickname on ops, got {other:?}"),
    }
    let _std = d.tab(T, "std").await;
    assert_eq!(
        presence(&boss.recv().await),
        (roster("team:ops"), "std", Status::Online, 1)
    );
    let again = boss.subscribe(4, "directory").await;
    assert_error(&again, Some(4), ErrorCode::Forbidden, None);
}

async fn admin_demoted_by_an_import_receives_no_directory_data_after_it(d: &Deployment) {
    fixture(d).await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "directory").await;
    let mut duo = watcher(d, T, "duo").await;
    snapshot(&mut duo, 1, "attendants").await;

    // One atomic batch demotes boss, renames att and creates a user (which
    // moves the counters): boss may no longer see any of it.
    let csv = "id;name;email;profile;nickname\n\
               boss;boss name;boss@x.test;standard;boss\n\
               att;att name;att@x.test;standard;Atty\n\
               neo;Neo;neo@x.test;standard;neo\n";
    let (s, body) = d
        .admin()
        .raw(
            "POST",
            &format!("/v1/tenants/{T}/users/import?dry_run=false"),
            "text/csv",
            csv.as_bytes().to_vec(),
        )
        .await;
    assert_eq!(s, 200, "{body}");

    assert_error(
        &boss.recv().await,
        None,
        ErrorCode::Revoked,
        Some("directory"),
    );
    boss.silent_for(SILENCE).await;
    // The rest of the batch did happen, for those allowed to see it.
    match duo.recv().await {
        ServerMessage::User {
            roster: Roster::Attendants,
            user,
        } => {
            assert_eq!((user.id.as_str(), user.nickname.as_str()), ("att", "Atty"));
        }
        other => panic!("expected att's new nickname, got {other:?}"),
    }
}

async fn deleted_team_ends_its_subscriptions_with_not_found(d: &Deployment) {
    fixture(d).await;
    let mut std = watcher(d, T, "std").await;
    snapshot(&mut std, 1, "team:ops").await;
    let mut boss = watcher(d, T, "boss").await;
    snapshot(&mut boss, 1, "team:ops").await;
    snapshot(&mut boss, 2, "team:sales").await;

    d.admin()
        .ok("DELETE", &format!("/v1/tenants/{T}/teams/ops"), json!(null))
        .await;
    for tab in [&mut std, &mut boss] {
        assert_error(
            &tab.recv().await,
            None,
            ErrorCode::NotFound,
            Some("team:ops"),
        );
    }
    // Other subscriptions go on.
    let _att = d.tab(T, "att").await;
    assert_eq!(
        presence(&boss.recv().await),
        (roster("team:sales"), "att", Status::Online, 1)
    );
    std.silent_for(SILENCE).await;
    let again = std.subscribe(2, "team:ops").await;
    assert_error(&again, Some(2), ErrorCode::NotFound, None);
}

// ---- Writes in a row --------------------------------------------------------

async fn successive_writes_reach_every_watcher_once_each_in_order(d: &Deployment) {
    fixture(d).await;
    // A watcher on each node (one node: two watchers on it).
    let mut watchers = Vec::new();
    for _ in 0..2 {
        let mut boss = watcher(d, T, "boss").await;
        snapshot(&mut boss, 1, "directory").await;
        watchers.push(boss);
    }
    // Three renames, then a deactivation and a reactivation, in a row.
    for nick in ["R1", "R2", "R3"] {
        d.admin()
            .ok(
                "PUT",
                &format!("/v1/tenants/{T}/users/res"),
                json!({ "nickname": nick }),
            )
            .await;
    }
    for (op, _) in [("deactivate", ()), ("reactivate", ())] {
        d.admin()
            .ok(
                "POST",
                &format!("/v1/tenants/{T}/users/{op}"),
                json!({ "ids": ["res"] }),
            )
            .await;
    }
    // Each watcher sees each change once, in the order written (no write
    // replayed over a newer one), and the counters move twice.
    for boss in &mut watchers {
        let mut users = Vec::new();
        let mut stats = Vec::new();
        while users.len() < 5 {
            match boss.recv().await {
                ServerMessage::User {
                    roster: Roster::Directory,
                    user,
                } => {
                    assert_eq!(user.id, "res");
                    users.push((user.nickname, user.state));
                }
                m @ ServerMessage::Stats { .. } => stats.push(stats_frame(&m)),
                other => panic!("expected res's changes, got {other:?}"),
            }
        }
        let active = Some(UserState::Active);
        let inactive = Some(UserState::Inactive);
        assert_eq!(
            users,
            [
                ("R1".to_string(), active),
                ("R2".to_string(), active),
                ("R3".to_string(), active),
                ("R3".to_string(), inactive),
                ("R3".to_string(), active),
            ]
        );
        // Counters are a state: a watcher may get one frame for both
        // changes, but always ends on the newest.
        let last = counters(0, 5, 5, 1);
        while stats.last() != Some(&last) {
            assert!(stats.len() < 2, "unexpected counters {stats:?}");
            stats.push(stats_frame(&boss.recv().await));
        }
        assert!(
            stats.len() == 1 || stats[0] == counters(0, 4, 4, 2),
            "{stats:?}"
        );
        boss.silent_for(SILENCE).await;
    }
}
