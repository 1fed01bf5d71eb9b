//! Prometheus metrics of one hub, in a registry of its own so several hubs
//! can run in one test process.
//!
//! Names follow Prometheus's conventions (base units in the name:
//! `_seconds`, `_bytes`; counters end in `_total`) and every label has a
//! fixed, small set of values: no user, tenant or tab ever becomes a label,
//! so a hub with 100,000 users exposes as many series as one with ten.
//! README's "Operations" section lists the families; the dashboard and the
//! alert rules in `examples/` are checked against a live scrape
//! (`tests/it/metrics.rs`).

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use presence_protocol::Roster;
use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    Opts, Registry, TextEncoder,
};

/// The kinds of roster, the one label of the delivery histogram (a team's
/// id is not a label: teams are unbounded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RosterKind {
    Directory = 1,
    Attendants = 2,
    Team = 3,
}

impl RosterKind {
    pub fn of(r: &Roster) -> RosterKind {
        match r {
            Roster::Directory => RosterKind::Directory,
            Roster::Attendants => RosterKind::Attendants,
            Roster::Team(_) => RosterKind::Team,
        }
    }

    const ALL: [RosterKind; 3] = [
        RosterKind::Directory,
        RosterKind::Attendants,
        RosterKind::Team,
    ];

    fn label(self) -> &'static str {
        match self {
            RosterKind::Directory => "directory",
            RosterKind::Attendants => "attendants",
            RosterKind::Team => "team",
        }
    }
}

/// The process's own origin for [`Since`]: stamps are 8-byte offsets from
/// it rather than 16-byte `Instant`s, because every tab's outbox holds one.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// When a transition was published (its cause, for the delivery
/// histogram): nanoseconds since [`epoch`] on the monotonic clock, which a
/// paused test clock does not move.
#[derive(Debug, Clone, Copy)]
pub struct Since(u64);

impl Since {
    pub fn now() -> Since {
        Since(epoch().elapsed().as_nanos() as u64)
    }

    /// The stamp a frame of this transition carries to a roster's watchers.
    pub fn on(self, kind: RosterKind) -> Stamp {
        // The kind is 1..=3, so the value is never 0; 2^62 ns is 146 years.
        let packed = (self.0 << 2) | kind as u64;
        Stamp(NonZeroU64::new(packed).expect("the kind is never 0"))
    }
}

/// A presence delta's cause and roster kind, packed in 8 bytes (with the
/// niche, an `Option<Stamp>` is 8 bytes too): every tab's outbox holds one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(NonZeroU64);

impl Stamp {
    fn kind(self) -> RosterKind {
        match self.0.get() & 3 {
            1 => RosterKind::Directory,
            2 => RosterKind::Attendants,
            _ => RosterKind::Team,
        }
    }

    fn seconds_until(self, now: Since) -> f64 {
        now.0.saturating_sub(self.0.get() >> 2) as f64 / 1e9
    }
}

/// Latency buckets, 0.5 ms to 5 s: a delivery on one node includes the
/// feed's group commit (an fsync), one in cluster mode a Redis round trip.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The values of `presence_rejected_frames_total`'s `reason` (set by
/// `net::session`).
pub const REJECT_REASONS: [&str; 6] = [
    "too_large",
    "invalid_utf8",
    "protocol",
    "binary",
    "rate_limited",
    "malformed",
];

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
    /// Set at scrape time: 1 when `/readyz` would answer 200.
    pub ready: IntGauge,
    /// From a transition's publication to its frame handed to a watcher's
    /// socket (per write: its oldest delta), one child per [`RosterKind`]
    /// (indexed by `kind - 1`), so the session's observation is an array
    /// index, not a label lookup.
    delivery_seconds: [Histogram; 3],
    /// One admin write's `Store::commit` (redb on a single node,
    /// `commit.lua` in cluster mode).
    pub store_commit_seconds: Histogram,
    /// Cluster mode: one call of `presence.lua` (`script="presence"`) or
    /// `commit.lua` (`script="commit"`) that Redis ran.
    pub redis_script_seconds: HistogramVec,
    /// Cluster mode: 1 while the event subscription is up (the node's view
    /// of Redis: down, it shows its own tabs provisionally).
    pub redis_connected: IntGauge,
    /// Cluster mode: nodes whose heartbeat is fresh, this one included.
    pub cluster_nodes: IntGauge,
    /// Cluster mode: presence operations queued and not yet in Redis.
    pub cluster_pending_operations: IntGauge,
    /// Cluster mode: tenants this node holds now (loaded, not evicted).
    pub tenants_resident: IntGauge,
    /// Cluster mode: tenants this node evicted (unused for long).
    pub tenants_evicted: IntCounter,
    /// Cluster mode: set at scrape time from `directory_synced_at_ms`.
    directory_sync_lag_seconds: Gauge,
    /// Cluster mode: wall-clock ms at which the last directory sync round
    /// that read every tenant's log up to its version began (0: none yet).
    directory_synced_at_ms: AtomicU64,
}

impl Metrics {
    /// The registry of one hub; the families of cluster mode are
    /// registered only with `cluster`, so a single node exposes no Redis
    /// gauge for an alert to misread.
    pub fn new(cluster: bool) -> Self {
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| {
            registry.register(c).expect("registered once");
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric name");
            register(Box::new(g.clone()));
            g
        };
        let counter = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("valid metric name");
            register(Box::new(c.clone()));
            c
        };
        let counter_vec = |name: &str, help: &str, label: &str| {
            let c = IntCounterVec::new(Opts::new(name, help), &[label]).expect("valid metric name");
            register(Box::new(c.clone()));
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec()))
                .expect("valid metric name");
            register(Box::new(h.clone()));
            h
        };
        let feed_commit_seconds = histogram(
            "presence_feed_commit_seconds",
            "Single node: duration of one group commit of the transition feed.",
            &[0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5],
        );
        let delivery = HistogramVec::new(
            HistogramOpts::new(
                "presence_delivery_seconds",
                "Per write of presence deltas to a watcher's socket, the time since the oldest of them was published on this node, by roster kind.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["roster"],
        )
        .expect("valid metric name");
        register(Box::new(delivery.clone()));
        let delivery_seconds = RosterKind::ALL.map(|k| delivery.with_label_values(&[k.label()]));
        let store_commit_seconds = histogram(
            "presence_store_commit_seconds",
            "Duration of one admin write's commit to the store (embedded or Redis).",
            &LATENCY_BUCKETS,
        );
        let redis_script_seconds = HistogramVec::new(
            HistogramOpts::new(
                "presence_redis_script_seconds",
                "Cluster mode: duration of one Redis script call that succeeded, by script.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["script"],
        )
        .expect("valid metric name");
        let cluster_gauge =
            |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric name");
        let redis_connected = cluster_gauge(
            "presence_redis_connected",
            "Cluster mode: 1 while this node is subscribed to Redis's presence events.",
        );
        let cluster_nodes = cluster_gauge(
            "presence_cluster_nodes",
            "Cluster mode: nodes with a fresh heartbeat (at most 5 s old), this one included.",
        );
        let cluster_pending_operations = cluster_gauge(
            "presence_cluster_pending_operations",
            "Cluster mode: presence operations queued on this node and not yet in Redis.",
        );
        let tenants_resident = cluster_gauge(
            "presence_tenants_resident",
            "Cluster mode: tenants this node holds now (loaded when needed, evicted when unused).",
        );
        let tenants_evicted = IntCounter::new(
            "presence_tenants_evicted_total",
            "Cluster mode: tenants this node evicted after nothing used them for PRESENCE_TENANT_EVICT_AFTER_MS.",
        )
        .expect("valid metric name");
        let directory_sync_lag_seconds = Gauge::new(
            "presence_directory_sync_lag_seconds",
            "Cluster mode: this node has applied every directory write committed more than this long ago.",
        )
        .expect("valid metric name");
        if cluster {
            register(Box::new(redis_script_seconds.clone()));
            register(Box::new(redis_connected.clone()));
            register(Box::new(cluster_nodes.clone()));
            register(Box::new(cluster_pending_operations.clone()));
            register(Box::new(tenants_resident.clone()));
            register(Box::new(tenants_evicted.clone()));
            register(Box::new(directory_sync_lag_seconds.clone()));
        }
        // RSS, open files, CPU seconds, threads: read from /proc at scrape.
        #[cfg(target_os = "linux")]
        register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ));
        let transitions = counter_vec(
            "presence_transitions_total",
            "Online/offline transitions.",
            "status",
        );
        let rejected_frames = counter_vec(
            "presence_rejected_frames_total",
            "Client frames refused, by reason.",
            "reason",
        );
        // Every label value exists from the start, at 0: a series that
        // appears only with its first increment makes `rate()` and
        // `increase()` miss that increment.
        for status in ["online", "offline"] {
            transitions.with_label_values(&[status]);
        }
        for reason in REJECT_REASONS {
            rejected_frames.with_label_values(&[reason]);
        }
        let webhook_deliveries = counter_vec(
            "presence_webhook_deliveries_total",
            "Webhook delivery attempts by result (ok, http_error, network_error).",
            "result",
        );
        for result in ["ok", "http_error", "network_error"] {
            webhook_deliveries.with_label_values(&[result]);
        }
        Metrics {
            feed_commit_seconds,
            webhook_deliveries,
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
            transitions,
            frames_in: counter("presence_frames_in_total", "Frames received from tabs."),
            frames_out: counter("presence_frames_out_total", "Frames sent to tabs."),
            slow_consumers: counter(
                "presence_slow_consumers_total",
                "Tabs closed because their outbound queue was full.",
            ),
            rejected_frames,
            ready: gauge(
                "presence_ready",
                "1 when this node is ready to serve (GET /readyz answers 200).",
            ),
            delivery_seconds,
            store_commit_seconds,
            redis_script_seconds,
            redis_connected,
            cluster_nodes,
            cluster_pending_operations,
            tenants_resident,
            tenants_evicted,
            directory_sync_lag_seconds,
            directory_synced_at_ms: AtomicU64::new(0),
            registry,
        }
    }

    /// A session handed to its socket a write whose oldest presence delta
    /// carries `stamp`.
    pub(crate) fn delivered(&self, stamp: Stamp) {
        self.delivery_seconds[stamp.kind() as usize - 1].observe(stamp.seconds_until(Since::now()));
    }

    /// Cluster mode: every directory write committed before `at_ms` (wall
    /// clock) is applied: a directory sync round that began then read every
    /// log it was asked to, with the subscription up (every other commit
    /// would have been announced) or reading every held tenant's log.
    pub(crate) fn directory_synced(&self, at_ms: u64) {
        self.directory_synced_at_ms
            .fetch_max(at_ms, Ordering::Relaxed);
    }

    /// The Prometheus text exposition; `now_ms` (wall clock) turns the
    /// last directory sync into its lag.
    pub fn render(&self, now_ms: u64) -> String {
        let synced = self.directory_synced_at_ms.load(Ordering::Relaxed);
        if synced > 0 {
            self.directory_sync_lag_seconds
                .set(now_ms.saturating_sub(synced) as f64 / 1e3);
        }
        let mut buf = Vec::new();
        // Encoding gathered families into a Vec cannot fail.
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("encode metrics");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_keeps_its_kind_and_time() {
        let since = Since(1_500_000_000);
        for kind in RosterKind::ALL {
            let s = since.on(kind);
            assert_eq!(s.kind(), kind);
            assert_eq!(s.seconds_until(Since(2_000_000_000)), 0.5);
        }
        assert_eq!(std::mem::size_of::<Option<Stamp>>(), 8);
    }
}
