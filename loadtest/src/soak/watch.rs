//! The soak's watchers: administrators on the `directory` and on team
//! rosters, applying snapshots and deltas by the `v` rule (`deltas.rs`),
//! timing each scheduled transition from its cause, and counting every
//! transition a user should not have had.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use hdrhistogram::Histogram;
use presence_protocol::Roster;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::common::{hello, subscribe_frame};
use crate::deltas::{parse, Applied, Msg, View};
use crate::fanout::NO_PROOF_MS;
use crate::report::histogram;
use crate::wire::{self, Frame, Tab};
use crate::Ctx;

use super::plan::{allowance, Class, Layout};

/// What the scheduled users (`togglers.rs`) tell the watchers, and what the
/// watchers measure; shared by every task of the soak.
pub struct Causes {
    pub layout: Layout,
    pub epoch: Instant,
    /// Per user, µs since `epoch`: when the `activity` that turns them
    /// online was sent.
    pub online_sent_us: Vec<AtomicU64>,
    /// Per user: when the offline is due (the `logout` sent, or the
    /// deadline of an expiry: last activity sent + idle timeout).
    pub offline_due_us: Vec<AtomicU64>,
    /// Per user: whether that offline comes from expiry.
    pub by_expiry: Vec<AtomicBool>,
    /// Per user: transitions the load generator caused so far.
    pub caused: Vec<AtomicU64>,
    /// Cause → watcher, µs, for the current sample period and the run.
    pub period: Mutex<Histogram<u64>>,
    pub total: Mutex<Histogram<u64>>,
    /// Arrival − deadline of expiry offlines, µs; and those that arrived
    /// before the deadline or more than 1 s after it.
    pub expiry_lateness: Mutex<Histogram<u64>>,
    pub expiry_early: AtomicU64,
    pub expiry_late: AtomicU64,
    /// Deltas applied over every watcher, and those judged spurious as
    /// they arrived.
    pub deltas: AtomicU64,
    pub spurious: AtomicU64,
}

impl Causes {
    pub fn new(layout: Layout) -> Arc<Causes> {
        let n = layout.users();
        let atomics = || (0..n).map(|_| AtomicU64::new(0)).collect();
        Arc::new(Causes {
            layout,
            epoch: Instant::now(),
            online_sent_us: atomics(),
            offline_due_us: atomics(),
            by_expiry: (0..n).map(|_| AtomicBool::new(false)).collect(),
            caused: atomics(),
            period: Mutex::new(histogram()),
            total: Mutex::new(histogram()),
            expiry_lateness: Mutex::new(histogram()),
            expiry_early: AtomicU64::new(0),
            expiry_late: AtomicU64::new(0),
            deltas: AtomicU64::new(0),
            spurious: AtomicU64::new(0),
        })
    }

    pub fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    /// The period's histogram, replaced by an empty one.
    pub fn take_period(&self) -> Histogram<u64> {
        std::mem::replace(
            &mut *self.period.lock().expect("no panic while held"),
            histogram(),
        )
    }

    fn latency(&self, us: u64) {
        let us = us.max(1);
        let _ = self.period.lock().expect("no panic while held").record(us);
        let _ = self.total.lock().expect("no panic while held").record(us);
    }

    fn expiry(&self, arrival_us: u64, due_us: u64) {
        if arrival_us < due_us {
            self.expiry_early.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let late = arrival_us - due_us;
        if late > 1_000_000 {
            self.expiry_late.fetch_add(1, Ordering::Relaxed);
        }
        let _ = self
            .expiry_lateness
            .lock()
            .expect("no panic while held")
            .record(late.max(1));
    }

    /// What a watcher may have seen of user `i` by now (see
    /// [`allowance`]).
    pub fn allowance(&self, i: usize, online_at_snapshot: bool) -> (u64, u64) {
        allowance(
            self.layout.class(i),
            online_at_snapshot,
            self.caused[i].load(Ordering::Relaxed),
        )
    }
}

/// What one watcher saw.
pub struct Watched {
    pub roster: String,
    pub view: View,
    /// Users in the watcher's first snapshot: the ones it can see.
    pub in_scope: Vec<bool>,
    pub online_at_snapshot: Vec<bool>,
    /// Deltas applied, per user.
    pub seen: Vec<u64>,
    /// How the hub ended it, if it did before the end.
    pub closed: Option<String>,
}

impl Watched {
    /// Deltas this watcher never got, judged against a later snapshot
    /// (the truth once traffic stopped), among the users it can see.
    pub fn settle(&mut self, truth: &View) {
        for i in (0..self.view.v.len()).filter(|&i| self.in_scope[i]) {
            let (held, t) = (self.view.v[i], truth.v[i]);
            if t > held {
                self.view.integrity.missing += t - held;
            }
        }
    }
}

/// Opens a watcher per `(admin, roster)`, without proof of interaction,
/// and returns once each applied its snapshot (or the run was stopped).
/// They run until `done`.
pub async fn open(
    ctx: &Ctx,
    tenant: &str,
    watchers: &[(String, Roster)],
    causes: &Arc<Causes>,
    done: &watch::Receiver<bool>,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<Watched>>> {
    let hellos = watchers
        .iter()
        .map(|(admin, roster)| {
            (
                hello(ctx.tokens.mint(tenant, admin), NO_PROOF_MS),
                subscribe_frame(1, roster.clone()),
            )
        })
        .collect();
    let mut plan = ctx.plan();
    plan.in_flight = plan.in_flight.min(8);
    let opened = plan.open(hellos, &ctx.stop, "watchers").await?;
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let mut handles = Vec::new();
    for (tab, (_, roster)) in opened.tabs.into_iter().zip(watchers) {
        let Some(tab) = tab else { continue };
        handles.push(tokio::spawn(run(
            tab,
            roster.to_string(),
            causes.clone(),
            ready_tx.clone(),
            done.clone(),
        )));
    }
    for _ in 0..handles.len() {
        tokio::select! {
            _ = ready_rx.recv() => {}
            _ = ctx.stop.wait() => break,
        }
    }
    Ok(handles)
}

async fn run(
    tab: Tab,
    roster: String,
    causes: Arc<Causes>,
    ready: mpsc::UnboundedSender<()>,
    mut done: watch::Receiver<bool>,
) -> Watched {
    let Tab {
        mut reader,
        mut writer,
        ..
    } = tab;
    let n = causes.layout.users();
    let mut w = Watched {
        roster,
        view: View::new(n),
        in_scope: vec![false; n],
        online_at_snapshot: vec![false; n],
        seen: vec![0; n],
        closed: None,
    };
    let mut snapshots = 0;
    loop {
        let frame = tokio::select! {
            f = reader.next() => f,
            _ = done.changed() => break,
        };
        let text = match frame {
            Ok(Some(Frame::Text(t))) => t,
            Ok(Some(Frame::Ping(_) | Frame::Other)) => continue,
            Ok(Some(Frame::Close(code))) => {
                w.closed = Some(format!("closed with {code}"));
                return w;
            }
            Ok(None) | Err(_) => {
                w.closed = Some("connection lost".into());
                return w;
            }
        };
        match parse(&text) {
            Msg::Snapshot(s) if snapshots == 0 => {
                snapshots += 1;
                w.view.snapshot(&s);
                for e in &s.users {
                    if let Some(i) = crate::deltas::index(e.id).filter(|&i| i < n) {
                        w.in_scope[i] = true;
                        w.online_at_snapshot[i] = e.status == "online";
                    }
                }
                let _ = ready.send(());
            }
            Msg::Presence(p) => {
                let Some((i, applied)) = w.view.delta(&p) else {
                    continue;
                };
                if applied == Applied::Stale {
                    continue;
                }
                w.seen[i] += 1;
                causes.deltas.fetch_add(1, Ordering::Relaxed);
                if w.seen[i] > causes.allowance(i, w.online_at_snapshot[i]).1 {
                    causes.spurious.fetch_add(1, Ordering::Relaxed);
                }
                let class = causes.layout.class(i);
                if !matches!(class, Class::LogoutToggler | Class::ExpiryToggler) {
                    continue;
                }
                let now = causes.now_us();
                if p.status == "online" {
                    let sent = causes.online_sent_us[i].load(Ordering::Relaxed);
                    causes.latency(now.saturating_sub(sent));
                } else {
                    let due = causes.offline_due_us[i].load(Ordering::Relaxed);
                    if causes.by_expiry[i].load(Ordering::Relaxed) {
                        causes.expiry(now, due);
                    } else {
                        causes.latency(now.saturating_sub(due));
                    }
                }
            }
            _ => {}
        }
    }
    let _ = writer.write_all(&wire::close_frame()).await;
    w
}

/// A fresh watcher's snapshot of the directory: what every watcher should
/// hold once quiet.
pub async fn truth(ctx: &Ctx, tenant: &str, admin: &str, users: usize) -> anyhow::Result<View> {
    let mut tab = wire::open(
        ctx.hubs[0],
        ctx.sources[0],
        &hello(ctx.tokens.mint(tenant, admin), NO_PROOF_MS),
    )
    .await?;
    tab.writer
        .write_all(&subscribe_frame(1, Roster::Directory))
        .await?;
    let mut view = View::new(users);
    loop {
        let t = tab.reader.text().await?;
        if let Msg::Snapshot(s) = parse(&t) {
            view.snapshot(&s);
            let _ = tab.writer.write_all(&wire::close_frame()).await;
            return Ok(view);
        }
    }
}
