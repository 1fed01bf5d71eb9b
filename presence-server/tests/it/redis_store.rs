//! What only the Redis store promises: the per-tenant log and version, a
//! bounded failure while Redis is gone, and recovery after it returns.

use std::time::{Duration, Instant};

use presence_protocol::MembershipRole;
use presence_server::RedisConn;
use presence_server::RedisStore;
use presence_server::Write;
use presence_server::{Store, StoreError};

use crate::redis_support::{free_port, RedisCluster, RedisServer};
use crate::store_conformance::{member, presence, team, tenant, user};
use crate::support::WAIT;

/// SPEC §8.5: a write while Redis is gone fails with 503 promptly.
const FAIL_WITHIN: Duration = Duration::from_secs(2);

async fn store_on(url: &str, node: &str) -> RedisStore {
    RedisStore::new(RedisConn::connect(url).await.unwrap(), node)
}

/// Retries `load` until the store reconnected, or fails after [`WAIT`].
async fn load_when_back(store: &RedisStore) -> Vec<Write> {
    let deadline = Instant::now() + WAIT;
    loop {
        match store.load().await {
            Ok(ws) => return ws,
            Err(e) => assert!(Instant::now() < deadline, "no reconnect: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn each_tenant_batch_is_logged_once_with_its_version_and_node() {
    let server = RedisServer::start().await;
    let store = store_on(&server.url(), "node-a").await;
    let (a, b) = ("acme", "globex");
    let first = vec![tenant(a), user(a, "u1"), team(a, "t1")];
    store.commit(first.clone()).await.unwrap();
    store
        .commit(vec![tenant(b), presence(a, "u1", 1), presence(b, "u9", 2)])
        .await
        .unwrap();
    store
        .commit(vec![Write::DeleteTeam {
            tenant: a.into(),
            team: "t1".into(),
        }])
        .await
        .unwrap();

    assert_eq!(store.version(a).await.unwrap(), 3);
    assert_eq!(store.version(b).await.unwrap(), 1);
    assert_eq!(store.version("nobody").await.unwrap(), 0);

    let log_a = store.read_log(a, "0").await.unwrap();
    let summary: Vec<(u64, &str, &[Write])> = log_a
        .iter()
        .map(|(_, v, node, ws)| (*v, node.as_str(), ws.as_slice()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (1, "node-a", first.as_slice()),
            (2, "node-a", &[presence(a, "u1", 1)][..]),
            (
                3,
                "node-a",
                &[Write::DeleteTeam {
                    tenant: a.into(),
                    team: "t1".into(),
                }][..]
            ),
        ]
    );
    let log_b = store.read_log(b, "0").await.unwrap();
    assert_eq!(log_b.len(), 1);
    assert_eq!(log_b[0].3, vec![tenant(b), presence(b, "u9", 2)]);

    // Reading after an id is exclusive: after the last entry, nothing.
    let (second_id, last_id) = (&log_a[1].0, &log_a[2].0);
    let after_second = store.read_log(a, second_id).await.unwrap();
    assert_eq!(after_second.len(), 1);
    assert_eq!(after_second[0].1, 3);
    assert!(store.read_log(a, last_id).await.unwrap().is_empty());

    // Another node reading the same Redis sees the same log and snapshot.
    let other = store_on(&server.url(), "node-b").await;
    assert_eq!(other.read_log(a, "0").await.unwrap(), log_a);
    let (records, v) = other.snapshot(a).await.unwrap();
    assert_eq!(v, 3);
    assert_eq!(
        records,
        vec![tenant(a), user(a, "u1"), presence(a, "u1", 1)]
    );
}

#[tokio::test]
async fn commit_while_redis_is_down_fails_fast_and_writes_nothing() {
    let mut server = RedisServer::start_persistent().await;
    let store = store_on(&server.url(), "node-a").await;
    let t = "acme";
    store
        .commit(vec![tenant(t), user(t, "kept")])
        .await
        .unwrap();

    server.kill();
    for attempt in 0..3 {
        let started = Instant::now();
        let r = store
            .commit(vec![
                user(t, "lost"),
                team(t, "t1"),
                member(t, "t1", "lost", MembershipRole::Both),
            ])
            .await;
        let took = started.elapsed();
        assert!(
            matches!(r, Err(StoreError::Unavailable(_))),
            "attempt {attempt}: {r:?}"
        );
        assert!(took <= FAIL_WITHIN, "attempt {attempt} took {took:?}");
    }
    let started = Instant::now();
    assert!(matches!(
        store.load().await,
        Err(StoreError::Unavailable(_))
    ));
    assert!(started.elapsed() <= FAIL_WITHIN);

    server.restart().await;
    assert_eq!(
        load_when_back(&store).await,
        vec![tenant(t), user(t, "kept")],
        "nothing of the failed batches"
    );
    assert_eq!(store.version(t).await.unwrap(), 1);
    store.commit(vec![user(t, "after")]).await.unwrap();
    assert_eq!(store.version(t).await.unwrap(), 2);
}

#[tokio::test]
async fn acknowledged_commits_survive_a_redis_crash() {
    let mut server = RedisServer::start_persistent().await;
    let store = store_on(&server.url(), "node-a").await;
    let t = "acme";
    let mut expected = vec![tenant(t)];
    store.commit(vec![tenant(t)]).await.unwrap();
    for i in 0..20 {
        let u = format!("u{i:02}");
        store.commit(vec![user(t, &u)]).await.unwrap();
        expected.push(user(t, &u));
    }
    let log_before = store.read_log(t, "0").await.unwrap();

    // SIGKILL: only what appendfsync always put on disk comes back.
    server.kill();
    server.restart().await;

    assert_eq!(load_when_back(&store).await, expected);
    assert_eq!(store.version(t).await.unwrap(), 21);
    assert_eq!(store.read_log(t, "0").await.unwrap(), log_before);
    // The same store object reconnected and writes again.
    store.commit(vec![user(t, "new")]).await.unwrap();
    assert_eq!(store.version(t).await.unwrap(), 22);
}

#[tokio::test]
async fn commit_to_a_frozen_redis_gives_up_within_two_seconds() {
    let server = RedisServer::start().await;
    let store = store_on(&server.url(), "node-a").await;
    let t = "acme";
    store.commit(vec![tenant(t)]).await.unwrap();
    let pid = server.pid().unwrap();
    // SIGSTOP: the socket stays open but nothing answers, the case a
    // refused connection does not cover.
    signal(pid, "STOP");
    let started = Instant::now();
    let r = store
        .commit(vec![user(t, "a"), user(t, "b"), user(t, "c")])
        .await;
    let took = started.elapsed();
    signal(pid, "CONT");
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(took <= FAIL_WITHIN, "took {took:?}");

    // The request was already in Redis's socket buffer, so it may still run
    // once Redis wakes: then whole (one script), never in part.
    let users = load_when_back(&store)
        .await
        .iter()
        .filter(|w| matches!(w, Write::User { .. }))
        .count();
    assert!(users == 0 || users == 3, "{users} of 3 users");
    store.commit(vec![user(t, "d")]).await.unwrap();
}

/// Sends a signal to our own child through kill(1): the crate forbids
/// `unsafe`, which `libc::kill` would need.
fn signal(pid: u32, sig: &str) {
    let status = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}");
}

#[tokio::test]
async fn connecting_to_nothing_fails_fast() {
    let started = Instant::now();
    let r = RedisConn::connect(&format!("redis://127.0.0.1:{}/", free_port())).await;
    assert!(r.is_err());
    assert!(started.elapsed() <= FAIL_WITHIN, "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_store_recovers_after_a_master_restarts() {
    let mut cluster = RedisCluster::start(3).await;
    let store = store_on(&cluster.url(), "node-a").await;
    let t = "acme";
    store.commit(vec![tenant(t), user(t, "u1")]).await.unwrap();

    // Restart the master that holds the tenant's slot (not the one whose
    // URL the client was given, if they differ, so discovery is exercised).
    let owner = cluster.owner_of("presence:{acme}:tenant").await;
    cluster.nodes[owner].kill();
    let started = Instant::now();
    let r = store.commit(vec![user(t, "lost")]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    assert!(started.elapsed() <= FAIL_WITHIN, "{:?}", started.elapsed());

    cluster.nodes[owner].restart().await;
    cluster.wait_ok().await;
    let deadline = Instant::now() + WAIT;
    loop {
        match store.commit(vec![user(t, "u2")]).await {
            Ok(()) => break,
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        load_when_back(&store).await,
        vec![tenant(t), user(t, "u1"), user(t, "u2")]
    );
    assert_eq!(store.version(t).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_from_another_node_never_sees_half_a_batch() {
    let server = RedisServer::start().await;
    // Two connections, as two nodes have: on one connection, commands are
    // ordered anyway and could not interleave with the reads.
    let writer = store_on(&server.url(), "node-a").await;
    let reader = store_on(&server.url(), "node-b").await;
    let t = "acme";
    writer.commit(vec![tenant(t)]).await.unwrap();
    const BATCHES: u64 = 100;
    let write = async {
        for b in 0..BATCHES {
            // Each batch touches every kind of record the snapshot reads.
            let u = format!("u{b:03}");
            writer
                .commit(vec![
                    team(t, &format!("t{b:03}")),
                    user(t, &u),
                    member(t, &format!("t{b:03}"), &u, MembershipRole::Member),
                    presence(t, &u, b),
                ])
                .await
                .unwrap();
        }
    };
    let read = async {
        let mut checked = 0;
        loop {
            let (records, v) = reader.snapshot(t).await.unwrap();
            let users = records
                .iter()
                .filter(|w| matches!(w, Write::User { .. }))
                .count() as u64;
            let teams = records
                .iter()
                .filter(|w| matches!(w, Write::Team { .. }))
                .count() as u64;
            let presences = records
                .iter()
                .filter(|w| matches!(w, Write::Presence { .. }))
                .count() as u64;
            // Version 1 is the tenant batch; each later one adds one of each.
            assert_eq!((teams, users, presences), (v - 1, v - 1, v - 1));
            checked += 1;
            if v > BATCHES {
                return checked;
            }
        }
    };
    let ((), checked) = tokio::join!(write, read);
    assert!(checked > 1);
}

/// SPEC §10: one node at a time delivers a tenant's webhooks. Another
/// holder is refused while the lease runs, gets it once it lapses without
/// renewal, and the first holder cannot take it back or release it then.
#[tokio::test]
async fn a_webhook_lease_has_one_holder_until_it_lapses() {
    let server = RedisServer::start().await;
    let store = store_on(&server.url(), "node-a").await;
    let ttl = Duration::from_millis(300);
    assert!(store.lease_webhooks("acme", "n1", ttl).await.unwrap());
    assert!(!store.lease_webhooks("acme", "n2", ttl).await.unwrap());
    assert!(
        store.lease_webhooks("globex", "n2", ttl).await.unwrap(),
        "leases are per tenant"
    );
    // Not renewed: it lapses, by Redis's clock.
    let deadline = Instant::now() + WAIT;
    while !store.lease_webhooks("acme", "n2", ttl).await.unwrap() {
        assert!(Instant::now() < deadline, "the lease never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!store.lease_webhooks("acme", "n1", ttl).await.unwrap());
    store.release_webhooks("acme", "n1").await.unwrap();
    assert!(
        !store.lease_webhooks("acme", "n1", ttl).await.unwrap(),
        "a former holder's release does not free it"
    );
}
