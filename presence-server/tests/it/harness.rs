//! One behavioural suite, two deployments: the same test body runs against
//! one embedded node and against a two-node cluster sharing a Redis, so the
//! two modes cannot drift apart.
//!
//! A body takes a [`Deployment`] and never asks which one it got, except
//! where the cluster legitimately differs (a write made on node A reaches
//! node B within 1 s, SPEC §8.7). The [`suite!`] macro instantiates every
//! body once per deployment, as `single::<name>` and `cluster::<name>`.
//!
//! Node choice: admin writes always go to node A (`admin()`); tabs are
//! opened on the nodes in turn (`tab`, `open_tab`), so in a test with a
//! watcher and a user, the watcher sits on one node and the user's tab on
//! the other, and every cross-node path (presence through Redis, directory
//! effects through the log) is taken. On a single node, every index is that
//! node.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use presence_server::Config;
use serde_json::Value;
use uuid::Uuid;

use crate::redis_support::RedisServer;
use crate::support::*;

/// How long a directory write made on one node may take to be visible on
/// every node (SPEC §8.7).
pub const SYNC_WITHIN: Duration = Duration::from_secs(1);
const POLL: Duration = Duration::from_millis(20);

/// The hubs a test runs against: one embedded node, or two cluster nodes
/// (A and B) sharing one Redis.
pub struct Deployment {
    nodes: Vec<TestHub>,
    /// Dropped after the nodes (fields drop in order), so no node loses its
    /// Redis while it stops.
    redis: Option<RedisServer>,
    /// The node the next `tab` goes to.
    turn: AtomicUsize,
}

impl Deployment {
    /// One embedded node with [`test_config`].
    pub async fn single() -> Deployment {
        Self::single_with(test_config()).await
    }

    pub async fn single_with(config: Config) -> Deployment {
        Deployment {
            nodes: vec![TestHub::with_config(config).await],
            redis: None,
            turn: AtomicUsize::new(0),
        }
    }

    /// Nodes A and B in cluster mode sharing a fresh Redis, both ready.
    pub async fn two_node_cluster() -> Deployment {
        Self::two_node_cluster_with(test_config()).await
    }

    pub async fn two_node_cluster_with(config: Config) -> Deployment {
        let redis = RedisServer::start().await;
        let a = TestHub::clustered(config.clone(), &redis.url(), "A").await;
        let b = TestHub::clustered(config, &redis.url(), "B").await;
        Deployment {
            nodes: vec![a, b],
            redis: Some(redis),
            turn: AtomicUsize::new(0),
        }
    }

    /// The URL of the cluster's Redis (`None` on a single node).
    pub fn redis_url(&self) -> Option<String> {
        self.redis.as_ref().map(RedisServer::url)
    }

    pub fn is_cluster(&self) -> bool {
        self.redis.is_some()
    }

    /// How many nodes there are (1 or 2).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Node `i` (modulo the number of nodes: on a single node, every index
    /// is that node).
    pub fn node(&self, i: usize) -> &TestHub {
        &self.nodes[i % self.nodes.len()]
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.node(i).addr
    }

    /// The admin API of node A, where every write of a test goes.
    pub fn admin(&self) -> Admin {
        self.node(0).admin()
    }

    /// The admin API of node `i`, to read what that node shows.
    pub fn admin_on(&self, i: usize) -> Admin {
        self.node(i).admin()
    }

    /// The node the next tab goes to, taking turns.
    pub fn next_node(&self) -> usize {
        self.turn.fetch_add(1, Ordering::Relaxed) % self.nodes.len()
    }

    /// A tab of `user` (fresh tab id, interacting: idle 0) on the next node.
    pub async fn tab(&self, tenant: &str, user: &str) -> Tab {
        self.open_tab(&token(tenant, user), Uuid::new_v4(), 0).await
    }

    /// A tab with this token, tab id and idle time, on the next node.
    pub async fn open_tab(&self, token: &str, tab: Uuid, idle_ms: u64) -> Tab {
        let i = self.next_node();
        Tab::open(self.addr(i), token, tab, idle_ms).await
    }

    /// The same on a chosen node.
    pub async fn open_tab_on(&self, i: usize, token: &str, tab: Uuid, idle_ms: u64) -> Tab {
        Tab::open(self.addr(i), token, tab, idle_ms).await
    }

    /// The close code every node answers a connection with `token` with;
    /// fails if a node accepts it.
    pub async fn refused_everywhere(&self, token: &str) -> u16 {
        let mut codes = Vec::new();
        for i in 0..self.len() {
            match Tab::try_open(self.addr(i), token, Uuid::new_v4(), 0).await {
                Ok(_) => panic!("node {i} accepted the connection"),
                Err(c) => codes.push(c.code),
            }
        }
        codes.dedup();
        assert_eq!(codes.len(), 1, "nodes refused differently: {codes:?}");
        codes[0]
    }

    /// Creates tenant `tenant` with the given users (through node A) and
    /// waits until every node shows them.
    pub async fn seed(&self, tenant: &str, users: &[&str]) {
        self.node(0).seed(tenant, users).await;
        self.synced(tenant).await;
    }

    /// Waits until every node shows the tenant's directory as node A does:
    /// the writes made through the admin API so far have reached every node
    /// (nodes apply the log in order, so equal records mean caught up).
    pub async fn synced(&self, tenant: &str) {
        self.same_everywhere(&format!("/v1/tenants/{tenant}")).await;
        self.same_everywhere(&format!("/v1/tenants/{tenant}/users?state=all&limit=1000"))
            .await;
    }

    /// What node A answers at `path`, once every other node answers the same
    /// (status and body), failing after [`SYNC_WITHIN`].
    pub async fn same_everywhere(&self, path: &str) -> Value {
        let want = self.admin().call("GET", path, None).await;
        for i in 1..self.len() {
            let deadline = tokio::time::Instant::now() + SYNC_WITHIN;
            loop {
                let got = self.admin_on(i).call("GET", path, None).await;
                if got == want {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {i} still answers {path} with {} {}, node A with {} {}",
                    got.0,
                    got.1,
                    want.0,
                    want.1
                );
                tokio::time::sleep(POLL).await;
            }
        }
        want.1
    }

    /// What node A answers at `path`, checked with `ok` on every node: at
    /// once on a single node (a write's effects are there when it returns),
    /// within [`SYNC_WITHIN`] on each cluster node (SPEC §8.7: a write's
    /// effects, including the forced offline that goes through Redis, reach
    /// every node within 1 s).
    pub async fn shows(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let mut first = Value::Null;
        for i in 0..self.len() {
            let deadline = tokio::time::Instant::now() + SYNC_WITHIN;
            loop {
                let (s, v) = self.admin_on(i).call("GET", path, None).await;
                if s == 200 && ok(&v) {
                    if i == 0 {
                        first = v;
                    }
                    break;
                }
                assert!(
                    self.is_cluster() && tokio::time::Instant::now() < deadline,
                    "node {i}: {path} is not as expected: {s} {v}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
        first
    }

    /// [`shows`](Self::shows) with an exact answer.
    pub async fn shows_exactly(&self, path: &str, want: &Value) {
        self.shows(path, |v| v == want).await;
    }

    /// Polls `path` on every node until `ok` holds for what it answers,
    /// failing after [`WAIT`]; returns node A's answer.
    pub async fn on_every_node(&self, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let mut first = Value::Null;
        for i in 0..self.len() {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let (s, v) = self.admin_on(i).call("GET", path, None).await;
                if s == 200 && ok(&v) {
                    if i == 0 {
                        first = v;
                    }
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "node {i}: {path} never as expected: {s} {v}"
                );
                tokio::time::sleep(POLL).await;
            }
        }
        first
    }
}

/// Instantiates shared test bodies for both deployments:
///
/// ```ignore
/// suite!(config = test_config(); a_body, another_body);
/// ```
///
/// makes `single::a_body` and `cluster::a_body` (and so on), each running
/// `async fn a_body(d: &Deployment)` of the calling module on a fresh
/// deployment built with that config.
macro_rules! suite {
    (config = $config:expr; $($name:ident),+ $(,)?) => {
        mod single {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let d = $crate::harness::Deployment::single_with($config).await;
                    super::$name(&d).await;
                }
            )+
        }
        mod cluster {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let d = $crate::harness::Deployment::two_node_cluster_with($config).await;
                    super::$name(&d).await;
                }
            )+
        }
    };
}
pub(crate) use suite;
