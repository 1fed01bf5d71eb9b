//! The shutdown deadline, with the built binary: after SIGTERM the process
//! exits within `PRESENCE_SHUTDOWN_GRACE_MS`, whatever its clients do (tabs
//! that never read nor answer their close, an idle keep-alive connection, a
//! request head that never ends), having told its tabs 1012, persisted
//! presence and, in cluster mode, left the cluster; and it still does when
//! Redis is gone by then.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::hub_process::{HubProcess, PROCESS_WAIT};
use crate::redis_support::{query, RedisServer};
use crate::support::*;

const GRACE_MS: u64 = 1_500;
/// What the tests tolerate beyond the grace period: the signal's delivery
/// and the process's exit.
const MARGIN: Duration = Duration::from_millis(500);
/// Tabs that never read.
const STUCK_TABS: usize = 3;

fn grace() -> Duration {
    Duration::from_millis(GRACE_MS)
}

/// A masked client text frame (mask 0: the payload goes as it is).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x81];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend((n as u16).to_be_bytes());
        }
    }
    f.extend([0, 0, 0, 0]);
    f.extend(payload);
    f
}

/// A tab that upgrades and says hello in one write, then never reads a
/// byte (not even the 101) and never answers the hub's close.
async fn stuck_tab(hub: &HubProcess, user: &str) -> TcpStream {
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    let hello = json!({
        "type": "hello",
        "token": token("acme", user),
        "tab": Uuid::new_v4(),
        "idle_ms": 0,
    });
    let mut bytes = b"GET /v1/ws HTTP/1.1\r\nHost: hub\r\nUpgrade: websocket\r\n\
        Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Version: 13\r\n\r\n"
        .to_vec();
    bytes.extend(text_frame(hello.to_string().as_bytes()));
    s.write_all(&bytes).await.unwrap();
    s
}

/// An HTTP/1.1 connection that got its answer and now idles, kept alive.
async fn idle_keep_alive(hub: &HubProcess) -> TcpStream {
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: hub\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(WAIT, s.read(&mut buf))
            .await
            .expect("an answer to GET /readyz")
            .unwrap();
        assert!(n > 0, "closed before answering");
        answer.extend(&buf[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{answer:?}");
    s
}

/// An HTTP connection whose request head never ends (the hub would wait
/// `PRESENCE_HEADER_READ_TIMEOUT_MS`, 10 s, for the rest).
async fn endless_head(hub: &HubProcess) -> TcpStream {
    let mut s = TcpStream::connect(hub.addr).await.unwrap();
    s.write_all(b"GET /readyz HTTP/1.1\r\nHost: hub\r\n")
        .await
        .unwrap();
    s
}

/// Waits until the hub counts `n` authenticated tabs.
async fn open_tabs_reach(hub: &HubProcess, n: usize) {
    let deadline = Instant::now() + PROCESS_WAIT;
    loop {
        let text = reqwest::get(format!("http://{}/metrics", hub.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metric_in(&text, "presence_open_tabs") == Some(n as f64) {
            return;
        }
        assert!(Instant::now() < deadline, "never {n} open tabs:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn seed(hub: &HubProcess) {
    let a = hub.admin();
    a.ok("PUT", "/v1/tenants/acme", json!({"user_limit": 100}))
        .await;
    for u in ["ann", "stuck"] {
        a.ok(
            "PUT",
            &format!("/v1/tenants/acme/users/{u}"),
            json!({"name": u, "email": format!("{u}@x.test")}),
        )
        .await;
    }
}

/// What the clients of every case hold while the hub stops: a normal tab
/// (ann), tabs that never read, and HTTP connections that are idle or
/// mid-head.
struct Clients {
    ann: Tab,
    _held: Vec<TcpStream>,
}

/// Ann's tab comes last, so that her presence changed just before the test
/// goes on to stop the hub.
async fn connect_clients(hub: &HubProcess) -> Clients {
    let mut held = Vec::new();
    for _ in 0..STUCK_TABS {
        held.push(stuck_tab(hub, "stuck").await);
    }
    open_tabs_reach(hub, STUCK_TABS).await;
    held.push(idle_keep_alive(hub).await);
    held.push(endless_head(hub).await);
    let ann = Tab::open(hub.addr, &token("acme", "ann"), Uuid::new_v4(), 0).await;
    Clients { ann, _held: held }
}

/// SIGTERM, then: ann's tab gets 1012, and the process exits with success
/// within the grace period (plus [`MARGIN`]) of the signal.
async fn sigterm_and_expect_a_timely_exit(hub: &mut HubProcess, clients: &mut Clients) {
    let signalled = Instant::now();
    hub.signal(libc::SIGTERM);
    assert_eq!(clients.ann.closed().await.code, 1012);
    let status = hub.exited_within(grace() + MARGIN + MARGIN).await;
    let took = signalled.elapsed();
    assert!(status.success(), "exited with {status}:\n{}", hub.stderr());
    assert!(
        took <= grace() + MARGIN,
        "exited {took:?} after SIGTERM, grace {GRACE_MS} ms:\n{}",
        hub.stderr()
    );
}

async fn user(hub: &HubProcess, uid: &str) -> Value {
    hub.admin()
        .ok("GET", &format!("/v1/tenants/acme/users/{uid}"), Value::Null)
        .await
}

#[tokio::test]
async fn sigterm_exits_within_the_grace_period_whatever_the_clients_do() {
    let data = tempfile::tempdir().unwrap();
    let mut hub = HubProcess::start_async(
        &[],
        &[
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_JWT_SECRET", SECRET),
            ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
            ("PRESENCE_DATA_DIR", data.path().to_str().unwrap()),
            ("PRESENCE_SHUTDOWN_GRACE_MS", &GRACE_MS.to_string()),
            // Longer than the whole deadline: the tabs that never answer
            // their close must not hold the process for it.
            ("PRESENCE_CLOSE_LINGER_MS", "3000"),
        ],
    )
    .await;
    seed(&hub).await;
    let mut clients = connect_clients(&hub).await;
    // Ann just came online: presence is flushed every second, so what
    // survives the restart below is what shutdown persisted.
    let before = user(&hub, "ann").await;
    assert_eq!(before["status"], "online", "{before}");
    sigterm_and_expect_a_timely_exit(&mut hub, &mut clients).await;

    hub.restart().await;
    let after = user(&hub, "ann").await;
    assert!(before["v"].as_u64() > Some(0), "{before}");
    // v kept, plus the offline the restart appended to the feed for her
    // (`reconciled`: she was online when the hub stopped).
    assert_eq!(
        after["v"].as_u64(),
        before["v"].as_u64().map(|v| v + 1),
        "v kept: {after}"
    );
    assert_eq!(after["status"], "offline", "{after}");
    assert_eq!(after["last_seen"], before["last_seen"], "kept: {after}");
}

/// A cluster node on `redis`, called `node`, with the test's grace period.
async fn cluster_node(redis: &RedisServer, node: &str) -> HubProcess {
    let url = redis.url();
    let hub = HubProcess::start_async(
        &[],
        &[
            ("PRESENCE_LISTEN", "127.0.0.1:0"),
            ("PRESENCE_JWT_SECRET", SECRET),
            ("PRESENCE_ADMIN_KEY", ADMIN_KEY),
            ("PRESENCE_REDIS_URL", &url),
            ("PRESENCE_NODE_ID", node),
            ("PRESENCE_SHUTDOWN_GRACE_MS", &GRACE_MS.to_string()),
        ],
    )
    .await;
    hub.wait_ready().await;
    hub
}

/// The members of `presence:nodes` that are starts of `node`.
async fn heartbeats_of(redis: &RedisServer, node: &str) -> Vec<String> {
    let all: Vec<String> = query(
        redis.port,
        redis::cmd("ZRANGE")
            .arg("presence:nodes")
            .arg(0)
            .arg(-1)
            .clone(),
    )
    .await
    .expect("ZRANGE presence:nodes");
    all.into_iter()
        .filter(|m| m.starts_with(&format!("{node}#")))
        .collect()
}

#[tokio::test]
async fn a_cluster_node_leaves_the_cluster_within_the_grace_period() {
    let redis = RedisServer::start().await;
    let mut hub = cluster_node(&redis, "n1").await;
    seed(&hub).await;
    let mut clients = connect_clients(&hub).await;
    let deadline = Instant::now() + PROCESS_WAIT;
    while heartbeats_of(&redis, "n1").await.is_empty() {
        assert!(Instant::now() < deadline, "n1 never heartbeat");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Tabs that never answer linger for the default second, so the
    // hand-off must start after them and still fit in the deadline.
    sigterm_and_expect_a_timely_exit(&mut hub, &mut clients).await;
    assert_eq!(
        heartbeats_of(&redis, "n1").await,
        Vec::<String>::new(),
        "the node did not leave:\n{}",
        hub.stderr()
    );
}

#[tokio::test]
async fn a_cluster_node_exits_within_the_grace_period_when_redis_is_gone() {
    let mut redis = RedisServer::start().await;
    let mut hub = cluster_node(&redis, "n1").await;
    seed(&hub).await;
    let mut clients = connect_clients(&hub).await;
    redis.kill();
    sigterm_and_expect_a_timely_exit(&mut hub, &mut clients).await;
}
