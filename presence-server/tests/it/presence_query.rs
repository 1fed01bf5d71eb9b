//! The bulk presence query (`POST /v1/tenants/{tid}/presence/query`): what
//! it answers for users whose real tabs went online and offline is what
//! `GET .../users` shows for them on the same node, in the order asked,
//! with unknown ids named; its limit of 1,000 ids; who may call it; and the
//! bad bodies it refuses.

use std::time::Duration;

use presence_protocol::ClientMessage;
use presence_server::Config;
use serde_json::{json, Value};

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = patient_config();
    the_query_shows_what_the_user_list_shows_after_real_tabs,
    a_thousand_ids_are_answered_and_one_more_is_refused,
    a_tenant_administrator_may_query_and_other_users_may_not,
);

/// Users stay online for a minute, so every offline a test sees is one it
/// caused (a logout, a deactivation, a deletion), and nothing changes
/// between two reads of a settled tenant.
fn patient_config() -> Config {
    Config {
        idle_timeout: Duration::from_secs(60),
        ..test_config()
    }
}

const T: &str = "acme";

fn query_path(tid: &str) -> String {
    format!("/v1/tenants/{tid}/presence/query")
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

/// The fields of the query's answer, taken from a user of `GET .../users`.
fn compact(u: &Value) -> Value {
    json!({
        "id": u["id"],
        "status": u["status"],
        "since": u["since"],
        "last_seen": u["last_seen"],
        "v": u["v"],
    })
}

async fn wait_status(d: &Deployment, uid: &str, status: &str) -> Value {
    d.on_every_node(&format!("/v1/tenants/{T}/users/{uid}"), |u| {
        u["status"] == status
    })
    .await
}

async fn the_query_shows_what_the_user_list_shows_after_real_tabs(d: &Deployment) {
    let a = d.admin();
    d.seed(T, &["ann", "bob", "cid", "dan", "eve"]).await;
    // ann stays online; bob logs out; cid never connects; dan is
    // deactivated and eve deleted while online.
    let _ann = d.tab(T, "ann").await;
    let mut bob = d.tab(T, "bob").await;
    let mut dan = d.tab(T, "dan").await;
    let mut eve = d.tab(T, "eve").await;
    for u in ["ann", "bob", "dan", "eve"] {
        wait_status(d, u, "online").await;
    }
    bob.send(&ClientMessage::Logout).await;
    assert_eq!(bob.closed().await.code, 4004);
    a.ok(
        "POST",
        &format!("/v1/tenants/{T}/users/deactivate"),
        json!({"ids": ["dan"]}),
    )
    .await;
    assert_eq!(dan.closed().await.code, 4003);
    a.ok("DELETE", &format!("/v1/tenants/{T}/users/eve"), Value::Null)
        .await;
    assert_eq!(eve.closed().await.code, 4003);
    for u in ["bob", "dan", "eve"] {
        wait_status(d, u, "offline").await;
    }
    d.synced(T).await;

    let asked = json!({"ids": ["eve", "ann", "ghost", "bob", "cid", "ann", "dan", ""]});
    for i in 0..d.len() {
        let node = d.admin_on(i);
        let list = node
            .ok(
                "GET",
                &format!("/v1/tenants/{T}/users?state=all&limit=1000"),
                Value::Null,
            )
            .await;
        let listed = |id: &str| {
            list["users"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["id"] == id)
                .map(compact)
                .unwrap_or_else(|| panic!("{id} not listed: {list}"))
        };
        let got = node.ok("POST", &query_path(T), asked.clone()).await;
        // In the order asked, ann once, and exactly what the list shows.
        let want = ["eve", "ann", "bob", "cid", "dan"].map(listed);
        assert_eq!(
            got,
            json!({
                "users": want,
                "unknown": ["ghost", ""],
            }),
            "node {i}"
        );
        // And what the list shows is what the tabs did.
        let users = got["users"].as_array().unwrap();
        let status: Vec<&str> = users
            .iter()
            .map(|u| u["status"].as_str().unwrap())
            .collect();
        assert_eq!(
            status,
            ["offline", "online", "offline", "offline", "offline"],
            "node {i}: {got}"
        );
        for u in users {
            let n = |k: &str| u[k].as_u64().unwrap();
            if u["id"] == "cid" {
                assert_eq!((n("since"), n("last_seen"), n("v")), (0, 0, 0), "{u}");
            } else {
                assert!(n("last_seen") > 0, "{u}");
                if u["id"] == "ann" {
                    // Online since the first proof, seen since.
                    assert!(n("last_seen") >= n("since") && n("v") >= 1, "{u}");
                } else {
                    // Offline since after the last proof.
                    assert!(n("since") >= n("last_seen") && n("v") >= 2, "{u}");
                }
            }
        }
    }
    // A single user's view agrees too.
    let one = a
        .ok("GET", &format!("/v1/tenants/{T}/users/bob"), Value::Null)
        .await;
    let got = a.ok("POST", &query_path(T), json!({"ids": ["bob"]})).await;
    assert_eq!(got, json!({"users": [compact(&one)], "unknown": []}));
}

async fn a_thousand_ids_are_answered_and_one_more_is_refused(d: &Deployment) {
    let a = d.admin();
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}"),
        json!({"user_limit": 2000}),
    )
    .await;
    let ids: Vec<String> = (0..1001).map(|i| format!("u{i:04}")).collect();
    let items: Vec<Value> = ids
        .iter()
        .map(|id| json!({"op": "upsert_user", "id": id, "user": {"name": id, "email": format!("{id}@x.test")}}))
        .collect();
    a.ok(
        "POST",
        &format!("/v1/tenants/{T}/batch"),
        json!({ "items": items }),
    )
    .await;
    d.synced(T).await;
    let _tab = d.tab(T, "u0500").await;
    wait_status(d, "u0500", "online").await;

    // On the node the writes did not go through, when there are two.
    let b = d.admin_on(1);
    let got = b
        .ok("POST", &query_path(T), json!({"ids": &ids[..1000]}))
        .await;
    let users = got["users"].as_array().unwrap();
    assert_eq!(users.len(), 1000);
    assert_eq!(got["unknown"], json!([]));
    let answered: Vec<&str> = users.iter().map(|u| u["id"].as_str().unwrap()).collect();
    let first: Vec<&str> = ids[..1000].iter().map(String::as_str).collect();
    assert_eq!(answered, first);
    let online: Vec<&str> = users
        .iter()
        .filter(|u| u["status"] == "online")
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(online, ["u0500"]);

    let r = b
        .call("POST", &query_path(T), Some(json!({ "ids": ids })))
        .await;
    assert_error(&r, 400, "bad_request");
    assert_eq!(
        r.1["error"]["details"],
        json!({"field": "ids", "limit": 1000, "ids": 1001})
    );
    // Counted as sent: repeats do not make room.
    let repeated = vec!["u0001"; 1001];
    let r = b
        .call("POST", &query_path(T), Some(json!({ "ids": repeated })))
        .await;
    assert_error(&r, 400, "bad_request");
    // None at all is a mistake, not an empty answer.
    let r = b
        .call("POST", &query_path(T), Some(json!({"ids": []})))
        .await;
    assert_error(&r, 400, "bad_request");
    assert_eq!(r.1["error"]["details"], json!({"field": "ids"}));
}

async fn a_tenant_administrator_may_query_and_other_users_may_not(d: &Deployment) {
    let a = d.admin();
    d.seed(T, &["ann"]).await;
    d.seed("other", &["zed"]).await;
    for (tid, uid) in [(T, "boss"), ("other", "root")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{tid}/users/{uid}"),
            json!({"name": "Boss", "email": format!("{uid}@x.test"), "profile": "admin"}),
        )
        .await;
    }
    d.seed(T, &["sue", "sam"]).await;
    // sue supervises a team of ann's; sam is only a member of it.
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}/teams/sales"),
        json!({"name": "Sales"}),
    )
    .await;
    for (u, role) in [("ann", "member"), ("sue", "supervisor"), ("sam", "member")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/sales/members/{u}"),
            json!({"as": role}),
        )
        .await;
    }
    d.synced(T).await;
    d.synced("other").await;
    let body = json!({"ids": ["ann", "boss"]});
    for i in 0..d.len() {
        let node = d.admin_on(i);
        let boss = node.with_key(&token(T, "boss"));
        let got = boss.ok("POST", &query_path(T), body.clone()).await;
        let ids: Vec<&str> = got["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ann", "boss"], "node {i}: {got}");
        // A supervisor hears of her team's members only.
        let sue = node.with_key(&token(T, "sue"));
        let deadline = tokio::time::Instant::now() + crate::harness::SYNC_WITHIN;
        let got = loop {
            let (s, got) = sue.call("POST", &query_path(T), Some(body.clone())).await;
            if s == 200 || tokio::time::Instant::now() > deadline {
                break got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(got["users"].as_array().unwrap().len(), 1, "node {i}: {got}");
        assert_eq!(got["users"][0]["id"], "ann", "node {i}: {got}");
        assert_eq!(got["unknown"], json!(["boss"]), "node {i}: {got}");
        let sam = node.with_key(&token(T, "sam"));
        assert_error(
            &sam.call("POST", &query_path(T), Some(body.clone())).await,
            403,
            "forbidden",
        );
        let ann = node.with_key(&token(T, "ann"));
        assert_error(
            &ann.call("POST", &query_path(T), Some(body.clone())).await,
            403,
            "forbidden",
        );
        let root = node.with_key(&token("other", "root"));
        assert_error(
            &root.call("POST", &query_path(T), Some(body.clone())).await,
            403,
            "forbidden",
        );
        assert_error(
            &node
                .with_key("wrong-admin-key-0123456789")
                .call("POST", &query_path(T), Some(body.clone()))
                .await,
            401,
            "unauthenticated",
        );
    }
}

#[tokio::test]
async fn bad_bodies_are_refused_with_precise_errors() {
    let h = TestHub::start().await;
    h.seed(T, &["ann"]).await;
    let a = h.admin();
    let path = query_path(T);
    for bad in [
        &b"{\"ids\":[\"ann\""[..],
        b"not json",
        b"",
        b"{}",
        b"{\"ids\":\"ann\"}",
        b"{\"ids\":[1]}",
        b"{\"ids\":null}",
        b"{\"ids\":[\"ann\"],\"status\":\"online\"}",
        b"[\"ann\"]",
    ] {
        let r = a.raw("POST", &path, "application/json", bad.to_vec()).await;
        assert_error(&r, 400, "bad_request");
    }
    let r = a
        .raw("POST", &path, "text/plain", b"{\"ids\":[\"ann\"]}".to_vec())
        .await;
    assert_error(&r, 415, "unsupported_media_type");
    let r = a
        .call(
            "POST",
            &query_path("no-such-tenant"),
            Some(json!({"ids": ["ann"]})),
        )
        .await;
    assert_error(&r, 404, "not_found");
    let r = a.call("GET", &path, None).await;
    assert_error(&r, 405, "method_not_allowed");
    // Still answers afterwards, unchanged.
    let got = a.ok("POST", &path, json!({"ids": ["ann"]})).await;
    assert_eq!(got["users"][0]["id"], "ann");
    assert_eq!(got["users"][0]["status"], "offline");
}
