//! Settings of a hub (SPEC §7 and the limits of SPEC §9).

use std::time::Duration;

/// The default of every setting, in the unit of its variable
/// (`PRESENCE_IDLE_TIMEOUT_MS` ↔ [`IDLE_TIMEOUT_MS`](defaults::IDLE_TIMEOUT_MS)):
/// the one place they are written. `Config::default` is built from them and
/// the command line (`cli.rs`) shows them as its defaults, so `--help`, the
/// library and README.md's table (checked by a test in `cli.rs`) agree.
pub mod defaults {
    /// `PRESENCE_LISTEN`.
    pub const LISTEN: &str = "127.0.0.1:7700";
    /// `PRESENCE_DATA_DIR`.
    pub const DATA_DIR: &str = "./data";
    /// `PRESENCE_LOG_FORMAT`.
    pub const LOG_FORMAT: &str = "text";
    /// `PRESENCE_NODE_ID`.
    pub const NODE_ID: &str = "node-1";
    /// `PRESENCE_IDLE_TIMEOUT_MS` (SPEC §7).
    pub const IDLE_TIMEOUT_MS: u64 = 60_000;
    /// `PRESENCE_HELLO_TIMEOUT_MS` (SPEC §5).
    pub const HELLO_TIMEOUT_MS: u64 = 5_000;
    /// `PRESENCE_MAX_FRAME_BYTES` (SPEC §9): 16 KiB.
    pub const MAX_FRAME_BYTES: usize = 16 * 1024;
    /// `PRESENCE_RATE_PER_SEC` (SPEC §9).
    pub const RATE_PER_SEC: u32 = 20;
    /// `PRESENCE_RATE_BURST` (SPEC §9).
    pub const RATE_BURST: u32 = 40;
    /// `PRESENCE_MAX_TABS_PER_USER` (SPEC §9).
    pub const MAX_TABS_PER_USER: usize = 32;
    /// `PRESENCE_MAX_SUBSCRIPTIONS` (SPEC §9).
    pub const MAX_SUBSCRIPTIONS: usize = 16;
    /// `PRESENCE_OUTBOUND_QUEUE`.
    pub const OUTBOUND_QUEUE: usize = 32_768;
    /// `PRESENCE_SHUTDOWN_GRACE_MS`.
    pub const SHUTDOWN_GRACE_MS: u64 = 5_000;
    /// `PRESENCE_EVENT_RETENTION_S` (SPEC §10): 72 h.
    pub const EVENT_RETENTION_S: u64 = 72 * 3600;
    /// `PRESENCE_WEBHOOK_BATCH_MAX`: events per delivery.
    pub const WEBHOOK_BATCH_MAX: usize = 100;
    /// `PRESENCE_WEBHOOK_BATCH_WAIT_MS`: how long a batch waits to fill.
    pub const WEBHOOK_BATCH_WAIT_MS: u64 = 200;
    /// `PRESENCE_WEBHOOK_RETRY_MIN_MS`: the first retry's step.
    pub const WEBHOOK_RETRY_MIN_MS: u64 = 1_000;
    /// `PRESENCE_WEBHOOK_RETRY_MAX_MS`: the longest step between retries.
    pub const WEBHOOK_RETRY_MAX_MS: u64 = 300_000;
    /// `PRESENCE_WEBHOOK_TIMEOUT_MS`: one delivery's request, answer included.
    pub const WEBHOOK_TIMEOUT_MS: u64 = 10_000;
    /// `PRESENCE_WEBHOOK_LEASE_MS`: cluster mode, how long a tenant's
    /// deliverer holds its lease without renewing it (the takeover time
    /// when it dies); renewed every third of it.
    pub const WEBHOOK_LEASE_MS: u64 = 5_000;
    /// Not a setting: how often events past their tenant's retention are
    /// removed.
    pub const EVENT_TRIM_MS: u64 = 60_000;
    /// Not a setting: cluster mode's safety poll of every held tenant's
    /// directory version and of the tenant list, in case a notice on a
    /// channel was lost while the subscription looked up.
    pub const DIRECTORY_POLL_MS: u64 = 30_000;
    /// `PRESENCE_TENANT_EVICT_AFTER_MS`: cluster mode, how long a tenant
    /// stays loaded on a node with nothing using it there.
    pub const TENANT_EVICT_AFTER_MS: u64 = 300_000;
    /// Cluster mode: how often the owned tenants' retention and history
    /// duties run.
    pub const CLUSTER_DUTIES_MS: u64 = 3_600_000;
    /// Cluster mode: how long a tab's `hello` waits for its tenant to load.
    pub const TENANT_LOAD_TIMEOUT_MS: u64 = 10_000;
    /// `PRESENCE_PING_INTERVAL_MS`.
    pub const PING_INTERVAL_MS: u64 = 25_000;
    /// `PRESENCE_PONG_TIMEOUT_MS`.
    pub const PONG_TIMEOUT_MS: u64 = 20_000;
    /// `PRESENCE_CLOSE_LINGER_MS`.
    pub const CLOSE_LINGER_MS: u64 = 1_000;
    /// `PRESENCE_WRITE_BUFFER_BYTES`: 1 MiB.
    pub const WRITE_BUFFER_BYTES: usize = 1 << 20;
    /// `PRESENCE_MAX_CONNECTIONS`.
    pub const MAX_CONNECTIONS: usize = 100_000;
    /// `PRESENCE_MAX_PENDING_HELLO`.
    pub const MAX_PENDING_HELLO: usize = 10_000;
    /// `PRESENCE_HEADER_READ_TIMEOUT_MS`.
    pub const HEADER_READ_TIMEOUT_MS: u64 = 10_000;
    /// `PRESENCE_MAX_HEADER_BYTES`: 16 KiB.
    pub const MAX_HEADER_BYTES: usize = 16 * 1024;
    /// `PRESENCE_MAX_BODY_BYTES`: 1 MiB.
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    /// `PRESENCE_MAX_IMPORT_BYTES`: 64 MiB takes a 100,000-user export with
    /// long away messages (about 33 MiB).
    pub const MAX_IMPORT_BYTES: usize = 64 * 1024 * 1024;
}

/// Everything a hub needs besides its key, store and listener. Each field's
/// default is the [`defaults`] constant it names.
#[derive(Debug, Clone)]
pub struct Config {
    /// A user is online this long after their last interaction.
    /// Default is [`defaults::IDLE_TIMEOUT_MS`].
    pub idle_timeout: Duration,
    /// How often a tab should report activity while someone interacts;
    /// sent in `welcome`. `None` derives it from the idle timeout (see
    /// [`Config::activity_interval`]). Default is `None`.
    pub activity_interval: Option<Duration>,
    /// The first frame must be `hello` within this.
    /// Default is [`defaults::HELLO_TIMEOUT_MS`].
    pub hello_timeout: Duration,
    /// Larger frames close the tab with 4008.
    /// Default is [`defaults::MAX_FRAME_BYTES`].
    pub max_frame_bytes: usize,
    /// Sustained frames per second per tab. Default is [`defaults::RATE_PER_SEC`].
    pub rate_per_sec: u32,
    /// Burst of frames per tab. Default is [`defaults::RATE_BURST`].
    pub rate_burst: u32,
    /// The next tab of a user gets 4029. Default is [`defaults::MAX_TABS_PER_USER`].
    pub max_tabs_per_user: usize,
    /// Subscriptions per tab. Default is [`defaults::MAX_SUBSCRIPTIONS`].
    pub max_subscriptions: usize,
    /// Frames waiting to be written to one tab before it is closed as a
    /// slow consumer. Default is [`defaults::OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// Allowed `Origin` headers; empty allows any. Default is empty.
    pub allowed_origins: Vec<String>,
    /// Name of this node in logs and metrics; in cluster mode `main` adds a
    /// random suffix per start. Default is [`defaults::NODE_ID`].
    pub node_id: String,
    /// The shutdown deadline: `server::run` returns within this of being
    /// told to stop, with every task of the node ended. Tabs (told 1012,
    /// each with its `close_linger`) and HTTP connections get all of it
    /// but the last quarter, at most the last second
    /// (`server::drain_budget`), then those still open are dropped;
    /// presence is persisted and, in cluster mode, the node leaves the
    /// cluster (`cluster::leave`) in what is left, starting as soon as the
    /// last connection closed.
    /// Default is [`defaults::SHUTDOWN_GRACE_MS`].
    pub shutdown_grace: Duration,
    /// How long a tenant's transition feed keeps events when the tenant
    /// sets no `event_retention_s`. Default is [`defaults::EVENT_RETENTION_S`].
    pub event_retention: Duration,
    /// How often events past their retention are removed (a single node;
    /// a cluster node: [`cluster_duties`](Self::cluster_duties)).
    /// Default is [`defaults::EVENT_TRIM_MS`].
    pub event_trim: Duration,
    /// Cluster mode: how often a node trims the feed and the history of
    /// every tenant it owns, held or not, and folds into history what no
    /// keeper folded (`cluster::residency::owner_duties`): a retention of
    /// days needs no trim a minute, and a cluster of 10,000 tenants no
    /// per-tenant traffic while idle. Default is [`defaults::CLUSTER_DUTIES_MS`].
    pub cluster_duties: Duration,
    /// Cluster mode: how often directory sync reads every held tenant's
    /// version and the tenant list although no notice asked for it (it is
    /// woken by notices on the tenants' channels, and reads everything after
    /// every (re)subscription). Default is [`defaults::DIRECTORY_POLL_MS`].
    pub directory_poll: Duration,
    /// Cluster mode: a tenant with no tab, no watcher, no reader of its
    /// feed and no local claim on this node, unused for this long, is
    /// evicted (its memory and its channel given up; loaded again when
    /// something needs it). Default is [`defaults::TENANT_EVICT_AFTER_MS`].
    pub tenant_evict_after: Duration,
    /// Cluster mode: how long a tab's `hello` waits for its tenant to load
    /// before the tab is told to come back (1013).
    /// Default is [`defaults::TENANT_LOAD_TIMEOUT_MS`].
    pub tenant_load_timeout: Duration,
    /// Webhook delivery (SPEC §10).
    pub webhooks: WebhookSettings,

    // The WebSocket connection (SPEC §9).
    /// A tab that sent nothing for this long is pinged.
    /// Default is [`defaults::PING_INTERVAL_MS`].
    pub ping_interval: Duration,
    /// A pinged tab that sends nothing (no pong, no frame) for this long is
    /// closed: its peer is gone. Default is [`defaults::PONG_TIMEOUT_MS`].
    pub pong_timeout: Duration,
    /// After its close frame the hub reads (and drops) what the client
    /// still sends, for at most this long, waiting for the client's close
    /// frame before it closes TCP. Default is [`defaults::CLOSE_LINGER_MS`].
    pub close_linger: Duration,
    /// Bytes of queued frames a session hands the socket at once; what the
    /// socket does not take waits in the tab's write buffer, so this bounds
    /// it (a single larger frame still goes).
    /// Default is [`defaults::WRITE_BUFFER_BYTES`].
    pub write_buffer_bytes: usize,

    // The HTTP edge: connections, upgrades and request sizes (`server.rs`,
    // `net/upgrade.rs`, `api/admin.rs`).
    /// Open connections: HTTP connections and the WebSocket tabs they were
    /// upgraded to. The next one is answered 503 and closed before it
    /// reaches the router, so a flood cannot exhaust file descriptors or
    /// memory. Default is [`defaults::MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// Upgraded connections that have not finished `hello` (from the 101 to
    /// `welcome` or a refusal); beyond it an upgrade is answered 503
    /// `too_many_pending`. Bounds what unauthenticated sockets can hold.
    /// Default is [`defaults::MAX_PENDING_HELLO`].
    pub max_pending_hello: usize,
    /// A request line and its headers must arrive within this, else the
    /// connection is closed; it is also how long an idle keep-alive
    /// connection waits for its next request.
    /// Default is [`defaults::HEADER_READ_TIMEOUT_MS`].
    pub header_read_timeout: Duration,
    /// A larger request line plus headers is answered 431.
    /// Default is [`defaults::MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// A larger JSON body on the admin API is answered 413.
    /// Default is [`defaults::MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// A larger CSV import is answered 413.
    /// Default is [`defaults::MAX_IMPORT_BYTES`].
    pub max_import_bytes: usize,
}

/// How webhooks are delivered; each default is the `defaults::WEBHOOK_*`
/// constant of its variable.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Private targets the operator allows. Default: none.
    pub allowed_hosts: crate::webhook::target::Policy,
    /// Most events in one delivery.
    pub batch_max: usize,
    /// A batch that is not full goes this long after its first event was
    /// seen.
    pub batch_wait: Duration,
    /// The first retry waits about this (jittered), each next one twice
    /// as long, up to `retry_max`.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// One request, from connecting to the end of the answer.
    pub timeout: Duration,
    /// Cluster mode: the deliverer's lease; another node takes over at
    /// most this long after it died.
    pub lease: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        use defaults as d;
        let ms = Duration::from_millis;
        WebhookSettings {
            allowed_hosts: crate::webhook::target::Policy::default(),
            batch_max: d::WEBHOOK_BATCH_MAX,
            batch_wait: ms(d::WEBHOOK_BATCH_WAIT_MS),
            retry_min: ms(d::WEBHOOK_RETRY_MIN_MS),
            retry_max: ms(d::WEBHOOK_RETRY_MAX_MS),
            timeout: ms(d::WEBHOOK_TIMEOUT_MS),
            lease: ms(d::WEBHOOK_LEASE_MS),
        }
    }
}

/// The report interval used when none is set: often enough that a person
/// who keeps interacting proves it at least three times per idle timeout
/// (so one late or lost report cannot flap them), and at most every 10 s.
pub const fn derived_activity_interval(idle_timeout: Duration) -> Duration {
    let third = Duration::from_millis((idle_timeout.as_millis() / 3) as u64);
    if third.as_millis() < 10_000 {
        third
    } else {
        Duration::from_secs(10)
    }
}

impl Config {
    /// How often a tab should report activity, as `welcome` says.
    pub fn activity_interval(&self) -> Duration {
        self.activity_interval
            .unwrap_or_else(|| derived_activity_interval(self.idle_timeout))
    }
}

impl Default for Config {
    fn default() -> Self {
        use defaults as d;
        let ms = Duration::from_millis;
        Config {
            idle_timeout: ms(d::IDLE_TIMEOUT_MS),
            activity_interval: None,
            hello_timeout: ms(d::HELLO_TIMEOUT_MS),
            max_frame_bytes: d::MAX_FRAME_BYTES,
            rate_per_sec: d::RATE_PER_SEC,
            rate_burst: d::RATE_BURST,
            max_tabs_per_user: d::MAX_TABS_PER_USER,
            max_subscriptions: d::MAX_SUBSCRIPTIONS,
            outbound_queue: d::OUTBOUND_QUEUE,
            allowed_origins: Vec::new(),
            node_id: d::NODE_ID.into(),
            shutdown_grace: ms(d::SHUTDOWN_GRACE_MS),
            event_retention: Duration::from_secs(d::EVENT_RETENTION_S),
            event_trim: ms(d::EVENT_TRIM_MS),
            cluster_duties: ms(d::CLUSTER_DUTIES_MS),
            directory_poll: ms(d::DIRECTORY_POLL_MS),
            tenant_evict_after: ms(d::TENANT_EVICT_AFTER_MS),
            tenant_load_timeout: ms(d::TENANT_LOAD_TIMEOUT_MS),
            webhooks: WebhookSettings::default(),
            ping_interval: ms(d::PING_INTERVAL_MS),
            pong_timeout: ms(d::PONG_TIMEOUT_MS),
            close_linger: ms(d::CLOSE_LINGER_MS),
            write_buffer_bytes: d::WRITE_BUFFER_BYTES,

            max_connections: d::MAX_CONNECTIONS,
            max_pending_hello: d::MAX_PENDING_HELLO,
            header_read_timeout: ms(d::HEADER_READ_TIMEOUT_MS),
            max_header_bytes: d::MAX_HEADER_BYTES,
            max_body_bytes: d::MAX_BODY_BYTES,
            max_import_bytes: d::MAX_IMPORT_BYTES,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_activity_interval_follows_a_short_idle_timeout() {
        let c = |ms| Config {
            idle_timeout: Duration::from_millis(ms),
            ..Config::default()
        };
        assert_eq!(c(60_000).activity_interval(), Duration::from_secs(10));
        assert_eq!(c(2_000).activity_interval(), Duration::from_millis(666));
        assert_eq!(c(300_000).activity_interval(), Duration::from_secs(10));
    }
}
