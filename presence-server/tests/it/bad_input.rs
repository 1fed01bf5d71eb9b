//! Bad input and abuse on the WebSocket (SPEC §9): every bad frame gets a
//! precise answer, changes nothing, and never disturbs other users.

use std::time::Duration;

use futures_util::SinkExt;
use presence_protocol::{close, ClientMessage, ErrorCode, ReqId, ServerMessage, Status};
use presence_server::Config;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::*;

/// A tenant `acme` with standard users ann and bob in team `t1`, an admin
/// watching the directory, and ann connected and online.
struct Scene {
    h: TestHub,
    admin: Tab,
    ann: Tab,
}

/// A long idle timeout: nobody goes offline on their own during a test, so
/// any change of presence would come from the bad input.
fn quiet_config() -> Config {
    Config {
        idle_timeout: Duration::from_secs(60),
        ..test_config()
    }
}

async fn scene_with(config: Config) -> Scene {
    let h = TestHub::with_config(config).await;
    h.seed("acme", &["ann", "bob"]).await;
    let a = h.admin();
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/boss",
        json!({"name": "Boss", "email": "boss@x.test", "profile": "admin"}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/t1",
        json!({"name": "T1", "crm": false, "active": true}),
    )
    .await;
    for u in ["ann", "bob"] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/t1/members/{u}"),
            json!({"as": "member"}),
        )
        .await;
    }
    let mut admin = h.tab("acme", "boss").await;
    let snap = admin.subscribe(1, "directory").await;
    assert!(matches!(snap, ServerMessage::Snapshot { .. }), "{snap:?}");
    let ann = h.tab("acme", "ann").await;
    admin
        .recv_until(|m| is_presence_of(m, "ann", Status::Online))
        .await;
    Scene { h, admin, ann }
}

async fn scene() -> Scene {
    scene_with(quiet_config()).await
}

async fn user(h: &TestHub, uid: &str) -> Value {
    let (status, v) = h
        .admin()
        .call("GET", &format!("/v1/tenants/acme/users/{uid}"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    v
}

/// What bad input must not change: ann's presence as the API shows it.
async fn ann_presence(h: &TestHub) -> (Value, Value, Value) {
    let u = user(h, "ann").await;
    (u["status"].clone(), u["v"].clone(), u["since"].clone())
}

/// Other users are still served: bob connects and the admin sees him online.
async fn others_still_served(s: &mut Scene) {
    let _bob = s.h.tab("acme", "bob").await;
    s.admin
        .recv_until(|m| is_presence_of(m, "bob", Status::Online))
        .await;
}

/// The tab still answers requests.
async fn still_works(t: &mut Tab) {
    let r = t.subscribe(99, "team:t1").await;
    assert!(
        matches!(
            &r,
            ServerMessage::Snapshot {
                id: ReqId::Num(99),
                ..
            }
        ),
        "{r:?}"
    );
}

/// Sends one bad frame and returns the error it was answered with.
async fn answer_to(t: &mut Tab, frame: &str) -> (Option<ReqId>, ErrorCode, String) {
    t.send_text(frame).await;
    match t.recv().await {
        ServerMessage::Error {
            id, code, message, ..
        } => (id, code, message),
        other => panic!("expected an error for {frame}, got {other:?}"),
    }
}

async fn bad_request_keeps_the_tab_open(frame: &str, id: Option<ReqId>, mentions: &str) {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    let (got_id, code, message) = answer_to(&mut s.ann, frame).await;
    assert_eq!(code, ErrorCode::BadRequest, "{message}");
    assert_eq!(got_id, id, "{message}");
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
    still_works(&mut s.ann).await;
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn malformed_json_gets_bad_request_and_the_tab_stays_open() {
    bad_request_keeps_the_tab_open(r#"{"type":"activity","idle_ms":0"#, None, "malformed JSON")
        .await;
}

#[tokio::test]
async fn an_unknown_message_type_gets_bad_request_and_the_tab_stays_open() {
    bad_request_keeps_the_tab_open(r#"{"type":"dance","id":3}"#, Some(ReqId::Num(3)), "dance")
        .await;
}

#[tokio::test]
async fn wrong_field_types_get_bad_request_and_change_nothing() {
    // A string where a number belongs must not count as activity.
    bad_request_keeps_the_tab_open(r#"{"type":"activity","idle_ms":"0"}"#, None, "activity").await;
    bad_request_keeps_the_tab_open(
        r#"{"type":"subscribe","id":5,"roster":42}"#,
        Some(ReqId::Num(5)),
        "subscribe",
    )
    .await;
    bad_request_keeps_the_tab_open(
        r#"{"type":"subscribe","id":"r6","roster":"everyone"}"#,
        Some(ReqId::Str("r6".into())),
        "everyone",
    )
    .await;
}

#[tokio::test]
async fn repeated_bad_json_closes_the_tab_with_4008() {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    let mut errors = 0;
    let closed = loop {
        assert!(errors < 20, "still open after {errors} bad frames");
        s.ann.send_text("{{{ not json").await;
        match s.ann.next().await {
            Ok(ServerMessage::Error {
                code: ErrorCode::BadRequest,
                ..
            }) => errors += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(c) => break c,
        }
    };
    assert_eq!(closed.code, close::POLICY_VIOLATION, "{closed:?}");
    assert!(errors >= 1, "a single bad frame must not close the tab");
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn a_frame_larger_than_the_limit_closes_the_tab_with_4008() {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    let padding = "x".repeat(16 * 1024);
    let frame = json!({"type": "activity", "idle_ms": 0, "pad": padding}).to_string();
    s.ann.send_text(&frame).await;
    let c = s.ann.closed().await;
    assert_eq!(c.code, close::POLICY_VIOLATION, "{c:?}");
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn a_huge_frame_closes_the_tab_with_4008() {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    let frame = json!({"type": "activity", "idle_ms": 0, "pad": "x".repeat(1 << 20)}).to_string();
    // The hub may stop reading before the whole frame is sent.
    let _ = s.ann.ws.send(Message::Text(frame.into())).await;
    let c = s.ann.closed().await;
    assert_eq!(c.code, close::POLICY_VIOLATION, "{c:?}");
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn an_oversized_hello_is_refused_with_4008() {
    let s = scene().await;
    let mut t = Tab {
        ws: raw_connect(s.h.addr).await,
        welcome: None,
        tab: Uuid::new_v4(),
    };
    let hello = json!({
        "type": "hello",
        "token": token("acme", "bob"),
        "tab": t.tab,
        "idle_ms": 0,
        "client": "x".repeat(20 * 1024),
    });
    t.send_text(&hello.to_string()).await;
    assert_eq!(t.closed().await.code, close::POLICY_VIOLATION);
    assert_eq!(user(&s.h, "bob").await["status"], "offline");
}

#[tokio::test]
async fn a_binary_frame_closes_the_tab_with_1003_unsupported_data() {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    s.ann
        .ws
        .send(Message::Binary(
            br#"{"type":"activity","idle_ms":0}"#.to_vec().into(),
        ))
        .await
        .unwrap();
    let c = s.ann.closed().await;
    assert_eq!(c.code, close::UNSUPPORTED_DATA, "{c:?}");
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn a_flood_gets_rate_limited_errors_then_4008() {
    let mut s = scene().await;
    let before = ann_presence(&s.h).await;
    // Every frame is a request that is answered, so each send is matched by
    // one reply: a snapshot while within the rate, rate_limited beyond it,
    // until the hub gives up on the tab.
    let (mut served, mut limited) = (0u64, 0u64);
    let closed = loop {
        let n = served + limited;
        assert!(n < 400, "still open after {n} frames");
        s.ann
            .send(&ClientMessage::Subscribe {
                id: ReqId::Num(n),
                roster: "team:t1".parse().unwrap(),
            })
            .await;
        match s.ann.next().await {
            // The rate refills while limited, so a late frame may pass.
            Ok(ServerMessage::Snapshot { .. }) => served += 1,
            Ok(ServerMessage::Error {
                code: ErrorCode::RateLimited,
                ..
            }) => limited += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(c) => break c,
        }
    };
    assert_eq!(closed.code, close::POLICY_VIOLATION, "{closed:?}");
    // The burst of 40 is honoured; a little more may refill while sending.
    assert!(
        (40..60).contains(&served),
        "served {served} before limiting"
    );
    assert!(limited >= 1, "closed without a rate_limited warning");
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn a_tab_beyond_the_per_user_limit_gets_4029_and_the_others_keep_working() {
    let mut s = scene_with(Config {
        max_tabs_per_user: 2,
        ..quiet_config()
    })
    .await;
    let before = ann_presence(&s.h).await;
    let mut second = s.h.tab("acme", "ann").await;
    let refused = Tab::try_open(s.h.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    assert_eq!(refused.err().map(|c| c.code), Some(close::TOO_MANY_TABS));
    still_works(&mut s.ann).await;
    still_works(&mut second).await;
    others_still_served(&mut s).await;
    assert_eq!(ann_presence(&s.h).await, before);
}

#[tokio::test]
async fn subscribing_to_an_unknown_team_gets_not_found() {
    let mut s = scene().await;
    let r = s.ann.subscribe(4, "team:nope").await;
    assert!(
        matches!(
            &r,
            ServerMessage::Error {
                id: Some(ReqId::Num(4)),
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{r:?}"
    );
    // Not subscribed: unsubscribing finds nothing either.
    let (id, code, _) = answer_to(
        &mut s.ann,
        r#"{"type":"unsubscribe","id":5,"roster":"team:nope"}"#,
    )
    .await;
    assert_eq!((id, code), (Some(ReqId::Num(5)), ErrorCode::NotFound));
    still_works(&mut s.ann).await;
    others_still_served(&mut s).await;
}
