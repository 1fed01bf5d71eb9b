//! The transition feed (SPEC §10), read as the ERP backend reads it: pages
//! with long poll and the event stream, over HTTP, against what dashboards
//! received. The bodies run on one node and on a two-node cluster
//! (`harness::suite!`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use presence_protocol::{ServerMessage, Status};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

/// A feed event as the API answers it, reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ev {
    pub cursor: u64,
    pub user: String,
    pub status: String,
    pub v: u64,
    pub reason: String,
}

pub fn ev(e: &Value) -> Ev {
    let user = e["user"].as_str().unwrap().to_owned();
    let v = e["v"].as_u64().unwrap();
    assert_eq!(e["id"], format!("acme:{user}:{v}"), "{e}");
    assert_eq!(e["tenant"], "acme", "{e}");
    assert!(
        e["at"].as_u64().unwrap() > 1_700_000_000_000,
        "epoch ms: {e}"
    );
    Ev {
        cursor: e["cursor"].as_u64().unwrap(),
        user,
        status: e["status"].as_str().unwrap().to_owned(),
        v,
        reason: e["reason"].as_str().unwrap().to_owned(),
    }
}

/// Every event of the acme feed after `after`, page by page (of `limit`).
pub async fn read_all(a: &Admin, after: u64, limit: u64) -> Vec<Ev> {
    let mut out = Vec::new();
    let mut after = after;
    loop {
        let (s, page) = a
            .call(
                "GET",
                &format!("/v1/tenants/acme/events?after={after}&limit={limit}"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let events = page["events"].as_array().unwrap();
        let next = page["next"].as_u64().unwrap();
        if events.is_empty() {
            assert_eq!(next, after, "an empty page names the cursor asked for");
            return out;
        }
        assert!(events.len() as u64 <= limit);
        out.extend(events.iter().map(ev));
        assert_eq!(next, out.last().unwrap().cursor);
        after = next;
    }
}

/// Waits until the feed holds an event matching `f` (read with a long
/// poll, so no polling interval), returning every event read.
pub async fn until_in_feed(a: &Admin, f: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    until_in_feed_after(a, 0, f).await
}

/// [`until_in_feed`], reading after cursor `after`.
pub async fn until_in_feed_after(a: &Admin, after: u64, f: impl Fn(&Ev) -> bool) -> Vec<Ev> {
    let deadline = Instant::now() + WAIT * 4;
    let mut seen = Vec::new();
    let mut after = after;
    loop {
        let (s, page) = a
            .call(
                "GET",
                &format!("/v1/tenants/acme/events?after={after}&limit=1000&wait_ms=1000"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{page}");
        seen.extend(page["events"].as_array().unwrap().iter().map(ev));
        after = page["next"].as_u64().unwrap();
        if seen.iter().any(&f) {
            return seen;
        }
        assert!(Instant::now() < deadline, "never in the feed: {seen:?}");
    }
}

/// An administrator ("boss") watching the directory, subscribed once boss's
/// own online is known everywhere.
async fn watching(d: &Deployment) -> Tab {
    d.admin()
        .ok(
            "PUT",
            "/v1/tenants/acme/users/boss",
            json!({"name":"Boss","email":"b@x","profile":"admin"}),
        )
        .await;
    d.synced("acme").await;
    let mut boss = d.tab("acme", "boss").await;
    d.on_every_node("/v1/tenants/acme/users/boss", |u| u["status"] == "online")
        .await;
    boss.subscribe(1, "directory").await;
    boss
}

/// The next presence delta of `user` with `status` the watcher receives;
/// every delta on the way is recorded in `seen` as (user, status, v).
async fn delta(
    w: &mut Tab,
    seen: &mut Vec<(String, String, u64)>,
    user: &str,
    status: Status,
) -> u64 {
    loop {
        if let ServerMessage::Presence {
            user: u,
            status: s,
            v,
            ..
        } = w.recv().await
        {
            let name = match s {
                Status::Online => "online",
                Status::Offline => "offline",
            };
            seen.push((u.clone(), name.to_owned(), v));
            if u == user && s == status {
                return v;
            }
        }
    }
}

async fn every_transition_a_dashboard_saw_is_in_the_feed_with_its_reason(d: &Deployment) {
    d.seed("acme", &["ann", "bob", "cyd", "dan"]).await;
    let mut boss = watching(d).await;
    let mut seen = Vec::new();
    let a = d.admin();

    // Activity, then the margin passing: online, idle.
    let ann = d.tab("acme", "ann").await;
    delta(&mut boss, &mut seen, "ann", Status::Online).await;
    drop(ann);
    delta(&mut boss, &mut seen, "ann", Status::Offline).await;
    // Logout.
    let mut bob = d.tab("acme", "bob").await;
    delta(&mut boss, &mut seen, "bob", Status::Online).await;
    bob.send(&presence_protocol::ClientMessage::Logout).await;
    delta(&mut boss, &mut seen, "bob", Status::Offline).await;
    // Deactivation and deletion.
    let _cyd = d.tab("acme", "cyd").await;
    let _dan = d.tab("acme", "dan").await;
    delta(&mut boss, &mut seen, "cyd", Status::Online).await;
    if !seen.iter().any(|(u, _, _)| u == "dan") {
        delta(&mut boss, &mut seen, "dan", Status::Online).await;
    }
    a.ok(
        "POST",
        "/v1/tenants/acme/users/deactivate",
        json!({"ids":["cyd"]}),
    )
    .await;
    delta(&mut boss, &mut seen, "cyd", Status::Offline).await;
    a.ok("DELETE", "/v1/tenants/acme/users/dan", Value::Null)
        .await;
    // A deleted user leaves the rosters: the dashboard is told so, and
    // the feed tells the offline.
    boss.recv_until(|m| matches!(m, ServerMessage::UserRemoved { user, .. } if user == "dan"))
        .await;
    // The removal is a directory delta, not held back by the feed's commit:
    // wait for dan's event itself before reading the feed whole.
    until_in_feed(&a, |e| e.user == "dan" && e.reason == "deleted").await;

    // Whatever node is asked, the feed holds each of them with its reason.
    for i in 0..d.len() {
        let feed = read_all(&d.admin_on(i), 0, 1000).await;
        let by_id: BTreeMap<(String, u64), &Ev> =
            feed.iter().map(|e| ((e.user.clone(), e.v), e)).collect();
        assert_eq!(by_id.len(), feed.len(), "one event per (user, v): {feed:?}");
        for (u, status, v) in &seen {
            let e = by_id
                .get(&(u.clone(), *v))
                .unwrap_or_else(|| panic!("node {i}: {u} v{v} not in {feed:?}"));
            assert_eq!(&e.status, status, "{e:?}");
        }
        let reasons: Vec<(&str, &str, &str)> = feed
            .iter()
            .filter(|e| e.user != "boss")
            .map(|e| (e.user.as_str(), e.status.as_str(), e.reason.as_str()))
            .collect();
        for want in [
            ("ann", "online", "activity"),
            ("ann", "offline", "idle"),
            ("bob", "online", "activity"),
            ("bob", "offline", "logout"),
            ("cyd", "online", "activity"),
            ("cyd", "offline", "deactivated"),
            ("dan", "online", "activity"),
            ("dan", "offline", "deleted"),
        ] {
            assert!(
                reasons.contains(&want),
                "node {i}: {want:?} not in {reasons:?}"
            );
        }
        // Cursor order is v order for each user; cursors only grow.
        assert!(
            feed.windows(2).all(|w| w[0].cursor < w[1].cursor),
            "{feed:?}"
        );
        let mut last_v: BTreeMap<&str, u64> = BTreeMap::new();
        for e in &feed {
            let prev = last_v.insert(&e.user, e.v).unwrap_or(0);
            assert!(e.v > prev, "{} went from v{prev} to v{}", e.user, e.v);
        }
    }
}

async fn pages_follow_after_limit_and_next(d: &Deployment) {
    let users = ["ann", "bob", "cyd"];
    d.seed("acme", &users).await;
    let a = d.admin();
    // Six events: each user online, then offline (the logout, or the idle
    // expiry when a loaded machine took longer than the test's short idle
    // timeout to send it: paging does not care which).
    for (i, u) in users.iter().enumerate() {
        let mut t = d.tab("acme", u).await;
        until_in_feed(&a, |e| e.user == *u && e.v == 1).await;
        t.send(&presence_protocol::ClientMessage::Logout).await;
        t.closed().await;
        let seen = until_in_feed(&a, |e| e.user == *u && e.v == 2).await;
        assert!(seen.len() >= 2 * (i + 1), "{seen:?}");
    }
    let all = read_all(&a, 0, 1000).await;
    assert_eq!(all.len(), 6, "{all:?}");
    assert_eq!(read_all(&a, 0, 1000).await, all);
    assert_eq!(read_all(&a, 0, 2).await, all, "pages of two");
    assert_eq!(read_all(&a, 0, 1).await, all, "pages of one");
    assert_eq!(
        read_all(&a, all[2].cursor, 4).await,
        all[3..],
        "after a cursor"
    );
    assert!(read_all(&a, all[5].cursor, 4).await.is_empty());

    for bad in [
        "limit=0",
        "limit=1001",
        "wait_ms=30001",
        "after=-1",
        "limit=ten",
    ] {
        let (s, body) = a
            .call("GET", &format!("/v1/tenants/acme/events?{bad}"), None)
            .await;
        assert_eq!(
            (s, &body["error"]["code"]),
            (400, &json!("bad_request")),
            "{bad}: {body}"
        );
    }
    let (s, _) = a.call("GET", "/v1/tenants/nope/events", None).await;
    assert_eq!(s, 404);
}

async fn a_long_poll_returns_when_a_transition_happens_and_times_out_empty(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let a = d.admin();
    // Nothing yet: an empty page after the wait, naming the same cursor.
    let began = Instant::now();
    let (s, page) = a
        .call("GET", "/v1/tenants/acme/events?after=0&wait_ms=300", None)
        .await;
    assert_eq!((s, page), (200, json!({"events":[],"next":0})));
    assert!(began.elapsed() >= Duration::from_millis(300));

    // A poll waiting for a long time returns as soon as ann comes online.
    let poll = {
        let a = d.admin_on(1);
        tokio::spawn(async move {
            let began = Instant::now();
            let r = a
                .call("GET", "/v1/tenants/acme/events?after=0&wait_ms=20000", None)
                .await;
            (r, began.elapsed())
        })
    };
    let _ann = d.tab("acme", "ann").await;
    let ((s, page), took) = poll.await.unwrap();
    assert_eq!(s, 200, "{page}");
    let events: Vec<Ev> = page["events"].as_array().unwrap().iter().map(ev).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0].user.as_str(), events[0].reason.as_str()),
        ("ann", "activity")
    );
    assert_eq!(page["next"], events[0].cursor);
    assert!(
        took < Duration::from_secs(5),
        "woken by the commit, took {took:?}"
    );
}

/// The messages of a Server-Sent Events stream: (id, data).
struct Sse {
    resp: reqwest::Response,
    buf: String,
}

impl Sse {
    async fn open(
        d: &Deployment,
        i: usize,
        last_event_id: Option<u64>,
    ) -> Result<Sse, (u16, Value)> {
        let mut req = reqwest::Client::new()
            .get(format!(
                "http://{}/v1/tenants/acme/events/stream",
                d.addr(i)
            ))
            .bearer_auth(ADMIN_KEY);
        if let Some(id) = last_event_id {
            req = req.header("Last-Event-ID", id.to_string());
        }
        let resp = req.send().await.unwrap();
        if resp.status() != 200 {
            let s = resp.status().as_u16();
            return Err((s, resp.json().await.unwrap()));
        }
        assert_eq!(resp.headers()["content-type"], "text/event-stream");
        Ok(Sse {
            resp,
            buf: String::new(),
        })
    }

    /// The next message (comments skipped), as its `id:` and parsed `data:`.
    async fn next(&mut self) -> (u64, Value) {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if let Some(id) = id {
                    return (id, serde_json::from_str(&data).unwrap());
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("the stream said nothing in time")
                .unwrap()
                .expect("the stream ended");
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }
}

async fn the_stream_sends_each_event_and_resumes_from_last_event_id(d: &Deployment) {
    d.seed("acme", &["ann", "bob"]).await;
    let mut s = Sse::open(d, 0, None).await.unwrap();
    let _ann = d.tab("acme", "ann").await;
    let (id1, e1) = s.next().await;
    assert_eq!(
        (e1["user"].as_str(), e1["cursor"].as_u64()),
        (Some("ann"), Some(id1))
    );
    let _bob = d.tab("acme", "bob").await;
    let (id2, e2) = s.next().await;
    assert_eq!(
        (e2["user"].as_str(), e2["cursor"].as_u64()),
        (Some("bob"), Some(id2))
    );
    assert!(id2 > id1);
    drop(s);

    // A reconnection (on any node) resumes after the last event received.
    let mut again = Sse::open(d, 1, Some(id1)).await.unwrap();
    assert_eq!(again.next().await, (id2, e2));
    drop(_ann);
    // Both go idle next, ann's deadline a moment before bob's; they are
    // on different nodes, whose timers on a loaded machine may release
    // them in either order.
    let (id3, e3) = again.next().await;
    let (id4, e4) = again.next().await;
    assert!(id2 < id3 && id3 < id4, "{id2} {id3} {id4}");
    let mut idle: Vec<(Option<&str>, Option<&str>)> = [&e3, &e4]
        .iter()
        .map(|e| (e["user"].as_str(), e["reason"].as_str()))
        .collect();
    idle.sort();
    assert_eq!(
        idle,
        [(Some("ann"), Some("idle")), (Some("bob"), Some("idle"))],
        "{e3} {e4}"
    );

    let bad = reqwest::Client::new()
        .get(format!(
            "http://{}/v1/tenants/acme/events/stream",
            d.addr(0)
        ))
        .bearer_auth(ADMIN_KEY)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
}

async fn past_retention_answers_410_with_the_oldest_cursor(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    let a = d.admin();
    let t = a
        .ok(
            "PUT",
            "/v1/tenants/acme",
            json!({"user_limit":1000,"event_retention_s":1}),
        )
        .await;
    assert_eq!(t["event_retention_s"], 1);
    let (s, _) = a
        .call(
            "PUT",
            "/v1/tenants/acme",
            Some(json!({"user_limit":1000,"event_retention_s":0})),
        )
        .await;
    assert_eq!(s, 400);
    let mut ann = d.tab("acme", "ann").await;
    ann.send(&presence_protocol::ClientMessage::Logout).await;
    let old = until_in_feed(&a, |e| e.reason == "logout").await;
    // Past the retention of one second, then trimmed on a node.
    let newest_at = Instant::now();
    tokio::time::sleep_until((newest_at + Duration::from_millis(1_100)).into()).await;
    let removed = d.node(1).hub.trim_events().await.unwrap();
    assert_eq!(removed, 2, "{old:?}");
    let _ann = d.tab("acme", "ann").await;
    let now = until_in_feed_after(&d.admin_on(1), old[1].cursor, |e| e.v == 3).await;
    assert_eq!(now.len(), 1, "only the newer event is left: {now:?}");
    assert_eq!(
        now[0].cursor,
        old[1].cursor + 1,
        "cursors go on after a trim"
    );

    for i in 0..d.len() {
        let (s, body) = d
            .admin_on(i)
            .call("GET", "/v1/tenants/acme/events?after=0", None)
            .await;
        assert_eq!(s, 410, "{body}");
        assert_eq!(body["error"]["code"], "events_gone");
        assert_eq!(body["error"]["details"], json!({"oldest": now[0].cursor}));
        let (s, _) = d
            .admin_on(i)
            .call(
                "GET",
                &format!("/v1/tenants/acme/events?after={}", old[1].cursor),
                None,
            )
            .await;
        assert_eq!(s, 200, "the oldest held is still readable");
        let refused = Sse::open(d, i, Some(old[0].cursor)).await.err().unwrap();
        assert_eq!(refused.0, 410);
        assert_eq!(refused.1["error"]["details"]["oldest"], now[0].cursor);
    }
    // Trimming again removes nothing more.
    assert_eq!(d.node(0).hub.trim_events().await.unwrap(), 0);
}

/// The status of the stream's answer to a caller with `bearer` (the
/// stream itself is not read).
async fn stream_status(d: &Deployment, bearer: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "http://{}/v1/tenants/acme/events/stream",
            d.addr(0)
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn a_tenant_admin_may_read_the_feed_and_nobody_else_may(d: &Deployment) {
    d.seed("acme", &["ann"]).await;
    d.node(0).seed("globex", &["gus"]).await;
    let a = d.admin();
    for (tenant, user) in [("acme", "boss"), ("globex", "gil")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{tenant}/users/{user}"),
            json!({"name":"Admin","email":"a@x","profile":"admin"}),
        )
        .await;
    }
    d.synced("acme").await;
    d.synced("globex").await;
    let boss = a.with_key(&token("acme", "boss"));
    let (s, page) = boss.call("GET", "/v1/tenants/acme/events", None).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(stream_status(d, &token("acme", "boss")).await, 200);
    for (who, t) in [
        ("another tenant's admin", token("globex", "gil")),
        ("a standard user", token("acme", "ann")),
    ] {
        let (s, body) = a
            .with_key(&t)
            .call("GET", "/v1/tenants/acme/events", None)
            .await;
        assert_eq!(s, 403, "{who}: {body}");
        assert_eq!(stream_status(d, &t).await, 403, "{who}");
    }
    let (s, _) = a
        .with_key("nope")
        .call("GET", "/v1/tenants/acme/events", None)
        .await;
    assert_eq!(s, 401);
}

suite!(config = test_config();
    every_transition_a_dashboard_saw_is_in_the_feed_with_its_reason,
    pages_follow_after_limit_and_next,
    a_long_poll_returns_when_a_transition_happens_and_times_out_empty,
    the_stream_sends_each_event_and_resumes_from_last_event_id,
    past_retention_answers_410_with_the_oldest_cursor,
    a_tenant_admin_may_read_the_feed_and_nobody_else_may,
);

/// A single node restarted on its data dir keeps its feed, and goes on with
/// the cursor and each user's `v`.
#[tokio::test]
async fn a_restart_keeps_the_events_and_goes_on_with_the_cursor() {
    let mut h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let a = h.admin();
    let mut ann = h.tab("acme", "ann").await;
    ann.send(&presence_protocol::ClientMessage::Logout).await;
    let before = until_in_feed(&a, |e| e.reason == "logout").await;
    h.stop().await;
    let dir = std::mem::replace(&mut h.dir, tempfile::tempdir().unwrap());
    drop(h);
    let h = TestHub::on_dir(test_config(), dir).await;
    let a = h.admin();
    assert_eq!(read_all(&a, 0, 1000).await, before);
    let _ann = Tab::open(h.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let after = until_in_feed(&a, |e| e.cursor > before[1].cursor).await;
    assert_eq!(
        after[2],
        Ev {
            cursor: before[1].cursor + 1,
            user: "ann".into(),
            status: "online".into(),
            v: 3,
            reason: "activity".into(),
        }
    );
}
