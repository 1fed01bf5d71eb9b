//! `/metrics` as an operator reads it: the tab gauges that tell whether
//! tabs leak, the families that answer an operator's questions (latency,
//! store and Redis, the process, the cluster) on one node and on a cluster
//! under a little load, the Prometheus linter on what a hub exposes, and
//! the operations kit of `examples/` checked against a live scrape so its
//! dashboard and alert rules cannot name a metric the hub does not have.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use presence_protocol::{ServerMessage, Status};
use serde_json::json;
use uuid::Uuid;

use crate::harness::{suite, Deployment};
use crate::redis_support::RedisServer;
use crate::support::{is_presence_of, test_config, token, Tab, TestHub, WAIT};

/// Waits until `/metrics` reports `value` for both tab gauges.
async fn tabs_reach(h: &TestHub, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let open = h.metric("presence_open_tabs").await;
        let registered = h.metric("presence_registered_tabs").await;
        if open == Some(value) && registered == Some(value) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "open {open:?}, registered {registered:?}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn registered_tabs_follow_joins_reloads_and_closes() {
    let h = TestHub::start().await;
    h.seed("acme", &["ann", "bob"]).await;
    tabs_reach(&h, 0.0).await;
    let reloaded = Uuid::new_v4();
    let a1 = Tab::open(h.addr, &token("acme", "ann"), reloaded, 0).await;
    let mut a2 = h.tab("acme", "ann").await;
    let mut b1 = h.tab("acme", "bob").await;
    tabs_reach(&h, 3.0).await;
    // A reload that races its own close: the new connection replaces the
    // old handle instead of adding one.
    let mut again = Tab::open(h.addr, &token("acme", "ann"), reloaded, 0).await;
    tabs_reach(&h, 3.0).await;
    drop(a1);
    let _ = a2.ws.close(None).await;
    let _ = b1.ws.close(None).await;
    tabs_reach(&h, 1.0).await;
    let _ = again.ws.close(None).await;
    tabs_reach(&h, 0.0).await;
}

suite!(
    config = test_config();
    an_operators_families_exist_and_move_under_load,
);

/// One sample of a scrape: its family's sample name, labels and value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed Prometheus text exposition (the hub's own, whose label values
/// hold no `,` or `}`).
struct Scrape {
    text: String,
    /// Family name → type, from the `# TYPE` lines.
    families: BTreeMap<String, String>,
    samples: Vec<Sample>,
}

impl Scrape {
    fn parse(text: String) -> Scrape {
        let mut families = BTreeMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if let Some(t) = line.strip_prefix("# TYPE ") {
                let (name, kind) = t.split_once(' ').expect("# TYPE name kind");
                families.insert(name.to_owned(), kind.to_owned());
                continue;
            }
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect("sample value");
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let labels = body
                        .split(',')
                        .filter(|kv| !kv.is_empty())
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').expect("label=value");
                            (k.to_owned(), v.trim_matches('"').to_owned())
                        })
                        .collect();
                    (name, labels)
                }
            };
            samples.push(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().expect("numeric sample"),
            });
        }
        Scrape {
            text,
            families,
            samples,
        }
    }

    /// The value of the sample with this name and these labels (exactly).
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }
}

async fn scrape(h: &TestHub) -> Scrape {
    let r = reqwest::get(format!("http://{}/metrics", h.addr))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    Scrape::parse(r.text().await.unwrap())
}

/// Scrapes every node of `d`.
async fn scrape_all(d: &Deployment) -> Vec<Scrape> {
    let mut out = Vec::new();
    for i in 0..d.len() {
        out.push(scrape(d.node(i)).await);
    }
    out
}

/// A sample summed over the nodes' scrapes.
fn total(scrapes: &[Scrape], name: &str, labels: &[(&str, &str)]) -> f64 {
    scrapes.iter().map(|s| s.value(name, labels)).sum()
}

/// Scrapes the nodes of `d` until `ok` holds for what they expose (an
/// observation is made right after the socket write, so a client may see
/// the frame a moment before `/metrics` counts it); fails after [`WAIT`]
/// with `what` and the last scrape.
async fn until(d: &Deployment, what: &str, ok: impl Fn(&[Scrape]) -> bool) -> Vec<Scrape> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = scrape_all(d).await;
        if ok(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: never seen; last scrape of node A:\n{}",
            s[0].text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `promtool`, or a failure that says how to get it.
fn promtool() -> Command {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        found,
        "promtool is not installed: apt-get install -y prometheus (scripts/test installs it)"
    );
    Command::new("promtool")
}

/// `promtool check metrics` (Prometheus's own linter: names, units,
/// `_total` on counters, histogram shape) on a scrape.
fn assert_promtool_accepts(s: &Scrape) {
    let mut child = promtool()
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(s.text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused the scrape:\n{}{}\n--- scrape ---\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        s.text
    );
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The metric names a PromQL text uses: every `presence_*` and
/// `process_*` identifier, with a histogram's `_bucket`/`_sum`/`_count`
/// suffix taken back to its family.
fn metric_names(promql: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = promql.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
        let rest = &promql[i..];
        if starts_word && (rest.starts_with("presence_") || rest.starts_with("process_")) {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            let name = &rest[..len];
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(name);
            out.insert(family.to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    out
}

/// Every `expr` of the Grafana dashboard, wherever it sits in the panels.
fn dashboard_exprs() -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let path = examples().join("grafana/presence-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut out = Vec::new();
    walk(&dash, &mut out);
    out
}

/// A team roster, a directory and the attendants watched, a user who comes
/// online and sends a bad frame, an admin write: every family an operator
/// relies on is exposed with the right type, and the ones this traffic
/// drives have moved. In cluster mode, the Redis and cluster gauges too,
/// and the dashboard's and alert rules' metric names all exist.
async fn an_operators_families_exist_and_move_under_load(d: &Deployment) {
    d.seed("acme", &["boss", "sup", "ann"]).await;
    let a = d.admin();
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/boss",
        json!({"profile": "admin"}),
    )
    .await;
    a.ok(
        "PUT",
        "/v1/tenants/acme/teams/support",
        json!({"name": "Support", "crm": true, "active": true}),
    )
    .await;
    for (uid, role) in [("sup", "supervisor"), ("ann", "member")] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/teams/support/members/{uid}"),
            json!({"as": role}),
        )
        .await;
    }
    d.synced("acme").await;
    // Watchers that prove no interaction, so theirs are not the
    // transitions counted below; they sit on both nodes in cluster mode.
    let idle = test_config().idle_timeout.as_millis() as u64;
    let mut boss = d
        .open_tab(&token("acme", "boss"), Uuid::new_v4(), idle)
        .await;
    let mut sup = d
        .open_tab(&token("acme", "sup"), Uuid::new_v4(), idle)
        .await;
    for (tab, id, roster) in [(&mut boss, 1, "directory"), (&mut sup, 2, "team:support")] {
        let snap = tab.subscribe(id, roster).await;
        assert!(matches!(snap, ServerMessage::Snapshot { .. }), "{snap:?}");
    }
    // A tab of its own per roster: a write is timed by its oldest delta,
    // so two rosters on one tab would time one write.
    let mut att = d
        .open_tab(&token("acme", "boss"), Uuid::new_v4(), idle)
        .await;
    let snap = att.subscribe(3, "attendants").await;
    assert!(matches!(snap, ServerMessage::Snapshot { .. }), "{snap:?}");
    let before = scrape_all(d).await;
    let kinds = ["directory", "team", "attendants"];
    let delivered =
        |s: &[Scrape], kind: &str| total(s, "presence_delivery_seconds_count", &[("roster", kind)]);

    // The load: ann comes online (one transition, three rosters), sends a
    // frame that is not JSON, and an admin write goes to node A.
    let mut ann = d.tab("acme", "ann").await;
    boss.recv_until(|m| is_presence_of(m, "ann", Status::Online))
        .await;
    for tab in [&mut sup, &mut att] {
        tab.recv_until(|m| is_presence_of(m, "ann", Status::Online))
            .await;
    }
    ann.send_text("not json").await;
    let reply = ann.recv().await;
    assert!(matches!(reply, ServerMessage::Error { .. }), "{reply:?}");
    a.ok(
        "PUT",
        "/v1/tenants/acme/users/ann",
        json!({"away_message": "at lunch"}),
    )
    .await;

    let after = until(d, "a delivery timed for every roster kind", |s| {
        kinds
            .iter()
            .all(|k| delivered(s, k) >= delivered(&before, k) + 1.0)
    })
    .await;
    let moved = |name: &str, labels: &[(&str, &str)]| {
        let (b, a) = (total(&before, name, labels), total(&after, name, labels));
        assert!(a > b, "{name}{labels:?} did not move: {b} → {a}");
    };
    moved("presence_transitions_total", &[("status", "online")]);
    moved("presence_frames_in_total", &[]);
    moved("presence_frames_out_total", &[]);
    moved("presence_rejected_frames_total", &[("reason", "malformed")]);
    let commits = |s: &Scrape| s.value("presence_store_commit_seconds_count", &[]);
    assert!(
        commits(&after[0]) > commits(&before[0]),
        "node A's store commits did not move"
    );
    for (i, s) in after.iter().enumerate() {
        let want = [
            ("presence_open_tabs", "gauge"),
            ("presence_registered_tabs", "gauge"),
            ("presence_online_users", "gauge"),
            ("presence_ready", "gauge"),
            ("presence_slow_consumers_total", "counter"),
            ("presence_store_commit_seconds", "histogram"),
            ("presence_feed_commit_seconds", "histogram"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_cpu_seconds_total", "counter"),
        ];
        for (name, kind) in want {
            assert_eq!(
                s.families.get(name).map(String::as_str),
                Some(kind),
                "node {i}: {name}"
            );
        }
        assert_eq!(s.value("presence_ready", &[]), 1.0, "node {i} ready");
        assert!(
            s.value("process_resident_memory_bytes", &[]) > 1e6,
            "node {i}: RSS"
        );
        assert!(s.value("process_open_fds", &[]) > 0.0, "node {i}: fds");
        // Whole seconds in the `prometheus` crate's collector: a young test
        // process may not have used one yet.
        assert!(s.get("process_cpu_seconds_total", &[]).is_some());
        // A user or tenant is never a label.
        for sample in &s.samples {
            for (k, v) in &sample.labels {
                assert!(
                    !["user", "tenant", "tab", "team"].contains(&k.as_str())
                        && !["acme", "ann", "boss", "sup", "support"].contains(&v.as_str()),
                    "node {i}: {} carries {k}={v}",
                    sample.name
                );
            }
        }
        assert_promtool_accepts(s);
    }
    let cluster_families = [
        ("presence_redis_connected", "gauge"),
        ("presence_cluster_nodes", "gauge"),
        ("presence_cluster_pending_operations", "gauge"),
        ("presence_directory_sync_lag_seconds", "gauge"),
        ("presence_redis_script_seconds", "histogram"),
    ];
    if !d.is_cluster() {
        for (name, _) in cluster_families {
            assert!(
                !after[0].families.contains_key(name),
                "a single node exposes {name}"
            );
        }
        return;
    }

    // Cluster mode: Redis connected, both nodes seen, scripts timed.
    let after = until(d, "both nodes seen by both", |s| {
        s.iter()
            .all(|s| s.get("presence_cluster_nodes", &[]) == Some(2.0))
    })
    .await;
    for (i, s) in after.iter().enumerate() {
        for (name, kind) in cluster_families {
            assert_eq!(
                s.families.get(name).map(String::as_str),
                Some(kind),
                "node {i}: {name}"
            );
        }
        assert_eq!(s.value("presence_redis_connected", &[]), 1.0, "node {i}");
        let lag = s.value("presence_directory_sync_lag_seconds", &[]);
        assert!((0.0..2.0).contains(&lag), "node {i}: directory lag {lag}");
        assert!(s.get("presence_cluster_pending_operations", &[]).is_some());
    }
    moved(
        "presence_redis_script_seconds_count",
        &[("script", "presence")],
    );
    assert!(
        after[0].value(
            "presence_redis_script_seconds_count",
            &[("script", "commit")]
        ) > before[0].value(
            "presence_redis_script_seconds_count",
            &[("script", "commit")]
        ),
        "node A's commit.lua calls were not timed"
    );

    // The operations kit names only what a hub exposes.
    let exposed: BTreeSet<&String> = after.iter().flat_map(|s| s.families.keys()).collect();
    let rules = std::fs::read_to_string(examples().join("prometheus/alerts.yml")).unwrap();
    let exprs = dashboard_exprs();
    assert!(
        exprs.len() >= 20,
        "the dashboard has {} queries",
        exprs.len()
    );
    let mut used = metric_names(&rules);
    for e in &exprs {
        used.extend(metric_names(e));
    }
    for name in [
        "presence_delivery_seconds",
        "presence_redis_connected",
        "presence_directory_sync_lag_seconds",
    ] {
        assert!(used.contains(name), "the kit does not use {name}");
    }
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard or alert rules use metrics no hub exposes: {missing:?}"
    );
}

/// Redis lost and back: the node's gauges say so (connected 0, operations
/// waiting, the directory falling behind), then recover.
#[tokio::test]
async fn a_redis_outage_shows_in_the_cluster_gauges_and_recovers() {
    let mut redis = RedisServer::start().await;
    let a = TestHub::clustered(test_config(), &redis.url(), "A").await;
    a.seed("acme", &["ann"]).await;
    let gauges = |s: &Scrape| {
        (
            s.value("presence_redis_connected", &[]),
            s.value("presence_cluster_pending_operations", &[]),
            s.value("presence_directory_sync_lag_seconds", &[]),
        )
    };
    let wait_for = |what: &'static str, ok: fn((f64, f64, f64)) -> bool| {
        let a = &a;
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let s = scrape(a).await;
                if ok(gauges(&s)) {
                    return s;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{what}: never seen; (connected, pending, lag) = {:?}",
                    gauges(&s)
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for("joined", |(up, _, lag)| up == 1.0 && lag < 1.0).await;
    let _ann = a.tab("acme", "ann").await;
    redis.kill();
    // The heartbeat's sweep (one a second per tenant) waits in the queue.
    wait_for("the outage", |(up, pending, lag)| {
        up == 0.0 && pending >= 1.0 && lag > 1.0
    })
    .await;
    redis.restart().await;
    wait_for("the recovery", |(up, pending, lag)| {
        up == 1.0 && pending == 0.0 && lag < 1.0
    })
    .await;
}
