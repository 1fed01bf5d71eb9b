//! One conformance suite for every `Store`: the embedded redb store, a single
//! Redis and a Redis Cluster must agree on what a batch of writes means.
//!
//! Each check uses tenant ids of its own and looks only at them in `load`,
//! so all checks can run against one shared store (the cluster runs them in
//! turn on one cluster; the other backends get a fresh store per check).

use std::collections::HashSet;

use presence_protocol::{MembershipRole, Profile, UserState};
use presence_server::EmbeddedStore;
use presence_server::RedisConn;
use presence_server::RedisStore;
use presence_server::Store;
use presence_server::{PresenceRecord, TeamRecord, TenantRecord, UserRecord, Write};

use crate::redis_support::{RedisCluster, RedisServer};

pub fn tenant(id: &str) -> Write {
    Write::Tenant(TenantRecord {
        id: id.into(),
        user_limit: 10,
        event_retention_s: None,
        time_zone: None,
        history_retention_days: None,
    })
}

pub fn user_rec(id: &str, name: &str) -> UserRecord {
    UserRecord {
        id: id.into(),
        name: name.into(),
        nickname: String::new(),
        email: format!("{id}@example.com"),
        // Leading zeros must survive: ids and phones are text.
        phone: "0055".into(),
        profile: Profile::Standard,
        available: true,
        away_message: String::new(),
        state: UserState::Active,
    }
}

pub fn user(t: &str, id: &str) -> Write {
    Write::User {
        tenant: t.into(),
        user: user_rec(id, id),
    }
}

pub fn team(t: &str, id: &str) -> Write {
    Write::Team {
        tenant: t.into(),
        team: TeamRecord {
            id: id.into(),
            name: id.into(),
            crm: true,
            active: true,
        },
    }
}

pub fn member(t: &str, team: &str, user: &str, role: MembershipRole) -> Write {
    Write::Member {
        tenant: t.into(),
        team: team.into(),
        user: user.into(),
        role,
    }
}

pub fn presence(t: &str, user: &str, v: u64) -> Write {
    Write::Presence {
        tenant: t.into(),
        user: user.into(),
        presence: PresenceRecord {
            // Epoch milliseconds: beyond what a float keeps exactly in some
            // JSON encoders.
            last_seen: 1_767_225_600_123 + v,
            since: 1_767_225_000_001,
            v,
            status: Some(presence_protocol::Status::Online),
        },
    }
}

/// What `load` returns for these tenants, in the order returned.
async fn load_of(store: &dyn Store, tenants: &[&str]) -> Vec<Write> {
    store
        .load()
        .await
        .expect("load")
        .into_iter()
        .filter(|w| tenants.contains(&w.tenant()))
        .collect()
}

fn as_set(ws: &[Write]) -> HashSet<String> {
    ws.iter().map(|w| format!("{w:?}")).collect()
}

fn rank(w: &Write) -> u8 {
    match w {
        Write::Tenant(_) => 0,
        Write::Team { .. } | Write::DeleteTeam { .. } => 1,
        Write::User { .. } => 2,
        Write::Member { .. } | Write::DeleteMember { .. } => 3,
        Write::Presence { .. } => 4,
        Write::Webhook { .. } | Write::DeleteWebhook { .. } => 5,
    }
}

/// `load` lists each tenant's record before anything of that tenant, then
/// teams, users, memberships, presence: the order that rebuilds it.
fn assert_replay_order(ws: &[Write]) {
    let mut last_rank: std::collections::HashMap<&str, u8> = Default::default();
    for w in ws {
        match last_rank.get(w.tenant()) {
            None => assert!(
                matches!(w, Write::Tenant(_)),
                "first record of {} is not its tenant: {w:?}",
                w.tenant()
            ),
            Some(r) => assert!(*r <= rank(w), "{w:?} comes after a later kind"),
        }
        last_rank.insert(w.tenant(), rank(w));
    }
}

pub async fn replay_order_puts_tenant_first(store: &dyn Store) {
    let t = "c-order";
    // Committed in the reverse of replay order, in one batch.
    let batch = vec![
        presence(t, "u1", 3),
        member(t, "t1", "u1", MembershipRole::Both),
        user(t, "u2"),
        user(t, "u1"),
        team(t, "t1"),
        tenant(t),
    ];
    store.commit(batch.clone()).await.expect("commit");
    let got = load_of(store, &[t]).await;
    assert_replay_order(&got);
    assert_eq!(got.len(), batch.len(), "{got:?}");
    assert_eq!(as_set(&got), as_set(&batch));
}

pub async fn later_writes_replace_earlier_ones(store: &dyn Store) {
    let t = "c-overwrite";
    store
        .commit(vec![tenant(t), user(t, "u1"), presence(t, "u1", 1)])
        .await
        .expect("commit");
    let renamed = Write::User {
        tenant: t.into(),
        user: UserRecord {
            state: UserState::Inactive,
            ..user_rec("u1", "Ann Renamed")
        },
    };
    // Two writes of one record in one batch: the later one wins.
    store
        .commit(vec![
            presence(t, "u1", 2),
            renamed.clone(),
            presence(t, "u1", 5),
            Write::Tenant(TenantRecord {
                id: t.into(),
                user_limit: 99,
                event_retention_s: None,
                time_zone: None,
                history_retention_days: None,
            }),
        ])
        .await
        .expect("commit");
    let got = load_of(store, &[t]).await;
    assert_eq!(
        got,
        vec![
            Write::Tenant(TenantRecord {
                id: t.into(),
                user_limit: 99,
                event_retention_s: None,
                time_zone: None,
                history_retention_days: None,
            }),
            renamed,
            presence(t, "u1", 5),
        ]
    );
}

pub async fn delete_member_removes_only_that_membership(store: &dyn Store) {
    let t = "c-unmember";
    store
        .commit(vec![
            tenant(t),
            team(t, "t1"),
            user(t, "u1"),
            user(t, "u2"),
            member(t, "t1", "u1", MembershipRole::Member),
            member(t, "t1", "u2", MembershipRole::Supervisor),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![
            Write::DeleteMember {
                tenant: t.into(),
                team: "t1".into(),
                user: "u1".into(),
            },
            // Deleting what does not exist is not an error and changes nothing.
            Write::DeleteMember {
                tenant: t.into(),
                team: "nope".into(),
                user: "u2".into(),
            },
            Write::DeleteTeam {
                tenant: t.into(),
                team: "nope".into(),
            },
        ])
        .await
        .expect("commit");
    let got = load_of(store, &[t]).await;
    assert_eq!(
        got,
        vec![
            tenant(t),
            team(t, "t1"),
            user(t, "u1"),
            user(t, "u2"),
            member(t, "t1", "u2", MembershipRole::Supervisor),
        ]
    );
}

pub async fn delete_team_removes_its_memberships(store: &dyn Store) {
    let t = "c-unteam";
    store
        .commit(vec![
            tenant(t),
            team(t, "t1"),
            // Shares the prefix "t1" but is another team.
            team(t, "t10"),
            user(t, "u1"),
            user(t, "u2"),
            member(t, "t1", "u1", MembershipRole::Both),
            member(t, "t1", "u2", MembershipRole::Member),
            member(t, "t10", "u1", MembershipRole::Supervisor),
        ])
        .await
        .expect("commit");
    store
        .commit(vec![Write::DeleteTeam {
            tenant: t.into(),
            team: "t1".into(),
        }])
        .await
        .expect("commit");
    let got = load_of(store, &[t]).await;
    assert_eq!(
        got,
        vec![
            tenant(t),
            team(t, "t10"),
            user(t, "u1"),
            user(t, "u2"),
            member(t, "t10", "u1", MembershipRole::Supervisor),
        ]
    );
}

pub async fn writes_apply_in_batch_order(store: &dyn Store) {
    let t = "c-batch-order";
    store
        .commit(vec![
            tenant(t),
            team(t, "t1"),
            user(t, "u1"),
            member(t, "t1", "u1", MembershipRole::Member),
        ])
        .await
        .expect("commit");
    // Delete and re-create in one batch: the memberships added after the
    // delete stay, those from before are gone.
    store
        .commit(vec![
            Write::DeleteTeam {
                tenant: t.into(),
                team: "t1".into(),
            },
            team(t, "t1"),
            user(t, "u2"),
            member(t, "t1", "u2", MembershipRole::Both),
        ])
        .await
        .expect("commit");
    let got = load_of(store, &[t]).await;
    assert_eq!(
        got,
        vec![
            tenant(t),
            team(t, "t1"),
            user(t, "u1"),
            user(t, "u2"),
            member(t, "t1", "u2", MembershipRole::Both),
        ]
    );
}

pub async fn batch_spanning_tenants_commits_each(store: &dyn Store) {
    let (a, b) = ("c-span-a", "c-span-b");
    store
        .commit(vec![tenant(a), user(a, "u1"), tenant(b), user(b, "u1")])
        .await
        .expect("commit");
    // A presence flush: one batch, records of several tenants interleaved.
    store
        .commit(vec![
            presence(a, "u1", 7),
            presence(b, "u1", 8),
            presence(a, "u1", 9),
        ])
        .await
        .expect("commit");
    let got = load_of(store, &[a, b]).await;
    assert_replay_order(&got);
    assert_eq!(
        as_set(&got),
        as_set(&[
            tenant(a),
            user(a, "u1"),
            presence(a, "u1", 9),
            tenant(b),
            user(b, "u1"),
            presence(b, "u1", 8),
        ])
    );
}

pub async fn tenant_ids_with_braces_stay_apart(store: &dyn Store) {
    // Ids the ERP may send (no control characters, no `/`) that could break
    // a Redis hash tag or collide once escaped.
    let ids = ["c-}x", "c-{x}", "c-%7Bx%7D", "c-x"];
    let mut batch = Vec::new();
    for id in ids {
        batch.push(tenant(id));
        batch.push(user(id, &format!("only-in-{id}")));
    }
    store.commit(batch.clone()).await.expect("commit");
    let got = load_of(store, &ids).await;
    assert_replay_order(&got);
    assert_eq!(as_set(&got), as_set(&batch));
}

pub async fn concurrent_loads_see_whole_batches(store: &dyn Store) {
    let t = "c-atomic";
    store.commit(vec![tenant(t)]).await.expect("commit");
    const BATCHES: usize = 20;
    const PER_BATCH: usize = 25;
    let writer = async {
        for b in 0..BATCHES {
            let batch = (0..PER_BATCH)
                .map(|i| user(t, &format!("b{b:02}-u{i:02}")))
                .collect();
            store.commit(batch).await.expect("commit");
        }
    };
    let reader = async {
        let mut seen = Vec::new();
        for _ in 0..BATCHES {
            let users = load_of(store, &[t])
                .await
                .iter()
                .filter(|w| matches!(w, Write::User { .. }))
                .count();
            seen.push(users);
            tokio::task::yield_now().await;
        }
        seen
    };
    let ((), seen) = tokio::join!(writer, reader);
    for n in seen {
        assert_eq!(n % PER_BATCH, 0, "a load saw part of a batch: {n} users");
    }
    let users = load_of(store, &[t]).await.len() - 1;
    assert_eq!(users, BATCHES * PER_BATCH);
}

/// The transition feed: reads after a cursor in pages, a trim removes the
/// old prefix (once: it is idempotent), and a read of trimmed events is
/// `Gone` with the oldest cursor that may still be held, also when nothing
/// is held any more.
pub async fn the_feed_pages_and_trims_a_prefix(store: &dyn Store) {
    use presence_protocol::{Event, Reason, Status};
    use presence_server::EventRead::{Events, Gone};
    let t = "feed{1}";
    let event = |cursor: u64, at: u64| Event {
        id: Event::id_of(t, "ann", cursor),
        cursor,
        tenant: t.into(),
        user: "ann".into(),
        status: if cursor % 2 == 1 {
            Status::Online
        } else {
            Status::Offline
        },
        at,
        v: cursor,
        reason: if cursor % 2 == 1 {
            Reason::Activity
        } else {
            Reason::Idle
        },
    };
    let all = vec![event(1, 100), event(2, 200), event(3, 300)];
    store
        .append_events(all.clone(), vec![tenant(t), presence(t, "ann", 3)])
        .await
        .unwrap();
    let read = |after, limit| store.read_events(t, after, limit);
    assert_eq!(read(0, 2).await.unwrap(), Events(all[..2].to_vec()));
    assert_eq!(read(2, 2).await.unwrap(), Events(all[2..].to_vec()));
    assert_eq!(read(3, 2).await.unwrap(), Events(vec![]));
    assert!(
        load_of(store, &[t]).await.contains(&presence(t, "ann", 3)),
        "with the presence"
    );
    assert_eq!(store.trim_events(t, 250).await.unwrap(), 2);
    assert_eq!(store.trim_events(t, 250).await.unwrap(), 0);
    assert_eq!(read(0, 10).await.unwrap(), Gone { oldest: 3 });
    assert_eq!(read(1, 10).await.unwrap(), Gone { oldest: 3 });
    assert_eq!(read(2, 10).await.unwrap(), Events(all[2..].to_vec()));
    assert_eq!(store.trim_events(t, 1_000).await.unwrap(), 1);
    assert_eq!(read(2, 10).await.unwrap(), Gone { oldest: 4 });
    assert_eq!(read(3, 10).await.unwrap(), Events(vec![]));
    assert_eq!(
        store.read_events("feed-none", 0, 10).await.unwrap(),
        Events(vec![]),
        "a tenant without events"
    );
}

/// Webhooks: the record is a directory write like the others (deleted by
/// its delete), the delivery progress never moves back within a
/// generation, and one holder at a time has a tenant's lease.
pub async fn webhooks_keep_records_progress_and_one_lease(store: &dyn Store) {
    use presence_protocol::{DeliveryState, DeliveryStatus};
    use presence_server::{WebhookProgress, WebhookRecord};
    use std::time::Duration;
    let t = "hooks{1}";
    let rec = |id: &str| WebhookRecord {
        id: id.into(),
        url: "https://erp.example.com/hook".into(),
        secret: "0123456789abcdef".into(),
        statuses: Some(vec![presence_protocol::Status::Offline]),
        reasons: None,
        start_after: 7,
        generation: "g1".into(),
        cleared_at: 1,
    };
    let hook = |id: &str| Write::Webhook {
        tenant: t.into(),
        webhook: rec(id),
    };
    store
        .commit(vec![tenant(t), hook("a"), hook("b")])
        .await
        .unwrap();
    store
        .commit(vec![Write::DeleteWebhook {
            tenant: t.into(),
            id: "b".into(),
        }])
        .await
        .unwrap();
    assert_eq!(load_of(store, &[t]).await, vec![tenant(t), hook("a")]);

    let progress = |generation: &str, cursor: u64| WebhookProgress {
        generation: generation.into(),
        state: DeliveryState {
            status: DeliveryStatus::Ok,
            delivered_cursor: cursor,
            pending: 0,
            oldest_pending_age_ms: 0,
            last_success_at: Some(1_767_225_600_123),
            last_error: None,
            attempts: 0,
        },
        saved_at: 1_767_225_600_124,
        cleared_at: 1,
    };
    assert_eq!(store.webhook_progress(t, "a").await.unwrap(), None);
    assert!(store
        .save_webhook_progress(t, "a", &progress("g1", 10))
        .await
        .unwrap());
    assert!(
        !store
            .save_webhook_progress(t, "a", &progress("g1", 9))
            .await
            .unwrap(),
        "a late deliverer cannot move the cursor back"
    );
    assert!(store
        .save_webhook_progress(t, "a", &progress("g1", 10))
        .await
        .unwrap());
    assert!(
        store
            .save_webhook_progress(t, "a", &progress("g2", 3))
            .await
            .unwrap(),
        "a new generation starts over"
    );
    assert_eq!(
        store.webhook_progress(t, "a").await.unwrap(),
        Some(progress("g2", 3))
    );
    store.delete_webhook_progress(t, "a").await.unwrap();
    assert_eq!(store.webhook_progress(t, "a").await.unwrap(), None);

    let ttl = Duration::from_secs(30);
    assert!(store.lease_webhooks(t, "n1", ttl).await.unwrap());
    assert!(store.lease_webhooks(t, "n1", ttl).await.unwrap(), "renewed");
    store.release_webhooks(t, "n2").await.unwrap();
    assert!(
        store.lease_webhooks(t, "n1", ttl).await.unwrap(),
        "only the holder releases"
    );
    store.release_webhooks(t, "n1").await.unwrap();
    assert!(
        store.lease_webhooks(t, "n2", ttl).await.unwrap(),
        "free once released"
    );
}

/// Every check, in turn, on one store.
/// The history a keeper folds (SPEC §11): a fold is stored once, only
/// from the state it was made from; pieces come back byte for byte, by day
/// and by user; an erasure removes a user's buckets and open interval and
/// moves the generation; a trim removes whole days before a day.
pub async fn history_folds_once_erases_and_trims(store: &dyn Store) {
    use presence_protocol::Reason;
    use presence_server::{ClosedInterval, HistoryBatch, HistoryState};
    let t = "hist{1}";
    const DAY: u64 = 86_400_000;
    let d0 = 20_000u64;
    let state = store.history_state(t).await.unwrap();
    assert_eq!(state, HistoryState::default(), "nothing yet");
    // ann: one period on day d0 and one across midnight into d0 + 1; bob
    // opens one.
    let batch = HistoryBatch {
        cursor: 7,
        set_open: vec![("bob".into(), (d0 + 1) * DAY + 50)],
        clear_open: vec![],
        closed: vec![
            ClosedInterval {
                user: "ann".into(),
                from: d0 * DAY + 1_000,
                to: d0 * DAY + 61_000,
                reason: Reason::Idle,
            },
            ClosedInterval {
                user: "ann".into(),
                from: (d0 + 1) * DAY - 5_000,
                to: (d0 + 1) * DAY + 5_000,
                reason: Reason::NodeLost,
            },
        ],
    };
    assert!(store.apply_history(t, (0, 0), &batch).await.unwrap());
    assert!(
        !store.apply_history(t, (0, 0), &batch).await.unwrap(),
        "a fold from a stale state is refused"
    );
    let state = store.history_state(t).await.unwrap();
    assert_eq!((state.cursor, state.generation), (7, 0));
    assert_eq!(state.open.get("bob"), Some(&((d0 + 1) * DAY + 50)));
    let read = store
        .read_history(t, d0 as u32, d0 as u32 + 1, None)
        .await
        .unwrap();
    let mut days: Vec<(String, u32, usize)> = read
        .buckets
        .iter()
        .map(|(u, d, b)| (u.clone(), *d, b.len()))
        .collect();
    days.sort();
    assert_eq!(days.len(), 2, "ann on two days: {days:?}");
    assert!(days
        .iter()
        .all(|(u, _, len)| u == "ann" && *len > 0 && *len <= 18));
    let d0_bytes = read
        .buckets
        .iter()
        .find(|b| b.1 == d0 as u32)
        .unwrap()
        .2
        .clone();
    // Appending to a day keeps what was there (binary safe).
    let more = HistoryBatch {
        cursor: 9,
        set_open: vec![],
        clear_open: vec!["bob".into()],
        closed: vec![ClosedInterval {
            user: "ann".into(),
            from: d0 * DAY + 70_000,
            to: d0 * DAY + 80_000,
            reason: Reason::Logout,
        }],
    };
    assert!(store.apply_history(t, (7, 0), &more).await.unwrap());
    let one = store
        .read_history(t, d0 as u32, d0 as u32, Some(&["ann".to_owned()]))
        .await
        .unwrap();
    assert_eq!(one.buckets.len(), 1);
    assert!(one.buckets[0].2.starts_with(&d0_bytes) && one.buckets[0].2.len() > d0_bytes.len());
    assert!(one.state.open.is_empty(), "bob's open interval was closed");
    assert!(store
        .read_history(t, d0 as u32, d0 as u32, Some(&["bob".to_owned()]))
        .await
        .unwrap()
        .buckets
        .is_empty());
    // An erasure: ann's buckets go, the generation moves, a fold made
    // before it is refused.
    store.erase_history(t, "ann", 12_345).await.unwrap();
    let state = store.history_state(t).await.unwrap();
    assert_eq!((state.cursor, state.generation), (9, 1));
    assert_eq!(state.erased.get("ann"), Some(&12_345));
    assert!(store
        .read_history(t, 0, d0 as u32 + 5, None)
        .await
        .unwrap()
        .buckets
        .is_empty());
    assert!(!store.apply_history(t, (9, 0), &more).await.unwrap());
    // A trim removes the days before the one named, once.
    let late = HistoryBatch {
        cursor: 11,
        set_open: vec![],
        clear_open: vec![],
        closed: (0..3)
            .map(|i| ClosedInterval {
                user: "cid".into(),
                from: (d0 + i) * DAY + 10,
                to: (d0 + i) * DAY + 20,
                reason: Reason::Idle,
            })
            .collect(),
    };
    assert!(store.apply_history(t, (9, 1), &late).await.unwrap());
    // Some users' buckets only, of many days at once.
    let some = store
        .read_history(
            t,
            0,
            d0 as u32 + 5,
            Some(&["ann".to_owned(), "cid".to_owned()]),
        )
        .await
        .unwrap();
    assert_eq!(
        some.buckets
            .iter()
            .map(|b| (b.0.as_str(), b.1))
            .collect::<Vec<_>>(),
        (0..3).map(|i| ("cid", d0 as u32 + i)).collect::<Vec<_>>()
    );
    assert_eq!(store.trim_history(t, d0 as u32 + 2).await.unwrap(), 2);
    assert_eq!(store.trim_history(t, d0 as u32 + 2).await.unwrap(), 0);
    let left = store.read_history(t, 0, d0 as u32 + 5, None).await.unwrap();
    assert_eq!(
        left.buckets.iter().map(|b| b.1).collect::<Vec<_>>(),
        [d0 as u32 + 2]
    );
}

pub async fn run_all(store: &dyn Store) {
    replay_order_puts_tenant_first(store).await;
    later_writes_replace_earlier_ones(store).await;
    delete_member_removes_only_that_membership(store).await;
    delete_team_removes_its_memberships(store).await;
    writes_apply_in_batch_order(store).await;
    batch_spanning_tenants_commits_each(store).await;
    tenant_ids_with_braces_stay_apart(store).await;
    concurrent_loads_see_whole_batches(store).await;
    the_feed_pages_and_trims_a_prefix(store).await;
    webhooks_keep_records_progress_and_one_lease(store).await;
    history_folds_once_erases_and_trims(store).await;
}

/// A store and what must outlive it (its directory or its server).
pub struct Backend {
    pub store: Box<dyn Store>,
    /// Dropped after the store (fields drop in order).
    _keep: Box<dyn std::any::Any>,
}

pub async fn embedded() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    Backend {
        store: Box::new(EmbeddedStore::open(dir.path()).unwrap()),
        _keep: Box::new(dir),
    }
}

pub async fn single_redis() -> Backend {
    let server = RedisServer::start().await;
    let conn = RedisConn::connect(&server.url()).await.unwrap();
    assert!(!conn.is_cluster(), "a standalone server is not a cluster");
    Backend {
        store: Box::new(RedisStore::new(conn, "node-a")),
        _keep: Box::new(server),
    }
}

/// Declares one test per check for a backend made by `$make`, each on a
/// fresh store.
macro_rules! conformance {
    ($backend:ident, $make:ident) => {
        conformance!(@ $backend, $make, [
            replay_order_puts_tenant_first,
            later_writes_replace_earlier_ones,
            delete_member_removes_only_that_membership,
            delete_team_removes_its_memberships,
            writes_apply_in_batch_order,
            batch_spanning_tenants_commits_each,
            tenant_ids_with_braces_stay_apart,
            concurrent_loads_see_whole_batches,
            the_feed_pages_and_trims_a_prefix,
            webhooks_keep_records_progress_and_one_lease,
            history_folds_once_erases_and_trims
        ]);
    };
    (@ $backend:ident, $make:ident, [$($check:ident),*]) => {
        mod $backend {
            $(
                #[tokio::test]
                async fn $check() {
                    let backend = super::$make().await;
                    super::$check(&*backend.store).await;
                }
            )*
        }
    };
}

conformance!(embedded_store, embedded);
conformance!(redis_store, single_redis);

/// A cluster takes seconds to form, so the whole suite runs on one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_store_passes_every_check() {
    let cluster = RedisCluster::start(3).await;
    let conn = RedisConn::connect(&cluster.url()).await.unwrap();
    assert!(conn.is_cluster(), "cluster_enabled:1 is detected");
    let store = RedisStore::new(conn, "node-a");
    run_all(&store).await;
}
