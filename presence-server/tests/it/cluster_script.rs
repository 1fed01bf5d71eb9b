//! `cluster/presence.lua` on a real redis-server, fed a golden batch of
//! operations: the events it publishes and the state it stores are compared
//! with golden JSON and parsed into the hub's own types, so renaming a field
//! on either side (the Rust operations and events, or the script) fails
//! here. The JSON of each operation is pinned in `cluster::ops`'s unit tests.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use futures_util::StreamExt;
use presence_protocol::Reason;
use presence_server::cluster_wire::{self as ops, PresenceEvent, PresenceOp, StoredState};
use presence_server::cluster_wire::{tenant_channel, PresenceKeys};
use presence_server::RedisConn;
use serde_json::{json, Value};

use crate::redis_support::{query, RedisServer};
use crate::support::WAIT;

fn claim(u: &str, n: &str, until: u64, now: u64) -> PresenceOp {
    PresenceOp::Claim {
        u: u.into(),
        n: n.into(),
        until,
        seen: now,
        now,
    }
}

/// ann is claimed by two nodes and released by one (one online, no
/// flapping; a release that leaves a claimant records no `seen`); bob, never online, is forced offline with a close code; cyd's
/// `v` is floored; dan is claimed by a node that then dies, eve by one
/// whose heartbeat is late; one sweep ends ann's remaining lease at its
/// score (idle), eve's at its score (node_lost: her node is silent) and
/// dan's at the dead node's cutoff (node_lost).
fn golden_batch() -> Vec<PresenceOp> {
    vec![
        claim("ann", "n1", 10_000, 1_000),
        claim("ann", "n2", 12_000, 1_500),
        PresenceOp::Release {
            u: "ann".into(),
            n: "n1".into(),
            at: 2_000,
            seen: 1_800,
        },
        PresenceOp::Force {
            u: "bob".into(),
            at: 2_500,
            close: 4004,
            why: Reason::Logout,
        },
        PresenceOp::Floor {
            u: "cyd".into(),
            v: 3,
        },
        claim("dan", "n3", 50_000, 3_000),
        claim("eve", "n4", 15_000, 4_000),
        PresenceOp::Sweep {
            now: 20_000,
            dead: HashMap::from([("n3".to_owned(), 19_000)]),
            silent: BTreeSet::from(["n4".to_owned()]),
        },
    ]
}

/// What the script publishes for the golden batch, in order: each
/// transition with its feed cursor and reason; bob's force, no transition,
/// with neither but with when it was asked.
fn golden_events() -> Vec<Value> {
    let ev = |u: &str, s: u8, since: u64, v: u64, seen: u64, cursor: u64, reason: &str| {
        json!({"t": "acme", "u": u, "s": s, "since": since, "v": v, "seen": seen,
               "force": false, "close": 0, "cursor": cursor, "reason": reason, "at": 0})
    };
    vec![
        ev("ann", 1, 1_000, 1, 1_000, 1, "activity"),
        json!({"t": "acme", "u": "bob", "s": 0, "since": 0, "v": 0, "seen": 0,
               "force": true, "close": 4004, "cursor": 0, "at": 2_500}),
        ev("cyd", 0, 0, 4, 0, 2, "reconciled"),
        ev("dan", 1, 3_000, 1, 3_000, 3, "activity"),
        ev("eve", 1, 4_000, 1, 4_000, 4, "activity"),
        ev("ann", 0, 12_000, 2, 1_500, 5, "idle"),
        ev("eve", 0, 15_000, 2, 4_000, 6, "node_lost"),
        ev("dan", 0, 19_000, 2, 3_000, 7, "node_lost"),
    ]
}

/// The feed the script appends for the golden batch: every transition,
/// as `GET .../events` shows it.
fn golden_feed() -> Vec<Value> {
    golden_events()
        .into_iter()
        .filter(|e| e["cursor"] != 0)
        .map(|e| {
            let status = if e["s"] == 1 { "online" } else { "offline" };
            json!({"id": format!("acme:{}:{}", e["u"].as_str().unwrap(), e["v"]),
                   "cursor": e["cursor"], "tenant": "acme", "user": e["u"],
                   "status": status, "at": e["since"], "v": e["v"], "reason": e["reason"]})
        })
        .collect()
}

#[tokio::test]
async fn presence_lua_publishes_and_stores_what_the_hub_reads() {
    let redis = RedisServer::start().await;
    let client = redis::Client::open(redis.url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub.subscribe(tenant_channel("acme")).await.unwrap();
    let mut conn = RedisConn::connect(&redis.url()).await.unwrap();

    let published = ops::run_script(
        &ops::script(),
        &mut conn,
        "acme",
        &ops::to_json(&golden_batch()),
    )
    .await
    .unwrap();
    let want = golden_events();
    assert_eq!(published, want.len() as i64);

    let mut stream = pubsub.into_on_message();
    for (i, want) in want.iter().enumerate() {
        let msg = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("event published")
            .expect("subscription open");
        assert_eq!(msg.get_channel_name(), tenant_channel("acme"));
        let payload: String = msg.get_payload().unwrap();
        let got: Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(&got, want, "event {i}");
        // What the event follower does with it.
        let ev: PresenceEvent = serde_json::from_str(&payload).unwrap();
        assert_eq!(event_fields(&ev), *want);
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(100), stream.next())
            .await
            .is_err(),
        "no event beyond the golden ones"
    );

    // The state a resync reads: users whose state was written (bob was
    // never online, so a force leaves him unstored), as the hub parses it.
    let keys = PresenceKeys::new("acme");
    let state: BTreeMap<String, String> =
        query(redis.port, redis::cmd("HGETALL").arg(&keys.state).clone())
            .await
            .unwrap();
    let parsed: BTreeMap<&str, PresenceEvent> = state
        .iter()
        .map(|(u, raw)| {
            let raw_json: Value = serde_json::from_str(raw).unwrap();
            assert_eq!(
                raw_json.as_object().unwrap().len(),
                4,
                "{u}: s, since, v, seen"
            );
            let st: StoredState = serde_json::from_str(raw).unwrap();
            (u.as_str(), st.into_event("acme", u.clone()))
        })
        .collect();
    let stored = |u: &str, s: u8, since: u64, v: u64, seen: u64| PresenceEvent {
        t: "acme".into(),
        u: u.into(),
        s,
        since,
        v,
        seen,
        force: false,
        close: 0,
        cursor: 0,
        reason: None,
        at: 0,
    };
    assert_eq!(
        parsed,
        BTreeMap::from([
            ("ann", stored("ann", 0, 12_000, 2, 1_500)),
            ("cyd", stored("cyd", 0, 0, 4, 0)),
            ("dan", stored("dan", 0, 19_000, 2, 3_000)),
            ("eve", stored("eve", 0, 15_000, 2, 4_000)),
        ])
    );
    // Every claim ended: no lease, no claimant left; one count per event.
    let leases: i64 = query(redis.port, redis::cmd("ZCARD").arg(&keys.leases).clone())
        .await
        .unwrap();
    let claims: i64 = query(redis.port, redis::cmd("HLEN").arg(&keys.claims).clone())
        .await
        .unwrap();
    let seq: i64 = query(redis.port, redis::cmd("GET").arg(&keys.seq).clone())
        .await
        .unwrap();
    assert_eq!((leases, claims, seq), (0, 0, 7), "seq is the last cursor");

    // The feed: entry ids 0-<cursor>, each event as the API serves it.
    let entries: Vec<(String, Vec<(String, String)>)> = query(
        redis.port,
        redis::cmd("XRANGE")
            .arg(&keys.events)
            .arg("-")
            .arg("+")
            .clone(),
    )
    .await
    .unwrap();
    let feed = golden_feed();
    assert_eq!(entries.len(), feed.len());
    for ((id, fields), want) in entries.iter().zip(&feed) {
        assert_eq!(id, &format!("0-{}", want["cursor"]));
        assert_eq!(fields.len(), 1, "one field, e");
        assert_eq!(fields[0].0, "e");
        let got: Value = serde_json::from_str(&fields[0].1).unwrap();
        assert_eq!(&got, want);
        let typed: presence_protocol::Event = serde_json::from_str(&fields[0].1).unwrap();
        assert_eq!(serde_json::to_value(&typed).unwrap(), *want);
    }
}

/// The event's fields under the names the script uses (`PresenceEvent`
/// only deserialises), to compare with the golden JSON.
fn event_fields(ev: &PresenceEvent) -> Value {
    let mut v = json!({"t": ev.t, "u": ev.u, "s": ev.s, "since": ev.since, "v": ev.v,
           "seen": ev.seen, "force": ev.force, "close": ev.close, "cursor": ev.cursor,
           "at": ev.at});
    if let Some(r) = ev.reason {
        v["reason"] = json!(r);
    }
    v
}
