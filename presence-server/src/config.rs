//! Settings of a hub (SPEC §7 and the limits of SPEC §9).

use std::time::Duration;

/// Everything a hub needs besides its key, store and listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// A user is online this long after their last interaction. Default is 60 s.
    pub idle_timeout: Duration,
    /// How often a tab should report activity while someone interacts;
    /// sent in `welcome`. `None` derives it from the idle timeout (see
    /// [`Config::activity_interval`]). Default is `None`.
    pub activity_interval: Option<Duration>,
    /// The first frame must be `hello` within this. Default is 5 s.
    pub hello_timeout: Duration,
    /// Larger frames close the tab with 4008. Default is 16 KiB.
    pub max_frame_bytes: usize,
    /// Sustained frames per second per tab. Default is 20.
    pub rate_per_sec: u32,
    /// Burst of frames per tab. Default is 40.
    pub rate_burst: u32,
    /// The next tab of a user gets 4029. Default is 32.
    pub max_tabs_per_user: usize,
    /// Subscriptions per tab. Default is 16.
    pub max_subscriptions: usize,
    /// Frames waiting to be written to one tab before it is closed as a
    /// slow consumer. Default is 1024.
    pub outbound_queue: usize,
    /// Allowed `Origin` headers; empty allows any. Default is empty.
    pub allowed_origins: Vec<String>,
    /// Name of this node in logs and metrics. Default is the host name.
    pub node_id: String,
    /// The shutdown deadline: `server::run` returns within this of being
    /// told to stop, with every task of the node ended. Tabs (told 1012,
    /// each with its `close_linger`) and HTTP connections get all of it
    /// but the last quarter, at most the last second
    /// (`server::drain_budget`), then those still open are dropped;
    /// presence is persisted and, in cluster mode, the node leaves the
    /// cluster (`cluster::leave`) in what is left, starting as soon as the
    /// last connection closed. Default is 5 s.
    pub shutdown_grace: Duration,
    /// How often the presence of users who changed is persisted. Default is 1 s.
    pub presence_flush: Duration,

    // The WebSocket connection (SPEC §9).
    /// A tab that sent nothing for this long is pinged. Default is 25 s.
    pub ping_interval: Duration,
    /// A pinged tab that sends nothing (no pong, no frame) for this long is
    /// closed: its peer is gone. Default is 20 s.
    pub pong_timeout: Duration,
    /// After its close frame the hub reads (and drops) what the client
    /// still sends, for at most this long, waiting for the client's close
    /// frame before it closes TCP. Default is 1 s.
    pub close_linger: Duration,
    /// Bytes of queued frames a session hands the socket at once; what the
    /// socket does not take waits in the tab's write buffer, so this bounds
    /// it (a single larger frame still goes). Default is 1 MiB.
    pub write_buffer_bytes: usize,

    // The HTTP edge: connections, upgrades and request sizes (`server.rs`,
    // `net/upgrade.rs`, `api/admin.rs`).
    /// Open connections: HTTP connections and the WebSocket tabs they were
    /// upgraded to. The next one is answered 503 and closed before it
    /// reaches the router, so a flood cannot exhaust file descriptors or
    /// memory. Default is 100,000.
    pub max_connections: usize,
    /// Upgraded connections that have not finished `hello` (from the 101 to
    /// `welcome` or a refusal); beyond it an upgrade is answered 503
    /// `too_many_pending`. Bounds what unauthenticated sockets can hold.
    /// Default is 10,000.
    pub max_pending_hello: usize,
    /// A request line and its headers must arrive within this, else the
    /// connection is closed; it is also how long an idle keep-alive
    /// connection waits for its next request. Default is 10 s.
    pub header_read_timeout: Duration,
    /// A larger request line plus headers is answered 431. Default is 16 KiB.
    pub max_header_bytes: usize,
    /// A larger JSON body on the admin API is answered 413. Default is 1 MiB.
    pub max_body_bytes: usize,
    /// A larger CSV import is answered 413; 64 MiB takes a 100,000-user
    /// export with long away messages. Default is 64 MiB.
    pub max_import_bytes: usize,
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
        Config {
            idle_timeout: Duration::from_secs(60),
            activity_interval: None,
            hello_timeout: Duration::from_secs(5),
            max_frame_bytes: 16 * 1024,
            rate_per_sec: 20,
            rate_burst: 40,
            max_tabs_per_user: 32,
            max_subscriptions: 16,
            outbound_queue: 32_768,
            allowed_origins: Vec::new(),
            node_id: "node".into(),
            shutdown_grace: Duration::from_secs(5),
            presence_flush: Duration::from_secs(1),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(20),
            close_linger: Duration::from_secs(1),
            write_buffer_bytes: 1 << 20,

            max_connections: 100_000,
            max_pending_hello: 10_000,
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
            max_import_bytes: 64 * 1024 * 1024,
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
