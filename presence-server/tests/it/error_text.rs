//! What a client is told when its token or the store fails: SPEC's code and
//! one fixed message per case, never the verifier's or the store's own
//! error text (which goes to the hub's log).

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use presence_protocol::{close, ClientMessage, ErrorCode, ServerMessage};
use presence_server::mint_hs256;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::redis_support::{query, RedisServer};
use crate::support::*;

/// Signed with the right secret, expired a minute ago (well past the hub's
/// 1 s leeway).
fn expired(tenant: &str, user: &str) -> String {
    mint_hs256(SECRET.as_bytes(), tenant, user, now_secs() - 120, 60)
}

/// Tokens the verifier refuses for a reason other than expiry, each of which
/// jsonwebtoken describes differently.
fn invalid_tokens(tenant: &str, user: &str) -> Vec<(&'static str, String)> {
    let other_key = mint_hs256(b"another-secret-0123456789", tenant, user, now_secs(), 600);
    let no_exp = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": user, "tid": tenant}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let hs512 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS512),
        &json!({"sub": user, "tid": tenant, "exp": now_secs() + 600}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    vec![
        ("signed with another key", other_key),
        ("without exp", no_exp),
        ("of another algorithm", hs512),
        ("not a JWT", "not.a.jwt".to_owned()),
    ]
}

#[tokio::test]
async fn a_refused_hello_token_is_told_invalid_or_expired_and_nothing_more() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    for (what, token) in invalid_tokens("acme", "ann") {
        let c = Tab::try_open(h.addr, &token, Uuid::new_v4(), 0)
            .await
            .map(|_| ())
            .expect_err(what);
        assert_eq!(
            (c.code, c.reason.as_str()),
            (close::UNAUTHENTICATED, "invalid token"),
            "a token {what}"
        );
    }
    let c = Tab::try_open(h.addr, &expired("acme", "ann"), Uuid::new_v4(), 0)
        .await
        .map(|_| ())
        .expect_err("expired");
    assert_eq!(
        (c.code, c.reason.as_str()),
        (close::UNAUTHENTICATED, "token expired")
    );
}

#[tokio::test]
async fn a_refused_refresh_is_told_invalid_or_expired_and_nothing_more() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let mut ann = h.tab("acme", "ann").await;
    for (what, token) in invalid_tokens("acme", "ann") {
        assert_eq!(
            refused_refresh(&mut ann, token).await,
            "refresh refused: invalid token",
            "a token {what}"
        );
    }
    assert_eq!(
        refused_refresh(&mut ann, expired("acme", "ann")).await,
        "refresh refused: token expired"
    );
}

/// Sends `refresh` with `token`; the message of the error the hub answers.
async fn refused_refresh(tab: &mut Tab, token: String) -> String {
    tab.send(&ClientMessage::Refresh { token }).await;
    match tab.recv().await {
        ServerMessage::Error {
            id: None,
            code: ErrorCode::Unauthenticated,
            message,
            roster: None,
        } => message,
        other => panic!("expected an unauthenticated error, got {other:?}"),
    }
}

#[tokio::test]
async fn an_admin_token_that_fails_verification_gets_the_generic_401() {
    let h = TestHub::start().await;
    h.seed("acme", &[]).await;
    h.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/boss",
            json!({"name": "Boss", "email": "b@x", "profile": "admin"}),
        )
        .await;
    let mut tokens = invalid_tokens("acme", "boss");
    tokens.push(("expired", expired("acme", "boss")));
    for (what, token) in tokens {
        let (status, body) = h
            .admin()
            .with_key(&token)
            .call("GET", "/v1/tenants/acme/stats", None)
            .await;
        assert_eq!(status, 401, "a token {what}: {body}");
        assert_eq!(
            body,
            json!({"error": {"code": "unauthenticated", "message": "missing or invalid credentials"}}),
            "a token {what}"
        );
    }
}

/// SPEC §6's answer to a write the store did not take: 503, a stable code,
/// one fixed message, no details.
fn store_unavailable() -> Value {
    json!({"error": {
        "code": "store_unavailable",
        "message": "the store is unavailable; nothing was changed",
    }})
}

#[tokio::test]
async fn a_write_during_a_redis_outage_answers_503_without_the_cause() {
    let mut redis = RedisServer::start().await;
    let h = TestHub::clustered(test_config(), &redis.url(), "A").await;
    h.seed("acme", &["ann"]).await;
    redis.kill();
    let (status, body) = h
        .admin()
        .call(
            "PUT",
            "/v1/tenants/acme/users/bob",
            Some(json!({"name": "Bob", "email": "bob@x.test"})),
        )
        .await;
    assert_eq!((status, body), (503, store_unavailable()));
}

#[tokio::test]
async fn a_write_over_data_this_hub_did_not_write_answers_503_without_the_cause() {
    let redis = RedisServer::start().await;
    let h = TestHub::clustered(test_config(), &redis.url(), "A").await;
    h.seed("acme", &["ann"]).await;
    // Another program replaced the tenant's user hash with a string: the
    // commit script refuses with WRONGTYPE, naming the key.
    let replaced: Option<String> = query(
        redis.port,
        redis::cmd("SET")
            .arg("presence:{acme}:users")
            .arg("not a hash")
            .clone(),
    )
    .await;
    assert_eq!(replaced.as_deref(), Some("OK"));
    let (status, body) = h
        .admin()
        .call(
            "PUT",
            "/v1/tenants/acme/users/bob",
            Some(json!({"name": "Bob", "email": "bob@x.test"})),
        )
        .await;
    assert_eq!((status, body), (503, store_unavailable()));
}
