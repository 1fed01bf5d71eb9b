//! Real `redis-server` processes on free 127.0.0.1 ports: one server
//! (optionally persistent, restartable) or a cluster of masters.
//!
//! Waits poll with a deadline; a process is SIGKILLed when its handle drops.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a server may take to answer PING, or a cluster to reach
/// `cluster_state:ok`, before the test fails.
const START_WAIT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(20);

/// A port nothing listens on right now: bind port 0, read it, release it.
/// Another process may take it before we do; `start` then retries.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("bound socket has an address").port()
}

/// Arguments that make every acknowledged write durable (AOF, fsync always).
const PERSISTENT: [&str; 6] = [
    "--save",
    "",
    "--appendonly",
    "yes",
    "--appendfsync",
    "always",
];

pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// Arguments after `--port P` (persistence, cluster mode).
    extra: Vec<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// A throwaway server: no RDB snapshots, no AOF.
    pub async fn start() -> RedisServer {
        Self::start_with(&["--save", "", "--appendonly", "no"]).await
    }

    /// A server whose every acknowledged write is fsynced to its AOF before
    /// the reply, so `kill` + `restart` loses nothing acknowledged.
    pub async fn start_persistent() -> RedisServer {
        Self::start_with(&PERSISTENT).await
    }

    /// A server with `extra` arguments, on a free port. Retries on another
    /// port when the chosen one was taken in the meantime.
    pub async fn start_with(extra: &[&str]) -> RedisServer {
        let mut last_err = String::new();
        for _ in 0..3 {
            let mut s = RedisServer {
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                extra: extra.iter().map(|s| s.to_string()).collect(),
                child: None,
            };
            match s.spawn_and_wait().await {
                Ok(()) => return s,
                Err(e) => last_err = e,
            }
        }
        panic!("redis-server did not start: {last_err}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL: no shutdown save, sockets reset.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            // Already exited is fine: the goal is that it is gone.
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the server again on the same port and directory.
    pub async fn restart(&mut self) {
        self.kill();
        if let Err(e) = self.spawn_and_wait().await {
            panic!("redis-server did not restart on port {}: {e}", self.port);
        }
    }

    async fn spawn_and_wait(&mut self) -> Result<(), String> {
        let child = Command::new("redis-server")
            .arg("--port")
            .arg(self.port.to_string())
            .args(["--bind", "127.0.0.1", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--logfile", "redis.log"])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn redis-server (is it installed?): {e}"))?;
        self.child = Some(child);
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    let log = std::fs::read_to_string(self.dir.path().join("redis.log"))
                        .unwrap_or_default();
                    return Err(format!("exited with {status}: {log}"));
                }
            }
            if ping(self.port).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                self.kill();
                return Err(format!(
                    "no PONG on port {} within {START_WAIT:?}",
                    self.port
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// True when the server on `port` answers PING (not while it loads its AOF,
/// when it answers `-LOADING`).
pub async fn ping(port: u16) -> bool {
    query::<String>(port, redis::cmd("PING"))
        .await
        .is_some_and(|r| r == "PONG")
}

/// One command on a fresh connection, `None` on any failure or after 500 ms.
pub async fn query<T: redis::FromRedisValue>(port: u16, cmd: redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let fut = async {
        let mut c = client.get_multiplexed_async_connection().await.ok()?;
        cmd.query_async::<T>(&mut c).await.ok()
    };
    tokio::time::timeout(Duration::from_millis(500), fut)
        .await
        .ok()
        .flatten()
}

/// A Redis Cluster of masters only, every slot assigned.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub async fn start(masters: usize) -> RedisCluster {
        let mut nodes = Vec::new();
        for _ in 0..masters {
            // The bus port is chosen too: the default (port + 10000) may be
            // taken or, for a high ephemeral port, past 65535.
            let bus = free_port().to_string();
            nodes.push(
                RedisServer::start_with(
                    &[
                        &PERSISTENT[..],
                        &[
                            "--cluster-enabled",
                            "yes",
                            "--cluster-config-file",
                            "nodes.conf",
                            "--cluster-port",
                            &bus,
                            "--cluster-node-timeout",
                            "2000",
                        ],
                    ]
                    .concat(),
                )
                .await,
            );
        }
        let mut create = tokio::process::Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for n in &nodes {
            create.arg(format!("127.0.0.1:{}", n.port));
        }
        create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let out = tokio::time::timeout(START_WAIT, create.output())
            .await
            .expect("redis-cli --cluster create finishes")
            .expect("run redis-cli (is redis-tools installed?)");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisCluster { nodes };
        cluster.wait_ok().await;
        cluster
    }

    /// Waits until every node reports `cluster_state:ok`.
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + START_WAIT;
        for n in &self.nodes {
            loop {
                let info: Option<String> =
                    query(n.port, redis::cmd("CLUSTER").arg("INFO").clone()).await;
                if info.is_some_and(|i| i.lines().any(|l| l.trim() == "cluster_state:ok")) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "cluster node {} not ok within {START_WAIT:?}",
                    n.port
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// The URL of one node; clients discover the others from it.
    pub fn url(&self) -> String {
        self.nodes[0].url()
    }

    /// The index of the node that owns `key`'s slot: the others answer
    /// `EXISTS` with a MOVED redirection.
    pub async fn owner_of(&self, key: &str) -> usize {
        for (i, n) in self.nodes.iter().enumerate() {
            if query::<i64>(n.port, redis::cmd("EXISTS").arg(key).clone())
                .await
                .is_some()
            {
                return i;
            }
        }
        panic!("no node owns {key}");
    }
}
