//! Webhook delivery across failures, with real processes: the built hub
//! binary as cluster nodes, a real `redis-server`, and the test's receiver
//! on 127.0.0.1. A SIGKILL of the delivering node mid-batch and a Redis
//! restart lose no event; the only duplicates are what was in flight.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use presence_protocol::ClientMessage;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::hub_process::{send_signal, HubProcess};
use crate::redis_support::{query, RedisServer};
use crate::support::*;
use crate::webhook_support::*;
use crate::webhooks::{hook, put_hook};

const FAST: &[(&str, &str)] = &[
    ("PRESENCE_WEBHOOK_ALLOWED_HOSTS", "127.0.0.1"),
    ("PRESENCE_WEBHOOK_BATCH_WAIT_MS", "50"),
    ("PRESENCE_WEBHOOK_BATCH_MAX", "5"),
    ("PRESENCE_WEBHOOK_RETRY_MIN_MS", "50"),
    ("PRESENCE_WEBHOOK_RETRY_MAX_MS", "400"),
    ("PRESENCE_WEBHOOK_LEASE_MS", "1500"),
];
const DELIVERED: Duration = Duration::from_secs(30);

fn port_of(redis: &RedisServer) -> u16 {
    redis
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

async fn seed(a: &Admin, users: &[String]) {
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 100}))
        .await;
    for u in users {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{u}"),
            json!({"name": u, "email": format!("{u}@x.test")}),
        )
        .await;
    }
}

/// Every event of the feed, as the node `a` serves it.
async fn feed(a: &Admin) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let (s, page) = a
            .call(
                "GET",
                &format!("/v1/tenants/acme/events?after={after}&limit=1000"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let events = page["events"].as_array().unwrap().clone();
        if events.is_empty() {
            return out;
        }
        after = page["next"].as_u64().unwrap();
        out.extend(events);
    }
}

/// Waits until the feed holds an event matching `ok`.
async fn until_feed(a: &Admin, ok: impl Fn(&Value) -> bool) {
    let deadline = Instant::now() + DELIVERED;
    loop {
        let all = feed(a).await;
        if all.iter().any(&ok) {
            return;
        }
        assert!(Instant::now() < deadline, "never in the feed: {all:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `a` knows user `uid` of acme (a write made on another
/// node arrives through the directory log).
async fn until_known(a: &Admin, uid: &str) {
    let deadline = Instant::now() + DELIVERED;
    while a
        .call("GET", &format!("/v1/tenants/acme/users/{uid}"), None)
        .await
        .0
        != 200
    {
        assert!(Instant::now() < deadline, "{uid} never known");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every event of the feed was acknowledged at least once.
async fn until_everything_delivered(r: &Receiver, a: &Admin) -> (Vec<Value>, Vec<Value>) {
    let deadline = Instant::now() + DELIVERED;
    loop {
        let all = feed(a).await;
        let acked = r.acked();
        let got: BTreeSet<&str> = acked.iter().filter_map(|e| e["id"].as_str()).collect();
        let missing: Vec<&str> = all
            .iter()
            .filter_map(|e| e["id"].as_str())
            .filter(|id| !got.contains(id))
            .collect();
        if missing.is_empty() && !all.is_empty() {
            return (all, acked);
        }
        assert!(
            Instant::now() < deadline,
            "never delivered: {missing:?} (of {} in the feed)",
            all.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node holding acme's webhook lease (`<node id>/<uuid>`), once one does.
async fn lease_holder(redis: &RedisServer) -> String {
    let deadline = Instant::now() + DELIVERED;
    loop {
        let key = redis::cmd("GET")
            .arg("presence:{acme}:webhook_lease")
            .clone();
        if let Some(h) = query::<String>(port_of(redis), key).await {
            return h;
        }
        assert!(Instant::now() < deadline, "nobody took the lease");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ids delivered (acknowledged) more than once.
fn duplicates(acked: &[Value]) -> BTreeSet<String> {
    let mut n: BTreeMap<String, usize> = BTreeMap::new();
    for e in acked {
        *n.entry(e["id"].as_str().unwrap().to_owned()).or_default() += 1;
    }
    n.into_iter()
        .filter(|(_, c)| *c > 1)
        .map(|(id, _)| id)
        .collect()
}

/// Two nodes; the one holding the tenant's delivery lease is SIGKILLed
/// while its batch is in flight (the receiver answers slowly). The other
/// takes over within the lease, from the last acknowledged cursor: every
/// event of the feed arrives, in `v` order per user, and the only ids seen
/// twice are those of the batch in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_of_the_delivering_node_mid_batch_loses_no_event() {
    let redis = RedisServer::start().await;
    let mut a = HubProcess::cluster_node_with(&redis.url(), "A", 3_000, FAST).await;
    let mut b = HubProcess::cluster_node_with(&redis.url(), "B", 3_000, FAST).await;
    let users: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    seed(&a.admin(), &users).await;
    let r = Receiver::start().await;
    r.set_delay(Duration::from_millis(600));
    let (s, body) = put_hook(&a.admin(), "erp", hook(&r)).await;
    assert_eq!(s, 201, "{body}");

    until_known(&b.admin(), "u7").await;
    // Tabs on both nodes: events keep coming.
    let mut tabs = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let node = if i % 2 == 0 { &a } else { &b };
        tabs.push((
            i % 2,
            Tab::open(node.addr, &token("acme", u), Uuid::new_v4(), 0).await,
        ));
    }
    r.until_started(1, DELIVERED).await;
    // A batch is in flight (answered after 600 ms): kill its sender.
    let holder = lease_holder(&redis).await;
    let (victim, survivor, kept) = if holder.starts_with("A/") {
        (&mut a, &b, 1)
    } else {
        assert!(holder.starts_with("B/"), "{holder}");
        (&mut b, &a, 0)
    };
    let killed_at = Instant::now();
    victim.kill_hard();
    // More transitions, on the surviving node.
    for (node, t) in tabs.iter_mut().take(4) {
        if *node == kept {
            t.send(&ClientMessage::Logout).await;
        }
    }
    let sa = survivor.admin();
    // The dead node's users go offline (node_lost) once it is found dead;
    // that is delivered too.
    until_feed(&sa, |e| e["reason"] == "node_lost").await;
    let (_, acked) = until_everything_delivered(&r, &sa).await;
    assert!(acked.iter().any(|e| e["reason"] == "node_lost"));
    assert_in_v_order_per_user(&acked);
    // Duplicates: only events of requests in flight when the node died.
    let in_flight: BTreeSet<String> = r
        .deliveries()
        .iter()
        .filter(|d| d.started <= killed_at && (d.at >= killed_at || d.answered == 0))
        .flat_map(|d| ids(&d.events))
        .collect();
    assert!(
        !in_flight.is_empty(),
        "the kill came while a batch was in flight"
    );
    // The survivor took over within the lease (1.5 s), plus its scan
    // (0.5 s) and a second for a loaded machine to start delivering.
    let first_after = r
        .deliveries()
        .iter()
        .map(|d| d.started)
        .filter(|s| *s > killed_at)
        .min()
        .expect("the survivor delivered");
    assert!(
        first_after - killed_at < Duration::from_millis(3_000),
        "took over after {:?}",
        first_after - killed_at
    );
    let dups = duplicates(&acked);
    assert!(
        dups.is_subset(&in_flight),
        "duplicates {dups:?} beyond the batch in flight {in_flight:?}"
    );
    assert_signed_by_python(&r.deliveries(), HOOK_SECRET);
    drop(tabs);
}

/// Redis restarted (SIGTERM, AOF on): delivery waits while it is away and
/// goes on after it from the acknowledged cursor, so every event of the
/// feed arrives, in order, none twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_aof_loses_no_event_and_repeats_none() {
    let mut redis = RedisServer::start_with(&[
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
    ])
    .await;
    let hub = HubProcess::cluster_node_with(&redis.url(), "A", 60_000, FAST).await;
    let users: Vec<String> = (0..4).map(|i| format!("u{i}")).collect();
    let a = hub.admin();
    seed(&a, &users).await;
    let r = Receiver::start().await;
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 201);
    let mut tabs = Vec::new();
    for u in &users[..2] {
        tabs.push(Tab::open(hub.addr, &token("acme", u), Uuid::new_v4(), 0).await);
    }
    r.until_acked(DELIVERED, |e| e.len() >= 2).await;

    // A clean restart: Redis writes its AOF out on SIGTERM.
    let port = port_of(&redis);
    send_signal(redis.pid().unwrap() as libc::pid_t, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while crate::redis_support::ping(port).await {
        assert!(Instant::now() < deadline, "Redis did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While it is away, two more users come online on the node.
    for u in &users[2..] {
        tabs.push(Tab::open(hub.addr, &token("acme", u), Uuid::new_v4(), 0).await);
    }
    redis.restart().await;
    tabs[0].send(&ClientMessage::Logout).await;
    until_feed(&a, |e| e["user"] == "u3").await;
    until_feed(&a, |e| e["user"] == "u0" && e["reason"] == "logout").await;
    let (all, acked) = until_everything_delivered(&r, &a).await;
    assert!(all.iter().any(|e| e["user"] == "u3"), "{all:?}");
    assert_in_v_order_per_user(&acked);
    assert_eq!(duplicates(&acked), BTreeSet::new(), "nothing was in flight");
    drop(tabs);
}

/// A graceful stop (SIGTERM) gives the lease back: with a 10 s lease, the
/// other node delivers the next event long before the lease could lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_hands_its_deliveries_over_at_once() {
    let redis = RedisServer::start().await;
    let mut env = FAST.to_vec();
    env.retain(|(k, _)| *k != "PRESENCE_WEBHOOK_LEASE_MS");
    env.push(("PRESENCE_WEBHOOK_LEASE_MS", "10000"));
    let mut a = HubProcess::cluster_node_with(&redis.url(), "A", 60_000, &env).await;
    let mut b = HubProcess::cluster_node_with(&redis.url(), "B", 60_000, &env).await;
    let users: Vec<String> = (0..2).map(|i| format!("u{i}")).collect();
    seed(&a.admin(), &users).await;
    until_known(&b.admin(), "u1").await;
    let r = Receiver::start().await;
    assert_eq!(put_hook(&a.admin(), "erp", hook(&r)).await.0, 201);
    let holder = lease_holder(&redis).await;
    let (leaving, staying) = if holder.starts_with("A/") {
        (&mut a, &b)
    } else {
        (&mut b, &a)
    };
    leaving.signal(libc::SIGTERM);
    leaving.exited_within(Duration::from_secs(10)).await;
    let stopped = Instant::now();
    let mut tab = Tab::open(staying.addr, &token("acme", "u0"), Uuid::new_v4(), 0).await;
    r.until_acked(DELIVERED, |e| e.iter().any(|e| e["user"] == "u0"))
        .await;
    let took = r.deliveries()[0].started - stopped;
    assert!(
        took < Duration::from_secs(5),
        "delivered {took:?} after the stop: the lease (10 s) was not given back"
    );
    tab.send(&ClientMessage::Logout).await;
}
