//! Cluster presence (SPEC §8): several nodes sharing one Redis decide one
//! status per user, and every watcher on every node sees each transition once.

use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use serde_json::json;
use uuid::Uuid;

use crate::cluster_support::visible_within_1s;
use crate::redis_support::RedisServer;
use crate::support::*;

/// Two nodes sharing one directory, written on A only, with an admin
/// watching the directory on each.
async fn two_nodes(redis: &RedisServer) -> (TestHub, TestHub, Tab, Tab) {
    let a = TestHub::clustered(test_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(test_config(), &redis.url(), "B").await;
    a.seed("acme", &["ann"]).await;
    a.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/boss",
            json!({"name": "Boss", "email": "b@x", "profile": "admin"}),
        )
        .await;
    visible_within_1s(b.addr, "/v1/tenants/acme/users/boss").await;
    let mut watchers = Vec::new();
    for h in [&a, &b] {
        let mut w = Tab::open(h.addr, &token("acme", "boss"), Uuid::new_v4(), 60_000).await;
        assert!(matches!(
            w.subscribe(1, "directory").await,
            ServerMessage::Snapshot { .. }
        ));
        watchers.push(w);
    }
    let wb = watchers.pop().unwrap();
    let wa = watchers.pop().unwrap();
    (a, b, wa, wb)
}

fn ann(m: &ServerMessage) -> Option<(Status, u64)> {
    match m {
        ServerMessage::Presence {
            user, status, v, ..
        } if user == "ann" => Some((*status, *v)),
        _ => None,
    }
}

#[tokio::test]
async fn tabs_on_two_nodes_are_one_user_seen_once_by_every_watcher() {
    let redis = RedisServer::start().await;
    let (a, b, mut wa, mut wb) = two_nodes(&redis).await;
    let t1 = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    for w in [&mut wa, &mut wb] {
        let m = w.recv_until(|m| ann(m).is_some()).await;
        assert_eq!(ann(&m), Some((Status::Online, 1)));
    }
    // A second tab on the other node, then the first one closes: ann keeps
    // interacting on B, so nobody sees a transition.
    let mut t2 = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    drop(t1);
    let until = tokio::time::Instant::now() + Duration::from_millis(2_500);
    let mut last = now_ms();
    while tokio::time::Instant::now() < until {
        last = now_ms();
        t2.activity(0).await;
        for w in [&mut wa, &mut wb] {
            if let Ok(m) = tokio::time::timeout(Duration::from_millis(100), w.recv()).await {
                assert_eq!(ann(&m), None, "unexpected {m:?}");
            }
        }
    }
    // Now ann stops: one offline, v 2, on both nodes, no earlier than the
    // timeout after her last proof (20 ms for the hub's and the test's clocks).
    for w in [&mut wa, &mut wb] {
        let m = w.recv_until(|m| ann(m).is_some()).await;
        assert_eq!(ann(&m), Some((Status::Offline, 2)));
        let ServerMessage::Presence { at, .. } = m else {
            unreachable!()
        };
        assert!(
            at + 20 >= last + 1_500,
            "offline at {at}, last proof {last}"
        );
    }
    let (_, stats) = a.admin().call("GET", "/v1/tenants/acme/stats", None).await;
    assert_eq!(stats["online"], 0);
}

#[tokio::test]
async fn logout_on_one_node_closes_tabs_on_every_node() {
    let redis = RedisServer::start().await;
    let (a, b, mut wa, mut wb) = two_nodes(&redis).await;
    let mut t1 = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let mut t2 = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    wb.recv_until(|m| ann(m) == Some((Status::Online, 1))).await;
    t1.send(&presence_protocol::ClientMessage::Logout).await;
    assert_eq!(t1.closed().await.code, 4004);
    assert_eq!(t2.closed().await.code, 4004);
    for w in [&mut wa, &mut wb] {
        w.recv_until(|m| ann(m) == Some((Status::Offline, 2))).await;
    }
}

#[tokio::test]
async fn a_node_that_dies_takes_its_users_offline_after_the_timeout() {
    let redis = RedisServer::start().await;
    let (mut a, b, _wa, mut wb) = two_nodes(&redis).await;
    let _t = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    wb.recv_until(|m| ann(m) == Some((Status::Online, 1))).await;
    let died = now_ms();
    // A dies without its graceful hand-off: its tasks end, Redis keeps its
    // claims.
    a.crash();
    drop(a);
    let m = wb.recv_until(|m| ann(m).is_some()).await;
    assert_eq!(ann(&m), Some((Status::Offline, 2)));
    let arrived = now_ms();
    // Within idle timeout + failure detection (SPEC: ≤ 15 s).
    assert!(
        arrived - died <= 1_500 + 15_000,
        "offline {} ms after the node died",
        arrived - died
    );
    drop(b);
}

#[tokio::test]
async fn a_directory_write_on_one_node_takes_effect_on_every_node() {
    let redis = RedisServer::start().await;
    let (a, b, _wa, mut wb) = two_nodes(&redis).await;
    let mut t = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    wb.recv_until(|m| ann(m) == Some((Status::Online, 1))).await;
    // Deactivated through node A: B closes ann's tab with 4003, B's watcher
    // sees her offline and inactive, and B refuses her token.
    a.admin()
        .ok(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            json!({"ids": ["ann"]}),
        )
        .await;
    assert_eq!(t.closed().await.code, 4003);
    wb.recv_until(|m| ann(m) == Some((Status::Offline, 2)))
        .await;
    wb.recv_until(|m| {
        matches!(m, ServerMessage::User { user, .. }
            if user.id == "ann" && user.state == Some(presence_protocol::UserState::Inactive))
    })
    .await;
    let refused = Tab::try_open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    assert_eq!(refused.err().map(|c| c.code), Some(4003));
    let (_, on_b) = b
        .admin()
        .call("GET", "/v1/tenants/acme/users/ann", None)
        .await;
    assert_eq!(on_b["state"], "inactive");
    // A tenant created on B appears on A.
    b.seed("globex", &["gus"]).await;
    visible_within_1s(a.addr, "/v1/tenants/globex/users/gus").await;
}

#[tokio::test]
async fn without_redis_each_node_serves_its_own_tabs_and_all_agree_after_it_returns() {
    let mut redis = RedisServer::start_persistent().await;
    let (a, b, mut wa, mut wb) = two_nodes(&redis).await;
    redis.kill();
    // A keeps serving its own tab: its watcher sees ann come online.
    let mut t = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let m = wa.recv_until(|m| ann(m).is_some()).await;
    assert_eq!(ann(&m).map(|p| p.0), Some(Status::Online));
    // Directory writes are refused, clearly, and change nothing.
    let (status, body) = a
        .admin()
        .call(
            "PUT",
            "/v1/tenants/acme/users/zed",
            Some(json!({"name": "Zed", "email": "z@x"})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "store_unavailable");
    // Redis returns: B learns that ann is online within 5 s, and both
    // nodes end with the same v for her.
    let back = tokio::time::Instant::now();
    redis.restart().await;
    t.activity(0).await;
    let seen = tokio::time::timeout(Duration::from_secs(5), wb.recv_until(|m| ann(m).is_some()))
        .await
        .expect("B never learnt that ann is online");
    assert_eq!(ann(&seen).map(|p| p.0), Some(Status::Online));
    assert!(back.elapsed() <= Duration::from_secs(5));
    let v_b = ann(&seen).unwrap().1;
    // A converges on the same v (it may republish the same status).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (_, on_a) = a
            .admin()
            .call("GET", "/v1/tenants/acme/users/ann", None)
            .await;
        let (_, on_b) = b
            .admin()
            .call("GET", "/v1/tenants/acme/users/ann", None)
            .await;
        if on_a["v"] == on_b["v"] && on_a["status"] == "online" && on_b["status"] == "online" {
            assert!(on_b["v"].as_u64().unwrap() >= v_b);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "nodes disagree: {on_a} vs {on_b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The write refused during the outage did not happen.
    let (status, _) = b
        .admin()
        .call("GET", "/v1/tenants/acme/users/zed", None)
        .await;
    assert_eq!(status, 404);
}
