//! Clients of a cluster of hub processes that behave like browsers while
//! nodes die or restart underneath them: a tab that keeps interacting and
//! reconnects to the next live node when its node goes away, and a dashboard
//! that records every frame and resubscribes after a reconnect.
//!
//! Both run as background tasks and write what they observed into a shared
//! log; tests read the logs with bounded polls.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, Entry, ReqId, Roster, ServerMessage, Stats, Status};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::hub_process::HubProcess;
use crate::redis_support::RedisServer;
use crate::support::{now_ms, token, Admin, Tab, ADMIN_KEY, WAIT};

pub const TENANT: &str = "acme";
/// Idle timeout of every node: short, so expiry is observable quickly.
pub const IDLE_MS: u64 = 2_000;
/// How often an interacting tab reports activity (well inside the timeout).
pub const BEAT: Duration = Duration::from_millis(200);
/// Standard users of the seeded tenant, plus `boss`, an admin who watches.
pub const USERS: [&str; 4] = ["ann", "bob", "cyd", "dan"];
pub const WATCHER: &str = "boss";
const POLL: Duration = Duration::from_millis(20);

/// The address of each node as clients find it; `None` while a node is down.
#[derive(Clone)]
pub struct Live(Arc<Mutex<Vec<Option<SocketAddr>>>>);

impl Live {
    pub fn new(addrs: &[SocketAddr]) -> Live {
        Live(Arc::new(Mutex::new(
            addrs.iter().copied().map(Some).collect(),
        )))
    }

    pub fn addr(&self, node: usize) -> Option<SocketAddr> {
        self.0.lock().unwrap()[node]
    }

    pub fn set(&self, node: usize, addr: Option<SocketAddr>) {
        self.0.lock().unwrap()[node] = addr;
    }

    /// The first live node after `from`, in ring order (`from` itself last:
    /// behind a load balancer there is only one address).
    pub fn next_after(&self, from: usize) -> Option<(usize, SocketAddr)> {
        let nodes = self.0.lock().unwrap();
        let n = nodes.len();
        (1..=n)
            .map(|k| (from + k) % n)
            .find_map(|i| nodes[i].map(|a| (i, a)))
    }
}

/// Connects a tab of `user` and says hello; an error (not a panic) when the
/// node refuses or is gone, so a driver can try another one.
pub async fn connect(addr: SocketAddr, user: &str, tab: Uuid, idle_ms: u64) -> Result<Tab, String> {
    let url = format!("ws://{addr}/v1/ws");
    let (mut ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| format!("connect: {e}"))?;
    let hello = ClientMessage::Hello {
        token: token(TENANT, user),
        tab,
        idle_ms,
        client: Some("faults/1".into()),
    };
    ws.send(text(&hello))
        .await
        .map_err(|e| format!("hello: {e}"))?;
    loop {
        let m = tokio::time::timeout(WAIT, ws.next())
            .await
            .map_err(|_| "no welcome in time".to_owned())?;
        match read(m) {
            Some(Read::Frame(m @ ServerMessage::Welcome { .. })) => {
                return Ok(Tab {
                    ws,
                    welcome: Some(m),
                    tab,
                })
            }
            Some(Read::Frame(other)) => return Err(format!("expected welcome, got {other:?}")),
            Some(Read::Closed(code)) => return Err(format!("closed with {code}")),
            None => continue,
        }
    }
}

fn text(m: &ClientMessage) -> Message {
    Message::Text(serde_json::to_string(m).unwrap().into())
}

enum Read {
    Frame(ServerMessage),
    /// The close code, 1005 for a close without one, 1006 for a connection
    /// that ended without a close frame (the node was killed).
    Closed(u16),
}

/// Classifies what the socket yielded; `None` for frames to skip (pings).
fn read(m: Option<Result<Message, tungstenite::Error>>) -> Option<Read> {
    match m {
        Some(Ok(Message::Text(t))) => Some(Read::Frame(
            serde_json::from_str(&t).unwrap_or_else(|e| panic!("bad frame {t}: {e}")),
        )),
        Some(Ok(Message::Close(Some(f)))) => Some(Read::Closed(u16::from(f.code))),
        Some(Ok(Message::Close(None))) => Some(Read::Closed(1005)),
        Some(Ok(_)) => None,
        Some(Err(_)) | None => Some(Read::Closed(1006)),
    }
}

/// Reconnects to the next live node after `from` (retrying until `WAIT`).
async fn reconnect(
    live: &Live,
    from: usize,
    user: &str,
    tab: Uuid,
    idle_ms: impl Fn() -> u64,
) -> Result<(usize, Tab), String> {
    let deadline = Instant::now() + WAIT;
    let mut last_err = String::from("no live node");
    loop {
        if let Some((to, addr)) = live.next_after(from) {
            match connect(addr, user, tab, idle_ms()).await {
                Ok(t) => return Ok((to, t)),
                Err(e) => last_err = e,
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no node took {user} back: {last_err}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// What a tab went through.
#[derive(Debug, Default, Clone)]
pub struct TabLog {
    pub node: usize,
    /// When the tab last reported interaction (taken before sending it).
    pub last_activity_ms: u64,
    /// Close codes the tab received, in order.
    pub closes: Vec<u16>,
    pub reconnects: Vec<Reconnect>,
    pub failure: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Reconnect {
    pub from: usize,
    pub to: usize,
    /// The `idle_ms` its hello reported.
    pub idle_ms: u64,
    /// How long the tab had no connection.
    pub gap_ms: u64,
}

/// What a tab does when its node closes or loses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Stays closed.
    No,
    /// Reconnects at once to the next live node.
    AtOnce,
    /// Reconnects to the next live node after this long (a browser's backoff).
    After(Duration),
}

/// A browser tab of one user that reports interaction every `BEAT` while
/// `interacting`, and (as `follow` says) reconnects to the next live node
/// when its node closes or loses it, saying in its hello how long ago the
/// user last interacted.
pub struct UserTab {
    pub user: String,
    log: Arc<Mutex<TabLog>>,
    interacting: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for UserTab {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UserTab {
    pub async fn open(live: &Live, node: usize, user: &str, follow: Follow) -> UserTab {
        let addr = live.addr(node).expect("the node is up");
        let tab_id = Uuid::new_v4();
        let started = now_ms();
        let tab = connect(addr, user, tab_id, 0)
            .await
            .unwrap_or_else(|e| panic!("{user} on node {node}: {e}"));
        let log = Arc::new(Mutex::new(TabLog {
            node,
            last_activity_ms: started,
            ..TabLog::default()
        }));
        let interacting = Arc::new(AtomicBool::new(true));
        let task = tokio::spawn(drive_tab(
            tab,
            live.clone(),
            user.to_owned(),
            log.clone(),
            interacting.clone(),
            follow,
        ));
        UserTab {
            user: user.to_owned(),
            log,
            interacting,
            task,
        }
    }

    /// The user stops touching this tab; it stays open.
    pub fn stop(&self) {
        self.interacting.store(false, Ordering::SeqCst);
    }

    pub fn log(&self) -> TabLog {
        self.log.lock().unwrap().clone()
    }

    pub fn last_activity_ms(&self) -> u64 {
        self.log.lock().unwrap().last_activity_ms
    }
}

async fn drive_tab(
    mut tab: Tab,
    live: Live,
    user: String,
    log: Arc<Mutex<TabLog>>,
    interacting: Arc<AtomicBool>,
    follow: Follow,
) {
    let mut beat = tokio::time::interval(BEAT);
    loop {
        let code = loop {
            tokio::select! {
                _ = beat.tick() => {
                    if interacting.load(Ordering::SeqCst) {
                        let at = now_ms();
                        let activity = text(&ClientMessage::Activity { idle_ms: 0 });
                        if tab.ws.send(activity).await.is_ok() {
                            log.lock().unwrap().last_activity_ms = at;
                        }
                    }
                }
                m = tab.ws.next() => {
                    if let Some(Read::Closed(code)) = read(m) {
                        break code;
                    }
                }
            }
        };
        let lost = now_ms();
        let from = {
            let mut l = log.lock().unwrap();
            l.closes.push(code);
            l.node
        };
        match follow {
            Follow::No => return,
            Follow::AtOnce => {}
            Follow::After(d) => tokio::time::sleep(d).await,
        }
        let idle = || now_ms().saturating_sub(log.lock().unwrap().last_activity_ms);
        match reconnect(&live, from, &user, tab.tab, idle).await {
            Ok((to, t)) => {
                let mut l = log.lock().unwrap();
                let idle_ms = now_ms().saturating_sub(l.last_activity_ms);
                l.reconnects.push(Reconnect {
                    from,
                    to,
                    idle_ms,
                    gap_ms: now_ms() - lost,
                });
                l.node = to;
                tab = t;
            }
            Err(e) => {
                log.lock().unwrap().failure = Some(e);
                return;
            }
        }
    }
}

/// A transition as a dashboard received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub status: Status,
    pub v: u64,
    pub at: u64,
    /// When the frame arrived (test clock).
    pub arrived: u64,
}

#[derive(Debug, Default, Clone)]
pub struct DashLog {
    pub node: usize,
    /// Every frame, with its arrival time and the node it came from.
    pub frames: Vec<(u64, usize, ServerMessage)>,
    pub closes: Vec<u16>,
    pub failure: Option<String>,
}

/// The administrators' screen: `boss` watching the `directory` roster.
/// Its tab reports no interaction (`idle_ms` beyond the timeout), so the
/// watcher itself never comes online.
pub struct Dashboard {
    log: Arc<Mutex<DashLog>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Dashboard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const NO_PROOF_MS: u64 = 10 * IDLE_MS;

async fn subscribe(tab: &mut Tab) -> Result<(), String> {
    let sub = ClientMessage::Subscribe {
        id: ReqId::Num(1),
        roster: Roster::Directory,
    };
    tab.ws
        .send(text(&sub))
        .await
        .map_err(|e| format!("subscribe: {e}"))
}

impl Dashboard {
    /// Opens the screen on `node` and waits for its first snapshot; when
    /// `follow`, it moves to the next live node and resubscribes whenever its
    /// node closes it.
    pub async fn open(live: &Live, node: usize, follow: bool) -> Dashboard {
        let addr = live.addr(node).expect("the node is up");
        let mut tab = connect(addr, WATCHER, Uuid::new_v4(), NO_PROOF_MS)
            .await
            .unwrap_or_else(|e| panic!("dashboard on node {node}: {e}"));
        subscribe(&mut tab).await.unwrap();
        let log = Arc::new(Mutex::new(DashLog {
            node,
            ..DashLog::default()
        }));
        let task = tokio::spawn(drive_dashboard(tab, live.clone(), log.clone(), follow));
        let d = Dashboard { log, task };
        d.wait("a first snapshot", WAIT, |l| {
            l.frames
                .iter()
                .any(|(_, _, m)| matches!(m, ServerMessage::Snapshot { .. }))
        })
        .await;
        d
    }

    pub fn log(&self) -> DashLog {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the log satisfies `f`, failing after `within`.
    pub async fn wait(&self, what: &str, within: Duration, f: impl Fn(&DashLog) -> bool) {
        let deadline = Instant::now() + within;
        loop {
            {
                let l = self.log.lock().unwrap();
                if f(&l) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "dashboard never saw {what} within {within:?}; it saw {:#?}",
                    *l
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The `directory` transitions of `user`, in arrival order.
    pub fn presence(&self, user: &str) -> Vec<Seen> {
        presence_in(&self.log.lock().unwrap(), user)
    }

    /// Waits until `n` transitions of `user` arrived; returns them all.
    pub async fn wait_presence(&self, user: &str, n: usize, within: Duration) -> Vec<Seen> {
        let what = format!("{n} transition(s) of {user}");
        self.wait(&what, within, |l| presence_in(l, user).len() >= n)
            .await;
        self.presence(user)
    }

    /// Every snapshot received, with the node that sent it.
    pub fn snapshots(&self) -> Vec<(usize, Vec<Entry>)> {
        self.log
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter_map(|(_, node, m)| match m {
                ServerMessage::Snapshot { users, .. } => Some((*node, users.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every `stats` frame (and the counters of every snapshot), in order.
    pub fn stats(&self) -> Vec<Stats> {
        self.log
            .lock()
            .unwrap()
            .frames
            .iter()
            .filter_map(|(_, _, m)| match m {
                ServerMessage::Stats { stats, .. } => Some(*stats),
                ServerMessage::Snapshot { stats, .. } => *stats,
                _ => None,
            })
            .collect()
    }
}

pub fn presence_in(l: &DashLog, who: &str) -> Vec<Seen> {
    l.frames
        .iter()
        .filter_map(|(arrived, _, m)| match m {
            ServerMessage::Presence {
                roster: Roster::Directory,
                user,
                status,
                at,
                v,
            } if user == who => Some(Seen {
                status: *status,
                v: *v,
                at: *at,
                arrived: *arrived,
            }),
            _ => None,
        })
        .collect()
}

/// `(status, v)` of each transition, for comparing sequences.
pub fn statuses(seen: &[Seen]) -> Vec<(Status, u64)> {
    seen.iter().map(|s| (s.status, s.v)).collect()
}

async fn drive_dashboard(mut tab: Tab, live: Live, log: Arc<Mutex<DashLog>>, follow: bool) {
    loop {
        let code = loop {
            let m = tab.ws.next().await;
            match read(m) {
                Some(Read::Frame(f)) => {
                    let mut l = log.lock().unwrap();
                    let node = l.node;
                    l.frames.push((now_ms(), node, f));
                }
                Some(Read::Closed(code)) => break code,
                None => {}
            }
        };
        let from = {
            let mut l = log.lock().unwrap();
            l.closes.push(code);
            l.node
        };
        if !follow {
            return;
        }
        let moved = reconnect(&live, from, WATCHER, Uuid::new_v4(), || NO_PROOF_MS).await;
        match moved {
            Ok((to, mut t)) => match subscribe(&mut t).await {
                Ok(()) => {
                    log.lock().unwrap().node = to;
                    tab = t;
                }
                Err(e) => {
                    log.lock().unwrap().failure = Some(e);
                    return;
                }
            },
            Err(e) => {
                log.lock().unwrap().failure = Some(e);
                return;
            }
        }
    }
}

/// Creates the tenant with `USERS` (standard) and `boss` (admin).
pub async fn seed(admin: &Admin) {
    admin
        .ok(
            "PUT",
            &format!("/v1/tenants/{TENANT}"),
            json!({"user_limit": 100}),
        )
        .await;
    for u in USERS {
        admin
            .ok(
                "PUT",
                &format!("/v1/tenants/{TENANT}/users/{u}"),
                json!({"name": format!("{u} name"), "nickname": u, "email": format!("{u}@x.test")}),
            )
            .await;
    }
    admin
        .ok(
            "PUT",
            &format!("/v1/tenants/{TENANT}/users/{WATCHER}"),
            json!({"name": "Boss", "email": "boss@x.test", "profile": "admin"}),
        )
        .await;
}

/// Waits until `addr` serves `path` with 200 — a write made elsewhere
/// reached it — failing after 1 s (SPEC §8.7). Returns how long it took.
pub async fn visible_within_1s(addr: SocketAddr, path: &str) -> Duration {
    let admin = Admin::new(addr, ADMIN_KEY);
    let started = Instant::now();
    loop {
        let (status, v) = admin.call("GET", path, None).await;
        if status == 200 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} not visible on {addr} within 1 s: {status} {v}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The tenant's counters as `addr` answers them.
pub async fn stats_on(addr: SocketAddr) -> Value {
    Admin::new(addr, ADMIN_KEY)
        .ok("GET", &format!("/v1/tenants/{TENANT}/stats"), Value::Null)
        .await
}

/// One Redis and `n` hub processes sharing it, the tenant seeded through
/// the first node and visible on every other.
pub struct Cluster {
    pub nodes: Vec<HubProcess>,
    pub live: Live,
    pub redis: RedisServer,
}

impl Cluster {
    pub async fn start(n: usize) -> Cluster {
        Self::on(RedisServer::start().await, n).await
    }

    /// A cluster whose Redis persists every write (AOF, fsync always), for
    /// tests that restart it.
    pub async fn start_persistent(n: usize) -> Cluster {
        Self::on(RedisServer::start_persistent().await, n).await
    }

    async fn on(redis: RedisServer, n: usize) -> Cluster {
        let url = redis.url();
        let names = ["A", "B", "C", "D"];
        let nodes: Vec<HubProcess> = futures_util::future::join_all(
            names[..n]
                .iter()
                .map(|name| HubProcess::cluster_node(&url, name, IDLE_MS)),
        )
        .await;
        let live = Live::new(&nodes.iter().map(|p| p.addr).collect::<Vec<_>>());
        seed(&nodes[0].admin()).await;
        let path = format!("/v1/tenants/{TENANT}/users/{WATCHER}");
        for p in &nodes[1..] {
            visible_within_1s(p.addr, &path).await;
        }
        Cluster { nodes, live, redis }
    }

    /// One dashboard per node.
    pub async fn dashboards(&self, follow: bool) -> Vec<Dashboard> {
        let mut out = Vec::new();
        for i in 0..self.nodes.len() {
            out.push(Dashboard::open(&self.live, i, follow).await);
        }
        out
    }
}
