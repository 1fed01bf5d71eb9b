//! A tenant whose presence script Redis refuses is held back alone: other
//! tenants' transitions still reach every node, and the refused tenant's
//! queued transition arrives once its data is fixed (SPEC §8: nothing a
//! node queued is lost).

use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use presence_server::cluster_wire::PresenceKeys;
use serde_json::json;
use uuid::Uuid;

use crate::cluster_support::visible_within_1s;
use crate::redis_support::{query, RedisServer};
use crate::support::*;

/// Seeds `tenant` with `ann` and the admin `boss` through `a`, and opens a
/// dashboard of boss's on `b` once b has the tenant.
async fn tenant_with_dashboard(a: &TestHub, b: &TestHub, tenant: &str) -> Tab {
    a.seed(tenant, &["ann"]).await;
    a.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{tenant}/users/boss"),
            json!({"name": "Boss", "email": "b@x", "profile": "admin"}),
        )
        .await;
    visible_within_1s(b.addr, &format!("/v1/tenants/{tenant}/users/ann")).await;
    visible_within_1s(b.addr, &format!("/v1/tenants/{tenant}/users/boss")).await;
    // No proof of interaction from the dashboard itself.
    let mut w = Tab::open(b.addr, &token(tenant, "boss"), Uuid::new_v4(), 60_000).await;
    assert!(matches!(
        w.subscribe(1, "directory").await,
        ServerMessage::Snapshot { .. }
    ));
    w
}

fn ann_online(m: &ServerMessage) -> bool {
    is_presence_of(m, "ann", Status::Online)
}

#[tokio::test]
async fn a_tenant_redis_refuses_backs_off_alone_and_catches_up_when_fixed() {
    let redis = RedisServer::start().await;
    let a = TestHub::clustered(test_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(test_config(), &redis.url(), "B").await;
    let mut broken_dash = tenant_with_dashboard(&a, &b, "broken").await;
    let mut fine_dash = tenant_with_dashboard(&a, &b, "fine").await;

    // The broken tenant's state hash holds a string: every call of its
    // presence script fails with WRONGTYPE.
    let state = PresenceKeys::new("broken").state;
    let set: Option<String> = query(
        redis.port,
        redis::cmd("SET").arg(&state).arg("not a hash").clone(),
    )
    .await;
    assert_eq!(set.as_deref(), Some("OK"));

    // ann comes online in the broken tenant first, then in the fine one,
    // both on node A: the fine tenant's claim is queued behind a refused one.
    let _broken_ann = Tab::open(a.addr, &token("broken", "ann"), Uuid::new_v4(), 0).await;
    let _fine_ann = Tab::open(a.addr, &token("fine", "ann"), Uuid::new_v4(), 0).await;
    let m = fine_dash.recv_until(ann_online).await;
    let ServerMessage::Presence { v, .. } = m else {
        unreachable!()
    };
    assert_eq!(v, 1);
    // The broken tenant's claim did not get through.
    broken_dash.silent_for(Duration::from_millis(300)).await;

    // Fixed: the queued claim is retried within the backoff cap (5 s) and
    // reaches the other node.
    let fixed: Option<i64> = query(redis.port, redis::cmd("DEL").arg(&state).clone()).await;
    assert_eq!(fixed, Some(1));
    let arrived = tokio::time::timeout(Duration::from_secs(5) + WAIT, async {
        broken_dash.recv_until(ann_online).await
    })
    .await
    .expect("the broken tenant's transition never arrived");
    let ServerMessage::Presence { v, .. } = arrived else {
        unreachable!()
    };
    assert_eq!(v, 1);
    let (_, entry) = b
        .admin()
        .call("GET", "/v1/tenants/broken/users/ann", None)
        .await;
    assert_eq!(entry["status"], "online", "{entry}");
}
