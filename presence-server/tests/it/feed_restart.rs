//! The single node's feed across a restart of the real binary (issue #11
//! item 5): a restarted hub starts everyone offline, so the users its feed
//! still showed online get an `offline` event with reason `reconciled`
//! before it serves anyone; afterwards every user's latest feed event
//! matches what `GET .../users` says, whether the hub was SIGKILLed or
//! stopped, and whether the idle timeout passed meanwhile or not.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use uuid::Uuid;

use crate::feed::until_in_feed;
use crate::hub_process::HubProcess;
use crate::support::*;

/// The acme feed, every event as JSON, in cursor order.
async fn feed(a: &Admin) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut after = 0;
    loop {
        let page = a
            .ok(
                "GET",
                &format!("/v1/tenants/acme/events?after={after}&limit=1000"),
                Value::Null,
            )
            .await;
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().cloned());
        after = page["next"].as_u64().unwrap();
    }
}

/// Every acme user as `GET .../users` shows them, by id.
async fn users(a: &Admin) -> HashMap<String, Value> {
    let page = a
        .ok("GET", "/v1/tenants/acme/users?limit=1000", Value::Null)
        .await;
    assert!(page.get("next_cursor").is_none(), "{page}");
    page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["id"].as_str().unwrap().to_owned(), u.clone()))
        .collect()
}

/// The invariant: every user's latest feed event has their current status
/// and `v`, and began when their status did; a user with no event is
/// offline.
async fn assert_feed_matches_users(a: &Admin) {
    let events = feed(a).await;
    let mut latest: HashMap<&str, &Value> = HashMap::new();
    for e in &events {
        latest.insert(e["user"].as_str().unwrap(), e);
    }
    let users = users(a).await;
    assert!(!users.is_empty());
    for (id, u) in &users {
        match latest.get(id.as_str()) {
            Some(e) => {
                assert_eq!(
                    (&e["status"], &e["v"], &e["at"]),
                    (&u["status"], &u["v"], &u["since"]),
                    "{id}: latest event {e} but the user is {u}"
                );
            }
            None => assert_eq!(u["status"], "offline", "{u}"),
        }
    }
}

fn serve(data_dir: &Path, idle_ms: u64) -> HubProcess {
    HubProcess::start(
        &[],
        &[
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_JWT_SECRET", SECRET),
            ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
            ("PRESENCE_DATA_DIR", data_dir.to_str().unwrap()),
            ("PRESENCE_IDLE_TIMEOUT_MS", &idle_ms.to_string()),
        ],
    )
}

/// acme with `online` (each made online by a tab's hello, their online
/// events in the feed) and `offline` (never seen); returns the tabs, and
/// each online user's online event.
async fn seed(hub: &HubProcess, online: &[&str], offline: &[&str]) -> (Vec<Tab>, Vec<Value>) {
    let a = hub.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 10}))
        .await;
    for u in online.iter().chain(offline) {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{u}"),
            json!({"name": u, "email": format!("{u}@x.test")}),
        )
        .await;
    }
    let mut tabs = Vec::new();
    for u in online {
        tabs.push(Tab::open(hub.addr, &token("acme", u), Uuid::new_v4(), 0).await);
        until_in_feed(&a, |e| e.user == *u && e.status == "online").await;
    }
    let events = feed(&a).await;
    let onlines = online
        .iter()
        .map(|u| {
            events
                .iter()
                .rev()
                .find(|e| e["user"] == *u)
                .cloned()
                .unwrap()
        })
        .collect();
    (tabs, onlines)
}

/// A user's events after the restart, as (status, v, reason, at).
fn events_of(events: &[Value], user: &str) -> Vec<(String, u64, String, u64)> {
    events
        .iter()
        .filter(|e| e["user"] == user)
        .map(|e| {
            (
                e["status"].as_str().unwrap().to_owned(),
                e["v"].as_u64().unwrap(),
                e["reason"].as_str().unwrap().to_owned(),
                e["at"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_user_online_at_sigkill_is_offline_in_the_feed_at_their_deadline_after_restart() {
    const IDLE_MS: u64 = 2000;
    let data = tempfile::tempdir().unwrap();
    let mut hub = serve(data.path(), IDLE_MS);
    let (tabs, onlines) = seed(&hub, &["ann"], &["bob"]).await;
    let online = &onlines[0];
    let last_seen = users(&hub.admin()).await["ann"]["last_seen"]
        .as_u64()
        .unwrap();
    hub.kill_hard();
    drop(tabs);
    // The condition is the wall clock itself: ann's deadline must have
    // passed while no hub ran.
    let deadline = last_seen + IDLE_MS;
    tokio::time::sleep(Duration::from_millis(
        deadline.saturating_sub(now_ms()) + 50,
    ))
    .await;

    let hub = serve(data.path(), IDLE_MS);
    let a = hub.admin();
    let events = feed(&a).await;
    let last = events.last().unwrap();
    assert_eq!(last["user"], "ann", "the feed ends with ann: {events:?}");
    let v = online["v"].as_u64().unwrap();
    assert_eq!(
        events_of(&events, "ann"),
        [
            (
                "online".into(),
                v,
                "activity".into(),
                online["at"].as_u64().unwrap()
            ),
            ("offline".into(), v + 1, "reconciled".into(), deadline),
        ]
    );
    assert_eq!(last["id"], format!("acme:ann:{}", v + 1));
    assert_eq!(
        last["cursor"].as_u64().unwrap(),
        online["cursor"].as_u64().unwrap() + 1
    );
    assert!(events_of(&events, "bob").is_empty());
    let ann = &users(&a).await["ann"];
    assert_eq!(
        (&ann["status"], &ann["v"]),
        (&json!("offline"), &json!(v + 1))
    );
    assert_feed_matches_users(&a).await;
    // Her history: one interval, ended at her deadline, not open and not at
    // the restart.
    assert_eq!(
        crate::history::online(&a, "ann").await,
        [(
            online["at"].as_u64().unwrap(),
            Some(deadline),
            Some("reconciled".to_owned())
        )]
    );

    // The next transition goes on after the reconciling one.
    let _ann = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let after =
        crate::feed::until_in_feed_after(&a, last["cursor"].as_u64().unwrap(), |e| e.user == "ann")
            .await;
    assert_eq!((after[0].status.as_str(), after[0].v), ("online", v + 2));
    assert_feed_matches_users(&a).await;
}

/// What a restart within the idle window does: the restored engine starts
/// everyone offline (a tab's reconnect, which proves activity, makes them
/// online again), so the feed says offline too, at the restart.
/// `graceful`: SIGTERM and a clean exit; otherwise SIGKILL.
async fn restart_within_the_idle_window(graceful: bool) {
    let data = tempfile::tempdir().unwrap();
    let mut hub = serve(data.path(), 600_000);
    let (tabs, onlines) = seed(&hub, &["ann", "cid"], &["bob"]).await;
    let stopped_at = now_ms();
    if graceful {
        hub.signal(libc::SIGTERM);
        let status = hub.exited_within(Duration::from_secs(10)).await;
        assert_eq!(status.code(), Some(0), "{}", hub.stderr());
    } else {
        hub.kill_hard();
    }
    drop(tabs);

    hub.restart().await;
    let restarted_by = now_ms();
    let a = hub.admin();
    let events = feed(&a).await;
    for (u, online) in ["ann", "cid"].iter().zip(&onlines) {
        let got = events_of(&events, u);
        let v = online["v"].as_u64().unwrap();
        assert_eq!(got.len(), 2, "{u}: {got:?}");
        let (status, v2, reason, at) = &got[1];
        assert_eq!(
            (status.as_str(), *v2, reason.as_str()),
            ("offline", v + 1, "reconciled")
        );
        assert!(
            (stopped_at..=restarted_by).contains(at),
            "{u} offline at {at}, stopped at {stopped_at}, restarted by {restarted_by}"
        );
    }
    assert_eq!(
        users(&a).await["ann"]["status"],
        "offline",
        "the engine restarts everyone offline"
    );
    assert_feed_matches_users(&a).await;
    // A second restart has nothing left to reconcile.
    let before = events.len();
    hub.restart().await;
    assert_eq!(feed(&hub.admin()).await.len(), before);
    assert_feed_matches_users(&hub.admin()).await;
}

#[tokio::test]
async fn a_graceful_restart_reconciles_every_user_the_feed_showed_online() {
    restart_within_the_idle_window(true).await;
}

#[tokio::test]
async fn a_sigkill_within_the_idle_window_reconciles_every_user_the_feed_showed_online() {
    restart_within_the_idle_window(false).await;
}

/// The AOF file Redis appends to (Redis 7: `appendonlydir/*.incr.aof`).
fn incr_aof(dir: &Path) -> std::path::PathBuf {
    std::fs::read_dir(dir.join("appendonlydir"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".incr.aof"))
        .expect("an incremental AOF")
}

/// Polls `GET .../users` and the feed (both views a consumer has) until
/// every user's latest event matches their state; bounded.
async fn until_feed_matches_users(a: &Admin) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        // The node reconnects to the restarted Redis meanwhile (503 until).
        let (s, _) = a
            .call("GET", "/v1/tenants/acme/events?after=0&limit=1", None)
            .await;
        if s != 200 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the feed never came back: {s}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let events = feed(a).await;
        let mut latest: HashMap<String, Value> = HashMap::new();
        for e in events {
            latest.insert(e["user"].as_str().unwrap().to_owned(), e);
        }
        let users = users(a).await;
        let wrong: Vec<String> = users
            .iter()
            .filter(|(id, u)| match latest.get(*id) {
                Some(e) => (&e["status"], &e["v"]) != (&u["status"], &u["v"]),
                None => u["status"] != "offline",
            })
            .map(|(id, u)| format!("{id}: {u} vs {:?}", latest.get(id)))
            .collect();
        if wrong.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed disagrees: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A Redis that persists as production would: an AOF fsynced every second.
async fn aof_redis() -> crate::redis_support::RedisServer {
    crate::redis_support::RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ])
    .await
}

/// Cluster mode, Redis with `appendfsync everysec` losing its last second
/// (a power loss: what was written but not fsynced is gone, simulated by
/// cutting the AOF back): the node showed ann online, Redis no longer
/// knows it, and once Redis is back the feed and the state agree again for
/// every user.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_its_last_second_the_feed_agrees_with_the_state_again() {
    let mut redis = aof_redis().await;
    let hub = HubProcess::cluster_node(&redis.url(), "A", 600_000).await;
    let (_bob, _) = seed(&hub, &["bob"], &["ann", "cid"]).await;
    let a = hub.admin();
    // What Redis wrote by now is taken as fsynced; what follows (ann's
    // online, the claim behind it) is the second a power loss takes.
    let aof = incr_aof(redis.dir());
    let kept = std::fs::metadata(&aof).unwrap().len();
    let ann = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    until_in_feed(&a, |e| e.user == "ann" && e.status == "online").await;
    let shown = feed(&a).await.last().cloned().unwrap();
    assert_eq!(shown["id"], "acme:ann:1", "{shown}");
    redis.kill();
    let f = std::fs::OpenOptions::new().write(true).open(&aof).unwrap();
    f.set_len(kept).unwrap();
    drop(f);
    redis.restart().await;
    until_feed_matches_users(&a).await;
    let ann_now = &users(&a).await["ann"];
    assert_eq!(
        ann_now["status"], "online",
        "her tab is still open: {ann_now}"
    );
    drop(ann);
}

/// The reverse: ann's logout is the lost second, so Redis comes back with
/// her online (her lease still running) while the node showed her
/// offline; the feed and the state agree again once her lease ends
/// (within the idle timeout, 2 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_redis_loses_a_logout_the_feed_agrees_with_the_state_again() {
    use presence_protocol::ClientMessage;
    let mut redis = aof_redis().await;
    let hub = HubProcess::cluster_node(&redis.url(), "A", 2_000).await;
    let (mut tabs, _) = seed(&hub, &["ann", "bob"], &["cid"]).await;
    let a = hub.admin();
    let aof = incr_aof(redis.dir());
    let kept = std::fs::metadata(&aof).unwrap().len();
    tabs[0].send(&ClientMessage::Logout).await;
    until_in_feed(&a, |e| e.user == "ann" && e.reason == "logout").await;
    let read_before: Vec<Value> = feed(&a).await;
    redis.kill();
    let f = std::fs::OpenOptions::new().write(true).open(&aof).unwrap();
    f.set_len(kept).unwrap();
    drop(f);
    redis.restart().await;
    until_feed_matches_users(&a).await;
    // Settled by her lease running out (she sends no more activity).
    let ann = &users(&a).await["ann"];
    assert_eq!(ann["status"], "offline", "{ann}");
    // A consumer that read up to the lost logout's cursor before the crash
    // misses nothing after it: no cursor it read is given to another event.
    let after: Vec<Value> = feed(&a).await;
    for e in &after {
        if let Some(seen) = read_before.iter().find(|b| b["cursor"] == e["cursor"]) {
            assert_eq!(
                seen["id"], e["id"],
                "cursor {} reused: {after:?}",
                e["cursor"]
            );
        }
    }
    let last_read = read_before.last().unwrap()["cursor"].as_u64().unwrap();
    assert!(
        after
            .iter()
            .any(|e| e["user"] == "bob" && e["cursor"].as_u64().unwrap() > last_read),
        "bob's offline comes after every cursor read before the crash: {after:?}"
    );
}
