//! Starts real hubs on 127.0.0.1:0 and talks to them as clients do: a
//! WebSocket tab client and an admin API client.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, Roster, ServerMessage};
use presence_server::Config;
use presence_server::EmbeddedStore;
use presence_server::Hub;
use presence_server::{mint_hs256, Verifier};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

pub const SECRET: &str = "test-secret-0123456789";
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// How long a test waits for something the hub must do before failing.
pub const WAIT: Duration = Duration::from_secs(5);

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn token(tenant: &str, user: &str) -> String {
    mint_hs256(SECRET.as_bytes(), tenant, user, now_secs(), 3600)
}

/// A config for tests: a short idle timeout so expiry is observable quickly.
pub fn test_config() -> Config {
    Config {
        idle_timeout: Duration::from_millis(1_500),
        ..Config::default()
    }
}

pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Arc<Hub>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::with_config(test_config()).await
    }

    pub async fn with_config(config: Config) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        Self::on_dir(config, dir).await
    }

    pub async fn on_dir(config: Config, dir: tempfile::TempDir) -> TestHub {
        Self::with_verifier(config, dir, Verifier::hs256(SECRET.as_bytes())).await
    }

    /// A hub that checks tokens with `verifier` (e.g. an RS256/ES256 key).
    pub async fn with_verifier(
        config: Config,
        dir: tempfile::TempDir,
        verifier: Verifier,
    ) -> TestHub {
        Self::build(config, dir, verifier, None).await
    }

    /// A node of a cluster: presence shared through the Redis at `redis_url`.
    /// Returns once the node is ready (`/readyz`).
    pub async fn clustered(config: Config, redis_url: &str, node: &str) -> TestHub {
        let dir = tempfile::tempdir().unwrap();
        let h = Self::build(
            config,
            dir,
            Verifier::hs256(SECRET.as_bytes()),
            Some((node, redis_url.to_owned())),
        )
        .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let r = reqwest::get(format!("http://{}/readyz", h.addr))
                .await
                .unwrap();
            if r.status() == 200 {
                return h;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "node {node} never ready"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn build(
        config: Config,
        dir: tempfile::TempDir,
        verifier: Verifier,
        cluster: Option<(&str, String)>,
    ) -> TestHub {
        let hub = match cluster {
            None => {
                let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
                Hub::new(config, verifier, Some(ADMIN_KEY.into()), store, None)
                    .await
                    .unwrap()
            }
            Some((node, url)) => {
                presence_server::start_cluster(config, verifier, Some(ADMIN_KEY.into()), &url, node)
                    .await
                    .unwrap()
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(presence_server::run(hub.clone(), listener, async move {
            let _ = rx.await;
        }));
        TestHub {
            addr,
            hub,
            dir,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the hub gracefully and waits for it.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .unwrap()
                .unwrap()
                .unwrap();
        }
    }

    /// Stops the hub as a crash would: no 1012, no hand-off to the cluster,
    /// no last persist; its tasks end (its tabs' sessions with their
    /// sockets), and what it claimed in Redis stays until it expires.
    pub fn crash(&mut self) {
        self.stop = None;
        if let Some(t) = self.task.take() {
            t.abort();
        }
        self.hub.tasks().abort_all();
    }

    /// The value of an unlabelled metric from `/metrics`.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://{}/metrics", self.addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        metric_in(&text, name)
    }

    pub fn admin(&self) -> Admin {
        Admin::new(self.addr, ADMIN_KEY)
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// Connects a tab with a fresh tab id, sends hello and waits for welcome.
    pub async fn tab(&self, tenant: &str, user: &str) -> Tab {
        Tab::open(self.addr, &token(tenant, user), Uuid::new_v4(), 0).await
    }

    /// Creates tenant `t` with the given users (all standard, active).
    pub async fn seed(&self, tenant: &str, users: &[&str]) {
        let a = self.admin();
        a.ok(
            "PUT",
            &format!("/v1/tenants/{tenant}"),
            json!({"user_limit": 1000}),
        )
        .await;
        for u in users {
            a.ok(
                "PUT",
                &format!("/v1/tenants/{tenant}/users/{u}"),
                json!({"name": format!("{u} name"), "nickname": u, "email": format!("{u}@x.test")}),
            )
            .await;
        }
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub struct Admin {
    base: String,
    key: String,
    http: reqwest::Client,
}

impl Admin {
    pub fn new(addr: SocketAddr, key: &str) -> Admin {
        Admin {
            base: format!("http://{addr}"),
            key: key.into(),
            http: reqwest::Client::new(),
        }
    }

    pub fn with_key(&self, key: &str) -> Admin {
        Admin {
            base: self.base.clone(),
            key: key.into(),
            http: self.http.clone(),
        }
    }

    /// Sends a request; returns the status and the JSON body (Null if empty).
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let resp = self
            .http
            .request(m, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, v)
    }

    /// A call that must succeed (2xx).
    pub async fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() { None } else { Some(body) };
        let (s, v) = self.call(method, path, body).await;
        assert!((200..300).contains(&s), "{method} {path} -> {s} {v}");
        v
    }
}

/// Reads an unlabelled metric from Prometheus text.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (k, v) = l.rsplit_once(' ')?;
        (k == name).then(|| v.parse().ok()).flatten()
    })
}

/// Whether a frame is `user`'s presence delta with this status.
pub fn is_presence_of(m: &ServerMessage, who: &str, status: presence_protocol::Status) -> bool {
    matches!(m, ServerMessage::Presence { user, status: s, .. } if user == who && *s == status)
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One browser tab, as the hub sees it.
pub struct Tab {
    pub ws: Ws,
    pub welcome: Option<ServerMessage>,
    pub tab: Uuid,
}

/// What a tab observed when its connection ended.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    pub code: u16,
    pub reason: String,
}

pub async fn raw_connect(addr: SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    ws
}

impl Tab {
    pub async fn open(addr: SocketAddr, token: &str, tab: Uuid, idle_ms: u64) -> Tab {
        match Self::try_open(addr, token, tab, idle_ms).await {
            Ok(t) => t,
            Err(c) => panic!("connection refused: {c:?}"),
        }
    }

    /// Connects and says hello; the close the hub answered with, if it refused.
    pub async fn try_open(
        addr: SocketAddr,
        token: &str,
        tab: Uuid,
        idle_ms: u64,
    ) -> Result<Tab, Closed> {
        Self::hello(raw_connect(addr).await, token, tab, idle_ms).await
    }

    /// Says hello on a WebSocket connected by the caller (through a proxy,
    /// from another source address); the close the hub answered with, if it
    /// refused.
    pub async fn hello(mut ws: Ws, token: &str, tab: Uuid, idle_ms: u64) -> Result<Tab, Closed> {
        let hello = ClientMessage::Hello {
            token: token.into(),
            tab,
            idle_ms,
            client: Some("it/1".into()),
        };
        ws.send(Message::Text(serde_json::to_string(&hello).unwrap().into()))
            .await
            .unwrap();
        let mut t = Tab {
            ws,
            welcome: None,
            tab,
        };
        match t.next().await {
            Ok(m @ ServerMessage::Welcome { .. }) => {
                t.welcome = Some(m);
                Ok(t)
            }
            Ok(other) => panic!("expected welcome, got {other:?}"),
            Err(c) => Err(c),
        }
    }

    pub async fn send(&mut self, m: &ClientMessage) {
        self.send_text(&serde_json::to_string(m).unwrap()).await;
    }

    pub async fn send_text(&mut self, s: &str) {
        self.ws
            .send(Message::Text(s.to_owned().into()))
            .await
            .unwrap();
    }

    pub async fn activity(&mut self, idle_ms: u64) {
        self.send(&ClientMessage::Activity { idle_ms }).await;
    }

    /// The next server message, or the close that ended the connection.
    pub async fn next(&mut self) -> Result<ServerMessage, Closed> {
        loop {
            let m = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("hub said nothing in time");
            match m {
                Some(Ok(Message::Text(t))) => {
                    return Ok(
                        serde_json::from_str(&t).unwrap_or_else(|e| panic!("bad frame {t}: {e}"))
                    )
                }
                Some(Ok(Message::Close(Some(f)))) => {
                    return Err(Closed {
                        code: u16::from(f.code),
                        reason: f.reason.to_string(),
                    })
                }
                Some(Ok(Message::Close(None))) | None => {
                    return Err(Closed {
                        code: u16::from(CloseCode::Status),
                        reason: String::new(),
                    })
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    return Err(Closed {
                        code: 0,
                        reason: e.to_string(),
                    })
                }
            }
        }
    }

    /// The next message, which must not be a close.
    pub async fn recv(&mut self) -> ServerMessage {
        self.next()
            .await
            .unwrap_or_else(|c| panic!("closed: {c:?}"))
    }

    /// Skips messages until one matches.
    pub async fn recv_until(&mut self, mut f: impl FnMut(&ServerMessage) -> bool) -> ServerMessage {
        loop {
            let m = self.recv().await;
            if f(&m) {
                return m;
            }
        }
    }

    /// Waits for the connection to be closed and returns its code, skipping
    /// any message before it.
    pub async fn closed(&mut self) -> Closed {
        loop {
            if let Err(c) = self.next().await {
                return c;
            }
        }
    }

    /// Asserts nothing arrives within `d`.
    pub async fn silent_for(&mut self, d: Duration) {
        if let Ok(m) = tokio::time::timeout(d, self.ws.next()).await {
            panic!("expected silence, got {m:?}");
        }
    }

    pub async fn subscribe(&mut self, id: u64, roster: &str) -> ServerMessage {
        let roster: Roster = roster.parse().unwrap();
        self.send(&ClientMessage::Subscribe {
            id: presence_protocol::ReqId::Num(id),
            roster,
        })
        .await;
        self.recv().await
    }
}

/// Waits until `presence_open_tabs` reads `want`, failing after `limit`;
/// returns how long it took.
pub async fn open_tabs_within(h: &TestHub, want: f64, limit: Duration) -> Duration {
    let t0 = tokio::time::Instant::now();
    loop {
        let n = h.metric("presence_open_tabs").await;
        if n == Some(want) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < limit,
            "presence_open_tabs stayed at {n:?} for {limit:?}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Unmasked server frames (opcode, payload) in `bytes`.
pub fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    while bytes.len() >= 2 {
        let (op, len7) = (bytes[0] & 0x0f, (bytes[1] & 0x7f) as usize);
        let (len, head) = match len7 {
            126 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => (
                u64::from_be_bytes(bytes[2..10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n, 2),
        };
        out.push((op, bytes[head..head + len].to_vec()));
        bytes = &bytes[head + len..];
    }
    out
}

/// What a tab that stopped reading finds in its socket once the hub gave
/// up on it: pings, then the close saying why, then the end of the stream.
/// Read raw: a WebSocket library would first answer the ping into a closed
/// socket.
pub async fn assert_pinged_then_closed_for_no_pong(gone: &mut Tab) {
    use tokio::io::AsyncReadExt;
    let mut bytes = Vec::new();
    match gone.ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => {
            tokio::time::timeout(WAIT, s.read_to_end(&mut bytes))
                .await
                .expect("the stale tab's connection was never closed")
                .unwrap();
        }
        _ => unreachable!("tests speak plain ws://"),
    }
    let frames = server_frames(&bytes);
    let opcodes: Vec<u8> = frames.iter().map(|(op, _)| *op).collect();
    assert!(opcodes.contains(&0x9), "never pinged: {opcodes:?}");
    let (op, payload) = frames.last().unwrap();
    assert_eq!(*op, 0x8, "{opcodes:?}");
    assert_eq!(
        &payload[..2],
        &presence_protocol::close::GOING_AWAY.to_be_bytes()
    );
    assert_eq!(&payload[2..], b"no answer to ping");
}
