//! Tenant residency (issue #14): a cluster node holds a tenant only while
//! something uses it there. A tab, an admin call or a reader loads it (a
//! tab waits for the load); a tenant nothing used for
//! `tenant_evict_after` is evicted, its channel unsubscribed; a reload
//! reads what was written and who came online meanwhile; an idle cluster
//! sends Redis its heartbeats and nothing per tenant; and a crashed node's
//! users end although no other node holds their tenant.

use std::collections::HashMap;
use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::cluster_channels::put_boss;
use crate::redis_support::{query, RedisServer};
use crate::support::*;

/// Evicts after 300 ms unused; polls the directory only hourly, so what
/// crosses within a second crossed through a channel.
fn resident_config() -> presence_server::Config {
    presence_server::Config {
        tenant_evict_after: Duration::from_millis(300),
        tenant_load_timeout: Duration::from_secs(1),
        directory_poll: Duration::from_secs(3_600),
        ..test_config()
    }
}

async fn resident(h: &TestHub) -> f64 {
    h.metric("presence_tenants_resident").await.unwrap_or(0.0)
}

/// Waits until `h` holds `n` tenants, for at most `limit`.
async fn holds_within(h: &TestHub, n: f64, limit: Duration) {
    let started = tokio::time::Instant::now();
    loop {
        let now = resident(h).await;
        if now == n {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{} holds {now} tenants, not {n}, after {limit:?}",
            h.addr
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// How many connections are subscribed to `tenant`'s channel.
async fn subscribers(redis: &RedisServer, tenant: &str) -> i64 {
    let channel = format!("presence:{{{tenant}}}:notify");
    let mut c = redis::cmd("PUBSUB");
    c.arg("NUMSUB").arg(&channel);
    let reply: Vec<redis::Value> = query(redis.port, c).await.unwrap();
    match reply.get(1) {
        Some(redis::Value::Int(n)) => *n,
        other => panic!("NUMSUB answered {other:?}"),
    }
}

/// An administrator's tab on `h` watching `tenant`'s directory, with the
/// snapshot it got.
async fn watcher(h: &TestHub, tenant: &str) -> (Tab, Vec<presence_protocol::Entry>) {
    let mut w = Tab::open(h.addr, &token(tenant, "boss"), Uuid::new_v4(), 60_000).await;
    match w.subscribe(1, "directory").await {
        ServerMessage::Snapshot { users, .. } => (w, users),
        other => panic!("expected a snapshot, got {other:?}"),
    }
}

async fn user(h: &TestHub, tenant: &str, uid: &str) -> (u16, Value) {
    h.admin()
        .call("GET", &format!("/v1/tenants/{tenant}/users/{uid}"), None)
        .await
}

#[tokio::test]
async fn a_node_holds_only_the_tenants_it_serves_and_loads_one_for_a_tab() {
    let redis = RedisServer::start().await;
    let a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    for t in ["acme", "globex", "initech"] {
        a.seed(t, &["ann"]).await;
        put_boss(&a, t).await;
    }
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    assert_eq!(resident(&b).await, 0.0, "B starts holding nothing");
    // A's administrator watches acme on A.
    let (mut wa, _) = watcher(&a, "acme").await;
    // A tab reaches B, where acme is not held: it waits for the load and
    // is welcomed, and only acme is held on B.
    let _ann = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    assert_eq!(resident(&b).await, 1.0);
    tokio::time::timeout(
        Duration::from_secs(1),
        wa.recv_until(|m| is_presence_of(m, "ann", Status::Online)),
    )
    .await
    .expect("A's watcher saw ann (her tab is on B) online within 1 s");
    // An admin call routed to B loads the tenant it names.
    let (status, v) = user(&b, "globex", "ann").await;
    assert_eq!((status, v["id"].as_str()), (200, Some("ann")));
    // A tenant that does not exist is loaded nowhere.
    let (status, _) = user(&b, "nobody", "ann").await;
    assert_eq!(status, 404);
    // globex, with nothing using it on B, goes; acme, with ann's tab, stays.
    holds_within(&b, 1.0, Duration::from_secs(5)).await;
    assert_eq!(user(&b, "acme", "ann").await.1["status"], "online");
}

#[tokio::test]
async fn an_unused_tenant_is_evicted_everywhere_and_a_reload_sees_what_happened_meanwhile() {
    let redis = RedisServer::start().await;
    let a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    a.seed("acme", &["ann", "dee"]).await;
    put_boss(&a, "acme").await;
    {
        let mut ann = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
        ann.activity(0).await;
        assert_eq!(resident(&b).await, 1.0);
    }
    // Her tab closed: once her local deadline passed (1.5 s) and nothing
    // used acme for 300 ms, both nodes give it up, and nobody listens to
    // its channel any more.
    holds_within(&b, 0.0, Duration::from_secs(10)).await;
    holds_within(&a, 0.0, Duration::from_secs(10)).await;
    assert!(b.metric("presence_tenants_evicted_total").await.unwrap() >= 1.0);
    assert_eq!(subscribers(&redis, "acme").await, 0);
    // Meanwhile: a user written through A (which loads acme for it), and
    // dee online on A.
    a.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/cid",
            json!({"name": "Cid", "email": "c@x"}),
        )
        .await;
    let _dee = Tab::open(a.addr, &token("acme", "dee"), Uuid::new_v4(), 0).await;
    // B loads acme again for its administrator: the snapshot holds cid,
    // dee online and ann offline.
    let (mut wb, users) = watcher(&b, "acme").await;
    let entry = |id: &str| users.iter().find(|e| e.id == id).cloned();
    assert!(
        entry("cid").is_some(),
        "cid, written while B did not hold acme"
    );
    assert_eq!(entry("dee").map(|e| e.status), Some(Status::Online));
    assert_eq!(entry("ann").map(|e| e.status), Some(Status::Offline));
    // And follows it again: a write through A reaches B's watcher within 1 s.
    write_reaches(&a, &mut wb, "eve", "Eve").await;
}

/// Writes user `uid` named `name` into acme through `via`; `w` sees the
/// write within 1 s.
async fn write_reaches(via: &TestHub, w: &mut Tab, uid: &str, name: &str) {
    via.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{uid}"),
            json!({"name": name, "email": format!("{uid}@x")}),
        )
        .await;
    tokio::time::timeout(
        Duration::from_secs(1),
        w.recv_until(|m| {
            matches!(m, ServerMessage::User { user, .. }
                if user.id == uid && user.name.as_deref() == Some(name))
        }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "the watcher saw {uid} written through {} within 1 s",
            via.addr
        )
    });
}

#[tokio::test]
async fn a_write_through_a_node_that_does_not_hold_the_tenant_reaches_the_one_that_does() {
    let redis = RedisServer::start().await;
    let a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    a.seed("acme", &["ann"]).await;
    put_boss(&a, "acme").await;
    let (mut wb, _) = watcher(&b, "acme").await;
    holds_within(&a, 0.0, Duration::from_secs(5)).await;
    write_reaches(&a, &mut wb, "ann", "Ann Renamed").await;
}

#[tokio::test]
async fn a_tab_whose_tenant_cannot_be_loaded_is_told_to_retry_then_joins_once_redis_is_back() {
    let mut redis = RedisServer::start_persistent().await;
    let a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    a.seed("acme", &["ann"]).await;
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    redis.kill();
    let started = tokio::time::Instant::now();
    let Err(refused) = Tab::try_open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await else {
        panic!("joined while Redis was away");
    };
    assert_eq!(
        (refused.code, refused.reason.as_str()),
        (1013, "tenant unavailable; retry")
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "told within the load timeout (1 s), not {:?}",
        started.elapsed()
    );
    redis.restart().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match Tab::try_open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await {
            Ok(_) => break,
            Err(c) => {
                assert_eq!(c.code, 1013, "{c:?}");
                assert!(tokio::time::Instant::now() < deadline, "never joined");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Calls per command since the last `CONFIG RESETSTAT`.
async fn command_calls(redis: &RedisServer) -> HashMap<String, u64> {
    let mut c = redis::cmd("INFO");
    c.arg("commandstats");
    let text: String = query(redis.port, c).await.unwrap();
    text.lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

#[tokio::test]
async fn an_idle_cluster_of_many_tenants_sends_redis_heartbeats_only() {
    let redis = RedisServer::start().await;
    let a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    for i in 0..40 {
        a.seed(&format!("t{i}"), &["ann"]).await;
    }
    let _ = user(&b, "t0", "ann").await;
    holds_within(&a, 0.0, Duration::from_secs(5)).await;
    holds_within(&b, 0.0, Duration::from_secs(5)).await;
    let _: () = query(redis.port, redis::cmd("CONFIG").arg("RESETSTAT").clone())
        .await
        .unwrap();
    // The window measured: four heartbeats of each node.
    let window = Duration::from_secs(4);
    tokio::time::sleep(window).await;
    let calls = command_calls(&redis).await;
    let per_tenant: Vec<_> = calls
        .keys()
        .filter(|c| {
            !["zadd", "zrange", "smembers", "info", "config|resetstat"].contains(&c.as_str())
        })
        .collect();
    assert!(
        per_tenant.is_empty(),
        "idle traffic beyond heartbeats: {calls:?}"
    );
    // Per node and second: ZADD of its beat, ZRANGE of the live and the
    // departed nodes; the webhook owners' list every 5 s.
    let beats = calls.get("zadd").copied().unwrap_or(0);
    assert!((6..=12).contains(&beats), "{calls:?}");
    let total: u64 = calls.values().sum();
    assert!(total <= 2 * 3 * 5 + 4 + 2, "{calls:?}");
}

#[tokio::test]
async fn a_crashed_nodes_users_go_offline_and_into_history_although_no_other_node_holds_their_tenant(
) {
    let redis = RedisServer::start().await;
    let config = presence_server::Config {
        cluster_duties: Duration::from_millis(300),
        ..resident_config()
    };
    let a = TestHub::clustered(config.clone(), &redis.url(), "A").await;
    let mut b = TestHub::clustered(config, &redis.url(), "B").await;
    a.seed("acme", &["ann"]).await;
    let mut ann = Tab::open(b.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    ann.activity(0).await;
    holds_within(&a, 0.0, Duration::from_secs(5)).await;
    let crashed_at = now_ms();
    b.crash();
    // A does not hold acme (nothing here asks it to): its sweep of B's
    // registry ends ann's lease, and its duties fold that into history.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let (ev, seq) = loop {
        let last = last_event(&redis, "acme", "ann").await;
        let mut get = redis::cmd("HGET");
        get.arg("presence:{acme}:history_state").arg("cursor");
        let folded: Option<u64> = query(redis.port, get).await.flatten();
        if let Some(ev) = last.as_ref().filter(|e| e["status"] == "offline") {
            let cursor = ev["cursor"].as_u64().unwrap();
            if folded == Some(cursor) {
                break (ev.clone(), cursor);
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "15 s after her node crashed: her last event {last:?}, history at {folded:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ev["reason"], "node_lost", "{ev}");
    assert!(seq >= 2, "online, then offline: {ev}");
    let at = ev["at"].as_u64().unwrap();
    assert!(
        at <= crashed_at + 1_500 + 2_000,
        "ended at her cutoff, not when it was noticed: {ev}"
    );
    assert_eq!(resident(&a).await, 0.0, "A never loaded acme for it");
}

/// The last event of `uid` in `tenant`'s feed stream, if any.
async fn last_event(redis: &RedisServer, tenant: &str, uid: &str) -> Option<Value> {
    let mut range = redis::cmd("XRANGE");
    range
        .arg(format!("presence:{{{tenant}}}:events"))
        .arg("-")
        .arg("+");
    let entries: Vec<(String, Vec<(String, String)>)> =
        query(redis.port, range).await.unwrap_or_default();
    entries
        .iter()
        .rev()
        .filter_map(|(_, f)| serde_json::from_str::<Value>(&f.first()?.1).ok())
        .find(|e| e["user"] == uid)
}

#[tokio::test]
async fn a_user_whose_node_left_while_no_node_ran_goes_offline_when_the_cluster_starts_again() {
    let redis = RedisServer::start().await;
    let mut a = TestHub::clustered(resident_config(), &redis.url(), "A").await;
    a.seed("acme", &["ann"]).await;
    let mut ann = Tab::open(a.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    ann.activity(0).await;
    // Online once Redis decided it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while user(&a, "acme", "ann").await.1["status"] != "online" {
        assert!(tokio::time::Instant::now() < deadline, "ann never online");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left_at = now_ms();
    // The whole cluster stops: ann's lease ends at her deadline, with no
    // node running to sweep it.
    a.stop().await;
    // A's id carries a suffix per start: the one departed member.
    let mut z = redis::cmd("ZRANGE");
    z.arg("presence:left").arg(0).arg(-1).arg("WITHSCORES");
    let members: Vec<(String, f64)> = query(redis.port, z).await.unwrap();
    assert_eq!(members.len(), 1, "A departed: {members:?}");
    let until = members[0].1;
    // A cluster that starts again after A's departure is over (its leases'
    // end plus the 5 s a departed node is kept) must still end ann's lease.
    let over = until as u64 + 5_000;
    while now_ms() <= over + 200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let b = TestHub::clustered(resident_config(), &redis.url(), "B").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let ev = loop {
        let ev = last_event(&redis, "acme", "ann").await;
        if let Some(ev) = ev.filter(|e| e["status"] == "offline") {
            break ev;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "ann is still online 5 s after the cluster started again: {:?}",
            user(&b, "acme", "ann").await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = ev["at"].as_u64().unwrap();
    assert!(
        at <= left_at + 1_500 + 1_000,
        "ended at her deadline, not when the cluster came back: {ev}"
    );
    assert_eq!(user(&b, "acme", "ann").await.1["status"], "offline");
    // Forgotten once swept.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut card = redis::cmd("ZCARD");
        card.arg("presence:left");
        let n: i64 = query(redis.port, card).await.unwrap();
        if n == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "A never forgotten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
