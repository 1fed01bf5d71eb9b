//! `fanout`: many administrators watch a big directory while users go
//! online and offline at a steady rate — deliveries per hub CPU-second and
//! the latency from each cause (an `activity` frame, a `logout`) to the
//! delta's arrival at every dashboard.
//!
//! Dashboards connect without proof of interaction (`idle_ms` beyond the
//! timeout), so they never turn online themselves; each driven user goes
//! online with one `activity` and offline with `logout`, so the transition
//! rate is exactly what is asked for.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_protocol::Roster;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{watch, Semaphore};

use crate::common::{activity_frame, hello, logout_frame, subscribe_frame, Usage};
use crate::dashboard::{self, Shared};
use crate::deltas::Integrity;
use crate::report::{emit, Latency};
use crate::Ctx;

/// An `idle_ms` no timeout reaches: the tab proves nothing.
pub const NO_PROOF_MS: u64 = 86_400_000;

#[derive(Debug, Serialize)]
pub struct Report {
    pub dashboards: usize,
    pub directory: usize,
    pub target_transitions_per_sec: u64,
    pub secs: f64,
    pub transitions_caused: u64,
    pub deliveries: u64,
    pub deliveries_per_sec: f64,
    pub hub_cpu_secs: f64,
    pub deliveries_per_hub_cpu_sec: f64,
    pub latency_ms: Latency,
    pub integrity: Integrity,
    pub dashboards_closed: usize,
}

pub async fn run(
    ctx: &Ctx,
    dashboards: usize,
    users: usize,
    rate: u64,
    secs: u64,
    hold_ms: u64,
) -> anyhow::Result<()> {
    const T: &str = "fanout";
    anyhow::ensure!(users > dashboards + 100, "need more users than dashboards");
    let admin = ctx.admin();
    admin.tenant(T, users + 10).await?;
    let rows: Vec<(String, &str)> = (0..users)
        .map(|i| {
            (
                format!("u{i}"),
                if i < dashboards { "admin" } else { "standard" },
            )
        })
        .collect();
    admin.users(T, &rows).await?;
    let shared = Shared::new(users);
    let (done_tx, done_rx) = watch::channel(false);
    let (drivers_done, drivers_rx) = watch::channel(false);
    let admins: Vec<String> = (0..dashboards).map(|i| format!("u{i}")).collect();
    let boards = dashboard::open_all(ctx, T, &admins, users, &shared, &done_rx)
        .await?
        .handles;

    // The drivers: each user goes online, stays `hold_ms`, logs out; a new
    // online is allowed `rate / 2` times a second.
    let go = Arc::new(Semaphore::new(0));
    let pool = ((rate as f64 / 2.0) * (hold_ms as f64 / 1000.0 + 1.0) * 1.5).ceil() as usize + 8;
    let pool = pool.min(users - dashboards);
    let caused = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut drivers = Vec::new();
    for k in 0..pool {
        let i = dashboards + k;
        let token = ctx.tokens.mint(T, &format!("u{i}"));
        let (hub, source) = (ctx.hubs[0], ctx.sources[k % ctx.sources.len()]);
        let (go, shared, caused, done) = (
            go.clone(),
            shared.clone(),
            caused.clone(),
            drivers_rx.clone(),
        );
        drivers.push(tokio::spawn(async move {
            let (on, off) = (activity_frame(0), logout_frame());
            while !*done.borrow() {
                let mut tab =
                    crate::wire::open(hub, source, &hello(token.clone(), NO_PROOF_MS)).await?;
                let Ok(permit) = go.acquire().await else {
                    break;
                };
                permit.forget();
                if *done.borrow() {
                    break;
                }
                shared.mark(i);
                tab.writer.write_all(&on).await?;
                tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                shared.mark(i);
                tab.writer.write_all(&off).await?;
                caused.fetch_add(2, Ordering::Relaxed);
                // The hub closes the tab with 4004.
                while tab.reader.next().await.ok().flatten().is_some() {}
            }
            anyhow::Ok(())
        }));
    }
    let ticker = {
        let go = go.clone();
        let per_sec = (rate / 2).max(1);
        tokio::spawn(async move {
            let started = Instant::now();
            let mut given = 0u64;
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            loop {
                tick.tick().await;
                let due = (started.elapsed().as_secs_f64() * per_sec as f64) as u64;
                if due > given {
                    go.add_permits((due - given) as usize);
                    given = due;
                }
            }
        })
    };
    // Warm up until the online/offline cycle is steady, then measure.
    ctx.stop.sleep(Duration::from_millis(hold_ms + 2000)).await;
    let before = Usage::read(&ctx.pids)?;
    let caused_before = caused.load(Ordering::Relaxed);
    shared.measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let progress = crate::control::timer(secs, "fan-out");
    while started.elapsed() < Duration::from_secs(secs) && !ctx.stop.stopped() {
        ctx.stop.sleep(Duration::from_millis(250)).await;
        progress.set_position(started.elapsed().as_secs());
    }
    shared.measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let after = Usage::read(&ctx.pids)?;
    let caused_in_window = caused.load(Ordering::Relaxed) - caused_before;
    progress.finish_and_clear();

    // Stop: every driver finishes its cycle (logs out), then nothing moves.
    ticker.abort();
    let _ = drivers_done.send(true);
    go.add_permits(pool);
    go.close();
    for d in drivers {
        let _ = tokio::time::timeout(Duration::from_secs(hold_ms / 1000 + 10), d).await;
    }
    // The truth, once quiet: a fresh snapshot.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let truth = snapshot_view(ctx, T, "u0", users).await?;
    let _ = done_tx.send(true);
    let mut integrity = Integrity::default();
    let mut hist = crate::report::histogram();
    let mut deliveries = 0;
    let mut closed = 0;
    let n_boards = boards.len();
    for b in boards {
        let mut seen = b.await?;
        seen.view.settle(&truth);
        integrity.add(&seen.view.integrity);
        hist.add(&seen.latency_us)?;
        deliveries += seen.deliveries;
        closed += seen.closed as usize;
    }
    let cpu = after.cpu_since(&before);
    let r = Report {
        dashboards: n_boards,
        directory: users,
        target_transitions_per_sec: rate,
        secs: elapsed,
        transitions_caused: caused_in_window,
        deliveries,
        deliveries_per_sec: deliveries as f64 / elapsed,
        hub_cpu_secs: cpu,
        deliveries_per_hub_cpu_sec: deliveries as f64 / cpu.max(0.01),
        latency_ms: Latency::of(&hist),
        integrity,
        dashboards_closed: closed,
    };
    emit(
        "fanout",
        ctx.stop.stopped(),
        &[
            ("dashboards", format!("{dashboards} watching {users} users")),
            (
                "transitions",
                format!(
                    "{} caused in {:.1} s ({:.0}/s)",
                    r.transitions_caused,
                    r.secs,
                    r.transitions_caused as f64 / r.secs
                ),
            ),
            (
                "deliveries",
                format!("{} ({:.0}/s)", r.deliveries, r.deliveries_per_sec),
            ),
            ("hub CPU", format!("{:.2} s", r.hub_cpu_secs)),
            (
                "deliveries per hub CPU-second",
                format!("{:.0}", r.deliveries_per_hub_cpu_sec),
            ),
            ("cause → delivery", r.latency_ms.line()),
            ("integrity", r.integrity.line()),
            (
                "dashboards closed by the hub",
                r.dashboards_closed.to_string(),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}

/// A fresh dashboard's snapshot: what every watcher should hold once quiet.
pub async fn snapshot_view(
    ctx: &Ctx,
    tenant: &str,
    watcher: &str,
    users: usize,
) -> anyhow::Result<crate::deltas::View> {
    let mut tab = crate::wire::open(
        ctx.hubs[0],
        ctx.sources[0],
        &hello(ctx.tokens.mint(tenant, watcher), NO_PROOF_MS),
    )
    .await?;
    tab.writer
        .write_all(&subscribe_frame(1, Roster::Directory))
        .await?;
    let mut view = crate::deltas::View::new(users);
    loop {
        let t = tab.reader.text().await?;
        if let crate::deltas::Msg::Snapshot(s) = crate::deltas::parse(&t) {
            view.snapshot(&s);
            return Ok(view);
        }
    }
}
