//! A real hub on 127.0.0.1 for the client to talk to, the admin API calls
//! that shape its directory, and token providers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use presence_client::{Client, ClientOptions, Event, TokenProvider};
use presence_server::Config;
use presence_server::EmbeddedStore;
use presence_server::Hub;
use presence_server::{mint_hs256, Verifier};
use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-0123456789";
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
pub const TENANT: &str = "acme";
/// How long a test waits for something the hub or the client must do.
pub const WAIT: Duration = Duration::from_secs(10);

/// Short enough to watch a user go offline in a test.
pub const IDLE_TIMEOUT: Duration = Duration::from_millis(600);

pub fn config() -> Config {
    Config {
        idle_timeout: IDLE_TIMEOUT,
        shutdown_grace: Duration::from_secs(1),
        ..Config::default()
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// Awaits `f`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One in-process hub, started as `presence-server` starts it.
pub struct TestHub {
    pub addr: SocketAddr,
    config: Config,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    /// A hub on a free port whose store lives in `dir`.
    pub async fn start(config: Config, dir: &tempfile::TempDir) -> TestHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(config, dir, listener).await
    }

    async fn serve(
        config: Config,
        dir: &tempfile::TempDir,
        listener: tokio::net::TcpListener,
    ) -> TestHub {
        let store = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        let verifier = Verifier::hs256(SECRET.as_bytes());
        let hub = Hub::new(
            config.clone(),
            verifier,
            Some(ADMIN_KEY.into()),
            store,
            None,
        )
        .await
        .unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(presence_server::run(hub, listener, async move {
            let _ = rx.await;
        }));
        TestHub {
            addr,
            config,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Shuts the hub down the way SIGTERM does (every tab gets 1012), then
    /// starts a new one on the same address and store.
    pub async fn restart(mut self, dir: &tempfile::TempDir) -> TestHub {
        self.stop().await;
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        Self::serve(self.config.clone(), dir, listener).await
    }

    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            within("the hub to stop", t).await.unwrap().unwrap();
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.addr)
    }

    /// An admin API call that must succeed.
    pub async fn admin(&self, method: &str, path: &str, body: Value) -> Value {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = reqwest::Client::new()
            .request(m, format!("http://{}/v1/tenants/{TENANT}{path}", self.addr))
            .bearer_auth(ADMIN_KEY);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        assert!(status.is_success(), "{method} {path} -> {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Tenant `acme`: `boss` (admin), `ann` (an attendant in the CRM team
    /// `sales`) and `bob` (standard, no team).
    pub async fn seed(&self) {
        self.admin("PUT", "", json!({"user_limit": 100})).await;
        for (id, profile) in [("boss", "admin"), ("ann", "standard"), ("bob", "standard")] {
            self.admin(
                "PUT",
                &format!("/users/{id}"),
                json!({"name": format!("{id} name"), "nickname": id, "email": format!("{id}@x.test"), "profile": profile}),
            )
            .await;
        }
        self.admin("PUT", "/teams/sales", json!({"name": "Sales", "crm": true}))
            .await;
        self.admin("PUT", "/teams/sales/members/ann", json!({"as": "member"}))
            .await;
    }

    /// `user`'s client with default options (connecting proves interaction).
    pub async fn client(&self, user: &str) -> Client {
        self.client_with(user, ClientOptions::default()).await
    }

    pub async fn client_with(&self, user: &str, options: ClientOptions) -> Client {
        let tokens = Tokens::new(user, 3600);
        within(
            "welcome",
            Client::connect(self.url(), tokens.provider(), options),
        )
        .await
        .unwrap_or_else(|e| panic!("{user} could not connect: {e}"))
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// Mints tokens for one user, as an ERP backend would, and counts the
/// requests so a test can see when the client asked for one.
#[derive(Clone)]
pub struct Tokens {
    user: String,
    ttl_secs: u64,
    pub calls: Arc<AtomicUsize>,
}

impl Tokens {
    pub fn new(user: &str, ttl_secs: u64) -> Tokens {
        Tokens {
            user: user.into(),
            ttl_secs,
            calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub fn mint(&self) -> String {
        mint_hs256(
            SECRET.as_bytes(),
            TENANT,
            &self.user,
            now_secs(),
            self.ttl_secs,
        )
    }

    pub fn provider(&self) -> impl TokenProvider {
        let t = self.clone();
        move || {
            t.calls.fetch_add(1, Ordering::SeqCst);
            let token = t.mint();
            async move { Ok::<_, std::convert::Infallible>(token) }
        }
    }
}

/// Waits for the first event `f` accepts, failing on a terminal one it
/// does not accept.
pub async fn event(
    events: &mut tokio::sync::broadcast::Receiver<Event>,
    what: &str,
    mut f: impl FnMut(&Event) -> bool,
) -> Event {
    within(what, async {
        loop {
            let e = events.recv().await.expect("the client is still running");
            if f(&e) {
                return e;
            }
            if let Event::Disconnected { .. } = e {
                panic!("ended while waiting for {what}: {e:?}");
            }
        }
    })
    .await
}
