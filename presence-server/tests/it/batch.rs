//! The bulk directory sync (`POST /v1/tenants/{tid}/batch`) and the CSV
//! import's `teams` column: all or nothing with every refused item named,
//! the effects of one commit delivered to real WebSocket watchers on either
//! node, the other node seeing the batch, the limits and who may call it.

use presence_protocol::{ErrorCode, MembershipRole, ReqId, Roster, ServerMessage};
use presence_server::Config;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = test_config();
    one_bad_item_changes_nothing_and_every_refused_item_is_named,
    a_batch_reaches_every_node_with_its_counts,
    a_team_watcher_sees_the_member_a_batch_adds,
    a_supervisor_s_subscription_ends_when_a_batch_removes_the_membership,
    a_large_batch_gives_a_watcher_one_fresh_snapshot,
    a_csv_teams_column_sets_memberships_and_a_bad_cell_names_its_line,
);

const T: &str = "erp";

fn batch_path(dry_run: Option<bool>) -> String {
    match dry_run {
        None => format!("/v1/tenants/{T}/batch"),
        Some(d) => format!("/v1/tenants/{T}/batch?dry_run={d}"),
    }
}

fn user(id: &str) -> Value {
    json!({"op": "upsert_user", "id": id, "user": {"name": id, "email": format!("{id}@x.test")}})
}

fn team(id: &str) -> Value {
    json!({"op": "upsert_team", "id": id, "team": {"name": id, "crm": true}})
}

fn member(team: &str, user: &str, role: &str) -> Value {
    json!({"op": "upsert_member", "team": team, "user": user, "as": role})
}

/// Tenant `erp` with users `sup`, `ann`, `bob` and the team `sales`
/// (`sup` its supervisor, `ann` a member), on every node.
async fn fixture(d: &Deployment) {
    d.seed(T, &["sup", "ann", "bob"]).await;
    let (s, v) = d
        .admin()
        .call(
            "POST",
            &batch_path(None),
            Some(json!({"items": [
                team("sales"),
                member("sales", "sup", "supervisor"),
                member("sales", "ann", "member"),
            ]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    d.same_everywhere(&format!("/v1/tenants/{T}/teams/sales"))
        .await;
}

/// A tab that proves no interaction (its user stays offline, so no
/// presence delta comes between the frames a test waits for), on the next
/// node.
async fn quiet_tab(d: &Deployment, user: &str) -> Tab {
    let idle_ms = test_config().idle_timeout.as_millis() as u64;
    d.open_tab(&token(T, user), Uuid::new_v4(), idle_ms).await
}

/// Everything node `i` shows of the tenant: users in every state and the
/// given teams.
async fn dump(d: &Deployment, i: usize, teams: &[&str]) -> Value {
    let a = d.admin_on(i);
    let mut out = vec![json!(
        a.call("GET", &format!("/v1/tenants/{T}/users?state=all"), None)
            .await
    )];
    for t in teams {
        out.push(json!(
            a.call("GET", &format!("/v1/tenants/{T}/teams/{t}"), None)
                .await
        ));
    }
    Value::Array(out)
}

async fn one_bad_item_changes_nothing_and_every_refused_item_is_named(d: &Deployment) {
    fixture(d).await;
    let teams = ["sales", "support"];
    let before: Vec<Value> = {
        let mut v = Vec::new();
        for i in 0..d.len() {
            v.push(dump(d, i, &teams).await);
        }
        v
    };
    let items = json!({"items": [
        user("cid"),
        team("support"),
        member("support", "cid", "both"),
        member("nowhere", "ann", "member"),
        json!({"op": "delete_member", "team": "sales", "user": "bob"}),
        json!({"op": "upsert_user", "id": "dan", "user": {"name": "Dan", "email": "not-an-email"}}),
        json!({"op": "delete_user", "id": "sup"}),
    ]});
    let (s, v) = d
        .admin()
        .call("POST", &batch_path(None), Some(items.clone()))
        .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["code"], "bad_request", "{v}");
    let errors: Vec<(u64, &str, Option<&str>)> = v["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["item"].as_u64().unwrap(),
                e["code"].as_str().unwrap(),
                e["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        errors,
        [
            (3, "not_found", Some("team")),
            (4, "not_found", Some("user")),
            (5, "bad_request", Some("email")),
        ],
        "{v}"
    );
    // The dry run says the same with 200, and changes nothing either.
    let (s, dry) = d
        .admin()
        .call("POST", &batch_path(Some(true)), Some(items))
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["errors"], v["error"]["details"]["errors"], "{dry}");
    // Nothing changed, on any node: sup was not deleted by item 6, cid
    // was not created by item 0.
    for (i, b) in before.iter().enumerate() {
        assert_eq!(&dump(d, i, &teams).await, b, "node {i}");
    }
    let (s, _) = d
        .admin_on(d.len() - 1)
        .call("GET", &format!("/v1/tenants/{T}/users/cid"), None)
        .await;
    assert_eq!(s, 404);
    // A good dry run counts what would happen, and still changes nothing.
    let (s, dry) = d
        .admin()
        .call(
            "POST",
            &batch_path(Some(true)),
            Some(
                json!({"items": [user("cid"), team("support"), member("support", "cid", "both")]}),
            ),
        )
        .await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["users"]["created"], 1, "{dry}");
    assert_eq!(dry["members"]["created"], 1, "{dry}");
    assert_eq!(dry["errors"], json!([]));
    assert_eq!(dump(d, 0, &teams).await, before[0]);
}

async fn a_batch_reaches_every_node_with_its_counts(d: &Deployment) {
    fixture(d).await;
    let (s, v) = d
        .admin()
        .call(
            "POST",
            &batch_path(Some(false)),
            Some(json!({"items": [
                user("cid"),
                json!({"op": "upsert_user", "id": "ann", "user": {"nickname": "Annie"}}),
                team("support"),
                member("support", "cid", "both"),
                member("support", "ann", "supervisor"),
                member("sales", "ann", "both"),
                json!({"op": "delete_member", "team": "sales", "user": "sup"}),
                json!({"op": "delete_user", "id": "bob"}),
            ]})),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"dry_run": false, "items": 8,
            "users": {"created": 1, "updated": 1, "deleted": 1},
            "teams": {"created": 1, "updated": 0, "deleted": 0},
            "members": {"created": 2, "updated": 1, "deleted": 1},
            "errors": []})
    );
    // Every node shows the batch (the other one within SPEC §8.7's second).
    let support = d
        .same_everywhere(&format!("/v1/tenants/{T}/teams/support"))
        .await;
    assert_eq!(
        support["members"],
        json!([{"user": "ann", "as": "supervisor"}, {"user": "cid", "as": "both"}])
    );
    let sales = d
        .same_everywhere(&format!("/v1/tenants/{T}/teams/sales"))
        .await;
    assert_eq!(sales["members"], json!([{"user": "ann", "as": "both"}]));
    d.synced(T).await;
    let bob = d
        .same_everywhere(&format!("/v1/tenants/{T}/users/bob"))
        .await;
    assert_eq!(bob["state"], "deleted");
    let ann = d
        .same_everywhere(&format!("/v1/tenants/{T}/users/ann"))
        .await;
    assert_eq!(ann["nickname"], "Annie");
}

async fn a_team_watcher_sees_the_member_a_batch_adds(d: &Deployment) {
    fixture(d).await;
    let mut ann = quiet_tab(d, "ann").await;
    match ann.subscribe(7, "team:sales").await {
        ServerMessage::Snapshot { users, .. } => assert_eq!(users.len(), 2),
        other => panic!("expected the snapshot, got {other:?}"),
    }
    d.admin()
        .ok(
            "POST",
            &batch_path(None),
            json!({"items": [user("cid"), member("sales", "cid", "member")]}),
        )
        .await;
    let got = ann
        .recv_until(|m| matches!(m, ServerMessage::User { .. }))
        .await;
    let ServerMessage::User { roster, user } = got else {
        unreachable!("matched above")
    };
    assert_eq!(roster, "team:sales".parse::<Roster>().unwrap());
    assert_eq!(user.id, "cid");
    let teams = user.teams.expect("a team roster shows the role");
    assert_eq!(
        (teams[0].id.as_str(), teams[0].role),
        ("sales", MembershipRole::Member)
    );
}

async fn a_supervisor_s_subscription_ends_when_a_batch_removes_the_membership(d: &Deployment) {
    fixture(d).await;
    let mut sup = quiet_tab(d, "sup").await;
    assert!(matches!(
        sup.subscribe(1, "team:sales").await,
        ServerMessage::Snapshot { .. }
    ));
    let mut ann = quiet_tab(d, "ann").await;
    assert!(matches!(
        ann.subscribe(1, "team:sales").await,
        ServerMessage::Snapshot { .. }
    ));
    d.admin()
        .ok(
            "POST",
            &batch_path(None),
            json!({"items": [
                json!({"op": "delete_member", "team": "sales", "user": "sup"}),
                member("sales", "bob", "member"),
            ]}),
        )
        .await;
    match sup.recv().await {
        ServerMessage::Error {
            id: None,
            code: ErrorCode::Revoked,
            roster: Some(r),
            ..
        } => assert_eq!(r.to_string(), "team:sales"),
        other => panic!("expected the end of sup's subscription, got {other:?}"),
    }
    // ann, still a member, sees sup leave and bob join, from one write.
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match ann.recv().await {
            ServerMessage::UserRemoved { user, .. } => seen.push(format!("-{user}")),
            ServerMessage::User { user, .. } => seen.push(format!("+{}", user.id)),
            _ => {}
        }
    }
    seen.sort();
    assert_eq!(seen, ["+bob", "-sup"]);
}

async fn a_large_batch_gives_a_watcher_one_fresh_snapshot(d: &Deployment) {
    fixture(d).await;
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/sup"),
            json!({"profile": "admin"}),
        )
        .await;
    d.synced(T).await;
    let mut boss = quiet_tab(d, "sup").await;
    let ServerMessage::Snapshot { users, .. } = boss.subscribe(5, "directory").await else {
        panic!("expected the directory's snapshot")
    };
    assert_eq!(users.len(), 3);
    let mut items: Vec<Value> = (0..300).map(|i| user(&format!("u{i:03}"))).collect();
    items.extend((0..300).map(|i| member("sales", &format!("u{i:03}"), "member")));
    d.admin()
        .ok("POST", &batch_path(None), json!({ "items": items }))
        .await;
    // One frame with the whole new roster instead of 300 `user` deltas,
    // with the subscription's id so clients take it.
    let got = boss
        .recv_until(|m| {
            matches!(
                m,
                ServerMessage::Snapshot { .. }
                    | ServerMessage::User { .. }
                    | ServerMessage::UserRemoved { .. }
            )
        })
        .await;
    let ServerMessage::Snapshot {
        id,
        roster,
        users,
        stats,
    } = got
    else {
        panic!("expected a fresh snapshot, got {got:?}")
    };
    assert_eq!(id, ReqId::Num(5));
    assert_eq!(roster, Roster::Directory);
    assert_eq!(users.len(), 303);
    let u = users.iter().find(|u| u.id == "u123").unwrap();
    assert_eq!(u.teams.as_ref().unwrap()[0].id, "sales");
    assert_eq!(stats.unwrap().active, 303);
    // A small write afterwards is a delta again.
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/u007"),
            json!({"nickname": "Bond"}),
        )
        .await;
    let got = boss
        .recv_until(|m| {
            matches!(
                m,
                ServerMessage::Snapshot { .. } | ServerMessage::User { .. }
            )
        })
        .await;
    assert!(
        matches!(&got, ServerMessage::User { user, .. } if user.nickname == "Bond"),
        "{got:?}"
    );
}

async fn a_csv_teams_column_sets_memberships_and_a_bad_cell_names_its_line(d: &Deployment) {
    fixture(d).await;
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/support"),
            json!({"name": "Support"}),
        )
        .await;
    let import = |csv: &'static str| async move {
        d.admin()
            .raw(
                "POST",
                &format!("/v1/tenants/{T}/users/import"),
                "text/csv",
                csv.as_bytes().to_vec(),
            )
            .await
    };
    // A bad role and an unknown team: each named by line and column, and
    // nothing imported.
    let (s, v) = import(
        "id;name;email;teams\ncid;Cid;c@x.test;support:boss\nann;Ann;a@x.test;sales|nowhere\n",
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let errors: Vec<(u64, &str)> = v["error"]["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["row"].as_u64().unwrap(), e["column"].as_str().unwrap()))
        .collect();
    assert_eq!(errors, [(2, "teams")], "{v}");
    let (s, v) =
        import("id;name;email;teams\ncid;Cid;c@x.test;support\nann;Ann;a@x.test;sales|nowhere\n")
            .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["details"]["errors"][0]["row"], 3, "{v}");
    assert_eq!(v["error"]["details"]["errors"][0]["column"], "teams", "{v}");
    let (s, _) = d
        .admin()
        .call("GET", &format!("/v1/tenants/{T}/users/cid"), None)
        .await;
    assert_eq!(s, 404);
    // The cell is the user's whole list: sup leaves sales for support.
    let (s, v) = import(
        "id;name;email;teams\r\ncid;Cid;c@x.test;support:both\r\nsup;Sup;s@x.test;support:supervisor\r\n",
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let support = d
        .same_everywhere(&format!("/v1/tenants/{T}/teams/support"))
        .await;
    assert_eq!(
        support["members"],
        json!([{"user": "cid", "as": "both"}, {"user": "sup", "as": "supervisor"}])
    );
    let sales = d
        .same_everywhere(&format!("/v1/tenants/{T}/teams/sales"))
        .await;
    assert_eq!(sales["members"], json!([{"user": "ann", "as": "member"}]));
    // A file without the column leaves memberships alone.
    let (s, v) = import("id;name;email\nsup;Sup 2;s@x.test\n").await;
    assert_eq!(s, 200, "{v}");
    let sup = d
        .same_everywhere(&format!("/v1/tenants/{T}/users/sup"))
        .await;
    assert_eq!(sup["teams"], json!([{"id": "support", "as": "supervisor"}]));
}

/// Only the admin key and the tenant's administrators may sync; the
/// refusal comes before the body is read.
#[tokio::test]
async fn only_the_admin_key_and_tenant_administrators_may_call_it() {
    let h = TestHub::start().await;
    h.seed(T, &["ann", "boss"]).await;
    h.seed("other", &["eve"]).await;
    let a = h.admin();
    for (tid, uid) in [(T, "boss"), ("other", "eve")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{tid}/users/{uid}"),
            json!({"profile": "admin"}),
        )
        .await;
    }
    let body = json!({"items": [user("cid")]});
    let path = batch_path(None);
    let (s, v) = a
        .with_key("wrong")
        .call("POST", &path, Some(body.clone()))
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    for who in [token(T, "ann"), token("other", "eve")] {
        let (s, v) = a
            .with_key(&who)
            .call("POST", &path, Some(body.clone()))
            .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{v}"
        );
    }
    let (s, _) = a
        .call("GET", &format!("/v1/tenants/{T}/users/cid"), None)
        .await;
    assert_eq!(s, 404, "a refused caller changed nothing");
    let (s, v) = a
        .with_key(&token(T, "boss"))
        .call("POST", &path, Some(body))
        .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = a
        .call(
            "POST",
            "/v1/tenants/nope/batch",
            Some(json!({"items": [user("x")]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
}

#[tokio::test]
async fn limits_are_refused_with_their_codes() {
    let h = TestHub::with_config(Config {
        max_import_bytes: 2 * 1024 * 1024,
        ..test_config()
    })
    .await;
    h.seed(T, &["ann"]).await;
    let a = h.admin();
    let path = batch_path(None);
    // 50,001 items (1.5 MB, so the body limit is not what refuses them).
    let items: Vec<Value> = (0..50_001)
        .map(|_| json!({"op": "delete_user", "id": "x"}))
        .collect();
    let (s, v) = a.call("POST", &path, Some(json!({ "items": items }))).await;
    assert_eq!(s, 413, "{v}");
    assert_eq!(v["error"]["code"], "too_many_items");
    assert_eq!(
        v["error"]["details"],
        json!({"limit": 50_000, "items": 50_001})
    );
    // 50,000 are taken (and here all refused: no such user).
    let items: Vec<Value> = (0..50_000)
        .map(|_| json!({"op": "delete_user", "id": "x"}))
        .collect();
    let (s, v) = a.call("POST", &path, Some(json!({ "items": items }))).await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(
        v["error"]["details"]["errors"].as_array().unwrap().len(),
        50_000
    );
    // The body limit is the CSV import's.
    let big = json!({"items": [{"op": "delete_user", "id": "x".repeat(3 * 1024 * 1024)}]});
    let (s, v) = a.call("POST", &path, Some(big)).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{v}"
    );
    let (s, v) = a.call("POST", &path, Some(json!({"items": []}))).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    let (s, v) = a
        .call(
            "POST",
            &format!("{path}?dry_run=maybe"),
            Some(json!({"items": [user("a")]})),
        )
        .await;
    assert_eq!(v["error"]["details"]["param"], "dry_run", "{s} {v}");
    let (s, v) = a
        .call(
            "POST",
            &path,
            Some(json!({"items": [{"op": "rename_user", "id": "a"}]})),
        )
        .await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{v}"
    );
    // The plan's limit: 409 naming the items past it, nothing created.
    a.ok("PUT", &format!("/v1/tenants/{T}"), json!({"user_limit": 3}))
        .await;
    let (s, v) = a
        .call(
            "POST",
            &path,
            Some(json!({"items": [user("b"), user("c"), user("d")]})),
        )
        .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "user_limit");
    assert_eq!(v["error"]["details"]["limit"], 3);
    assert_eq!(v["error"]["details"]["wanted"], 4);
    assert_eq!(v["error"]["details"]["errors"][0]["item"], 2);
    assert_eq!(v["error"]["details"]["errors"][0]["code"], "user_limit");
    let (s, _) = a
        .call("GET", &format!("/v1/tenants/{T}/users/b"), None)
        .await;
    assert_eq!(s, 404);
}

/// A batch is one store commit: after a restart of the node (the embedded
/// store reopened), all of it is there.
#[tokio::test]
async fn a_batch_survives_a_restart_whole() {
    let mut h = TestHub::start().await;
    h.seed(T, &["ann"]).await;
    h.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}"),
            json!({"user_limit": 5_000}),
        )
        .await;
    let mut items: Vec<Value> = vec![team("sales")];
    items.extend((0..2_000).map(|i| user(&format!("u{i}"))));
    items.extend((0..2_000).map(|i| member("sales", &format!("u{i}"), "member")));
    h.admin()
        .ok("POST", &batch_path(None), json!({ "items": items }))
        .await;
    h.stop().await;
    let dir = std::mem::replace(&mut h.dir, tempfile::tempdir().unwrap());
    drop(h);
    let h = TestHub::on_dir(test_config(), dir).await;
    let sales = h
        .admin()
        .ok("GET", &format!("/v1/tenants/{T}/teams/sales"), Value::Null)
        .await;
    assert_eq!(sales["members"].as_array().unwrap().len(), 2_000);
}
