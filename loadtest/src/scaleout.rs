//! `scaleout`: more tabs than one process may hold, over several hub
//! processes sharing Redis, opened by several worker processes of the load
//! generator (a process holds at most ~19,900 sockets here).
//!
//! Every user gets one tab; one administrator per hub watches the
//! directory. Each dashboard must see every user go online exactly once
//! and, after the tabs close, offline exactly once: nothing missing,
//! nothing spurious. RSS per tab is read for each hub.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::common::{hello, Usage};
use crate::dashboard::{self, Shared};
use crate::deltas::Integrity;
use crate::report::emit;
use crate::Ctx;

const T: &str = "scaleout";
/// Tabs per worker process: under the 20,000 open files of a process.
const PER_WORKER: usize = 18_000;

#[derive(Debug, Serialize)]
pub struct Report {
    pub hubs: usize,
    pub workers: usize,
    pub tabs: usize,
    pub connect_secs: f64,
    pub tabs_per_sec: f64,
    pub rss_per_tab_kib: Vec<f64>,
    pub rss_after_kib: Vec<u64>,
    pub all_online_at_every_dashboard_secs: f64,
    pub all_offline_at_every_dashboard_secs: f64,
    pub online_deltas: u64,
    pub offline_deltas: u64,
    pub expected_each: u64,
    pub spurious: u64,
    pub integrity: Integrity,
}

/// The worker side: opens tabs `from..to`, says `ready`, holds them until
/// a line (or end of input) arrives on stdin, closes them.
pub async fn worker(ctx: &Ctx, from: usize, to: usize) -> anyhow::Result<()> {
    let hellos = (from..to)
        .map(|i| (hello(ctx.tokens.mint(T, &format!("u{i}")), 0), Vec::new()))
        .collect();
    // Tab i goes to hub i % hubs whatever the slice, so rotate the plan.
    let mut plan = ctx.plan();
    let (h, s) = (plan.hubs.len(), plan.sources.len());
    plan.hubs.rotate_left(from % h);
    plan.sources.rotate_left(from % s);
    let opened = plan.open(hellos, &ctx.stop, "worker").await?;
    let n = opened.tabs.iter().flatten().count();
    println!("ready {n} {:.3}", opened.secs);
    let holders: Vec<_> = opened
        .tabs
        .into_iter()
        .flatten()
        .map(crate::tabs::hold)
        .collect();
    tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await?;
    for h in holders {
        h.abort();
    }
    println!("closed");
    Ok(())
}

pub async fn run(ctx: &Ctx, tabs: usize) -> anyhow::Result<()> {
    let admin = ctx.admin();
    admin.tenant(T, tabs + ctx.hubs.len() + 10).await?;
    let mut rows: Vec<(String, &str)> = (0..tabs).map(|i| (format!("u{i}"), "standard")).collect();
    rows.extend((0..ctx.hubs.len()).map(|j| (format!("w{j}"), "admin")));
    admin.users(T, &rows).await?;
    for &h in &ctx.hubs {
        crate::common::Admin::new(h, &ctx.admin_key)
            .wait_user(T, &format!("u{}", tabs - 1))
            .await?;
    }
    // One dashboard per hub.
    let shared = Shared::new(tabs);
    let (done_tx, done_rx) = watch::channel(false);
    let admins: Vec<String> = (0..ctx.hubs.len()).map(|j| format!("w{j}")).collect();
    let boards = dashboard::open_all(ctx, T, &admins, tabs, &shared, &done_rx)
        .await?
        .handles;
    let before = Usage::read(&ctx.pids)?;
    // Workers, each with its slice.
    let workers = tabs.div_ceil(PER_WORKER);
    let exe = std::env::current_exe()?;
    let hubs: Vec<String> = ctx.hubs.iter().map(|h| h.to_string()).collect();
    let sources: Vec<String> = ctx.sources.iter().map(|s| s.to_string()).collect();
    let mut children = Vec::new();
    let started = Instant::now();
    for w in 0..workers {
        let (from, to) = (w * PER_WORKER, ((w + 1) * PER_WORKER).min(tabs));
        let child = Command::new(&exe)
            .arg("--hub")
            .arg(hubs.join(","))
            .arg("--sources")
            .arg(sources.join(","))
            .arg("--in-flight")
            .arg(ctx.in_flight.to_string())
            .arg("scaleout-worker")
            .arg("--from")
            .arg(from.to_string())
            .arg("--to")
            .arg(to.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        children.push(child);
    }
    let mut outs = Vec::new();
    let mut opened = 0usize;
    for c in &mut children {
        let mut out = BufReader::new(c.stdout.take().expect("piped"));
        let line = tokio::task::block_in_place(|| {
            let mut l = String::new();
            out.read_line(&mut l).map(|_| l)
        })?;
        let n: usize = line
            .strip_prefix("ready ")
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("a worker failed: {line:?}"))?;
        opened += n;
        outs.push(out);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Every dashboard sees every user online.
    let progress = crate::control::bar(tabs as u64, "online seen");
    let all_online = wait_all(
        &ctx.stop,
        &shared,
        tabs,
        true,
        Duration::from_secs(120),
        &progress,
    )
    .await;
    progress.finish_and_clear();
    let online_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = Usage::read(&ctx.pids)?;
    // Close every tab; everyone goes offline after the idle timeout.
    let closed_at = Instant::now();
    for c in &mut children {
        if let Some(mut i) = c.stdin.take() {
            let _ = writeln!(i, "close");
        }
    }
    for out in &mut outs {
        let _ = tokio::task::block_in_place(|| {
            let mut l = String::new();
            out.read_line(&mut l)
        });
    }
    for c in &mut children {
        let _ = c.wait();
    }
    let progress = crate::control::bar(tabs as u64, "offline seen");
    let all_offline = wait_all(
        &ctx.stop,
        &shared,
        tabs,
        false,
        Duration::from_secs(300),
        &progress,
    )
    .await;
    progress.finish_and_clear();
    let offline_secs = closed_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _ = done_tx.send(true);
    let (mut on, mut off, mut integrity) = (0, 0, Integrity::default());
    let mut spurious = 0;
    for b in boards {
        let seen = b.await?;
        on += seen.online_deltas;
        off += seen.offline_deltas;
        spurious += seen.view.v.iter().filter(|&&v| v != 2).count() as u64;
        integrity.add(&seen.view.integrity);
    }
    // Tabs per hub: tab i went to hub i % hubs.
    let per_hub: Vec<usize> = (0..ctx.hubs.len())
        .map(|h| (0..tabs).filter(|i| i % ctx.hubs.len() == h).count())
        .collect();
    let rss_per_tab: Vec<f64> = after
        .rss_kib
        .iter()
        .zip(&before.rss_kib)
        .zip(&per_hub)
        .map(|((a, b), n)| a.saturating_sub(*b) as f64 / (*n).max(1) as f64)
        .collect();
    let expected = (tabs * ctx.hubs.len()) as u64;
    let r = Report {
        hubs: ctx.hubs.len(),
        workers,
        tabs: opened,
        connect_secs,
        tabs_per_sec: opened as f64 / connect_secs,
        rss_per_tab_kib: rss_per_tab,
        rss_after_kib: after.rss_kib.clone(),
        all_online_at_every_dashboard_secs: if all_online { online_secs } else { f64::NAN },
        all_offline_at_every_dashboard_secs: if all_offline { offline_secs } else { f64::NAN },
        online_deltas: on,
        offline_deltas: off,
        expected_each: expected,
        spurious,
        integrity,
    };
    emit(
        "scaleout",
        ctx.stop.stopped() || !all_online || !all_offline,
        &[
            ("hubs / workers", format!("{} / {}", r.hubs, r.workers)),
            (
                "tabs",
                format!(
                    "{} in {:.1} s ({:.0}/s)",
                    r.tabs, r.connect_secs, r.tabs_per_sec
                ),
            ),
            (
                "RSS per tab per hub",
                r.rss_per_tab_kib
                    .iter()
                    .map(|k| format!("{k:.2}"))
                    .collect::<Vec<_>>()
                    .join(" / ")
                    + " KiB",
            ),
            (
                "online deltas",
                format!("{} of {} expected", r.online_deltas, r.expected_each),
            ),
            (
                "offline deltas",
                format!("{} of {} expected", r.offline_deltas, r.expected_each),
            ),
            (
                "users not at v=2 somewhere (spurious/missing)",
                r.spurious.to_string(),
            ),
            ("integrity", r.integrity.line()),
            (
                "all offline everywhere after close",
                format!("{:.1} s", r.all_offline_at_every_dashboard_secs),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}

/// Waits until every dashboard holds every user in `online` state (by the
/// shared counters the dashboards keep).
async fn wait_all(
    stop: &crate::control::Stop,
    shared: &Shared,
    users: usize,
    online: bool,
    limit: Duration,
    progress: &indicatif::ProgressBar,
) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        let (on, off) = shared.counts();
        let n = if online { on } else { off };
        progress.set_position(n as u64);
        if n >= users {
            return true;
        }
        if Instant::now() > deadline || stop.stopped() {
            return false;
        }
        stop.sleep(Duration::from_millis(200)).await;
    }
}
