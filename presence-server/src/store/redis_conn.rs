//! One async Redis connection for both deployments: a single server or a
//! Redis Cluster, told apart once at connect time.
//!
//! Callers use [`RedisConn`] like any `redis::aio::ConnectionLike`
//! (`cmd.query_async`, `pipe.query_async`, `script.invoke_async`); the enum
//! only forwards. Both variants are cheap handles over shared connections, so
//! `clone` per call is how concurrent tasks share one.
//!
//! Reconnection: `ConnectionManager` replaces its connection after an I/O
//! error and retries a few times with backoff; a later command starts a new
//! attempt if those failed. `ClusterConnection` keeps a reconnect loop per
//! node and refreshes the slot map on errors. Neither bounds how long a
//! command waits while the server is gone, so every command goes out with a
//! response timeout and a connection timeout, and `RedisStore` adds an
//! overall deadline on top.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

/// How long a TCP connect (plus handshake) to one Redis node may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// How long one command may wait for its reply before it fails.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1_000);

/// Why no connection could be made.
#[derive(Debug, thiserror::Error)]
pub enum RedisConnError {
    #[error("invalid Redis URL: {0}")]
    Url(#[source] RedisError),
    #[error("Redis is unreachable: {0}")]
    Unreachable(#[source] RedisError),
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
}

/// A connection to a single Redis or to a Redis Cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl RedisConn {
    /// Connects to `url` and, when that node says `cluster_enabled:1`, to the
    /// whole cluster it belongs to (discovered from that node).
    ///
    /// # Errors
    /// The URL does not parse, or the node does not answer within
    /// [`CONNECT_TIMEOUT`] + [`RESPONSE_TIMEOUT`].
    pub async fn connect(url: &str) -> Result<RedisConn, RedisConnError> {
        let client = redis::Client::open(url).map_err(RedisConnError::Url)?;
        let probe_bound = CONNECT_TIMEOUT + RESPONSE_TIMEOUT;
        let cluster = tokio::time::timeout(probe_bound, is_cluster(&client))
            .await
            .map_err(|_| RedisConnError::Timeout(probe_bound))??;
        if cluster {
            let client = ClusterClientBuilder::new(vec![url])
                .connection_timeout(CONNECT_TIMEOUT)
                // Also the overall bound of one request, retries and
                // redirections included (the builder's default).
                .response_timeout(RESPONSE_TIMEOUT)
                .build()
                .map_err(RedisConnError::Url)?;
            let conn = client
                .get_async_connection()
                .await
                .map_err(RedisConnError::Unreachable)?;
            Ok(RedisConn::Cluster(conn))
        } else {
            // Short, few retries: a command waits on the reconnect attempt in
            // progress, so a long backoff would hold commits after Redis
            // came back. When they are spent, the next command starts anew.
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(RESPONSE_TIMEOUT))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(250));
            let conn = ConnectionManager::new_with_config(client, config)
                .await
                .map_err(RedisConnError::Unreachable)?;
            Ok(RedisConn::Single(conn))
        }
    }

    pub fn is_cluster(&self) -> bool {
        matches!(self, RedisConn::Cluster(_))
    }

    /// How the scripts publish on a tenant's channel: `SPUBLISH` on a Redis
    /// Cluster, so a tenant's messages stay on its slot's shard instead of
    /// crossing the cluster bus to every node; plain `PUBLISH` on a single
    /// Redis, where both reach the same subscribers at the same cost and
    /// the crate's single-server pub/sub speaks only `SUBSCRIBE` (and a
    /// single Redis older than 7 keeps working).
    pub fn publish_command(&self) -> &'static str {
        if self.is_cluster() {
            "SPUBLISH"
        } else {
            "PUBLISH"
        }
    }
}

/// Asks the node itself; a standalone server answers `cluster_enabled:0`.
async fn is_cluster(client: &redis::Client) -> Result<bool, RedisConnError> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(RESPONSE_TIMEOUT));
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .map_err(RedisConnError::Unreachable)?;
    let info: String = redis::cmd("INFO")
        .arg("cluster")
        .query_async(&mut conn)
        .await
        .map_err(RedisConnError::Unreachable)?;
    Ok(info.lines().any(|l| l.trim() == "cluster_enabled:1"))
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(c) => c.req_packed_command(cmd),
            RedisConn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            RedisConn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}
