//! `churn`: tabs closing and reopening like page navigation — each reload
//! closes the socket and reconnects with the same tab id within the
//! margin. Users who keep navigating must never flap: a dashboard watching
//! the directory must see no transition at all while they churn.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};

use crate::common::{hello_tab, Usage};
use crate::dashboard::{self, Shared};
use crate::report::{emit, histogram, Latency};
use crate::wire;
use crate::Ctx;

#[derive(Debug, Serialize)]
pub struct Report {
    pub users: usize,
    pub secs: f64,
    pub reloads: u64,
    pub reloads_per_sec: f64,
    pub hub_cpu_us_per_reload: f64,
    pub reconnect_ms: Latency,
    /// Transitions the dashboard saw while users churned (must be 0).
    pub transitions_seen: u64,
    pub failed_reloads: u64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
}

pub async fn run(ctx: &Ctx, users: usize, every_ms: u64, secs: u64) -> anyhow::Result<()> {
    const T: &str = "churn";
    let admin = ctx.admin();
    admin.tenant(T, users + 10).await?;
    let mut rows: Vec<(String, &str)> = (0..users).map(|i| (format!("u{i}"), "standard")).collect();
    rows.push(("w0".into(), "admin"));
    admin.users(T, &rows).await?;
    // Everyone opens a tab and is online before the churn starts.
    let tab_ids: Vec<uuid::Uuid> = (0..users).map(|_| uuid::Uuid::new_v4()).collect();
    let tokens: Vec<String> = (0..users)
        .map(|i| ctx.tokens.mint(T, &format!("u{i}")))
        .collect();
    let hellos = (0..users)
        .map(|i| (hello_tab(tokens[i].clone(), tab_ids[i], 0), Vec::new()))
        .collect();
    let opened = ctx.plan().open(hellos, &ctx.stop, "tabs").await?;
    let shared = Shared::new(users);
    let (done_tx, done_rx) = watch::channel(false);
    let board = dashboard::open_all(ctx, T, &["w0".to_owned()], users, &shared, &done_rx)
        .await?
        .handles;
    // Coming online is over once every tab is in; count from here.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shared.measuring.store(true, Ordering::Relaxed);
    let before = Usage::read(&ctx.pids)?;
    let reloads = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<u64>();
    let started = Instant::now();
    let end = started + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (i, tab) in opened.tabs.into_iter().enumerate() {
        let Some(mut tab) = tab else { continue };
        let hub = ctx.hubs[i % ctx.hubs.len()];
        let source = ctx.sources[i % ctx.sources.len()];
        let again = hello_tab(tokens[i].clone(), tab_ids[i], 0);
        let (reloads, failed, lat_tx, stop) = (
            reloads.clone(),
            failed.clone(),
            lat_tx.clone(),
            ctx.stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let wait = rand::rng().random_range(0..=2 * every_ms);
                let at = Instant::now() + Duration::from_millis(wait);
                if at >= end || stop.stopped() {
                    break;
                }
                tokio::time::sleep_until(at.into()).await;
                // Navigation: the page goes away, the next one connects.
                let t0 = Instant::now();
                let _ = tab.writer.write_all(&wire::close_frame()).await;
                drop(tab);
                match wire::open(hub, source, &again).await {
                    Ok(t) => {
                        tab = t;
                        reloads.fetch_add(1, Ordering::Relaxed);
                        let _ = lat_tx.send(t0.elapsed().as_micros() as u64);
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
        }));
    }
    drop(lat_tx);
    let progress = crate::control::timer(secs, "churn");
    let mut hist = histogram();
    loop {
        tokio::select! {
            l = lat_rx.recv() => match l {
                Some(us) => hist.record(us.max(1))?,
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(250)) => {
                progress.set_position(started.elapsed().as_secs());
            }
        }
    }
    progress.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let after = Usage::read(&ctx.pids)?;
    shared.measuring.store(false, Ordering::Relaxed);
    let _ = done_tx.send(true);
    let mut seen = None;
    for b in board {
        seen = Some(b.await?);
    }
    let seen = seen.context("the dashboard did not open")?;
    for t in tasks {
        t.abort();
    }
    let n = reloads.load(Ordering::Relaxed);
    let r = Report {
        users,
        secs: elapsed,
        reloads: n,
        reloads_per_sec: n as f64 / elapsed,
        hub_cpu_us_per_reload: after.cpu_since(&before) * 1e6 / n.max(1) as f64,
        reconnect_ms: Latency::of(&hist),
        transitions_seen: seen.deliveries,
        failed_reloads: failed.load(Ordering::Relaxed),
        rss_before_kib: before.rss_total_kib(),
        rss_after_kib: after.rss_total_kib(),
    };
    emit(
        "churn",
        ctx.stop.stopped(),
        &[
            (
                "users",
                format!("{users}, each reloading every ~{every_ms} ms"),
            ),
            (
                "reloads",
                format!(
                    "{} ({:.0}/s), {} failed",
                    r.reloads, r.reloads_per_sec, r.failed_reloads
                ),
            ),
            (
                "hub CPU per reload",
                format!("{:.1} µs", r.hub_cpu_us_per_reload),
            ),
            ("close → welcome", r.reconnect_ms.line()),
            (
                "transitions seen (must be 0)",
                r.transitions_seen.to_string(),
            ),
            (
                "hub RSS",
                format!("{} → {} KiB", r.rss_before_kib, r.rss_after_kib),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
