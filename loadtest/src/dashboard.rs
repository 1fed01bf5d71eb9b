//! A dashboard: an administrator's tab watching the `directory`, applying
//! what it receives the way a client does and timing each delta against
//! the action that caused it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};

use crate::deltas::{parse, Applied, Msg, View};
use crate::report::histogram;
use crate::wire::Tab;

/// What the load generator shares with its dashboards.
pub struct Shared {
    pub epoch: Instant,
    /// Per user: when the action that should cause their next transition
    /// was sent, µs since `epoch` (0: no action pending).
    pub sent_us: Vec<AtomicU64>,
    /// Deltas are timed and counted only while this is set.
    pub measuring: AtomicBool,
    /// Over all dashboards: deltas applied, and how many dashboards run.
    pub online_total: AtomicU64,
    pub offline_total: AtomicU64,
    pub boards: AtomicU64,
}

impl Shared {
    pub fn new(users: usize) -> Arc<Shared> {
        Arc::new(Shared {
            epoch: Instant::now(),
            sent_us: (0..users).map(|_| AtomicU64::new(0)).collect(),
            measuring: AtomicBool::new(false),
            online_total: AtomicU64::new(0),
            offline_total: AtomicU64::new(0),
            boards: AtomicU64::new(0),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// Online and offline deltas per dashboard (rounded down).
    pub fn counts(&self) -> (usize, usize) {
        let b = self.boards.load(Ordering::Relaxed).max(1);
        (
            (self.online_total.load(Ordering::Relaxed) / b) as usize,
            (self.offline_total.load(Ordering::Relaxed) / b) as usize,
        )
    }

    pub fn mark(&self, user: usize) {
        self.sent_us[user].store(self.now_us(), Ordering::Relaxed);
    }
}

/// What one dashboard saw.
pub struct Seen {
    pub view: View,
    pub latency_us: Histogram<u64>,
    /// Presence deltas while measuring.
    pub deliveries: u64,
    pub online_deltas: u64,
    pub offline_deltas: u64,
    /// Per user: wall-clock ms of the last offline delta, and its `at`.
    pub offline_arrival_ms: Vec<u64>,
    pub offline_at_ms: Vec<u64>,
    pub errors: Vec<String>,
    pub closed: bool,
}

/// Starts a dashboard on a tab that already sent its `subscribe`. `ready`
/// gets a message once its snapshot is applied; it runs until `done`.
pub fn spawn(
    tab: Tab,
    users: usize,
    shared: Arc<Shared>,
    ready: mpsc::UnboundedSender<()>,
    mut done: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Seen> {
    let mut reader = tab.reader;
    let writer = tab.writer;
    shared.boards.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        let _keep_open = writer;
        let mut seen = Seen {
            view: View::new(users),
            latency_us: histogram(),
            deliveries: 0,
            online_deltas: 0,
            offline_deltas: 0,
            offline_arrival_ms: vec![0; users],
            offline_at_ms: vec![0; users],
            errors: Vec::new(),
            closed: false,
        };
        loop {
            let text = tokio::select! {
                t = reader.text() => match t {
                    Ok(t) => t,
                    Err(e) => {
                        seen.closed = true;
                        seen.errors.push(e.to_string());
                        break;
                    }
                },
                _ = done.changed() => break,
            };
            match parse(&text) {
                Msg::Snapshot(s) => {
                    seen.view.snapshot(&s);
                    let _ = ready.send(());
                }
                Msg::Presence(p) => {
                    let Some((i, applied)) = seen.view.delta(&p) else {
                        continue;
                    };
                    if applied == Applied::Stale {
                        continue;
                    }
                    if p.status == "online" {
                        seen.online_deltas += 1;
                        shared.online_total.fetch_add(1, Ordering::Relaxed);
                    } else {
                        seen.offline_deltas += 1;
                        shared.offline_total.fetch_add(1, Ordering::Relaxed);
                        seen.offline_arrival_ms[i] = crate::common::now_ms();
                        seen.offline_at_ms[i] = p.at;
                    }
                    if shared.measuring.load(Ordering::Relaxed) {
                        seen.deliveries += 1;
                        let sent = shared
                            .sent_us
                            .get(i)
                            .map_or(0, |s| s.load(Ordering::Relaxed));
                        if sent > 0 {
                            let now = shared.now_us();
                            let _ = seen.latency_us.record(now.saturating_sub(sent).max(1));
                        }
                    }
                }
                Msg::Error(e) => seen.errors.push(e),
                Msg::Stats | Msg::Other => {}
            }
        }
        seen
    })
}
