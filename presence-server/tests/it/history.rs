//! Presence history and the attendance report (SPEC §11), read as the ERP
//! backend, an administrator and a supervisor read them: intervals made by
//! real tabs going online and offline, the same on every node; the report
//! in JSON and CSV; the erasure; who may read; and the bad requests
//! refused. The bodies run on one node and on a two-node cluster.

use std::time::Duration;

use presence_protocol::ClientMessage;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::support::*;

suite!(
    config = test_config();
    an_attendant_s_periods_become_intervals_with_the_reason_each_ended,
    tabs_on_two_nodes_make_one_interval,
    a_keeper_stores_what_the_feed_holds,
    the_report_adds_up_each_day_per_user_and_per_team_in_json_and_csv,
    a_supervisor_reads_only_their_teams_and_others_are_refused,
    an_erasure_removes_the_history_and_the_report_s_times,
    bad_ranges_and_unknown_names_are_refused_precisely,
);

const T: &str = "acme";

fn history_path(uid: &str, query: &str) -> String {
    format!("/v1/tenants/{T}/users/{uid}/history{query}")
}

fn report_path(query: &str) -> String {
    format!("/v1/tenants/{T}/reports/attendance{query}")
}

/// `(from, to, status, reason)` of each interval of a history answer,
/// after checking what holds for any history: in time order, each one
/// starting where the one before ended, statuses alternating, only the
/// last open.
pub fn intervals(h: &Value) -> Vec<(u64, Option<u64>, String, Option<String>)> {
    let list = h["intervals"].as_array().expect("intervals");
    let out: Vec<_> = list
        .iter()
        .map(|i| {
            (
                i["from"].as_u64().unwrap(),
                i["to"].as_u64(),
                i["status"].as_str().unwrap().to_owned(),
                i["reason"].as_str().map(str::to_owned),
            )
        })
        .collect();
    for w in out.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        let end = a.1.unwrap_or_else(|| panic!("only the last is open: {h}"));
        assert!(a.0 <= end, "{h}");
        assert_eq!(end, b.0, "contiguous: {h}");
        assert_ne!(a.2, b.2, "statuses alternate: {h}");
    }
    out
}

/// The online intervals of `uid`'s history on node `i`.
pub async fn online_on(
    d: &Deployment,
    i: usize,
    uid: &str,
) -> Vec<(u64, Option<u64>, Option<String>)> {
    online(&d.admin_on(i), uid).await
}

/// The online intervals of `uid`'s history, as `a` reads them.
pub async fn online(a: &Admin, uid: &str) -> Vec<(u64, Option<u64>, Option<String>)> {
    let h = a.ok("GET", &history_path(uid, ""), Value::Null).await;
    intervals(&h)
        .into_iter()
        .filter(|i| i.2 == "online")
        .map(|(f, t, _, r)| (f, t, r))
        .collect()
}

/// The `at` of `uid`'s feed events, in order, with their status and reason.
pub async fn feed_of(a: &Admin, uid: &str) -> Vec<(u64, String, String)> {
    let page = a
        .ok(
            "GET",
            &format!("/v1/tenants/{T}/events?limit=1000"),
            Value::Null,
        )
        .await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["user"] == uid)
        .map(|e| {
            (
                e["at"].as_u64().unwrap(),
                e["status"].as_str().unwrap().to_owned(),
                e["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until every node shows `uid` with `status` and their feed's last
/// event says so too (a single node commits the event just after its
/// state changes; history is built on the feed).
async fn wait_status(d: &Deployment, uid: &str, status: &str) {
    d.on_every_node(&format!("/v1/tenants/{T}/users/{uid}"), |u| {
        u["status"] == status
    })
    .await;
    for i in 0..d.len() {
        let a = d.admin_on(i);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while feed_of(&a, uid).await.last().map(|e| e.1.as_str()) != Some(status) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {i}: {uid} never {status} in the feed"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// One online period of `uid`, ended by a logout, in the feed of every
/// node.
async fn logged_out_period(d: &Deployment, uid: &str) {
    let mut tab = d.tab(T, uid).await;
    wait_status(d, uid, "online").await;
    tab.send(&ClientMessage::Logout).await;
    assert_eq!(tab.closed().await.code, 4004);
    wait_status(d, uid, "offline").await;
}

async fn profile(d: &Deployment, uid: &str, profile: &str) {
    d.admin()
        .ok(
            "PUT",
            &format!("/v1/tenants/{T}/users/{uid}"),
            json!({ "profile": profile }),
        )
        .await;
}

async fn team(d: &Deployment, id: &str, members: &[(&str, &str)]) {
    let a = d.admin();
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}/teams/{id}"),
        json!({"name": format!("Team {id}"), "crm": true}),
    )
    .await;
    for (u, role) in members {
        a.ok(
            "PUT",
            &format!("/v1/tenants/{T}/teams/{id}/members/{u}"),
            json!({"as": role}),
        )
        .await;
    }
}

async fn an_attendant_s_periods_become_intervals_with_the_reason_each_ended(d: &Deployment) {
    d.seed(T, &["ann"]).await;
    // Online, logged out; online again, then idle past the timeout.
    logged_out_period(d, "ann").await;
    let _tab = d.tab(T, "ann").await;
    wait_status(d, "ann", "online").await;
    // Still online: the second interval is open.
    for i in 0..d.len() {
        let got = online_on(d, i, "ann").await;
        assert_eq!(got.len(), 2, "node {i}: {got:?}");
        assert_eq!(got[0].2.as_deref(), Some("logout"));
        assert_eq!((got[1].1, got[1].2.as_deref()), (None, None), "open");
    }
    wait_status(d, "ann", "offline").await;

    let feed = feed_of(&d.admin(), "ann").await;
    let at: Vec<u64> = feed.iter().map(|e| e.0).collect();
    assert_eq!(
        feed.iter().map(|e| e.2.as_str()).collect::<Vec<_>>(),
        ["activity", "logout", "activity", "idle"]
    );
    for i in 0..d.len() {
        let h = d
            .admin_on(i)
            .ok("GET", &history_path("ann", ""), Value::Null)
            .await;
        assert_eq!(h["user"], "ann");
        assert_eq!(h["time_zone"], "UTC");
        assert_eq!(h["erased_at"], Value::Null);
        let got = intervals(&h);
        // Exactly where the feed put each transition, the gap between the
        // periods, and the gap since the last one, which goes on.
        let s = |x: &str| x.to_owned();
        assert_eq!(
            got,
            [
                (at[0], Some(at[1]), s("online"), Some(s("logout"))),
                (at[1], Some(at[2]), s("offline"), Some(s("activity"))),
                (at[2], Some(at[3]), s("online"), Some(s("idle"))),
                (at[3], None, s("offline"), None),
            ],
            "node {i}: {h}"
        );
        assert!(at[3] - at[2] >= 1_500, "idle after the timeout: {at:?}");
    }
}

/// Some node folds the feed into the store (not only the readers' fold of
/// the tail): in a cluster the shared state's cursor reaches the feed's
/// last event within a few seconds (the keeper gathers for one), whichever
/// node owns the tenant; then the feed can be trimmed and the history
/// stays.
async fn a_keeper_stores_what_the_feed_holds(d: &Deployment) {
    d.seed(T, &["ann"]).await;
    logged_out_period(d, "ann").await;
    let page = d
        .admin()
        .ok(
            "GET",
            &format!("/v1/tenants/{T}/events?limit=1000"),
            Value::Null,
        )
        .await;
    let last = page["next"].as_u64().unwrap();
    let before = online_on(d, 0, "ann").await;
    assert_eq!(before.len(), 1, "{before:?}");
    if let Some(url) = d.redis_url() {
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let cursor: Option<u64> = redis::cmd("HGET")
                .arg(format!("presence:{{{T}}}:history_state"))
                .arg("cursor")
                .query_async(&mut conn)
                .await
                .unwrap();
            if cursor >= Some(last) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no keeper stored the feed: cursor {cursor:?}, feed {last}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // Every node still reads the same.
    for i in 0..d.len() {
        assert_eq!(online_on(d, i, "ann").await, before, "node {i}");
    }
}

async fn tabs_on_two_nodes_make_one_interval(d: &Deployment) {
    d.seed(T, &["ann"]).await;
    let token = token(T, "ann");
    // One tab per node (the same node on a single hub); the first closes,
    // the second keeps her online, then logs out.
    let first = d.open_tab_on(0, &token, Uuid::new_v4(), 0).await;
    let mut second = d.open_tab_on(d.len() - 1, &token, Uuid::new_v4(), 0).await;
    wait_status(d, "ann", "online").await;
    drop(first);
    // The first tab's close has reached its hub, and she is online still.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while (0..d.len())
        .map(|i| d.node(i).hub.registered_tabs())
        .sum::<usize>()
        != 1
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the first tab never closed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    second.activity(0).await;
    wait_status(d, "ann", "online").await;
    second.send(&ClientMessage::Logout).await;
    second.closed().await;
    wait_status(d, "ann", "offline").await;
    for i in 0..d.len() {
        let got = online_on(d, i, "ann").await;
        assert_eq!(got.len(), 1, "node {i}: one interval: {got:?}");
        assert_eq!(got[0].2.as_deref(), Some("logout"));
    }
}

/// A day's report of `uid` from a JSON report.
fn user_of<'a>(report: &'a Value, uid: &str) -> &'a Value {
    report["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["id"] == uid)
        .unwrap_or_else(|| panic!("{uid} not in {report}"))
}

async fn the_report_adds_up_each_day_per_user_and_per_team_in_json_and_csv(d: &Deployment) {
    d.seed(T, &["ann", "bob", "cid"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}"),
        json!({"user_limit": 1000, "time_zone": "America/Sao_Paulo"}),
    )
    .await;
    team(d, "sales", &[("ann", "member"), ("bob", "member")]).await;
    d.synced(T).await;
    // ann: two periods; bob: one; cid: none.
    for u in ["ann", "ann", "bob"] {
        logged_out_period(d, u).await;
    }
    let ann_feed = feed_of(&a, "ann").await;
    let bob_feed = feed_of(&a, "bob").await;
    let ann_ms = (ann_feed[1].0 - ann_feed[0].0) + (ann_feed[3].0 - ann_feed[2].0);
    let bob_ms = bob_feed[1].0 - bob_feed[0].0;

    // Today in São Paulo, as any node answers it.
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::get("America/Sao_Paulo").unwrap())
        .date()
        .to_string();
    for i in 0..d.len() {
        let r = d
            .admin_on(i)
            .ok("GET", &report_path("?intervals=true"), Value::Null)
            .await;
        assert_eq!(r["time_zone"], "America/Sao_Paulo", "{r}");
        assert_eq!(
            (r["from"].as_str(), r["to"].as_str()),
            (Some(&*today), Some(&*today))
        );
        // Sorted by name; cid listed with no day.
        let ids: Vec<&str> = r["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["ann", "bob", "cid"], "{r}");
        let ann = user_of(&r, "ann");
        let day = &ann["days"][0];
        assert_eq!(ann["days"].as_array().unwrap().len(), 1, "{ann}");
        assert_eq!(day["date"], today);
        assert_eq!(day["online_ms"], ann_ms, "{day}");
        assert_eq!(day["periods"], 2);
        assert_eq!(day["first_online"], ann_feed[0].0);
        assert_eq!(day["last_offline"], ann_feed[3].0);
        assert_eq!(day["longest_gap_ms"], ann_feed[2].0 - ann_feed[1].0);
        assert_eq!(
            day["intervals"],
            json!([
                [ann_feed[0].0, ann_feed[1].0],
                [ann_feed[2].0, ann_feed[3].0]
            ])
        );
        assert_eq!(ann["total"]["online_ms"], ann_ms);
        assert_eq!(ann["total"]["days_present"], 1);
        assert_eq!(user_of(&r, "bob")["total"]["online_ms"], bob_ms);
        assert_eq!(user_of(&r, "cid")["days"], json!([]));
        let sales = r["teams"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == "sales")
            .unwrap();
        assert_eq!(sales["members"], 2);
        assert_eq!(sales["online_ms"], ann_ms + bob_ms);
        assert_eq!(sales["periods"], 3);
        // One team, one user: only them.
        let only = d
            .admin_on(i)
            .ok("GET", &report_path("?team=sales&user=bob"), Value::Null)
            .await;
        assert_eq!(only["users"].as_array().unwrap().len(), 1, "{only}");
        assert_eq!(only["users"][0]["id"], "bob");
    }

    // The CSV: a BOM, `;`, a row per user per day, then the totals.
    let resp = reqwest::Client::new()
        .get(format!(
            "http://{}{}",
            d.addr(0),
            report_path("?format=csv")
        ))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/csv; charset=utf-8");
    assert!(resp.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("attendance-{today}-{today}.csv")));
    let bytes = resp.bytes().await.unwrap();
    assert!(bytes.starts_with(b"\xEF\xBB\xBF"), "a BOM first");
    let text = std::str::from_utf8(&bytes[3..]).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(';').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "user",
            "name",
            "date",
            "time_online",
            "first_online",
            "last_offline",
            "periods",
            "longest_gap"
        ]
    );
    let ann_day = rows
        .iter()
        .find(|r| r[0] == "ann" && r[2] == today)
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(ann_day[1], "ann name");
    assert_eq!(ann_day[6], "2");
    let secs = ann_ms / 1000;
    assert_eq!(
        ann_day[3],
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    );
    assert!(
        rows.iter().any(|r| r[0] == "ann" && r[2] == "total"),
        "{text}"
    );
    assert!(
        rows.iter().any(|r| r[0] == "team:sales" && r[2] == "total"),
        "{text}"
    );
}

async fn a_supervisor_reads_only_their_teams_and_others_are_refused(d: &Deployment) {
    d.seed(T, &["ann", "bob", "sue", "sam", "boss"]).await;
    let a = d.admin();
    profile(d, "boss", "admin").await;
    // sue supervises sales (ann); bob is in support, which sue does not
    // supervise; sam is a plain member of sales.
    team(
        d,
        "sales",
        &[("ann", "member"), ("sue", "supervisor"), ("sam", "member")],
    )
    .await;
    team(d, "support", &[("bob", "member")]).await;
    d.synced(T).await;
    let sue = a.with_key(&token(T, "sue"));
    let sam = a.with_key(&token(T, "sam"));
    let boss = a.with_key(&token(T, "boss"));
    let other_tenant = a.with_key(&token("globex", "sue"));

    let r = sue.ok("GET", &report_path(""), Value::Null).await;
    let ids: Vec<&str> = r["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["ann", "sam", "sue"],
        "sales only, herself included: {r}"
    );
    let teams: Vec<&str> = r["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(teams, ["sales"], "{r}");
    sue.ok("GET", &history_path("ann", ""), Value::Null).await;
    sue.ok("GET", &report_path("?team=sales"), Value::Null)
        .await;
    let refused = [
        sue.call("GET", &history_path("bob", ""), None).await,
        sue.call("GET", &report_path("?team=support"), None).await,
        sue.call("GET", &report_path("?user=bob"), None).await,
        sue.call("GET", &history_path("nobody", ""), None).await,
        sue.call("DELETE", &history_path("ann", ""), None).await,
        sam.call("GET", &report_path(""), None).await,
        sam.call("GET", &history_path("ann", ""), None).await,
        other_tenant.call("GET", &report_path(""), None).await,
    ];
    for (i, (s, body)) in refused.iter().enumerate() {
        assert_eq!(*s, 403, "case {i}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "case {i}");
    }
    // A tenant administrator reads everyone.
    let all = boss.ok("GET", &report_path(""), Value::Null).await;
    assert_eq!(all["users"].as_array().unwrap().len(), 5, "{all}");
    boss.ok("GET", &history_path("bob", ""), Value::Null).await;
    // No token at all.
    let (s, _) = a.with_key("nope").call("GET", &report_path(""), None).await;
    assert_eq!(s, 401);
    // Every kind of reader against every user: a supervisor of any
    // profile, and "member and supervisor", read their teams' members; a
    // deactivated user reads nothing and, having left their teams, is read
    // by administrators only.
    d.seed(T, &["rita", "bea", "ivy"]).await;
    profile(d, "rita", "restricted").await;
    team(
        d,
        "support",
        &[
            ("rita", "supervisor"),
            ("bea", "both"),
            ("ivy", "supervisor"),
        ],
    )
    .await;
    a.ok(
        "POST",
        &format!("/v1/tenants/{T}/users/deactivate"),
        json!({"ids": ["ivy"]}),
    )
    .await;
    d.synced(T).await;
    d.shows(&format!("/v1/tenants/{T}/teams/support"), |_| true)
        .await;
    let support = ["bea", "bob", "rita"];
    let everyone = ["ann", "bea", "bob", "boss", "ivy", "rita", "sam", "sue"];
    for (reader, may) in [
        ("boss", &everyone[..]),
        ("sue", &["ann", "sam", "sue"][..]),
        ("rita", &support[..]),
        ("bea", &support[..]),
        ("ivy", &[][..]),
        ("sam", &[][..]),
        ("bob", &[][..]),
    ] {
        for i in 0..d.len() {
            let r = d.admin_on(i).with_key(&token(T, reader));
            for uid in everyone {
                let (s, body) = r.call("GET", &history_path(uid, ""), None).await;
                let want = if may.contains(&uid) { 200 } else { 403 };
                assert_eq!(s, want, "node {i}: {reader} reads {uid}: {body}");
            }
        }
    }
    // Once sales is deactivated, sue supervises nothing.
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}/teams/sales"),
        json!({"name": "Team sales", "crm": true, "active": false}),
    )
    .await;
    d.shows(&format!("/v1/tenants/{T}/teams/sales"), |t| {
        t["active"] == false
    })
    .await;
    for i in 0..d.len() {
        let (s, body) = d
            .admin_on(i)
            .with_key(&token(T, "sue"))
            .call("GET", &report_path(""), None)
            .await;
        assert_eq!(s, 403, "node {i}: {body}");
    }
}

async fn an_erasure_removes_the_history_and_the_report_s_times(d: &Deployment) {
    d.seed(T, &["ann", "bob"]).await;
    for u in ["ann", "bob"] {
        logged_out_period(d, u).await;
    }
    // ann is online while her history is erased.
    let _ann = d.tab(T, "ann").await;
    wait_status(d, "ann", "online").await;
    let a = d.admin();
    assert_eq!(online_on(d, 0, "ann").await.len(), 2);
    let (s, body) = a.call("DELETE", &history_path("ann", ""), None).await;
    assert_eq!(s, 204, "{body}");
    for i in 0..d.len() {
        let h = d
            .admin_on(i)
            .ok("GET", &history_path("ann", ""), Value::Null)
            .await;
        assert_eq!(h["intervals"], json!([]), "node {i}: {h}");
        assert!(h["erased_at"].as_u64().is_some(), "the audit record: {h}");
        let r = d.admin_on(i).ok("GET", &report_path(""), Value::Null).await;
        assert_eq!(user_of(&r, "ann")["days"], json!([]), "node {i}: {r}");
        assert_eq!(user_of(&r, "ann")["total"]["online_ms"], 0);
        assert_eq!(
            user_of(&r, "bob")["days"].as_array().unwrap().len(),
            1,
            "bob's history stays: {r}"
        );
    }
    // The period she was in when erased ends unrecorded; the next one is
    // kept.
    wait_status(d, "ann", "offline").await;
    assert_eq!(online_on(d, 0, "ann").await, []);
    let _again = d.tab(T, "ann").await;
    wait_status(d, "ann", "online").await;
    for i in 0..d.len() {
        let got = online_on(d, i, "ann").await;
        assert_eq!(got.len(), 1, "node {i}: {got:?}");
        assert_eq!(got[0].1, None);
    }
    let (s, _) = a.call("DELETE", &history_path("ghost", ""), None).await;
    assert_eq!(s, 404);
}

async fn bad_ranges_and_unknown_names_are_refused_precisely(d: &Deployment) {
    d.seed(T, &["ann"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        &format!("/v1/tenants/{T}"),
        json!({"user_limit": 1000, "history_retention_days": 30}),
    )
    .await;
    let t = a.ok("GET", &format!("/v1/tenants/{T}"), Value::Null).await;
    assert_eq!(t["history_retention_days"], 30);
    for bad in [0, 3651] {
        let (s, body) = a
            .call(
                "PUT",
                &format!("/v1/tenants/{T}"),
                Some(json!({"user_limit": 1000, "history_retention_days": bad})),
            )
            .await;
        assert_eq!(s, 400, "{body}");
        assert_eq!(body["error"]["details"]["field"], "history_retention_days");
    }
    let long_ago = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24 * 40))
        .unwrap()
        .strftime("%Y-%m-%d")
        .to_string();
    let cases = [
        ("?from=yesterday", "from", "YYYY-MM-DD"),
        ("?from=2026-13-01", "from", "YYYY-MM-DD"),
        ("?to=2026-11-03T25:00:00Z", "to", "RFC 3339"),
        ("?from=2026-11-05&to=2026-11-03", "from", "after"),
        (&*format!("?from={long_ago}"), "from", "30 days"),
    ];
    for (q, param, says) in cases {
        for path in [history_path("ann", q), report_path(q)] {
            let (s, body) = a.call("GET", &path, None).await;
            assert_eq!(s, 400, "{path}: {body}");
            assert_eq!(body["error"]["code"], "bad_request");
            assert_eq!(body["error"]["details"]["param"], param, "{path}: {body}");
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(msg.contains(says), "{path}: {msg}");
        }
    }
    let (s, body) = a.call("GET", &report_path("?format=xml"), None).await;
    assert_eq!(
        (s, &body["error"]["details"]["param"]),
        (400, &json!("format"))
    );
    for (path, what) in [
        (history_path("ghost", ""), "user"),
        (report_path("?user=ghost"), "user"),
        (report_path("?team=ghost"), "team"),
        ("/v1/tenants/nope/reports/attendance".to_owned(), "tenant"),
        ("/v1/tenants/nope/users/ann/history".to_owned(), "tenant"),
    ] {
        let (s, body) = a.call("GET", &path, None).await;
        assert_eq!(s, 404, "{path}: {body}");
        assert!(
            body["error"]["message"].as_str().unwrap().contains(what),
            "{path}: {body}"
        );
    }
    // A range within the retention, as days and as instants, is fine.
    let now = jiff::Timestamp::now();
    let q = format!(
        "?from={}&to={}",
        now.checked_sub(jiff::SignedDuration::from_hours(1))
            .unwrap(),
        now
    );
    a.ok("GET", &history_path("ann", &q), Value::Null).await;
}

/// Retention (single node; the trim is the same store call in a cluster,
/// see `store_conformance`): a history written days ago, under a tenant
/// keeping two days, loses the old day at the next trim and keeps
/// yesterday's; a range before the retention is refused.
#[tokio::test]
async fn the_retention_trim_drops_days_older_than_the_tenant_keeps() {
    const DAY: u64 = 86_400_000;
    let now = now_ms();
    let (old, recent) = (now - 10 * DAY, now - DAY);
    let closed = |from: u64| (from, from + 60_000);
    let dir = stored_history(None, 2, &[closed(old), closed(recent)]).await;
    let hub = TestHub::on_dir(test_config(), dir).await;
    let a = hub.admin();
    let day = |ms: u64| {
        jiff::Timestamp::from_millisecond(ms as i64)
            .unwrap()
            .strftime("%Y-%m-%d")
            .to_string()
    };
    let yesterday = history_path("ann", &format!("?from={}", day(recent)));
    let got = |h: &Value| {
        intervals(h)
            .into_iter()
            .filter(|i| i.2 == "online")
            .map(|i| i.0)
            .collect::<Vec<_>>()
    };
    assert_eq!(got(&a.ok("GET", &yesterday, Value::Null).await), [recent]);
    let (s, body) = a
        .call(
            "GET",
            &history_path("ann", &format!("?from={}", day(old))),
            None,
        )
        .await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(hub.hub.trim_history().await.unwrap(), 1, "the old day went");
    assert_eq!(hub.hub.trim_history().await.unwrap(), 0, "once");
    assert_eq!(got(&a.ok("GET", &yesterday, Value::Null).await), [recent]);
}

/// A data dir holding tenant `acme` (in `zone`, keeping `retention_days`
/// of history) with user ann and her closed periods `(from, to)`, written
/// through the store as a keeper would have, for a hub to start on.
async fn stored_history(
    zone: Option<&str>,
    retention_days: u32,
    periods: &[(u64, u64)],
) -> tempfile::TempDir {
    use presence_protocol::Reason;
    use presence_server::{
        ClosedInterval, EmbeddedStore, HistoryBatch, Store, TenantRecord, UserRecord, Write,
    };
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path()).unwrap();
    store
        .commit(vec![
            Write::Tenant(TenantRecord {
                id: T.into(),
                user_limit: 10,
                event_retention_s: None,
                time_zone: zone.map(str::to_owned),
                history_retention_days: Some(retention_days),
            }),
            Write::User {
                tenant: T.into(),
                user: UserRecord {
                    id: "ann".into(),
                    name: "Ann".into(),
                    nickname: "ann".into(),
                    email: "ann@x.test".into(),
                    phone: String::new(),
                    profile: presence_protocol::Profile::Standard,
                    available: true,
                    away_message: String::new(),
                    state: presence_protocol::UserState::Active,
                },
            },
        ])
        .await
        .unwrap();
    let batch = HistoryBatch {
        cursor: 0,
        set_open: vec![],
        clear_open: vec![],
        closed: periods
            .iter()
            .map(|(from, to)| ClosedInterval {
                user: "ann".into(),
                from: *from,
                to: *to,
                reason: Reason::Idle,
            })
            .collect(),
    };
    assert!(store.apply_history(T, (0, 0), &batch).await.unwrap());
    dir
}

/// Days are the tenant's: in New York, a period across local midnight
/// counts on both days, and 2026-11-01 (clocks back at 02:00) has 25
/// hours, so 00:30–03:30 on the wall is four hours online.
#[tokio::test]
async fn report_days_split_at_local_midnight_and_count_a_25_hour_day() {
    let ny = |s: &str| {
        s.parse::<jiff::civil::DateTime>()
            .unwrap()
            .in_tz("America/New_York")
            .unwrap()
            .timestamp()
            .as_millisecond() as u64
    };
    // The second period is given by its instants on either side of the
    // change: 00:30 EDT and 03:30 EST.
    let across_midnight = (ny("2026-10-31T23:00"), ny("2026-11-01T00:15"));
    let across_the_change = (ny("2026-11-01T00:30"), ny("2026-11-01T03:30"));
    let dir = stored_history(
        Some("America/New_York"),
        3650,
        &[across_midnight, across_the_change],
    )
    .await;
    let hub = TestHub::on_dir(test_config(), dir).await;
    let r = hub
        .admin()
        .ok(
            "GET",
            &report_path("?from=2026-10-31&to=2026-11-01&intervals=true"),
            Value::Null,
        )
        .await;
    let days = &user_of(&r, "ann")["days"];
    const MIN: u64 = 60_000;
    assert_eq!(days[0]["date"], "2026-10-31", "{r}");
    assert_eq!(days[0]["online_ms"], 60 * MIN);
    assert_eq!(
        days[0]["last_offline"],
        ny("2026-11-01T00:00"),
        "the day's end"
    );
    assert_eq!(days[1]["date"], "2026-11-01");
    assert_eq!(days[1]["online_ms"], 15 * MIN + 4 * 60 * MIN, "{r}");
    assert_eq!(days[1]["first_online"], ny("2026-11-01T00:00"));
    assert_eq!(days[1]["periods"], 2);
    assert_eq!(days[1]["longest_gap_ms"], 15 * MIN);
    let total = &user_of(&r, "ann")["total"];
    assert_eq!(total["online_ms"], 60 * MIN + 15 * MIN + 4 * 60 * MIN);
    assert_eq!(total["periods"], 2, "a period across midnight counts once");
    // The history shows the periods whole, in the tenant's zone.
    let h = hub
        .admin()
        .ok(
            "GET",
            &history_path("ann", "?from=2026-11-01&to=2026-11-01"),
            Value::Null,
        )
        .await;
    assert_eq!(h["time_zone"], "America/New_York");
    assert_eq!(h["from"], ny("2026-11-01T00:00"));
    assert_eq!(h["to"], ny("2026-11-02T00:00"), "25 hours later");
    assert_eq!(h["intervals"][0]["from"], across_midnight.0, "whole: {h}");
}
