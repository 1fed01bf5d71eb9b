//! Prometheus metrics of one hub, in a registry of its own so several hubs
//! can run in one test process.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    pub open_tabs: IntGauge,
    /// Set at scrape time from the tenants' per-user tab lists (see
    /// `Hub::registered_tabs`); equal to `open_tabs` unless a session ended
    /// without leaving its tenant.
    pub registered_tabs: IntGauge,
    pub online_users: IntGauge,
    pub transitions: IntCounterVec,
    pub frames_in: IntCounter,
    pub frames_out: IntCounter,
    pub slow_consumers: IntCounter,
    pub rejected_frames: IntCounterVec,
    /// Single node: how long one group commit of the feed took (the delay
    /// it adds before deltas go out).
    pub feed_commit_seconds: Histogram,
    /// Events appended to the feed by this node's committer.
    pub feed_events: IntCounter,
    /// Webhook delivery attempts by `result` (`ok`, `http_error`, `network_error`).
    pub webhook_deliveries: IntCounterVec,
    /// Events acknowledged by webhook receivers.
    pub webhook_events: IntCounter,
    /// Events waiting for the webhooks this node delivers (what each
    /// deliverer last read, at most 1,000 per webhook).
    pub webhook_pending: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric name");
            registry
                .register(Box::new(g.clone()))
                .expect("registered once");
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric name");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric name");
            registry
                .register(Box::new(c.clone()))
                .expect("registered once");
            c
        };
        let feed_commit_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "presence_feed_commit_seconds",
                "Single node: duration of one group commit of the transition feed.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5,
            ]),
        )
        .expect("valid metric name");
        registry
            .register(Box::new(feed_commit_seconds.clone()))
            .expect("registered once");
        Metrics {
            feed_commit_seconds,
            webhook_deliveries: counter_vec(
                "presence_webhook_deliveries_total",
                "Webhook delivery attempts by result (ok, http_error, network_error).",
                "result",
            ),
            webhook_events: counter(
                "presence_webhook_events_delivered_total",
                "Events acknowledged (2xx) by webhook receivers.",
            ),
            webhook_pending: gauge(
                "presence_webhook_pending_events",
                "Events waiting for the webhooks this node delivers.",
            ),
            feed_events: counter(
                "presence_feed_events_total",
                "Single node: events committed to the transition feed.",
            ),
            open_tabs: gauge(
                "presence_open_tabs",
                "Authenticated WebSocket tabs open now.",
            ),
            registered_tabs: gauge(
                "presence_registered_tabs",
                "Tab handles held in the tenants' per-user tab lists.",
            ),
            online_users: gauge("presence_online_users", "Users online now, all tenants."),
            transitions: counter_vec(
                "presence_transitions_total",
                "Online/offline transitions.",
                "status",
            ),
            frames_in: counter("presence_frames_in_total", "Frames received from tabs."),
            frames_out: counter("presence_frames_out_total", "Frames sent to tabs."),
            slow_consumers: counter(
                "presence_slow_consumers_total",
                "Tabs closed because their outbound queue was full.",
            ),
            rejected_frames: counter_vec(
                "presence_rejected_frames_total",
                "Client frames refused, by reason.",
                "reason",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
