//! Webhooks of the transition feed (SPEC §10), observed as the ERP's
//! receiver observes them: a real HTTP server on 127.0.0.1 that checks the
//! signatures with Python and can fail, slow down, go away and come back.
//! The bodies run on one node and on a two-node cluster (`harness::suite!`).

use std::time::Duration;

use presence_protocol::ClientMessage;
use presence_server::{Config, WebhookPolicy, WebhookSettings};
use serde_json::{json, Value};

use crate::feed::read_all;
use crate::harness::{suite, Deployment};
use crate::support::*;
use crate::webhook_support::*;

/// Fast batching and retries, and 127.0.0.1 allowed as a target.
pub fn webhook_config() -> Config {
    Config {
        webhooks: WebhookSettings {
            allowed_hosts: WebhookPolicy::parse("127.0.0.1").unwrap(),
            batch_wait: Duration::from_millis(50),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_millis(400),
            lease: Duration::from_millis(1_500),
            ..WebhookSettings::default()
        },
        ..test_config()
    }
}

/// Deliveries are expected within this.
const DELIVERED: Duration = Duration::from_secs(15);

pub async fn put_hook(a: &Admin, id: &str, body: Value) -> (u16, Value) {
    a.call(
        "PUT",
        &format!("/v1/tenants/acme/webhooks/{id}"),
        Some(body),
    )
    .await
}

/// Waits until node `i` shows `path` satisfying `ok` (deliveries take
/// their batch wait and backoff, longer than a directory sync).
async fn until_shown(d: &Deployment, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + DELIVERED;
    loop {
        for i in 0..d.len() {
            let (s, v) = d.admin_on(i).call("GET", path, None).await;
            if s == 200 && ok(&v) {
                return v;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "node {i}: {path} never as expected: {s} {v}"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A webhook to `r`, from the oldest event retained.
pub fn hook(r: &Receiver) -> Value {
    json!({"url": r.url(), "secret": HOOK_SECRET, "after": 0})
}

fn has(acked: &[Value], user: &str, status: &str, reason: &str) -> bool {
    acked
        .iter()
        .any(|e| e["user"] == user && e["status"] == status && e["reason"] == reason)
}

async fn every_event_is_delivered_signed_and_in_v_order_per_user(d: &Deployment) {
    d.seed("acme", &["ann", "bob"]).await;
    let r = Receiver::start().await;
    let a = d.admin();
    let (s, created) = put_hook(&a, "erp", hook(&r)).await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["url"], r.url());
    assert!(created.get("secret").is_none(), "never shown: {created}");
    assert!(
        !created.to_string().contains(HOOK_SECRET),
        "the secret appears nowhere: {created}"
    );
    assert_eq!(created["delivery"]["status"], "ok");

    // Online, idle, online again and a logout, for two users.
    let ann = d.tab("acme", "ann").await;
    let mut bob = d.tab("acme", "bob").await;
    r.until_acked(DELIVERED, |e| {
        has(e, "ann", "online", "activity") && has(e, "bob", "online", "activity")
    })
    .await;
    drop(ann);
    bob.send(&ClientMessage::Logout).await;
    r.until_acked(DELIVERED, |e| {
        has(e, "ann", "offline", "idle") && has(e, "bob", "offline", "logout")
    })
    .await;
    let _ann = d.tab("acme", "ann").await;
    let acked = r
        .until_acked(DELIVERED, |e| {
            e.iter()
                .filter(|e| e["user"] == "ann" && e["status"] == "online")
                .count()
                >= 2
        })
        .await;

    // Every event of the feed so far, each id at least once, in v order
    // per user, each event exactly as the pull API serves it.
    let distinct = assert_in_v_order_per_user(&acked);
    let feed = read_all(&a, 0, 1000).await;
    for e in &feed {
        let id = format!("acme:{}:{}", e.user, e.v);
        assert!(distinct.contains(&id), "{id} not delivered: {distinct:?}");
    }
    let (_, page) = a
        .call("GET", "/v1/tenants/acme/events?after=0&limit=1000", None)
        .await;
    for e in page["events"].as_array().unwrap() {
        if let Some(got) = acked.iter().find(|x| x["id"] == e["id"]) {
            assert_eq!(got, e, "a delivered event is the feed's event");
        }
    }
    assert_signed_by_python(&r.deliveries(), HOOK_SECRET);

    let shown = until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["pending"] == 0 && w["delivery"]["last_success_at"].is_u64()
    })
    .await;
    assert_eq!(shown["delivery"]["status"], "ok", "{shown}");
    assert_eq!(shown["delivery"]["oldest_pending_age_ms"], 0, "{shown}");
    let (_, list) = a.call("GET", "/v1/tenants/acme/webhooks", None).await;
    assert_eq!(list["webhooks"][0]["id"], "erp", "{list}");
}

async fn a_receiver_failing_its_first_requests_gets_every_event_in_order(d: &Deployment) {
    d.seed("acme", &["ann", "bob", "cyd"]).await;
    let r = Receiver::start().await;
    r.fail_next(4);
    let a = d.admin();
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 201);
    let _ann = d.tab("acme", "ann").await;
    // The failures show in the delivery state while they last.
    r.until_requests(2, DELIVERED).await;
    let (_, w) = a.call("GET", "/v1/tenants/acme/webhooks/erp", None).await;
    let state = &w["delivery"];
    if r.acked().is_empty() {
        assert_eq!(state["status"], "retrying", "{w}");
        assert!(state["pending"].as_u64().unwrap() >= 1, "{w}");
    }
    assert_eq!(state["last_error"]["status"], 500, "{w}");
    assert_eq!(
        state["last_error"]["message"], "HTTP 500 Internal Server Error",
        "{w}"
    );
    let mut bob = d.tab("acme", "bob").await;
    let _cyd = d.tab("acme", "cyd").await;
    bob.send(&ClientMessage::Logout).await;
    let acked = r
        .until_acked(DELIVERED, |e| {
            has(e, "ann", "online", "activity")
                && has(e, "bob", "offline", "logout")
                && has(e, "cyd", "online", "activity")
        })
        .await;
    assert_in_v_order_per_user(&acked);
    let failed = r.deliveries().iter().filter(|x| x.answered == 500).count();
    assert_eq!(failed, 4, "each failure was retried");
    // Every event of a failed request came again, with the same id.
    for x in r.deliveries().iter().filter(|x| x.answered == 500) {
        for e in &x.events {
            assert!(acked.iter().any(|y| y["id"] == e["id"]), "{e} lost");
        }
    }
    let w = until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["status"] == "ok"
    })
    .await;
    assert_eq!(w["delivery"]["attempts"], 0, "{w}");
    assert_eq!(w["delivery"]["last_error"]["status"], 500, "kept: {w}");
}

async fn a_filter_delivers_only_the_events_it_names(d: &Deployment) {
    d.seed("acme", &["ann", "bob"]).await;
    let r = Receiver::start().await;
    let a = d.admin();
    let mut body = hook(&r);
    body["statuses"] = json!(["offline"]);
    body["reasons"] = json!(["logout"]);
    assert_eq!(put_hook(&a, "logouts", body).await.0, 201);
    let mut ann = d.tab("acme", "ann").await;
    ann.send(&ClientMessage::Logout).await;
    let bob = d.tab("acme", "bob").await;
    drop(bob);
    crate::feed::until_in_feed(&a, |e| e.user == "bob" && e.reason == "idle").await;
    // After bob's idle in the feed, so its delivery (or not) is decided
    // before this logout is delivered.
    let mut ann = d.tab("acme", "ann").await;
    crate::feed::until_in_feed(&a, |e| e.user == "ann" && e.v >= 3).await;
    ann.send(&ClientMessage::Logout).await;
    let acked = r
        .until_acked(DELIVERED, |e| {
            e.iter().filter(|e| e["user"] == "ann").count() >= 2
        })
        .await;
    assert!(
        acked
            .iter()
            .all(|e| e["status"] == "offline" && e["reason"] == "logout"),
        "{acked:?}"
    );
}

async fn a_receiver_down_for_thirty_seconds_then_back_gets_everything(d: &Deployment) {
    d.seed("acme", &["ann", "bob"]).await;
    let mut r = Receiver::start().await;
    let a = d.admin();
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 201);
    let _ann = d.tab("acme", "ann").await;
    r.until_acked(DELIVERED, |e| has(e, "ann", "online", "activity"))
        .await;
    r.down();
    let mut bob = d.tab("acme", "bob").await;
    bob.send(&ClientMessage::Logout).await;
    let w = until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["status"] == "retrying" && w["delivery"]["pending"].as_u64() >= Some(2)
    })
    .await;
    let err = w["delivery"]["last_error"]["message"].as_str().unwrap();
    assert!(w["delivery"]["last_error"].get("status").is_none(), "{w}");
    assert!(!err.is_empty(), "{w}");
    tokio::time::sleep(Duration::from_secs(30)).await;
    let (_, w) = a.call("GET", "/v1/tenants/acme/webhooks/erp", None).await;
    assert!(
        w["delivery"]["oldest_pending_age_ms"].as_u64().unwrap() >= 30_000,
        "{w}"
    );
    r.up().await;
    let acked = r
        .until_acked(DELIVERED, |e| {
            has(e, "bob", "online", "activity") && has(e, "bob", "offline", "logout")
        })
        .await;
    assert_in_v_order_per_user(&acked);
}

async fn webhooks_are_for_the_admin_key_and_public_targets_only(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/boss",
        json!({"name":"Boss","email":"b@x","profile":"admin"}),
    )
    .await;
    d.synced("acme").await;
    let r = Receiver::start().await;
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 201);

    // A tenant administrator may read the feed but not configure webhooks.
    let boss = a.with_key(&token("acme", "boss"));
    assert_eq!(
        boss.call("GET", "/v1/tenants/acme/events", None).await.0,
        200
    );
    for (method, path, body) in [
        ("PUT", "/v1/tenants/acme/webhooks/mine", Some(hook(&r))),
        ("GET", "/v1/tenants/acme/webhooks/erp", None),
        ("GET", "/v1/tenants/acme/webhooks", None),
        ("DELETE", "/v1/tenants/acme/webhooks/erp", None),
    ] {
        let (s, body) = boss.call(method, path, body).await;
        assert_eq!(s, 403, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{body}");
    }

    // Private, loopback (other than the allowed 127.0.0.1) and link-local
    // targets, and bad URLs, secrets and filters: 400 naming the field.
    for (url, field) in [
        ("http://10.0.0.7/hook", "url"),
        ("http://192.168.1.20:8080/hook", "url"),
        ("http://169.254.169.254/latest/meta-data", "url"),
        ("http://[::1]:9/hook", "url"),
        ("http://127.0.0.2:9/hook", "url"),
        ("ftp://erp.example.com/hook", "url"),
        ("not a url", "url"),
    ] {
        let (s, body) = put_hook(&a, "bad", json!({"url": url, "secret": HOOK_SECRET})).await;
        assert_eq!(s, 400, "{url}: {body}");
        assert_eq!(body["error"]["details"]["field"], field, "{url}: {body}");
    }
    let (s, body) = put_hook(&a, "bad", json!({"url": r.url(), "secret": "short"})).await;
    assert_eq!(
        (s, body["error"]["details"]["field"].clone()),
        (400, json!("secret")),
        "{body}"
    );
    let (s, body) = put_hook(
        &a,
        "bad",
        json!({"url": r.url(), "secret": HOOK_SECRET, "reasons": ["bored"]}),
    )
    .await;
    assert_eq!(s, 400, "{body}");
    let (s, _) = a.call("GET", "/v1/tenants/acme/webhooks/bad", None).await;
    assert_eq!(s, 404, "nothing was created by the refusals");

    // Deleted: no more deliveries.
    let (s, _) = a
        .call("DELETE", "/v1/tenants/acme/webhooks/erp", None)
        .await;
    assert_eq!(s, 204);
    let (s, _) = a
        .call("DELETE", "/v1/tenants/acme/webhooks/erp", None)
        .await;
    assert_eq!(s, 404);
    let before = r.deliveries().len();
    // A second webhook proves the next event went through delivery.
    let probe = Receiver::start().await;
    assert_eq!(put_hook(&a, "probe", hook(&probe)).await.0, 201);
    let _ann = d.tab("acme", "ann").await;
    probe
        .until_acked(DELIVERED, |e| has(e, "ann", "online", "activity"))
        .await;
    assert_eq!(
        r.deliveries().len(),
        before,
        "a deleted webhook delivers nothing"
    );
}

/// A receiver away for longer than the retention: the undelivered events
/// are trimmed, the webhook says `failing`, deliveries go on after the gap
/// once it is back, and a `PUT` clears the mark.
async fn a_receiver_away_past_the_retention_is_marked_failing(d: &Deployment) {
    d.seed("acme", &["ann", "bob"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        "/v1/tenants/acme",
        json!({"user_limit": 100, "event_retention_s": 1}),
    )
    .await;
    let mut r = Receiver::start().await;
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 201);
    r.down();
    let mut ann = d.tab("acme", "ann").await;
    ann.send(&ClientMessage::Logout).await;
    crate::feed::until_in_feed(&a, |e| e.user == "ann" && e.reason == "logout").await;
    // Trimmed past the one-second retention (the trim runs every 200 ms here).
    // The deliverer says why once its next attempt finds the gap.
    until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["status"] == "failing"
            && w["delivery"]["last_error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("past the retention"))
    })
    .await;
    r.up().await;
    let _bob = d.tab("acme", "bob").await;
    let acked = r
        .until_acked(DELIVERED, |e| has(e, "bob", "online", "activity"))
        .await;
    assert!(
        !acked.iter().any(|e| e["user"] == "ann"),
        "ann's events were trimmed before delivery: {acked:?}"
    );
    let w = until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["pending"] == 0
    })
    .await;
    assert_eq!(
        w["delivery"]["status"], "failing",
        "sticky until a PUT: {w}"
    );
    assert_eq!(put_hook(&a, "erp", hook(&r)).await.0, 200);
    until_shown(d, "/v1/tenants/acme/webhooks/erp", |w| {
        w["delivery"]["status"] == "ok"
    })
    .await;
}

/// [`webhook_config`] with the feed trimmed every 200 ms.
fn trimming_config() -> Config {
    Config {
        event_trim: Duration::from_millis(200),
        cluster_duties: Duration::from_millis(200),
        ..webhook_config()
    }
}

mod past_retention {
    use super::*;
    suite!(config = trimming_config();
        a_receiver_away_past_the_retention_is_marked_failing,
    );
}

suite!(config = webhook_config();
    every_event_is_delivered_signed_and_in_v_order_per_user,
    a_receiver_failing_its_first_requests_gets_every_event_in_order,
    a_filter_delivers_only_the_events_it_names,
    a_receiver_down_for_thirty_seconds_then_back_gets_everything,
    webhooks_are_for_the_admin_key_and_public_targets_only,
);
