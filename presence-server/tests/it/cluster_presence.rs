//! Cluster presence (SPEC §8): several nodes sharing one Redis decide one
//! status per user, and every watcher on every node sees each transition once.

use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use serde_json::json;
use uuid::Uuid;

use crate::redis_support::RedisServer;
use crate::support::*;

/// Two nodes whose directories hold the same users (directory sharing is
/// tested on its own), with an admin watching the directory on each.
async fn two_nodes(redis: &RedisServer) -> (TestHub, TestHub, Tab, Tab) {
    let a = TestHub::clustered(test_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(test_config(), &redis.url(), "B").await;
    let mut watchers = Vec::new();
    for h in [&a, &b] {
        h.seed("acme", &["ann"]).await;
        h.admin()
            .ok(
                "PUT",
                "/v1/tenants/acme/users/boss",
                json!({"name": "Boss", "email": "b@x", "profile": "admin"}),
            )
            .await;
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
    let (a, b, _wa, mut wb) = two_nodes(&redis).await;
    let _t = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    wb.recv_until(|m| ann(m) == Some((Status::Online, 1))).await;
    let died = now_ms();
    // Stop A without its graceful hand-off: its tasks end, Redis keeps its claims.
    a.hub.begin_shutdown();
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
