//! The presence rule seen from a dashboard (SPEC §2), on one node and on a
//! two-node cluster (the watcher on one node, the user's tabs on the other).

use std::time::Duration;

use presence_protocol::{ClientMessage, ServerMessage, Status};
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = test_config();
    activity_goes_online_and_idle_goes_offline_after_the_timeout,
    reload_within_margin_emits_no_transition,
    idle_ms_at_or_beyond_the_timeout_is_no_proof,
    logout_goes_offline_at_once_and_closes_every_tab_with_4004,
);

fn presence_of(m: &ServerMessage) -> Option<(String, Status, u64, u64)> {
    match m {
        ServerMessage::Presence {
            user,
            status,
            at,
            v,
            ..
        } => Some((user.clone(), *status, *at, *v)),
        _ => None,
    }
}

/// An administrator watching the directory (on the next node; a user's tab
/// opened after it goes to the other one).
async fn admin_watching(d: &Deployment) -> Tab {
    d.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/boss",
            serde_json::json!({"name":"Boss","email":"b@x","profile":"admin"}),
        )
        .await;
    d.synced("acme").await;
    let mut admin = d.tab("acme", "boss").await;
    // Boss's own online is decided before the snapshot on one node; in the
    // cluster it comes back through Redis. Subscribing once every node knows
    // it keeps it out of the deltas the tests look at.
    d.on_every_node("/v1/tenants/acme/users/boss", |u| u["status"] == "online")
        .await;
    let snap = admin.subscribe(1, "directory").await;
    assert!(matches!(snap, ServerMessage::Snapshot { .. }), "{snap:?}");
    admin
}

async fn activity_goes_online_and_idle_goes_offline_after_the_timeout(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let mut admin = admin_watching(d).await;
    let before = now_ms();
    let mut ann = d.tab("acme", "ann").await;
    let on = admin
        .recv_until(|m| presence_of(m).is_some_and(|p| p.0 == "ann"))
        .await;
    let (_, status, at, v) = presence_of(&on).unwrap();
    assert_eq!(status, Status::Online);
    // The hub's clock (`Clock`: a wall-clock anchor plus tokio's elapsed
    // time, each truncated to the ms) may read up to 2 ms behind the test's.
    assert!(at + 2 >= before, "online at {at}, hello sent at {before}");
    let off = admin
        .recv_until(|m| presence_of(m).is_some_and(|p| p.0 == "ann"))
        .await;
    let arrived = now_ms();
    let (_, status, at_off, v_off) = presence_of(&off).unwrap();
    assert_eq!(status, Status::Offline);
    assert_eq!(v_off, v + 1);
    // Deadline = last activity (hello, idle 0) + 1.5 s; never before it, at most 1 s after.
    assert!(at_off >= at + 1_500, "offline at {at_off}, online at {at}");
    assert!(
        arrived <= at + 1_500 + 1_000 + 200,
        "offline arrived {} ms after the deadline",
        arrived - at - 1_500
    );
    ann.activity(0).await;
    let back = admin
        .recv_until(|m| presence_of(m).is_some_and(|p| p.0 == "ann"))
        .await;
    assert_eq!(presence_of(&back).unwrap().1, Status::Online);
}

async fn reload_within_margin_emits_no_transition(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let mut admin = admin_watching(d).await;
    let tab = Uuid::new_v4();
    let t1 = d.open_tab(&token("acme", "ann"), tab, 0).await;
    admin
        .recv_until(|m| presence_of(m).is_some_and(|p| p.1 == Status::Online))
        .await;
    drop(t1);
    let mut t2 = d.open_tab(&token("acme", "ann"), tab, 200).await;
    t2.activity(0).await;
    // Stats may follow; no presence delta may come while ann keeps interacting.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1_200);
    while let Ok(m) = tokio::time::timeout_at(deadline, admin.recv()).await {
        assert!(presence_of(&m).is_none(), "unexpected transition {m:?}");
    }
}

async fn idle_ms_at_or_beyond_the_timeout_is_no_proof(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let mut admin = admin_watching(d).await;
    let _ann = d
        .open_tab(&token("acme", "ann"), Uuid::new_v4(), 1_500)
        .await;
    admin.silent_for(Duration::from_millis(500)).await;
    for i in 0..d.len() {
        let (_, user) = d
            .admin_on(i)
            .call("GET", "/v1/tenants/acme/users/ann", None)
            .await;
        assert_eq!(user["status"], "offline", "on node {i}");
    }
}

async fn logout_goes_offline_at_once_and_closes_every_tab_with_4004(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let mut admin = admin_watching(d).await;
    let mut a = d.tab("acme", "ann").await;
    let mut b = d.tab("acme", "ann").await;
    admin
        .recv_until(|m| presence_of(m).is_some_and(|p| p.1 == Status::Online))
        .await;
    a.send(&ClientMessage::Logout).await;
    let off = admin.recv_until(|m| presence_of(m).is_some()).await;
    assert_eq!(presence_of(&off).unwrap().1, Status::Offline);
    assert_eq!(a.closed().await.code, 4004);
    assert_eq!(b.closed().await.code, 4004);
}
