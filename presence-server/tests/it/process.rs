//! The real `presence-server` binary, run as operators run it: configured by
//! environment, killed with SIGKILL or stopped with SIGTERM, restarted on
//! the same data directory (SPEC §3 durability, §7 configuration).

use std::io::Read;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use presence_protocol::ServerMessage;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::hub_process::{command, HubProcess, PROCESS_WAIT};
use crate::support::*;

/// The binary's handle under the name these tests have always used.
type Proc = HubProcess;

impl HubProcess {
    fn serve(data_dir: &Path) -> Proc {
        Proc::start(
            &[],
            &[
                ("PRESENCE_LISTEN", "127.0.0.1:0"),
                ("PRESENCE_JWT_SECRET", SECRET),
                ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
                ("PRESENCE_DATA_DIR", data_dir.to_str().unwrap()),
                ("PRESENCE_IDLE_TIMEOUT_MS", "2000"),
            ],
        )
    }
}

/// Runs the binary to completion (bounded): exit status, stdout, stderr.
pub(crate) fn run_to_exit(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let mut cmd = command();
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn presence-server");
    let mut guard = Exited { child };
    let mut out = guard.child.stdout.take().unwrap();
    let mut err = guard.child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + PROCESS_WAIT;
    let status = loop {
        if let Some(s) = guard.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "presence-server {args:?} never exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// Kills a short-lived child if the test fails before it exits.
struct Exited {
    child: Child,
}

impl Drop for Exited {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn get(a: &Admin, path: &str) -> Value {
    a.ok("GET", path, Value::Null).await
}

#[tokio::test]
async fn acknowledged_admin_writes_survive_sigkill_and_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = Proc::serve(data.path());
    let a = hub.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 10}))
        .await;
    for u in ["ann", "bob", "cid"] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{u}"),
            json!({"name": format!("{u} name"), "email": format!("{u}@x.test"), "phone": "007"}),
        )
        .await;
    }
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/sales",
        json!({"name": "Sales", "crm": true}),
    )
    .await;
    for (u, role) in [("ann", "member"), ("bob", "supervisor"), ("cid", "both")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/sales/members/{u}"),
            json!({"as": role}),
        )
        .await;
    }
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/ann",
        json!({"nickname": "Annie", "available": false}),
    )
    .await;
    a.ok(
        "POST",
        "/v1/tenants/acme/users/deactivate",
        json!({"ids": ["cid"]}),
    )
    .await;
    hub.kill_hard();

    let hub = Proc::serve(data.path());
    let a = hub.admin();
    assert_eq!(get(&a, "/v1/tenants/acme").await["user_limit"], 10);
    let ann = get(&a, "/v1/tenants/acme/users/ann").await;
    assert_eq!(ann["nickname"], "Annie");
    assert_eq!(ann["available"], false);
    assert_eq!(ann["phone"], "007");
    assert_eq!(ann["teams"], json!([{"id": "sales", "as": "member"}]));
    let cid = get(&a, "/v1/tenants/acme/users/cid").await;
    assert_eq!(cid["state"], "inactive");
    assert_eq!(cid["teams"], json!([]));
    let team = get(&a, "/v1/tenants/acme/teams/sales").await;
    assert_eq!(team["crm"], true);
    assert_eq!(
        team["members"],
        json!([{"user": "ann", "as": "member"}, {"user": "bob", "as": "supervisor"}])
    );
    assert_eq!(
        get(&a, "/v1/tenants/acme/stats").await,
        json!({"online": 0, "offline": 2, "active": 2, "inactive": 1})
    );
    // The deactivation survived: cid's token is still refused.
    let refused = Tab::try_open(hub.addr, &token("acme", "cid"), Uuid::new_v4(), 0).await;
    assert_eq!(refused.err().map(|c| c.code), Some(4003));
}

#[tokio::test]
async fn sigkill_during_a_stream_of_writes_loses_no_acknowledged_write() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = Proc::serve(data.path());
    hub.admin()
        .ok("PUT", "/v1/tenants/acme", json!({"user_limit": 100000}))
        .await;
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut writers = Vec::new();
    for w in 0..4 {
        let acked = acked.clone();
        let base = format!("http://{}", hub.addr);
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let id = format!("w{w}-{i:05}");
                let sent = http
                    .put(format!("{base}/v1/tenants/acme/users/{id}"))
                    .bearer_auth(ADMIN_KEY)
                    .json(&json!({"name": format!("name of {id}"), "email": "u@x.test"}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status().is_success() => acked.lock().unwrap().push(id),
                    Ok(r) => panic!("write refused: {}", r.status()),
                    // The hub is gone.
                    Err(_) => return,
                }
            }
        }));
    }
    let deadline = Instant::now() + PROCESS_WAIT;
    while acked.lock().unwrap().len() < 200 {
        assert!(Instant::now() < deadline, "writes are too slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Killed while four writes are in flight.
    hub.kill_hard();
    for w in writers {
        tokio::time::timeout(WAIT, w).await.unwrap().unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let hub = Proc::serve(data.path());
    let page = get(&hub.admin(), "/v1/tenants/acme/users?state=all&limit=1000").await;
    let mut stored = std::collections::BTreeMap::new();
    let mut cursor = page;
    loop {
        for u in cursor["users"].as_array().unwrap() {
            let id = u["id"].as_str().unwrap().to_owned();
            assert_eq!(u["name"], format!("name of {id}"), "a torn record: {u}");
            stored.insert(id, ());
        }
        let Some(next) = cursor["next_cursor"].as_str() else {
            break;
        };
        cursor = get(
            &hub.admin(),
            &format!("/v1/tenants/acme/users?state=all&limit=1000&cursor={next}"),
        )
        .await;
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !stored.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(stored.len() >= acked.len());
}

#[tokio::test]
async fn sigterm_closes_tabs_with_1012_and_exits_zero() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = Proc::serve(data.path());
    let a = hub.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 10}))
        .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/ann",
        json!({"name": "Ann", "email": "a@x.test"}),
    )
    .await;
    let mut t1 = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let mut t2 = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    hub.signal(libc::SIGTERM);
    assert_eq!(t1.closed().await.code, 1012);
    assert_eq!(t2.closed().await.code, 1012);
    // The grace period is 5 s by default; a clean drain is much faster.
    let status = hub.exited_within(Duration::from_secs(7)).await;
    assert_eq!(status.code(), Some(0), "stderr:\n{}", hub.stderr());
}

#[test]
fn missing_secrets_stop_start_up_with_a_clear_message() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[("PRESENCE_ADMIN_KEY", ADMIN_KEY)], "PRESENCE_JWT_SECRET"),
        (&[("PRESENCE_JWT_SECRET", SECRET)], "PRESENCE_ADMIN_KEY"),
        (
            &[
                ("PRESENCE_JWT_SECRET", "short"),
                ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
            ],
            "at least 16",
        ),
        (
            &[
                ("PRESENCE_JWT_SECRET", SECRET),
                ("PRESENCE_ADMIN_KEY", "short"),
            ],
            "at least 16",
        ),
    ];
    for (env, expected) in cases {
        let mut env = env.to_vec();
        env.push(("PRESENCE_LISTEN", "127.0.0.1:0"));
        env.push(("PRESENCE_DATA_DIR", dir));
        let (status, _, stderr) = run_to_exit(&[], &env);
        assert!(!status.success(), "{env:?} started");
        assert!(
            stderr.contains(expected),
            "{env:?}: stderr does not name {expected}:\n{stderr}"
        );
        assert!(!stderr.contains("listening"), "{stderr}");
    }
}

#[tokio::test]
async fn token_subcommand_prints_a_token_the_hub_accepts() {
    let (status, stdout, stderr) = run_to_exit(
        &["token", "--tenant", "acme", "--user", "ann"],
        &[("PRESENCE_JWT_SECRET", SECRET)],
    );
    assert!(status.success(), "{stderr}");
    let minted = stdout.trim();
    assert_eq!(minted.split('.').count(), 3, "not a JWT: {stdout}");
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let tab = Tab::open(h.addr, minted, Uuid::new_v4(), 0).await;
    let Some(ServerMessage::Welcome { user, .. }) = tab.welcome else {
        panic!("no welcome");
    };
    assert_eq!((user.id.as_str(), user.tenant.as_str()), ("ann", "acme"));
    // Signed with another secret: refused.
    let (_, other, _) = run_to_exit(
        &["token", "--tenant", "acme", "--user", "ann"],
        &[("PRESENCE_JWT_SECRET", "some-other-secret-0123")],
    );
    let refused = Tab::try_open(h.addr, other.trim(), Uuid::new_v4(), 0).await;
    assert_eq!(refused.err().map(|c| c.code), Some(4001));
}

/// The value after `label` on a line of the `--dev` banner.
fn banner_value(lines: &[String], label: &str) -> Option<String> {
    lines.iter().find_map(|l| {
        l.trim_start()
            .strip_prefix(label)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    })
}

#[tokio::test]
async fn dev_mode_prints_an_admin_key_and_tokens_that_work() {
    let data = tempfile::tempdir().unwrap();
    let hub = Proc::start(
        &["--dev"],
        &[
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_DATA_DIR", data.path().to_str().unwrap()),
        ],
    );
    let mut lines = Vec::new();
    let deadline = Instant::now() + PROCESS_WAIT;
    while banner_value(&lines, "attendant token:").is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match hub.stdout.recv_timeout(left) {
            Ok(l) => lines.push(l),
            Err(_) => panic!("no banner; stdout: {lines:?}\nstderr:\n{}", hub.stderr()),
        }
    }
    let key = banner_value(&lines, "admin key:").expect("an admin key");
    let admin_token = banner_value(&lines, "admin token:").expect("an admin token");
    let attendant = banner_value(&lines, "attendant token:").unwrap();

    let stats = Admin::new(hub.addr, &key)
        .ok("GET", "/v1/tenants/demo/stats", Value::Null)
        .await;
    assert!(stats["active"].as_u64().unwrap() > 0, "{stats}");
    let mut admin = Tab::open(hub.addr, &admin_token, Uuid::new_v4(), 0).await;
    let snap = admin.subscribe(1, "directory").await;
    assert!(
        matches!(&snap, ServerMessage::Snapshot { users, .. } if !users.is_empty()),
        "{snap:?}"
    );
    let bruno = Tab::open(hub.addr, &attendant, Uuid::new_v4(), 0).await;
    assert!(
        matches!(bruno.welcome, Some(ServerMessage::Welcome { ref user, .. }) if user.attendant)
    );
    // The admin token also opens the admin API of its own tenant.
    Admin::new(hub.addr, &admin_token)
        .ok("GET", "/v1/tenants/demo/stats", Value::Null)
        .await;
    drop(hub);
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann"]).await;
    let base = format!("http://{}", h.addr);
    for path in ["/healthz", "/readyz"] {
        let r = reqwest::get(format!("{base}{path}")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "{path}");
    }
    let mut ann = h.tab("acme", "ann").await;
    ann.activity(0).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    let text = loop {
        let r = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        if metric_in(&text, "presence_open_tabs") == Some(1.0)
            && metric_in(&text, "presence_frames_in_total").is_some_and(|n| n >= 2.0)
        {
            break text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics never showed the tab:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        metric_in(&text, "presence_online_users"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric_in(&text, "presence_transitions_total{status=\"online\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        metric_in(&text, "presence_frames_out_total").is_some_and(|n| n >= 1.0),
        "{text}"
    );
    assert!(
        text.contains("# TYPE presence_slow_consumers_total counter"),
        "{text}"
    );
}

/// Durable before visible: every transition a dashboard was sent is in the
/// feed after a SIGKILL, and the restarted node goes on with the cursor
/// and each user's `v`.
#[tokio::test]
async fn every_transition_a_dashboard_saw_is_in_the_feed_after_sigkill() {
    use crate::feed::{read_all, until_in_feed_after, Ev};
    use presence_protocol::{ClientMessage, Status};

    let data = tempfile::tempdir().unwrap();
    let mut hub = Proc::serve(data.path());
    let a = hub.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 10}))
        .await;
    for (u, profile) in [("boss", "admin"), ("ann", "standard")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{u}"),
            json!({"name": u, "email": format!("{u}@x.test"), "profile": profile}),
        )
        .await;
    }
    let mut boss = Tab::open(hub.addr, &token("acme", "boss"), Uuid::new_v4(), 0).await;
    boss.subscribe(1, "directory").await;
    let mut ann = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    boss.recv_until(|m| is_presence_of(m, "ann", Status::Online))
        .await;
    ann.send(&ClientMessage::Logout).await;
    boss.recv_until(|m| is_presence_of(m, "ann", Status::Offline))
        .await;
    // Killed the moment the dashboard saw it: nothing more was persisted.
    hub.kill_hard();

    let hub = Proc::serve(data.path());
    let a = hub.admin();
    let before = read_all(&a, 0, 1000).await;
    let ann_events: Vec<(&str, u64, &str)> = before
        .iter()
        .filter(|e| e.user == "ann")
        .map(|e| (e.status.as_str(), e.v, e.reason.as_str()))
        .collect();
    assert_eq!(
        ann_events,
        [("online", 1, "activity"), ("offline", 2, "logout")]
    );
    let last = before.last().unwrap().cursor;
    let _ann = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    let after = until_in_feed_after(&a, last, |e| e.user == "ann").await;
    assert_eq!(
        after[0],
        Ev {
            cursor: last + 1,
            user: "ann".into(),
            status: "online".into(),
            v: 3,
            reason: "activity".into(),
        }
    );
}
