//! Settings of a hub (SPEC §7 and the limits of SPEC §9).

use std::time::Duration;

/// Everything a hub needs besides its key, store and listener.
#[derive(Debug, Clone)]
pub struct Config {
    /// A user is online this long after their last interaction. Default is 60 s.
    pub idle_timeout: Duration,
    /// How often a tab should report activity while someone interacts;
    /// sent in `welcome`. Default is 10 s.
    pub activity_interval: Duration,
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
    /// How long shutdown waits for tabs to close. Default is 5 s.
    pub shutdown_grace: Duration,
    /// How often the presence of users who changed is persisted. Default is 1 s.
    pub presence_flush: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            idle_timeout: Duration::from_secs(60),
            activity_interval: Duration::from_secs(10),
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
        }
    }
}
