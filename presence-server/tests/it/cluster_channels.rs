//! Per-tenant channels (issue #14): a node learns of other nodes' writes,
//! transitions and new tenants from the tenants' channels and the
//! tenant-created channel, not from polling. Every node here polls only once
//! an hour (`Config::directory_poll`), so whatever arrives within a second
//! arrived through a channel; and a message lost while a node's
//! subscription was down is recovered when it resubscribes.

use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use serde_json::json;
use uuid::Uuid;

use crate::cluster_support::visible_within_1s;
use crate::redis_support::{query, RedisCluster, RedisServer};
use crate::support::*;

/// The safety poll, out of the way: nothing in these tests waits an hour.
fn no_polling() -> presence_server::Config {
    presence_server::Config {
        directory_poll: Duration::from_secs(3_600),
        ..test_config()
    }
}

fn presence_of(m: &ServerMessage, who: &str) -> Option<Status> {
    match m {
        ServerMessage::Presence { user, status, .. } if user == who => Some(*status),
        _ => None,
    }
}

/// An administrator of `tenant` watching its directory on `h`.
async fn watcher(h: &TestHub, tenant: &str) -> Tab {
    let mut w = Tab::open(h.addr, &token(tenant, "boss"), Uuid::new_v4(), 60_000).await;
    assert!(matches!(
        w.subscribe(1, "directory").await,
        ServerMessage::Snapshot { .. }
    ));
    w
}

pub(crate) async fn put_boss(h: &TestHub, tenant: &str) {
    h.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{tenant}/users/boss"),
            json!({"name": "Boss", "email": "b@x", "profile": "admin"}),
        )
        .await;
}

/// Two nodes on `url`: a tenant created on A is served by B, and a write or
/// a transition through either node reaches the other within 1 s.
async fn writes_and_transitions_cross_within_1s(url: &str) {
    let a = TestHub::clustered(no_polling(), url, "A").await;
    let b = TestHub::clustered(no_polling(), url, "B").await;
    // Created on A after B started: B learns of it from the
    // tenant-created channel, then of its users from its channel.
    a.seed("acme", &["ann"]).await;
    put_boss(&a, "acme").await;
    visible_within_1s(b.addr, "/v1/tenants/acme/users/boss").await;
    visible_within_1s(b.addr, "/v1/tenants/acme/users/ann").await;
    // B serves the tenant's tabs, and A's watcher sees them.
    let mut wa = watcher(&a, "acme").await;
    let mut wb = watcher(&b, "acme").await;
    let _ann = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    tokio::time::timeout(
        Duration::from_secs(1),
        wa.recv_until(|m| presence_of(m, "ann") == Some(Status::Online)),
    )
    .await
    .expect("A's watcher saw ann online (her tab is on B) within 1 s");
    // A write through B reaches A, and one through A reaches B.
    b.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/cid",
            json!({"name": "Cid", "email": "c@x"}),
        )
        .await;
    visible_within_1s(a.addr, "/v1/tenants/acme/users/cid").await;
    a.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/dee",
            json!({"name": "Dee", "email": "d@x"}),
        )
        .await;
    tokio::time::timeout(
        Duration::from_secs(1),
        wb.recv_until(|m| matches!(m, ServerMessage::User { user, .. } if user.id == "dee")),
    )
    .await
    .expect("B's watcher got dee within 1 s");
    // A tenant created on B: A adopts it and subscribes to its channel
    // (a later write through B reaches A), and B hears A's transitions.
    b.seed("globex", &["gus"]).await;
    visible_within_1s(a.addr, "/v1/tenants/globex/users/gus").await;
    put_boss(&b, "globex").await;
    visible_within_1s(a.addr, "/v1/tenants/globex/users/boss").await;
    let _gus = Tab::open(a.addr, &token("globex", "gus"), Uuid::new_v4(), 0).await;
    online_within(&b, "globex", "gus", Duration::from_secs(1)).await;
}

/// Waits until `h` answers that `user` is online, for at most `limit`.
async fn online_within(h: &TestHub, tenant: &str, user: &str, limit: Duration) {
    let started = tokio::time::Instant::now();
    loop {
        let (_, v) = h
            .admin()
            .call("GET", &format!("/v1/tenants/{tenant}/users/{user}"), None)
            .await;
        if v["status"] == "online" {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{user} not online on {} within {limit:?}: {v}",
            h.addr
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn on_one_redis_writes_transitions_and_new_tenants_cross_within_1s_without_polling() {
    let redis = RedisServer::start().await;
    writes_and_transitions_cross_within_1s(&redis.url()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_writes_transitions_and_new_tenants_cross_within_1s_without_polling() {
    let cluster = RedisCluster::start(3).await;
    writes_and_transitions_cross_within_1s(&cluster.url()).await;
}

/// Node B connects as a Redis user of its own, whose channel permissions
/// the test takes away (Redis then disconnects B's subscription and refuses
/// its resubscription) and gives back.
#[tokio::test]
async fn what_was_published_while_a_subscription_was_down_arrives_on_resubscription() {
    let redis = RedisServer::start().await;
    let acl = |rules: &[&str]| {
        let mut c = redis::cmd("ACL");
        c.arg("SETUSER").arg("node-b");
        for r in rules {
            c.arg(*r);
        }
        c
    };
    let ok: Option<String> = query(
        redis.port,
        acl(&["on", ">secret-b", "~*", "allchannels", "+@all"]),
    )
    .await;
    assert_eq!(ok.as_deref(), Some("OK"));
    let a = TestHub::clustered(no_polling(), &redis.url(), "A").await;
    let b_url = format!("redis://node-b:secret-b@127.0.0.1:{}/", redis.port);
    let b = TestHub::clustered(no_polling(), &b_url, "B").await;
    a.seed("acme", &["ann"]).await;
    put_boss(&a, "acme").await;
    visible_within_1s(b.addr, "/v1/tenants/acme/users/boss").await;
    let mut wb = watcher(&b, "acme").await;

    // B's subscription goes down and stays down.
    let ok: Option<String> = query(redis.port, acl(&["resetchannels"])).await;
    assert_eq!(ok.as_deref(), Some("OK"));
    let started = tokio::time::Instant::now();
    while b.metric("presence_redis_connected").await != Some(0.0) {
        assert!(started.elapsed() < WAIT, "B's subscription never went down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Meanwhile, through A: a new user and a transition, both announced on
    // the tenant's channel while B was not listening.
    a.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/cid",
            json!({"name": "Cid", "email": "c@x"}),
        )
        .await;
    let _ann = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let (status, _) = b
        .admin()
        .call("GET", "/v1/tenants/acme/users/cid", None)
        .await;
    assert_eq!(status, 404, "B cannot know of cid yet");

    // B may subscribe again: it reads what it missed, without any poll.
    let ok: Option<String> = query(redis.port, acl(&["allchannels"])).await;
    assert_eq!(ok.as_deref(), Some("OK"));
    let back = tokio::time::Instant::now();
    tokio::time::timeout(
        Duration::from_secs(2),
        wb.recv_until(|m| matches!(m, ServerMessage::User { user, .. } if user.id == "cid")),
    )
    .await
    .expect("B's watcher got cid after B resubscribed");
    online_within(&b, "acme", "ann", Duration::from_secs(2)).await;
    assert!(back.elapsed() < Duration::from_secs(2));
}
