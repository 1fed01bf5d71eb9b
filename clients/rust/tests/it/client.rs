//! The client against a real hub: the welcome, watched rosters kept
//! current, typed refusals, reconnection after a restart or an expired
//! token, terminal closes, and token refresh.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use presence_client::{
    Client, ClientOptions, ConnState, Error, ErrorCode, Event, Roster, RosterWatch, Status,
};
use serde_json::json;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::support::*;

async fn seeded() -> (TestHub, TempDir) {
    seeded_with(config()).await
}

async fn seeded_with(config: presence_server::Config) -> (TestHub, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let h = TestHub::start(config, &dir).await;
    h.seed().await;
    (h, dir)
}

/// Options of a client that proves no interaction by connecting, so its
/// own user stays offline and out of the transitions a test looks at.
fn quiet() -> ClientOptions {
    ClientOptions {
        interacted_at_connect: false,
        ..ClientOptions::default()
    }
}

async fn watch(c: &Client, roster: Roster) -> RosterWatch {
    within("a snapshot", c.watch(roster.clone()))
        .await
        .unwrap_or_else(|e| panic!("watch {roster}: {e}"))
}

async fn until_status(
    w: &mut RosterWatch,
    user: &str,
    status: Status,
) -> presence_client::RosterView {
    within(
        &format!("{user} {status:?}"),
        w.wait_for(|v| v.status(user) == Some(status)),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn connect_returns_after_welcome_with_the_user_and_timing() {
    let (h, _dir) = seeded().await;
    let ann = h.client("ann").await;
    let w = ann.welcome();
    assert_eq!(
        (w.user.id.as_str(), w.user.tenant.as_str()),
        ("ann", TENANT)
    );
    assert!(w.user.attendant, "ann is in a CRM team");
    assert_eq!(w.tab, ann.tab());
    assert_eq!(w.idle_timeout, IDLE_TIMEOUT);
    assert!(w.server_time_ms > 0);
    assert_eq!(*ann.state().borrow(), ConnState::Connected);
}

#[tokio::test]
async fn an_admin_watching_the_directory_gets_every_user_and_the_counters() {
    let (h, _dir) = seeded().await;
    let boss = h.client_with("boss", quiet()).await;
    let dir = watch(&boss, Roster::Directory).await;
    let view = dir.current();
    let ids: Vec<&str> = view.entries().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["ann", "bob", "boss"]);
    let stats = view.stats().expect("the directory has counters");
    assert_eq!((stats.active, stats.inactive), (3, 0));
    assert_eq!(stats.online + stats.offline, 3);
    // Administrators see the internal fields too.
    assert_eq!(view.get("ann").unwrap().name.as_deref(), Some("ann name"));
    assert!(view.is_live());
}

#[tokio::test]
async fn another_users_activity_turns_them_online_then_offline_after_the_idle_timeout() {
    let (h, _dir) = seeded().await;
    let boss = h.client_with("boss", quiet()).await;
    let mut dir = watch(&boss, Roster::Directory).await;
    let bob = h.client_with("bob", quiet()).await;
    assert_eq!(dir.current().status("bob"), Some(Status::Offline));
    let v0 = dir.current().get("bob").unwrap().v;

    let sent = Instant::now();
    bob.activity(0).unwrap();
    let online = until_status(&mut dir, "bob", Status::Online).await;
    assert_eq!(online.get("bob").unwrap().v, v0 + 1);
    let online = within("counters", dir.wait_for(|v| v.stats().unwrap().online == 1))
        .await
        .unwrap();
    assert_eq!(online.stats().unwrap().offline, 2);

    let offline = until_status(&mut dir, "bob", Status::Offline).await;
    assert!(
        sent.elapsed() >= IDLE_TIMEOUT,
        "offline after {:?}, before the idle timeout",
        sent.elapsed()
    );
    assert_eq!(offline.get("bob").unwrap().v, v0 + 2);
    within("counters", dir.wait_for(|v| v.stats().unwrap().online == 0))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_forbidden_roster_is_a_typed_error_and_the_client_carries_on() {
    let (h, _dir) = seeded().await;
    let bob = h.client("bob").await;
    for roster in [Roster::Directory, Roster::Attendants] {
        match within("the refusal", bob.watch(roster.clone())).await {
            Err(Error::Refused {
                roster: r,
                code: ErrorCode::Forbidden,
                ..
            }) => assert_eq!(r, roster),
            other => panic!("expected forbidden for {roster}, got {other:?}"),
        }
    }
    bob.activity(0).unwrap();
    assert_eq!(*bob.state().borrow(), ConnState::Connected);

    let ann = h.client("ann").await;
    let team = watch(&ann, Roster::Team("sales".into())).await;
    assert_eq!(
        team.current()
            .entries()
            .map(|e| e.id.as_str())
            .collect::<Vec<_>>(),
        ["ann"]
    );
}

#[tokio::test]
async fn a_team_watch_ends_with_revoked_when_the_member_leaves_the_team() {
    let (h, _dir) = seeded().await;
    let ann = h.client("ann").await;
    let mut team = watch(&ann, Roster::Team("sales".into())).await;
    h.admin("DELETE", "/teams/sales/members/ann", json!(null))
        .await;
    match within("the end of the watch", team.wait_for(|_| false)).await {
        Err(Error::Refused {
            code: ErrorCode::Revoked,
            ..
        }) => {}
        other => panic!("expected revoked, got {other:?}"),
    }
    assert!(team.current().ended().is_some());
    assert_eq!(*ann.state().borrow(), ConnState::Connected);
}

#[tokio::test]
async fn watching_a_roster_twice_shares_one_subscription_until_both_handles_go() {
    let (h, _dir) = seeded().await;
    let boss = h.client_with("boss", quiet()).await;
    let first = watch(&boss, Roster::Directory).await;
    let mut second = watch(&boss, Roster::Directory).await;
    first.unwatch().await.unwrap();

    let bob = h.client("bob").await;
    until_status(&mut second, "bob", Status::Online).await;
    drop(bob);
    second.unwatch().await.unwrap();
    // A new watch after the last handle went is a new subscription.
    let again = watch(&boss, Roster::Directory).await;
    assert_eq!(again.current().snapshots(), 1);
}

#[tokio::test]
async fn after_a_hub_restart_the_client_reconnects_by_itself_and_the_roster_is_repopulated() {
    let (h, dir) = seeded().await;
    let boss = h.client_with("boss", quiet()).await;
    let mut directory = watch(&boss, Roster::Directory).await;
    let mut events = boss.events();
    let tab = boss.tab();

    let h = h.restart(&dir).await;
    match event(&mut events, "the 1012", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await
    {
        Event::Reconnecting {
            code,
            delay,
            attempt,
            ..
        } => {
            assert_eq!(code, Some(1012));
            assert_eq!(
                (attempt, delay),
                (1, Duration::ZERO),
                "a restart retries at once"
            );
        }
        _ => unreachable!(),
    }
    match event(&mut events, "the reconnection", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await
    {
        Event::Reconnected { welcome } => assert_eq!(welcome.tab, tab, "the tab id is kept"),
        _ => unreachable!(),
    }
    let view = within(
        "a fresh snapshot",
        directory.wait_for(|v| v.snapshots() == 2 && v.is_live()),
    )
    .await
    .unwrap();
    assert_eq!(view.len(), 3);
    assert_eq!(view.stats().unwrap().active, 3);

    // The re-subscribed roster is live, not just re-filled.
    let bob = h.client("bob").await;
    until_status(&mut directory, "bob", Status::Online).await;
    drop(bob);
}

#[tokio::test]
async fn deactivation_ends_the_client_with_4003_and_it_does_not_reconnect() {
    let (h, _dir) = seeded().await;
    let ann = h.client("ann").await;
    let mut events = ann.events();
    h.admin("POST", "/users/deactivate", json!({"ids": ["ann"]}))
        .await;
    let (code, _) = within("the terminal close", ann.disconnected()).await;
    assert_eq!(code, 4003);

    let mut seen = Vec::new();
    while let Ok(e) = events.try_recv() {
        seen.push(e);
    }
    assert!(
        matches!(seen.as_slice(), [Event::Disconnected { code: 4003, .. }]),
        "{seen:?}"
    );
    assert!(matches!(
        ann.activity(0),
        Err(Error::Closed { code: 4003, .. })
    ));
    assert!(matches!(
        ann.watch(Roster::Team("sales".into())).await,
        Err(Error::Closed { code: 4003, .. })
    ));
}

#[tokio::test]
async fn closing_the_client_ends_it_locally_without_a_reconnection() {
    let (h, _dir) = seeded().await;
    let ann = h.client("ann").await;
    let mut events = ann.events();
    within("the close", ann.close()).await;
    assert_eq!(
        *ann.state().borrow(),
        ConnState::Disconnected {
            code: 1000,
            reason: "closed by the client".into()
        }
    );
    assert!(matches!(
        events.try_recv(),
        Ok(Event::Disconnected { code: 1000, .. })
    ));
    assert!(matches!(
        ann.activity(0),
        Err(Error::Closed { code: 1000, .. })
    ));
}

#[tokio::test]
async fn logout_turns_the_user_offline_at_once_and_ends_the_client_with_4004() {
    let (h, _dir) = seeded_with(presence_server::Config {
        idle_timeout: Duration::from_secs(60),
        ..config()
    })
    .await;
    let boss = h.client_with("boss", quiet()).await;
    let mut dir = watch(&boss, Roster::Directory).await;
    let ann = h.client("ann").await;
    until_status(&mut dir, "ann", Status::Online).await;

    within("logout", ann.logout()).await.unwrap();
    assert_eq!(ann.disconnected().await.0, 4004);
    // Well within the 60 s margin: the logout itself turned her offline.
    until_status(&mut dir, "ann", Status::Offline).await;
}

#[tokio::test]
async fn a_short_lived_token_is_refreshed_before_exp_and_the_connection_outlives_it() {
    let (h, _dir) = seeded().await;
    let tokens = Tokens::new("boss", 3);
    let boss = within(
        "welcome",
        Client::connect(h.url(), tokens.provider(), quiet()),
    )
    .await
    .unwrap();
    // Read after the token was minted: no earlier than its `exp`.
    let first_exp = UNIX_EPOCH + Duration::from_secs(now_secs() + 3);
    let mut events = boss.events();
    // The hub closes an unrefreshed connection at most 2 s after `exp`.
    let past = first_exp + Duration::from_secs(2);
    event(&mut events, "a refresh after the first token's exp", |e| {
        assert!(
            !matches!(e, Event::Reconnecting { .. }),
            "the connection was lost: {e:?}"
        );
        matches!(e, Event::TokenRefreshed { .. }) && SystemTime::now() > past
    })
    .await;
    assert!(tokens.calls.load(Ordering::SeqCst) >= 3);
    assert_eq!(*boss.state().borrow(), ConnState::Connected);
    // The hub still serves this very connection.
    let dir = watch(&boss, Roster::Directory).await;
    assert_eq!(dir.current().len(), 3);
}

#[tokio::test]
async fn an_expired_token_is_replaced_by_a_fresh_one_and_the_client_reconnects() {
    let (h, _dir) = seeded().await;
    let short = Tokens::new("ann", 2);
    let long = Tokens::new("ann", 3600);
    // The ERP cannot mint a token for a while: the refresh fails, so the
    // hub closes the connection with 4001 when the first token expires.
    let erp_down = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let provider = {
        let (erp_down, calls) = (erp_down.clone(), calls.clone());
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            let token = match n {
                0 => Ok(short.mint()),
                _ if erp_down.load(Ordering::SeqCst) => Err("ERP unavailable"),
                _ => Ok(long.mint()),
            };
            async move { token }
        }
    };
    erp_down.store(true, Ordering::SeqCst);
    let ann = within(
        "welcome",
        Client::connect(h.url(), provider, ClientOptions::default()),
    )
    .await
    .unwrap();
    let tab = ann.tab();
    let mut events = ann.events();
    event(&mut events, "the 4001", |e| {
        matches!(
            e,
            Event::Reconnecting {
                code: Some(4001),
                ..
            }
        )
    })
    .await;
    erp_down.store(false, Ordering::SeqCst);
    match event(&mut events, "the reconnection", |e| {
        matches!(e, Event::Reconnected { .. })
    })
    .await
    {
        Event::Reconnected { welcome } => assert_eq!(welcome.tab, tab),
        _ => unreachable!(),
    }
    assert_eq!(*ann.state().borrow(), ConnState::Connected);
    ann.activity(0).unwrap();
}

#[tokio::test]
async fn a_flooding_client_is_closed_with_4008_and_stops_without_reconnecting() {
    let (h, _dir) = seeded().await;
    let ann = h.client("ann").await;
    let mut events = ann.events();
    // Activity reported far beyond the hub's frame rate until the client
    // ends, at most 100 frames queued per turn of the runtime: the client
    // is still sending when the hub closes it.
    let flood = {
        let ann = ann.clone();
        tokio::spawn(async move {
            let mut sent = 0u64;
            loop {
                for _ in 0..100 {
                    if ann.activity(0).is_err() {
                        return sent;
                    }
                    sent += 1;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let (code, reason) = within("the terminal close", ann.disconnected()).await;
    let sent = within("the flood to stop", flood).await.unwrap();
    assert_eq!(
        (code, reason.as_str()),
        (4008, "too many messages"),
        "after {sent} frames"
    );
    // Read before the close, in order: no reset destroyed them.
    let mut rate_limited = 0;
    loop {
        match events.try_recv() {
            Ok(Event::Reconnecting { code, reason, .. }) => {
                panic!("reconnected after {code:?} {reason}")
            }
            Ok(Event::Rejected {
                code: ErrorCode::RateLimited,
                ..
            }) => rate_limited += 1,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(n)) => {
                panic!("{n} events lost")
            }
            Err(_) => break,
        }
    }
    assert!(rate_limited > 0, "no rate_limited error arrived");
    assert!(matches!(
        ann.activity(0),
        Err(Error::Closed { code: 4008, .. })
    ));
}

#[tokio::test]
async fn a_bulk_sync_s_fresh_snapshot_replaces_the_view() {
    let (h, _dir) = seeded().await;
    let boss = h.client_with("boss", quiet()).await;
    let mut dir = watch(&boss, Roster::Directory).await;
    assert_eq!(dir.current().snapshots(), 1);
    let items: Vec<serde_json::Value> = (0..80)
        .map(|i| json!({"op": "upsert_user", "id": format!("n{i:02}"), "user": {"name": "N", "email": "n@x.test"}}))
        .collect();
    h.admin("POST", "/batch", json!({ "items": items })).await;
    // 80 new users on a roster of 3: one snapshot instead of 80 deltas,
    // taken although its subscription was answered already.
    let view = within("the fresh snapshot", dir.wait_for(|v| v.len() == 83))
        .await
        .unwrap();
    assert_eq!(view.snapshots(), 2);
    assert_eq!(view.stats().unwrap().active, 83);
    assert!(view.is_live());
    // Deltas still apply after it.
    h.admin("PUT", "/users/n05", json!({"nickname": "five"}))
        .await;
    within(
        "the delta after it",
        dir.wait_for(|v| v.get("n05").is_some_and(|e| e.nickname == "five")),
    )
    .await
    .unwrap();
}
