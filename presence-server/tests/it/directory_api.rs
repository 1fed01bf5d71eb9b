//! The directory through the admin HTTP API (SPEC §3, §6): tenants, users,
//! teams, bulk state changes, the plan's limit, credentials, bad input and
//! the CSV import, each checked as the ERP backend or a dashboard sees it.
//!
//! The tests whose effects reach presence and rosters (deactivation,
//! deletion, reactivation, eligibility, activity filters) form a shared
//! suite run on one node and on a two-node cluster; the API-shape tests run
//! on one node.

use std::collections::BTreeSet;
use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use presence_server::Config;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = patient_config();
    a_tenant_s_time_zone_is_an_iana_name_kept_across_puts,
    user_upsert_creates_updates_and_reads_back_with_presence,
    list_filters_by_activity_state_and_search,
    deleted_user_is_hidden_from_rosters_and_counters_but_still_readable,
    eligible_lists_online_available_members_only,
    bulk_deactivate_has_every_effect_of_the_spec,
    bulk_reactivate_accepts_tokens_again_without_teams,
);

/// Users stay online for a minute, so that any offline seen within a test
/// was caused by the test, not by the idle timeout.
fn patient_config() -> Config {
    Config {
        idle_timeout: Duration::from_secs(60),
        ..test_config()
    }
}

fn assert_error(got: &(u16, Value), status: u16, code: &str) {
    let (s, v) = got;
    assert_eq!(*s, status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "an error carries a message: {v}"
    );
}

/// Everything the API shows of a tenant: the tenant, every user in every
/// state, and the given teams (or their absence).
async fn dump(a: &Admin, tid: &str, teams: &[&str]) -> Value {
    let tenant = a.call("GET", &format!("/v1/tenants/{tid}"), None).await;
    let users = a
        .call(
            "GET",
            &format!("/v1/tenants/{tid}/users?state=all&limit=1000"),
            None,
        )
        .await;
    let mut out = vec![json!(tenant), json!(users)];
    for t in teams {
        out.push(json!(
            a.call("GET", &format!("/v1/tenants/{tid}/teams/{t}"), None)
                .await
        ));
    }
    Value::Array(out)
}

async fn user(a: &Admin, tid: &str, uid: &str) -> Value {
    a.ok(
        "GET",
        &format!("/v1/tenants/{tid}/users/{uid}"),
        Value::Null,
    )
    .await
}

/// Polls the API of every node until the user has `status`, failing after
/// [`WAIT`]; returns what node A shows.
async fn wait_status(d: &Deployment, tid: &str, uid: &str, status: &str) -> Value {
    d.on_every_node(&format!("/v1/tenants/{tid}/users/{uid}"), |u| {
        u["status"] == status
    })
    .await
}

async fn put_user(a: &Admin, tid: &str, uid: &str, body: Value) -> Value {
    a.ok("PUT", &format!("/v1/tenants/{tid}/users/{uid}"), body)
        .await
}

async fn make_admin(a: &Admin, tid: &str, uid: &str) {
    put_user(
        a,
        tid,
        uid,
        json!({"name": "Boss", "email": format!("{uid}@x.test"), "profile": "admin"}),
    )
    .await;
}

/// An administrator's tab watching the `directory` roster (on the next
/// node), subscribed once every node knows boss is online, so boss's own
/// transition is in the snapshot on every deployment.
async fn directory_watcher(d: &Deployment, tid: &str) -> Tab {
    make_admin(&d.admin(), tid, "boss").await;
    d.synced(tid).await;
    let mut tab = d.tab(tid, "boss").await;
    wait_status(d, tid, "boss", "online").await;
    let snap = tab.subscribe(1, "directory").await;
    assert!(matches!(snap, ServerMessage::Snapshot { .. }), "{snap:?}");
    tab
}

fn presence_of(m: &ServerMessage) -> Option<(&str, Status)> {
    match m {
        ServerMessage::Presence { user, status, .. } => Some((user, *status)),
        _ => None,
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["users"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Percent-encodes a query value.
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Every id the list returns for `query`, following `next_cursor` with
/// pages of `limit`; fails on a page larger than the limit.
async fn walk(a: &Admin, tid: &str, query: &str, limit: usize) -> (Vec<String>, usize) {
    let mut all = Vec::new();
    let mut pages = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/tenants/{tid}/users?limit={limit}{query}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={}", enc(c)));
        }
        let page = a.ok("GET", &path, Value::Null).await;
        let got = ids(&page);
        assert!(got.len() <= limit, "page larger than the limit: {page}");
        pages += 1;
        all.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return (all, pages),
        }
        assert!(pages < 100, "pagination never ends");
    }
}

#[tokio::test]
async fn tenant_put_creates_with_201_then_updates_with_200() {
    let h = TestHub::start().await;
    let a = h.admin();
    let (s, v) = a
        .call("PUT", "/v1/tenants/acme", Some(json!({"user_limit": 5})))
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["id"], "acme");
    assert_eq!(v["user_limit"], 5);
    let (s, v) = a
        .call("PUT", "/v1/tenants/acme", Some(json!({"user_limit": 7})))
        .await;
    assert_eq!(s, 200, "{v}");
    let v = a.ok("GET", "/v1/tenants/acme", Value::Null).await;
    assert_eq!(v["user_limit"], 7);
    assert_eq!(
        v["stats"],
        json!({"online": 0, "offline": 0, "active": 0, "inactive": 0})
    );
}

async fn user_upsert_creates_updates_and_reads_back_with_presence(d: &Deployment) {
    let a = d.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 10}))
        .await;
    let (s, v) = a
        .call(
            "PUT",
            "/v1/tenants/acme/users/007",
            Some(json!({"name": "Ann Lee", "nickname": "Ann", "phone": "0119"})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["profile"], "standard");
    assert_eq!(v["available"], true);
    assert_eq!(v["state"], "active");
    assert_eq!(v["status"], "offline");
    assert_eq!(v["last_seen"], 0);
    assert_eq!(v["teams"], json!([]));
    // An update sets what it names and keeps the rest.
    let (s, v) = a
        .call(
            "PUT",
            "/v1/tenants/acme/users/007",
            Some(json!({"available": false, "away_message": "on leave"})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let u = user(&a, "acme", "007").await;
    assert_eq!(u["name"], "Ann Lee");
    assert_eq!(u["nickname"], "Ann");
    assert_eq!(u["phone"], "0119");
    assert_eq!(u["available"], false);
    assert_eq!(u["away_message"], "on leave");

    d.synced("acme").await;
    let before = now_ms();
    // On the node the write did not go through, when there are two.
    let _tab = d
        .open_tab_on(1, &token("acme", "007"), Uuid::new_v4(), 0)
        .await;
    let u = wait_status(d, "acme", "007", "online").await;
    let since = u["since"].as_u64().unwrap();
    let last_seen = u["last_seen"].as_u64().unwrap();
    assert!(since >= before && last_seen >= before, "{u}");
    assert!(u["v"].as_u64().unwrap() >= 1, "{u}");
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales"}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales/members/007",
        json!({"as": "both"}),
    )
    .await;
    assert_eq!(
        user(&a, "acme", "007").await["teams"],
        json!([{"id": "sales", "as": "both"}])
    );
    d.same_everywhere("/v1/tenants/acme/users/007").await;
}

async fn list_filters_by_activity_state_and_search(d: &Deployment) {
    let a = d.admin();
    d.seed("acme", &["ann", "bob", "cid", "dan", "eve"]).await;
    put_user(
        &a,
        "acme",
        "bob",
        json!({"name": "Roberto Zed", "phone": "0800"}),
    )
    .await;
    let _ann = d.tab("acme", "ann").await;
    let _bob = d.tab("acme", "bob").await;
    wait_status(d, "acme", "ann", "online").await;
    wait_status(d, "acme", "bob", "online").await;
    a.ok(
        "POST",
        "/v1/tenants/acme/users/deactivate",
        json!({"ids": ["dan"]}),
    )
    .await;
    a.ok("DELETE", "/v1/tenants/acme/users/eve", Value::Null)
        .await;

    // Every node lists the same (within the 1 s a write may take to reach
    // it), and this is what it lists.
    let list = |q: &'static str| async move {
        let page = d
            .same_everywhere(&format!("/v1/tenants/acme/users?{q}"))
            .await;
        ids(&page)
    };
    assert_eq!(list("activity=online").await, ["ann", "bob"]);
    assert_eq!(list("activity=offline").await, ["cid", "dan"]);
    assert_eq!(list("activity=all").await, ["ann", "bob", "cid", "dan"]);
    assert_eq!(
        list("").await,
        ["ann", "bob", "cid", "dan"],
        "deleted hidden"
    );
    assert_eq!(list("state=active").await, ["ann", "bob", "cid"]);
    assert_eq!(list("state=inactive").await, ["dan"]);
    assert_eq!(list("state=deleted").await, ["eve"]);
    assert_eq!(list("state=all").await, ["ann", "bob", "cid", "dan", "eve"]);
    assert_eq!(list("state=active&activity=offline").await, ["cid"]);
    // Search is case-insensitive over id, name, nickname, email and phone.
    assert_eq!(list("q=ROBERTO").await, ["bob"]);
    assert_eq!(list("q=0800").await, ["bob"]);
    assert_eq!(list("q=cid%40x.test").await, ["cid"]);
    assert_eq!(list("q=name&activity=online").await, ["ann"]);
    assert!(list("q=nobody-matches").await.is_empty());
    for bad in [
        "activity=busy",
        "state=gone",
        "limit=0",
        "limit=x",
        "limit=1001",
    ] {
        let r = a
            .call("GET", &format!("/v1/tenants/acme/users?{bad}"), None)
            .await;
        assert_error(&r, 400, "bad_request");
    }
}

#[tokio::test]
async fn pagination_walks_every_user_exactly_once() {
    let h = TestHub::start().await;
    let names: Vec<String> = (0..25).map(|i| format!("user {i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    // Ids with a space exercise the encoding of the cursor.
    h.seed("acme", &refs).await;
    let (all, pages) = walk(&h.admin(), "acme", "", 10).await;
    assert_eq!(pages, 3);
    let unique: BTreeSet<&String> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "duplicates: {all:?}");
    assert_eq!(all, names, "every user, in id order");
    // The same with a filter that keeps only some users.
    let (odd, _) = walk(&h.admin(), "acme", "&q=1", 4).await;
    let expected: Vec<String> = names.iter().filter(|n| n.contains('1')).cloned().collect();
    assert_eq!(odd, expected);
    // A page exactly as large as what is left has no next page.
    let (all, pages) = walk(&h.admin(), "acme", "", 25).await;
    assert_eq!((all.len(), pages), (25, 1));
}

async fn deleted_user_is_hidden_from_rosters_and_counters_but_still_readable(d: &Deployment) {
    let a = d.admin();
    d.seed("acme", &["ann", "cid"]).await;
    let mut boss = directory_watcher(d, "acme").await;
    let mut ann = d.tab("acme", "ann").await;
    boss.recv_until(|m| presence_of(m) == Some(("ann", Status::Online)))
        .await;
    let (s, _) = a.call("DELETE", "/v1/tenants/acme/users/ann", None).await;
    assert_eq!(s, 204);
    assert_eq!(ann.closed().await.code, 4003);
    boss.recv_until(|m| matches!(m, ServerMessage::UserRemoved { user, .. } if user == "ann"))
        .await;
    // boss online; cid offline; ann counts nowhere.
    d.shows_exactly(
        "/v1/tenants/acme/stats",
        &json!({"online": 1, "offline": 1, "active": 2, "inactive": 0}),
    )
    .await;
    let u = d
        .shows("/v1/tenants/acme/users/ann", |u| {
            u["state"] == "deleted" && u["status"] == "offline"
        })
        .await;
    assert!(u["last_seen"].as_u64().unwrap() > 0, "{u}");
    assert_eq!(d.refused_everywhere(&token("acme", "ann")).await, 4003);
    // A fresh directory snapshot does not show ann.
    boss.send(&presence_protocol::ClientMessage::Subscribe {
        id: presence_protocol::ReqId::Num(2),
        roster: presence_protocol::Roster::Directory,
    })
    .await;
    let ServerMessage::Snapshot { users, .. } = boss
        .recv_until(|m| matches!(m, ServerMessage::Snapshot { .. }))
        .await
    else {
        unreachable!("recv_until returned a snapshot");
    };
    assert!(users.iter().all(|e| e.id != "ann"), "{users:?}");
}

#[tokio::test]
async fn teams_and_memberships_keep_each_role() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["ann", "bob", "cid"]).await;
    let (s, v) = a
        .call(
            "PUT",
            "/v1/tenants/acme/teams/sales",
            Some(json!({"name": "Sales", "crm": true})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["active"], true, "active by default");
    let (s, v) = a
        .call(
            "PUT",
            "/v1/tenants/acme/teams/sales",
            Some(json!({"name": "Sales BR", "crm": true, "active": false})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    for (u, role) in [("ann", "member"), ("bob", "supervisor"), ("cid", "both")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/sales/members/{u}"),
            json!({"as": role}),
        )
        .await;
    }
    let team = a
        .ok("GET", "/v1/tenants/acme/teams/sales", Value::Null)
        .await;
    assert_eq!(team["name"], "Sales BR");
    assert_eq!(team["active"], false);
    assert_eq!(
        team["members"],
        json!([
            {"user": "ann", "as": "member"},
            {"user": "bob", "as": "supervisor"},
            {"user": "cid", "as": "both"},
        ])
    );
    // Changing a role replaces it.
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales/members/bob",
        json!({"as": "both"}),
    )
    .await;
    assert_eq!(
        user(&a, "acme", "bob").await["teams"],
        json!([{"id": "sales", "as": "both"}])
    );
    let (s, _) = a
        .call("DELETE", "/v1/tenants/acme/teams/sales/members/ann", None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(user(&a, "acme", "ann").await["teams"], json!([]));
    let again = a
        .call("DELETE", "/v1/tenants/acme/teams/sales/members/ann", None)
        .await;
    assert_error(&again, 404, "not_found");
    let (s, _) = a.call("DELETE", "/v1/tenants/acme/teams/sales", None).await;
    assert_eq!(s, 204);
    let gone = a.call("GET", "/v1/tenants/acme/teams/sales", None).await;
    assert_error(&gone, 404, "not_found");
    assert_eq!(user(&a, "acme", "cid").await["teams"], json!([]));
}

async fn eligible_lists_online_available_members_only(d: &Deployment) {
    let a = d.admin();
    let people = ["ann", "bob", "cid", "dan", "eve", "fay"];
    d.seed("acme", &people).await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales", "crm": true}),
    )
    .await;
    // ann member, bob both, cid supervisor, dan member but offline,
    // eve member but unavailable, fay online but in no team.
    for (u, role) in [
        ("ann", "member"),
        ("bob", "both"),
        ("cid", "supervisor"),
        ("dan", "member"),
        ("eve", "member"),
    ] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/sales/members/{u}"),
            json!({"as": role}),
        )
        .await;
    }
    put_user(&a, "acme", "eve", json!({"available": false})).await;
    let mut tabs = Vec::new();
    for u in ["ann", "bob", "cid", "eve", "fay"] {
        tabs.push(d.tab("acme", u).await);
        wait_status(d, "acme", u, "online").await;
    }
    let eligible = |users: Value| async move {
        d.shows_exactly(
            "/v1/tenants/acme/teams/sales/eligible",
            &json!({"team": "sales", "users": users}),
        )
        .await
    };
    eligible(json!(["ann", "bob"])).await;
    put_user(&a, "acme", "eve", json!({"available": true})).await;
    eligible(json!(["ann", "bob", "eve"])).await;
    // ann logs out: offline at once, no longer eligible.
    tabs[0]
        .send(&presence_protocol::ClientMessage::Logout)
        .await;
    assert_eq!(tabs[0].closed().await.code, 4004);
    wait_status(d, "acme", "ann", "offline").await;
    eligible(json!(["bob", "eve"])).await;
    let r = a
        .call("GET", "/v1/tenants/acme/teams/ghost/eligible", None)
        .await;
    assert_error(&r, 404, "not_found");
}

async fn bulk_deactivate_has_every_effect_of_the_spec(d: &Deployment) {
    let a = d.admin();
    d.seed("acme", &["ann", "bob", "cid"]).await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales", "crm": true}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/support",
        json!({"name": "Support"}),
    )
    .await;
    for (team, u) in [("sales", "ann"), ("support", "ann"), ("sales", "bob")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/{team}/members/{u}"),
            json!({"as": "member"}),
        )
        .await;
    }
    let mut boss = directory_watcher(d, "acme").await;
    let mut ann1 = d.tab("acme", "ann").await;
    let mut ann2 = d.tab("acme", "ann").await;
    let mut bob = d.tab("acme", "bob").await;
    for u in ["ann", "bob"] {
        boss.recv_until(|m| presence_of(m) == Some((u, Status::Online)))
            .await;
    }
    let seen_before = d
        .shows("/v1/tenants/acme/users/ann", |u| {
            u["last_seen"].as_u64() > Some(0)
        })
        .await["last_seen"]
        .as_u64()
        .unwrap();

    let r = a
        .ok(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            json!({"ids": ["ann", "bob", "ann"]}),
        )
        .await;
    assert_eq!(r["changed"], json!(["ann", "bob"]));

    // Offline at once (the idle timeout is a minute away).
    for u in ["ann", "bob"] {
        boss.recv_until(|m| presence_of(m) == Some((u, Status::Offline)))
            .await;
    }
    for tab in [&mut ann1, &mut ann2, &mut bob] {
        assert_eq!(tab.closed().await.code, 4003);
    }
    assert_eq!(d.refused_everywhere(&token("acme", "ann")).await, 4003);

    let u = d
        .shows("/v1/tenants/acme/users/ann", |u| {
            u["state"] == "inactive" && u["status"] == "offline" && u["teams"] == json!([])
        })
        .await;
    assert_eq!(u["name"], "ann name", "the record stays readable");
    assert!(
        u["last_seen"].as_u64().unwrap() >= seen_before,
        "last seen kept: {u}"
    );
    for team in ["sales", "support"] {
        d.shows(&format!("/v1/tenants/acme/teams/{team}"), |t| {
            t["members"] == json!([])
        })
        .await;
    }
    d.shows_exactly(
        "/v1/tenants/acme/stats",
        &json!({"online": 1, "offline": 1, "active": 2, "inactive": 2}),
    )
    .await;
    // Deactivating again changes nothing.
    let r = a
        .ok(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            json!({"ids": ["ann"]}),
        )
        .await;
    assert_eq!(r, json!({"changed": [], "unchanged": ["ann"]}));
}

async fn bulk_reactivate_accepts_tokens_again_without_teams(d: &Deployment) {
    let a = d.admin();
    d.seed("acme", &["ann", "bob"]).await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales"}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales/members/ann",
        json!({"as": "both"}),
    )
    .await;
    a.ok(
        "POST",
        "/v1/tenants/acme/users/deactivate",
        json!({"ids": ["ann", "bob"]}),
    )
    .await;
    // The token minted before the deactivation is refused, then accepted.
    let old_token = token("acme", "ann");
    d.synced("acme").await;
    assert_eq!(d.refused_everywhere(&old_token).await, 4003);
    let r = a
        .ok(
            "POST",
            "/v1/tenants/acme/users/reactivate",
            json!({"ids": ["ann", "bob"]}),
        )
        .await;
    assert_eq!(r["changed"], json!(["ann", "bob"]));
    // Accepted on every node once the reactivation reached it.
    d.synced("acme").await;
    let _tabs = [
        d.open_tab_on(0, &old_token, Uuid::new_v4(), 0).await,
        d.open_tab_on(1, &old_token, Uuid::new_v4(), 0).await,
    ];
    let u = wait_status(d, "acme", "ann", "online").await;
    assert_eq!(u["state"], "active");
    assert_eq!(u["teams"], json!([]), "teams must be added again");
    d.shows("/v1/tenants/acme/teams/sales", |t| {
        t["members"] == json!([])
    })
    .await;
    d.shows("/v1/tenants/acme/stats", |s| {
        s["active"] == 2 && s["inactive"] == 0
    })
    .await;
}

#[tokio::test]
async fn user_limit_refuses_creating_and_reactivating_and_changes_nothing() {
    let h = TestHub::start().await;
    let a = h.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 2}))
        .await;
    for u in ["ann", "bob"] {
        put_user(&a, "acme", u, json!({"name": u, "email": "x@y"})).await;
    }
    let before = dump(&a, "acme", &[]).await;
    let r = a
        .call(
            "PUT",
            "/v1/tenants/acme/users/cid",
            Some(json!({"name": "cid", "email": "c@y"})),
        )
        .await;
    assert_error(&r, 409, "user_limit");
    assert_eq!(dump(&a, "acme", &[]).await, before);
    // Updating an existing user is not creating one.
    put_user(&a, "acme", "bob", json!({"nickname": "B"})).await;

    a.ok(
        "POST",
        "/v1/tenants/acme/users/deactivate",
        json!({"ids": ["ann", "bob"]}),
    )
    .await;
    put_user(&a, "acme", "cid", json!({"name": "cid", "email": "c@y"})).await;
    put_user(&a, "acme", "dan", json!({"name": "dan", "email": "d@y"})).await;
    let before = dump(&a, "acme", &[]).await;
    let r = a
        .call(
            "POST",
            "/v1/tenants/acme/users/reactivate",
            Some(json!({"ids": ["ann"]})),
        )
        .await;
    assert_error(&r, 409, "user_limit");
    assert_eq!(dump(&a, "acme", &[]).await, before);
    let refused = Tab::try_open(h.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    assert_eq!(refused.err().map(|c| c.code), Some(4003));
    // Raising the plan's limit lets the reactivation through.
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 3}))
        .await;
    a.ok(
        "POST",
        "/v1/tenants/acme/users/reactivate",
        json!({"ids": ["ann"]}),
    )
    .await;
    // A batch that passes the limit fails whole.
    let r = a
        .call(
            "POST",
            "/v1/tenants/acme/users/reactivate",
            Some(json!({"ids": ["bob"]})),
        )
        .await;
    assert_error(&r, 409, "user_limit");
    assert_eq!(user(&a, "acme", "bob").await["state"], "inactive");
}

#[tokio::test]
async fn admin_api_credentials_admin_jwt_own_tenant_only() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["ann"]).await;
    h.seed("other", &["zed"]).await;
    make_admin(&a, "acme", "boss").await;
    make_admin(&a, "other", "root").await;

    let boss = a.with_key(&token("acme", "boss"));
    let (s, v) = boss.call("GET", "/v1/tenants/acme/stats", None).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = boss
        .call(
            "PUT",
            "/v1/tenants/acme/users/new",
            Some(json!({"name": "New", "email": "n@x"})),
        )
        .await;
    assert_eq!(s, 201, "an administrator manages their tenant: {v}");
    let r = boss.call("GET", "/v1/tenants/other/stats", None).await;
    assert_error(&r, 403, "forbidden");
    let r = boss
        .call(
            "PUT",
            "/v1/tenants/other/users/spy",
            Some(json!({"name": "Spy", "email": "s@x"})),
        )
        .await;
    assert_error(&r, 403, "forbidden");
    assert_error(
        &a.call("GET", "/v1/tenants/other/users/spy", None).await,
        404,
        "not_found",
    );

    let ann = a.with_key(&token("acme", "ann"));
    assert_error(
        &ann.call("GET", "/v1/tenants/acme/users", None).await,
        403,
        "forbidden",
    );
    for bad in [
        "wrong-admin-key-0123456789",
        "",
        "not.a.jwt",
        &mint_other_secret("acme", "boss"),
    ] {
        let r = a
            .with_key(bad)
            .call("GET", "/v1/tenants/acme/stats", None)
            .await;
        assert_error(&r, 401, "unauthenticated");
    }
    let resp = reqwest::get(format!("http://{}/v1/tenants/acme/stats", h.addr))
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated");

    // Losing the admin profile loses the API.
    put_user(&a, "acme", "boss", json!({"profile": "standard"})).await;
    assert_error(
        &boss.call("GET", "/v1/tenants/acme/stats", None).await,
        403,
        "forbidden",
    );
}

fn mint_other_secret(tenant: &str, user: &str) -> String {
    presence_server::mint_hs256(b"another-secret-0123456789", tenant, user, now_secs(), 600)
}

#[tokio::test]
async fn bad_admin_requests_get_precise_errors_and_change_nothing() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["ann", "bob"]).await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales"}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales/members/ann",
        json!({"as": "member"}),
    )
    .await;
    a.ok("DELETE", "/v1/tenants/acme/users/bob", Value::Null)
        .await;
    let teams = ["sales", "ghost", "new"];
    let before = dump(&a, "acme", &teams).await;
    let json_cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        // Malformed JSON and wrong shapes.
        ("PUT", "/v1/tenants/acme", "{", 400, "bad_request"),
        (
            "PUT",
            "/v1/tenants/acme",
            r#"{"user_limit":"ten"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme",
            r#"{"user_limit":-1}"#,
            400,
            "bad_request",
        ),
        ("PUT", "/v1/tenants/acme", "{}", 400, "bad_request"),
        ("PUT", "/v1/tenants/acme/users/ann", "", 400, "bad_request"),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            "[1]",
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"name":5}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"available":"yes"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"profile":"boss"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"colour":"red"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"email":"not-an-email"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"name":"  "}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/ann",
            r#"{"email":"","phone":""}"#,
            400,
            "bad_request",
        ),
        // Creating without a name, or without any login.
        (
            "PUT",
            "/v1/tenants/acme/users/new",
            r#"{"email":"n@x"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/new",
            r#"{"name":"New"}"#,
            400,
            "bad_request",
        ),
        // Bad ids.
        (
            "PUT",
            "/v1/tenants/acme/users/a%2Fb",
            r#"{"name":"A","email":"a@x"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/users/a%01b",
            r#"{"name":"A","email":"a@x"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/a%0Ab",
            r#"{"name":"T"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/new",
            r#"{"crm":true}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/new",
            r#"{"name":"T","crm":"yes"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/new",
            r#"{"name":"T","extra":1}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/sales/members/ann",
            r#"{"as":"boss"}"#,
            400,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/sales/members/ann",
            "{}",
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/tenants/acme/users/deactivate",
            r#"{"ids":"ann"}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/tenants/acme/users/deactivate",
            r#"{"ids":[]}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/tenants/acme/users/deactivate",
            r#"{"users":["ann"]}"#,
            400,
            "bad_request",
        ),
        (
            "POST",
            "/v1/tenants/acme/users/reactivate",
            "nope",
            400,
            "bad_request",
        ),
        // Unknown ids; a batch with one unknown id changes nobody.
        (
            "POST",
            "/v1/tenants/acme/users/deactivate",
            r#"{"ids":["ann","ghost"]}"#,
            404,
            "not_found",
        ),
        (
            "POST",
            "/v1/tenants/acme/users/reactivate",
            r#"{"ids":["bob","ghost"]}"#,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/ghost/members/ann",
            r#"{"as":"member"}"#,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/v1/tenants/acme/teams/sales/members/ghost",
            r#"{"as":"member"}"#,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/v1/tenants/nope/users/ann",
            r#"{"name":"A","email":"a@x"}"#,
            404,
            "not_found",
        ),
        (
            "PUT",
            "/v1/tenants/nope/teams/t",
            r#"{"name":"T"}"#,
            404,
            "not_found",
        ),
        // A deleted user cannot join a team.
        (
            "PUT",
            "/v1/tenants/acme/teams/sales/members/bob",
            r#"{"as":"member"}"#,
            409,
            "user_not_active",
        ),
    ];
    for (method, path, body, status, code) in json_cases {
        let r = a
            .raw(method, path, "application/json", body.as_bytes().to_vec())
            .await;
        assert_eq!(r.0, status, "{method} {path} {body} -> {}", r.1);
        assert_error(&r, status, code);
    }
    let plain_cases: Vec<(&str, &str, u16)> = vec![
        ("GET", "/v1/tenants/acme/users/ghost", 404),
        ("DELETE", "/v1/tenants/acme/users/ghost", 404),
        ("GET", "/v1/tenants/acme/teams/ghost", 404),
        ("DELETE", "/v1/tenants/acme/teams/ghost", 404),
        ("DELETE", "/v1/tenants/acme/teams/ghost/members/ann", 404),
        ("DELETE", "/v1/tenants/acme/teams/sales/members/ghost", 404),
        ("GET", "/v1/tenants/nope", 404),
        ("GET", "/v1/tenants/nope/stats", 404),
        ("GET", "/v1/tenants/nope/users", 404),
    ];
    for (method, path, status) in plain_cases {
        let r = a.call(method, path, None).await;
        assert_error(
            &r,
            status,
            if status == 404 {
                "not_found"
            } else {
                "bad_request"
            },
        );
    }
    assert_eq!(dump(&a, "acme", &teams).await, before);
    assert_error(
        &a.call("GET", "/v1/tenants/nope", None).await,
        404,
        "not_found",
    );
}

async fn import(a: &Admin, tid: &str, dry_run: bool, csv: &[u8]) -> (u16, Value) {
    a.raw(
        "POST",
        &format!("/v1/tenants/{tid}/users/import?dry_run={dry_run}"),
        "text/csv",
        csv.to_vec(),
    )
    .await
}

fn row_errors(report: &Value) -> Vec<(u64, Option<String>)> {
    report["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors in {report}"))
        .iter()
        .map(|e| {
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()), "{e}");
            (
                e["row"].as_u64().unwrap(),
                e["column"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn csv_import_keeps_text_quotes_bom_and_updates_existing_users() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["0042"]).await;
    let csv = "\u{feff}phone;name;id;nickname;email;profile;available;away_message\r\n\
               00119;\"Silva; Ana\";007;Ana;ana@x.test;admin;false;\"on \"\"leave\"\"\"\r\n\
               ;Bia;0042;;bia@x.test;;;\r\n\
               0800;\"Multi\nLine\";8;;;restricted;sim;\r\n";
    let (s, dry) = import(&a, "acme", true, csv.as_bytes()).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        (&dry["rows"], &dry["created"], &dry["updated"]),
        (&json!(3), &json!(2), &json!(1))
    );
    assert_eq!(dry["errors"], json!([]));
    assert_error(
        &a.call("GET", "/v1/tenants/acme/users/007", None).await,
        404,
        "not_found",
    );

    let (s, report) = import(&a, "acme", false, csv.as_bytes()).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["dry_run"], false);
    assert_eq!(
        (&report["created"], &report["updated"]),
        (&json!(2), &json!(1))
    );
    let ana = user(&a, "acme", "007").await;
    assert_eq!(ana["name"], "Silva; Ana");
    assert_eq!(ana["phone"], "00119", "leading zeros kept");
    assert_eq!(ana["profile"], "admin");
    assert_eq!(ana["available"], false);
    assert_eq!(ana["away_message"], "on \"leave\"");
    let bia = user(&a, "acme", "0042").await;
    assert_eq!(bia["name"], "Bia");
    assert_eq!(bia["email"], "bia@x.test");
    let multi = user(&a, "acme", "8").await;
    assert_eq!(multi["name"], "Multi\nLine");
    assert_eq!(multi["profile"], "restricted");
    assert_eq!(multi["available"], true);
    assert_error(
        &a.call("GET", "/v1/tenants/acme/users/42", None).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn csv_dry_run_reports_row_column_and_reason_without_writing() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["ann"]).await;
    let before = dump(&a, "acme", &[]).await;
    let csv = "id;name;email;profile\n\
               1;One;one@x;standard\n\
               2;Two;two@x;boss\n\
               3;Three;three@x;\n\
               1;Again;again@x;\n";
    let (s, report) = import(&a, "acme", true, csv.as_bytes()).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["dry_run"], true);
    assert_eq!(
        row_errors(&report),
        [(3, Some("profile".into())), (5, Some("id".into()))]
    );
    let csv = "id;name;email\n\
               1;One;one@x\n\
               2;;two@x\n\
               3;Three;not-an-email\n";
    let (s, report) = import(&a, "acme", true, csv.as_bytes()).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(
        row_errors(&report),
        [(3, Some("name".into())), (4, Some("email".into()))]
    );
    // A header naming unknown columns and missing a required one.
    let (s, report) = import(&a, "acme", true, b"id;colour\n1;red\n").await;
    assert_eq!(s, 200, "{report}");
    let errs = row_errors(&report);
    assert!(errs.contains(&(1, Some("colour".into()))), "{errs:?}");
    assert!(errs.contains(&(1, Some("name".into()))), "{errs:?}");
    assert_eq!(dump(&a, "acme", &[]).await, before);
    let r = a
        .raw(
            "POST",
            "/v1/tenants/acme/users/import?dry_run=maybe",
            "text/csv",
            b"id;name\n".to_vec(),
        )
        .await;
    assert_error(&r, 400, "bad_request");
}

#[tokio::test]
async fn csv_import_with_one_bad_row_writes_nothing() {
    let h = TestHub::start().await;
    let a = h.admin();
    h.seed("acme", &["ann"]).await;
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 3}))
        .await;
    let before = dump(&a, "acme", &[]).await;
    let bad_row = "id;name;email\n\
                   ann;Ann Renamed;ann@x\n\
                   b;Bee;b@x\n\
                   c;Cee;not-an-email\n";
    let (s, v) = import(&a, "acme", false, bad_row.as_bytes()).await;
    assert_error(&(s, v.clone()), 400, "bad_request");
    assert_eq!(
        row_errors(&v["error"]["details"]),
        [(4, Some("email".into()))]
    );
    assert_eq!(dump(&a, "acme", &[]).await, before);
    let unparsable = "id;name;email;available\nb;Bee;b@x;perhaps\n";
    let (s, v) = import(&a, "acme", false, unparsable.as_bytes()).await;
    assert_error(&(s, v), 400, "bad_request");
    assert_eq!(dump(&a, "acme", &[]).await, before);
    // Three new users would make four active users on a plan of three: a
    // conflict with the plan (409), the rows beyond it named.
    let over = "id;name;email\nb;Bee;b@x\nc;Cee;c@x\nd;Dee;d@x\n";
    let (s, v) = import(&a, "acme", false, over.as_bytes()).await;
    assert_error(&(s, v.clone()), 409, "user_limit");
    assert_eq!(row_errors(&v["error"]["details"]), [(4, None)]);
    assert_eq!(
        (
            &v["error"]["details"]["limit"],
            &v["error"]["details"]["wanted"]
        ),
        (&json!(3), &json!(4))
    );
    assert_eq!(dump(&a, "acme", &[]).await, before);
    // A dry run reports the same rows, as a report.
    let (s, v) = import(&a, "acme", true, over.as_bytes()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(row_errors(&v), [(4, None)]);
    // A bad value as well as too many users: the file is bad input first.
    let both = "id;name;email\nb;Bee;b@x\nc;Cee;c@x\nd;Dee;not-an-email\ne;Eve;e@x\n";
    let (s, v) = import(&a, "acme", false, both.as_bytes()).await;
    assert_error(&(s, v.clone()), 400, "bad_request");
    assert_eq!(
        row_errors(&v["error"]["details"]),
        [(4, Some("email".into())), (5, None)]
    );
    assert_eq!(dump(&a, "acme", &[]).await, before);
    let (s, v) = import(&a, "acme", false, b"id;name;email\nb;Bee;b@x\nc;Cee;c@x\n").await;
    assert_eq!(s, 200, "{v}");
    let page = a.ok("GET", "/v1/tenants/acme/users", Value::Null).await;
    assert_eq!(ids(&page), ["ann", "b", "c"]);
}

/// SPEC §11: `time_zone` beside `user_limit` in `PUT /v1/tenants/{tid}`: an
/// IANA name (kept as the database spells it), UTC by default, unchanged
/// when left out, and an unknown zone is a 400 that changes nothing, on
/// every node.
async fn a_tenant_s_time_zone_is_an_iana_name_kept_across_puts(d: &Deployment) {
    let a = d.admin();
    let (s, t) = a
        .call("PUT", "/v1/tenants/tz", Some(json!({"user_limit": 10})))
        .await;
    assert_eq!(s, 201, "{t}");
    assert_eq!(t["time_zone"], "UTC", "{t}");
    let t = a
        .ok(
            "PUT",
            "/v1/tenants/tz",
            json!({"user_limit": 10, "time_zone": "america/sao_paulo"}),
        )
        .await;
    assert_eq!(t["time_zone"], "America/Sao_Paulo", "{t}");
    let t = a
        .ok("PUT", "/v1/tenants/tz", json!({"user_limit": 20}))
        .await;
    assert_eq!(
        (t["time_zone"].clone(), t["user_limit"].clone()),
        (json!("America/Sao_Paulo"), json!(20)),
        "left out: unchanged"
    );
    for bad in ["Mars/Olympus_Mons", "", "+03:00", "UTC+3"] {
        let (s, body) = a
            .call(
                "PUT",
                "/v1/tenants/tz",
                Some(json!({"user_limit": 30, "time_zone": bad})),
            )
            .await;
        assert_eq!(s, 400, "{bad:?}: {body}");
        assert_eq!(body["error"]["details"]["field"], "time_zone", "{body}");
    }
    let t = d.same_everywhere("/v1/tenants/tz").await;
    assert_eq!(
        (t["time_zone"].clone(), t["user_limit"].clone()),
        (json!("America/Sao_Paulo"), json!(20)),
        "the refusals changed nothing: {t}"
    );
}
