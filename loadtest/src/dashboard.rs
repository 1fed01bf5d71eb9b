//! A dashboard: an administrator's tab watching the `directory`, applying
//! what it receives the way a client does and timing each delta against
//! the action that caused it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;
use tokio::sync::{mpsc, watch};

use presence_protocol::Roster;

use crate::common::{hello, idle_timeout_ms, subscribe_frame};
use crate::deltas::{parse, Applied, Msg, View};
use crate::fanout::NO_PROOF_MS;
use crate::report::histogram;
use crate::wire::Tab;
use crate::Ctx;

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
    /// When each user's last online delta arrived (0: none).
    pub online_arrival_ms: Vec<u64>,
    pub offline_at_ms: Vec<u64>,
    pub closed: bool,
}

/// Dashboards running, and the idle timeout their hub announced.
pub struct Boards {
    pub handles: Vec<tokio::task::JoinHandle<Seen>>,
    pub idle_timeout_ms: u64,
}

/// Opens a dashboard for each of `admins` (dashboard *j* on hub *j* mod
/// hubs), without proof of interaction so they never turn online
/// themselves, and returns once every one applied its snapshot (or the run
/// was stopped). They run until `done`.
pub async fn open_all(
    ctx: &Ctx,
    tenant: &str,
    admins: &[String],
    users: usize,
    shared: &Arc<Shared>,
    done: &watch::Receiver<bool>,
) -> anyhow::Result<Boards> {
    let hellos = admins
        .iter()
        .map(|a| {
            (
                hello(ctx.tokens.mint(tenant, a), NO_PROOF_MS),
                subscribe_frame(1, Roster::Directory),
            )
        })
        .collect();
    // A directory snapshot is big: a few at a time.
    let mut plan = ctx.plan();
    plan.in_flight = plan.in_flight.min(32);
    let opened = plan.open(hellos, &ctx.stop, "dashboards").await?;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut boards = Boards {
        handles: Vec::new(),
        idle_timeout_ms: 0,
    };
    for tab in opened.tabs.into_iter().flatten() {
        boards.idle_timeout_ms = idle_timeout_ms(&tab.welcome)?;
        boards.handles.push(spawn(
            tab,
            users,
            shared.clone(),
            ready_tx.clone(),
            done.clone(),
        ));
    }
    let progress = crate::control::bar(boards.handles.len() as u64, "snapshots");
    for _ in 0..boards.handles.len() {
        tokio::select! {
            _ = ready_rx.recv() => progress.inc(1),
            _ = ctx.stop.wait() => break,
        }
    }
    progress.finish_and_clear();
    Ok(boards)
}

/// Starts a dashboard on a tab that already sent its `subscribe`. `ready`
/// gets a message once its snapshot is applied; it runs until `done`.
fn spawn(
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
            online_arrival_ms: vec![0; users],
            offline_at_ms: vec![0; users],
            closed: false,
        };
        loop {
            let text = tokio::select! {
                t = reader.text() => match t {
                    Ok(t) => t,
                    Err(_) => {
                        seen.closed = true;
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
                        seen.online_arrival_ms[i] = crate::common::now_ms();
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
                Msg::Other => {}
            }
        }
        seen
    })
}
