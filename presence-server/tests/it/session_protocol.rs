//! The WebSocket handshake, tokens, subscriptions and connection policies of
//! SPEC §5, seen from a tab.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use futures_util::SinkExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_protocol::{
    close, ClientMessage, ErrorCode, Profile, ReqId, Roster, ServerMessage, Status,
};
use presence_server::Config;
use presence_server::{Claims, Verifier};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::support::*;

fn claims(tenant: &str, user: &str, exp: u64) -> Claims {
    Claims {
        sub: user.into(),
        tid: tenant.into(),
        exp,
        iat: Some(now_secs()),
    }
}

fn sign(alg: Algorithm, key: &EncodingKey, claims: &impl serde::Serialize) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

/// An HS256 token signed with the test secret that expires at `exp` (s).
fn hs256_until(tenant: &str, user: &str, exp: u64) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &claims(tenant, user, exp),
    )
}

/// The close code a hello with `token` is answered with; panics on welcome.
async fn refused(h: &TestHub, token: &str) -> u16 {
    match Tab::try_open(h.addr, token, Uuid::new_v4(), 0).await {
        Ok(_) => panic!("the hub welcomed a tab it should have refused"),
        Err(c) => c.code,
    }
}

/// A tab over a socket that said nothing yet.
async fn silent_tab(h: &TestHub) -> Tab {
    Tab {
        ws: raw_connect(h.addr).await,
        welcome: None,
        tab: Uuid::new_v4(),
    }
}

async fn put_admin(h: &TestHub, tenant: &str, user: &str) {
    h.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{tenant}/users/{user}"),
            json!({"name": "Boss", "email": format!("{user}@x.test"), "profile": "admin"}),
        )
        .await;
}

async fn put_team(h: &TestHub, tenant: &str, team: &str, members: &[&str]) {
    let a = h.admin();
    a.ok(
        "PUT",
        &format!("/v1/tenants/{tenant}/teams/{team}"),
        json!({"name": team, "crm": false, "active": true}),
    )
    .await;
    for m in members {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{tenant}/teams/{team}/members/{m}"),
            json!({"as": "member"}),
        )
        .await;
    }
}

async fn metric(h: &TestHub, name: &str) -> u64 {
    h.metric(name).await.map_or(0, |v| v as u64)
}

#[tokio::test]
async fn no_hello_within_the_hello_timeout_closes_with_4001() {
    let h = TestHub::with_config(Config {
        hello_timeout: Duration::from_millis(300),
        ..test_config()
    })
    .await;
    let started = tokio::time::Instant::now();
    let mut t = silent_tab(&h).await;
    let c = t.closed().await;
    assert_eq!(c.code, close::UNAUTHENTICATED, "{c:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "closed after {:?}, before the hello timeout",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_first_frame_other_than_hello_closes_with_4001() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    for first in [
        json!({"type": "activity", "idle_ms": 0}).to_string(),
        json!({"type": "subscribe", "id": 1, "roster": "directory"}).to_string(),
        "not json at all".to_owned(),
    ] {
        let mut t = silent_tab(&h).await;
        t.send_text(&first).await;
        assert_eq!(
            t.next().await.err().map(|c| c.code),
            Some(close::UNAUTHENTICATED),
            "first frame {first}"
        );
    }
}

#[tokio::test]
async fn bad_tokens_are_refused_with_4001_and_no_welcome() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let exp = now_secs() + 600;
    let good = hs256_until("acme", "ann", exp);

    // Same header and claims, signature of another token.
    let other = hs256_until("acme", "bob", exp);
    let (head_body, _) = good.rsplit_once('.').unwrap();
    let (_, other_sig) = other.rsplit_once('.').unwrap();
    let bad_signature = format!("{head_body}.{other_sig}");

    let other_secret = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"another-secret"),
        &claims("acme", "ann", exp),
    );

    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let alg_none = format!(
        "{}.{}.",
        b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
        b64.encode(json!({"sub": "ann", "tid": "acme", "exp": exp}).to_string())
    );

    let no_exp = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        &json!({"sub": "ann", "tid": "acme", "iat": now_secs()}),
    );

    let expired = hs256_until("acme", "ann", now_secs() - 30);

    for (what, token) in [
        ("bad signature", bad_signature),
        ("another secret", other_secret),
        ("alg none", alg_none),
        ("no exp", no_exp),
        ("expired", expired),
        ("garbage", "not.a.jwt".to_owned()),
    ] {
        assert_eq!(
            refused(&h, &token).await,
            close::UNAUTHENTICATED,
            "{what} token"
        );
    }
    // The control: the good token is welcomed.
    Tab::open(h.addr, &good, Uuid::new_v4(), 0).await;
}

/// Writes a fresh key pair with the openssl CLI: (private PEM, public PEM path).
fn openssl_key_pair(
    dir: &Path,
    name: &str,
    genpkey_args: &[&str],
) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("the openssl CLI is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut gen = vec!["genpkey"];
    gen.extend_from_slice(genpkey_args);
    gen.extend_from_slice(&["-out", private.to_str().unwrap()]);
    run(&gen);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (std::fs::read(&private).unwrap(), public)
}

/// A hub verifying with a public key: accepts tokens signed by the matching
/// private key, and refuses HS256 tokens whose secret is the public key.
async fn public_key_hub_accepts_its_algorithm_only(
    alg: Algorithm,
    genpkey_args: &[&str],
    encoding: fn(&[u8]) -> jsonwebtoken::errors::Result<EncodingKey>,
) {
    let keys = tempfile::tempdir().unwrap();
    let (private, public) = openssl_key_pair(keys.path(), "k", genpkey_args);
    let verifier = Verifier::from_public_key_file(&public).unwrap();
    assert_eq!(verifier.algorithm(), alg);
    let h = TestHub::with_verifier(test_config(), tempfile::tempdir().unwrap(), verifier).await;
    h.seed("acme", &["ann"]).await;
    let exp = now_secs() + 600;

    let signed = sign(
        alg,
        &encoding(&private).unwrap(),
        &claims("acme", "ann", exp),
    );
    let t = Tab::open(h.addr, &signed, Uuid::new_v4(), 0).await;
    let Some(ServerMessage::Welcome { user, .. }) = &t.welcome else {
        unreachable!("open returns only welcomed tabs")
    };
    assert_eq!(user.id, "ann");

    let public_pem = std::fs::read(&public).unwrap();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem),
        &claims("acme", "ann", exp),
    );
    assert_eq!(refused(&h, &confused).await, close::UNAUTHENTICATED);

    let hs = hs256_until("acme", "ann", exp);
    assert_eq!(refused(&h, &hs).await, close::UNAUTHENTICATED);

    // Another key pair of the same kind: right algorithm, wrong key.
    let (stranger, _) = openssl_key_pair(keys.path(), "stranger", genpkey_args);
    let forged = sign(
        alg,
        &encoding(&stranger).unwrap(),
        &claims("acme", "ann", exp),
    );
    assert_eq!(refused(&h, &forged).await, close::UNAUTHENTICATED);
}

#[tokio::test]
async fn rs256_tokens_are_accepted_and_algorithm_confusion_is_refused() {
    public_key_hub_accepts_its_algorithm_only(
        Algorithm::RS256,
        &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
        EncodingKey::from_rsa_pem,
    )
    .await;
}

#[tokio::test]
async fn es256_tokens_are_accepted_and_algorithm_confusion_is_refused() {
    public_key_hub_accepts_its_algorithm_only(
        Algorithm::ES256,
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        EncodingKey::from_ec_pem,
    )
    .await;
}

#[tokio::test]
async fn welcome_describes_the_user_the_tab_and_the_timing() {
    let h = TestHub::start().await;
    h.seed("acme", &[]).await;
    put_admin(&h, "acme", "boss").await;
    let tab = Uuid::new_v4();
    let before = now_ms();
    let t = Tab::open(h.addr, &token("acme", "boss"), tab, 0).await;
    let after = now_ms();
    let Some(ServerMessage::Welcome {
        user,
        tab: echoed,
        idle_timeout_ms,
        activity_interval_ms,
        server_time,
    }) = t.welcome
    else {
        unreachable!("open returns only welcomed tabs")
    };
    assert_eq!(user.id, "boss");
    assert_eq!(user.tenant, "acme");
    assert_eq!(user.name, "Boss");
    assert_eq!(user.profile, Profile::Admin);
    assert!(!user.attendant);
    assert_eq!(echoed, tab);
    assert_eq!(idle_timeout_ms, 1_500);
    // A third of the test's 1.5 s idle timeout: a page that follows it
    // proves interaction three times per timeout and cannot flap.
    assert_eq!(activity_interval_ms, 500);
    assert!(
        (before.saturating_sub(50)..=after + 50).contains(&server_time),
        "server_time {server_time} not within [{before}, {after}]"
    );
}

#[tokio::test]
async fn a_token_that_expires_without_refresh_closes_the_tab_with_4001_within_2s_of_exp() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let exp = now_secs() + 2;
    let mut t = Tab::open(h.addr, &hs256_until("acme", "ann", exp), Uuid::new_v4(), 0).await;
    let c = t.closed().await;
    let at = now_ms();
    assert_eq!(c.code, close::UNAUTHENTICATED, "{c:?}");
    assert!(at >= exp * 1000, "closed {} ms before exp", exp * 1000 - at);
    assert!(
        at <= exp * 1000 + 2_000,
        "closed {} ms after exp",
        at - exp * 1000
    );
}

#[tokio::test]
async fn refresh_before_expiry_keeps_the_tab_open_past_the_old_exp() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "carl"]).await;
    put_team(&h, "acme", "t1", &["ann"]).await;
    let exp = now_secs() + 2;
    let mut ann = Tab::open(h.addr, &hs256_until("acme", "ann", exp), Uuid::new_v4(), 0).await;
    // The control: carl does not refresh and is closed about 1 s after ann's old exp.
    let mut carl = Tab::open(
        h.addr,
        &hs256_until("acme", "carl", exp + 1),
        Uuid::new_v4(),
        0,
    )
    .await;
    ann.send(&ClientMessage::Refresh {
        token: hs256_until("acme", "ann", now_secs() + 3_600),
    })
    .await;
    assert_eq!(carl.closed().await.code, close::UNAUTHENTICATED);
    assert!(now_ms() >= (exp + 1) * 1000);
    // More than 2 s past ann's old exp, ann is still served.
    let reply = ann.subscribe(1, "team:t1").await;
    assert!(matches!(reply, ServerMessage::Snapshot { .. }), "{reply:?}");
}

#[tokio::test]
async fn refresh_with_another_users_token_is_refused_and_changes_nothing() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "bob"]).await;
    let exp = now_secs() + 2;
    let mut ann = Tab::open(h.addr, &hs256_until("acme", "ann", exp), Uuid::new_v4(), 0).await;
    ann.send(&ClientMessage::Refresh {
        token: token("acme", "bob"),
    })
    .await;
    let reply = ann.recv().await;
    assert!(
        matches!(
            reply,
            ServerMessage::Error {
                code: ErrorCode::Forbidden,
                ..
            }
        ),
        "{reply:?}"
    );
    ann.send(&ClientMessage::Refresh {
        token: hs256_until("acme", "ann", now_secs() - 30),
    })
    .await;
    let reply = ann.recv().await;
    assert!(
        matches!(
            reply,
            ServerMessage::Error {
                code: ErrorCode::Unauthenticated,
                ..
            }
        ),
        "{reply:?}"
    );
    // The old expiry still holds, and the tab is still ann's.
    let c = ann.closed().await;
    let at = now_ms();
    assert_eq!(c.code, close::UNAUTHENTICATED, "{c:?}");
    assert!((exp * 1000..=exp * 1000 + 2_000).contains(&at));
}

#[tokio::test]
async fn unknown_tenant_unknown_user_and_deactivated_user_are_refused_with_4003() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "gone"]).await;
    h.admin()
        .ok(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            json!({"ids": ["gone"]}),
        )
        .await;
    assert_eq!(
        refused(&h, &token("nowhere", "ann")).await,
        close::FORBIDDEN
    );
    assert_eq!(
        refused(&h, &token("acme", "nobody")).await,
        close::FORBIDDEN
    );
    assert_eq!(refused(&h, &token("acme", "gone")).await, close::FORBIDDEN);
    h.admin()
        .ok(
            "DELETE",
            "/v1/tenants/acme/users/ann",
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(refused(&h, &token("acme", "ann")).await, close::FORBIDDEN);
}

#[tokio::test]
async fn subscribe_answers_a_snapshot_and_unsubscribe_stops_the_deltas() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "bob"]).await;
    put_admin(&h, "acme", "boss").await;
    let mut boss = h.tab("acme", "boss").await;
    let snap = boss.subscribe(7, "directory").await;
    let ServerMessage::Snapshot {
        id,
        roster,
        users,
        stats,
    } = snap
    else {
        panic!("expected a snapshot, got {snap:?}")
    };
    assert_eq!(id, ReqId::Num(7));
    assert_eq!(roster, Roster::Directory);
    let mut ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["ann", "bob", "boss"]);
    assert_eq!(stats.map(|s| s.active), Some(3));

    let _ann = h.tab("acme", "ann").await;
    boss.recv_until(|m| is_presence_of(m, "ann", Status::Online))
        .await;

    boss.send(&ClientMessage::Unsubscribe {
        id: ReqId::Str("u1".into()),
        roster: Roster::Directory,
    })
    .await;
    let reply = boss
        .recv_until(|m| !matches!(m, ServerMessage::Stats { .. }))
        .await;
    assert_eq!(
        reply,
        ServerMessage::Unsubscribed {
            id: ReqId::Str("u1".into()),
            roster: Roster::Directory
        }
    );
    let _bob = h.tab("acme", "bob").await;
    boss.silent_for(Duration::from_millis(400)).await;

    // Unsubscribing again: nothing to end.
    boss.send(&ClientMessage::Unsubscribe {
        id: ReqId::Num(8),
        roster: Roster::Directory,
    })
    .await;
    let reply = boss.recv().await;
    assert!(
        matches!(
            &reply,
            ServerMessage::Error {
                id: Some(ReqId::Num(8)),
                code: ErrorCode::NotFound,
                ..
            }
        ),
        "{reply:?}"
    );
}

#[tokio::test]
async fn subscriptions_beyond_the_limit_get_limit_exceeded() {
    let h = TestHub::with_config(Config {
        max_subscriptions: 2,
        ..test_config()
    })
    .await;
    h.seed("acme", &[]).await;
    put_admin(&h, "acme", "boss").await;
    put_team(&h, "acme", "t1", &[]).await;
    let mut boss = h.tab("acme", "boss").await;
    for (id, roster) in [(1, "directory"), (2, "attendants"), (3, "directory")] {
        let r = boss.subscribe(id, roster).await;
        assert!(
            matches!(r, ServerMessage::Snapshot { .. }),
            "{roster}: {r:?}"
        );
    }
    let r = boss.subscribe(4, "team:t1").await;
    assert!(
        matches!(
            &r,
            ServerMessage::Error {
                id: Some(ReqId::Num(4)),
                code: ErrorCode::LimitExceeded,
                ..
            }
        ),
        "{r:?}"
    );
    // Freeing a slot makes room again.
    boss.send(&ClientMessage::Unsubscribe {
        id: ReqId::Num(5),
        roster: Roster::Attendants,
    })
    .await;
    assert!(matches!(
        boss.recv().await,
        ServerMessage::Unsubscribed { .. }
    ));
    let r = boss.subscribe(6, "team:t1").await;
    assert!(matches!(r, ServerMessage::Snapshot { .. }), "{r:?}");
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_and_others_keep_being_served() {
    let h = TestHub::with_config(Config {
        outbound_queue: 2,
        ..test_config()
    })
    .await;
    let crowd: Vec<String> = (0..60).map(|i| format!("u{i:02}")).collect();
    let mut names: Vec<&str> = crowd.iter().map(String::as_str).collect();
    names.extend(["ann", "bob"]);
    h.seed("acme", &names).await;
    put_admin(&h, "acme", "boss").await;
    put_team(&h, "acme", "t1", &["ann", "bob"]).await;

    let mut slow = h.tab("acme", "boss").await;
    assert!(matches!(
        slow.subscribe(1, "directory").await,
        ServerMessage::Snapshot { .. }
    ));
    let mut bob = h.tab("acme", "bob").await;
    assert!(matches!(
        bob.subscribe(1, "team:t1").await,
        ServerMessage::Snapshot { .. }
    ));

    // Each bulk change puts one delta per user on the directory at once;
    // `slow` reads none of them.
    let admin = h.admin();
    for _ in 0..10 {
        for op in ["deactivate", "reactivate"] {
            admin
                .ok(
                    "POST",
                    &format!("/v1/tenants/acme/users/{op}"),
                    json!({ "ids": crowd }),
                )
                .await;
        }
        if metric(&h, "presence_slow_consumers_total").await > 0 {
            break;
        }
    }
    let c = slow.closed().await;
    assert_eq!(c.code, close::SLOW_CONSUMER, "{c:?}");
    // One tab was too slow, however many frames it missed.
    assert_eq!(metric(&h, "presence_slow_consumers_total").await, 1);

    let _ann = h.tab("acme", "ann").await;
    bob.recv_until(|m| is_presence_of(m, "ann", Status::Online))
        .await;
    let mut fresh = h.tab("acme", "boss").await;
    assert!(matches!(
        fresh.subscribe(2, "directory").await,
        ServerMessage::Snapshot { .. }
    ));
}

async fn connect_with_origin(h: &TestHub, origin: Option<&'static str>) -> Result<Tab, u16> {
    let mut req = h.url().into_client_request().unwrap();
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_static(o));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok(Tab {
            ws,
            welcome: None,
            tab: Uuid::new_v4(),
        }),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
        Err(e) => panic!("connect failed: {e}"),
    }
}

#[tokio::test]
async fn only_allowed_origins_may_upgrade() {
    let h = TestHub::with_config(Config {
        allowed_origins: vec!["https://erp.example".into()],
        ..test_config()
    })
    .await;
    h.seed("acme", &["ann"]).await;
    for origin in [
        Some("https://evil.example"),
        Some("https://erp.example.evil"),
        None,
    ] {
        assert_eq!(
            connect_with_origin(&h, origin).await.err(),
            Some(403),
            "origin {origin:?}"
        );
    }
    let mut t = connect_with_origin(&h, Some("https://erp.example"))
        .await
        .unwrap_or_else(|s| panic!("allowed origin refused with {s}"));
    let hello = ClientMessage::Hello {
        token: token("acme", "ann"),
        tab: t.tab,
        idle_ms: 0,
        client: None,
    };
    t.ws.send(Message::Text(serde_json::to_string(&hello).unwrap().into()))
        .await
        .unwrap();
    let m = t.recv().await;
    assert!(matches!(m, ServerMessage::Welcome { .. }), "{m:?}");
}

/// Waits until the hub reports `value` for the metric `name`.
async fn metric_reaches(h: &TestHub, name: &str, value: u64, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let now = metric(h, name).await;
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} is {now}, expected {value} within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_tab_that_stopped_reading_is_dropped_once_its_queue_overflows() {
    let h = TestHub::with_config(Config {
        outbound_queue: 2,
        ..test_config()
    })
    .await;
    h.seed("acme", &[]).await;
    put_admin(&h, "acme", "boss").await;
    // Long entries make a directory snapshot big enough to fill the socket
    // buffers of a peer that does not read.
    let long = "y".repeat(500);
    let crowd: Vec<String> = (0..300).map(|i| format!("u{i:03}")).collect();
    for u in &crowd {
        h.admin()
            .ok(
                "PUT",
                &format!("/v1/tenants/acme/users/{u}"),
                json!({"name": long, "nickname": long, "away_message": long, "email": format!("{u}@x.test")}),
            )
            .await;
    }
    let mut stuck = h.tab("acme", "boss").await;
    for id in 0..30 {
        stuck
            .send(&ClientMessage::Subscribe {
                id: ReqId::Num(id),
                roster: Roster::Directory,
            })
            .await;
    }
    h.admin()
        .ok(
            "POST",
            "/v1/tenants/acme/users/deactivate",
            json!({ "ids": crowd }),
        )
        .await;
    metric_reaches(&h, "presence_slow_consumers_total", 1, WAIT).await;
    // The hub writes to it no more, though it never read a byte.
    metric_reaches(&h, "presence_open_tabs", 0, Duration::from_secs(3)).await;
    let mut fresh = h.tab("acme", "boss").await;
    assert!(matches!(
        fresh.subscribe(1, "directory").await,
        ServerMessage::Snapshot { .. }
    ));
}
