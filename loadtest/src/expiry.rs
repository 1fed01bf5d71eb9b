//! `expiry`: many users interact once, all within the same second, then
//! nobody touches anything — every offline delta must reach the dashboards
//! between 0 and 1 s after that user's deadline (`last_activity +
//! idle_timeout`).
//!
//! The deadline is bounded below by what the load generator knows: the
//! hub's receive time is at or after the send time, so `send + timeout` is
//! at or before the real deadline and "late" is measured generously to the
//! hub by at most the loopback's delay; "early" cannot be excused.

use std::time::Duration;

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::{activity_frame, hello, now_ms, Usage};
use crate::dashboard::{self, Shared};
use crate::deltas::Integrity;
use crate::fanout::NO_PROOF_MS;
use crate::report::{emit, Latency};
use crate::Ctx;

#[derive(Debug, Serialize)]
pub struct Report {
    pub users: usize,
    pub dashboards: usize,
    pub idle_timeout_ms: u64,
    pub activity_spread_ms: u64,
    /// Arrival minus (send + idle timeout), over every dashboard and user.
    pub lateness_ms: Latency,
    pub early: u64,
    /// The smallest `at` (the hub's deadline) minus the load generator's
    /// bound on the deadline: the two clocks' offset, in ms.
    pub at_minus_deadline_min_ms: i64,
    pub later_than_1s: u64,
    pub offline_deltas: u64,
    pub expected_offline_deltas: u64,
    pub integrity: Integrity,
    pub hub_cpu_secs_for_expiry: f64,
}

pub async fn run(ctx: &Ctx, users: usize, dashboards: usize, spread_ms: u64) -> anyhow::Result<()> {
    const T: &str = "expiry";
    let admin = ctx.admin();
    admin.tenant(T, users + dashboards + 10).await?;
    let mut rows: Vec<(String, &str)> = (0..users).map(|i| (format!("u{i}"), "standard")).collect();
    rows.extend((0..dashboards).map(|j| (format!("w{j}"), "admin")));
    admin.users(T, &rows).await?;
    let shared = Shared::new(users);
    let (done_tx, done_rx) = watch::channel(false);
    let admins: Vec<String> = (0..dashboards).map(|j| format!("w{j}")).collect();
    let opened = dashboard::open_all(ctx, T, &admins, users, &shared, &done_rx).await?;
    let (timeout_ms, boards) = (opened.idle_timeout_ms, opened.handles);
    // The users' tabs, connected without proof: nobody is online yet.
    let hellos = (0..users)
        .map(|i| {
            (
                hello(ctx.tokens.mint(T, &format!("u{i}")), NO_PROOF_MS),
                Vec::new(),
            )
        })
        .collect();
    let opened = ctx.plan().open(hellos, &ctx.stop, "tabs").await?;
    let mut writers = Vec::new();
    for (i, tab) in opened.tabs.into_iter().enumerate() {
        let Some(tab) = tab else { continue };
        let mut reader = tab.reader;
        tokio::spawn(async move { while let Ok(Some(_)) = reader.next().await {} });
        writers.push((i, tab.writer));
    }
    // Everyone interacts once, spread over `spread_ms`.
    let frame = activity_frame(0);
    let mut sent_ms = vec![0u64; users];
    let start = tokio::time::Instant::now();
    let n = writers.len().max(1);
    for (k, (i, w)) in writers.iter_mut().enumerate() {
        let at = start + Duration::from_micros(spread_ms * 1000 * k as u64 / n as u64);
        if tokio::time::Instant::now() < at {
            tokio::time::sleep_until(at).await;
        }
        sent_ms[*i] = now_ms();
        w.write_all(&frame).await?;
    }
    let last_send = *sent_ms.iter().max().unwrap_or(&0);
    // Wait past the last deadline plus the allowed second, then a margin.
    let progress = crate::control::timer(timeout_ms / 1000 + 3, "waiting");
    let wait_until = last_send + timeout_ms + 2500;
    let mut cpu_before = None;
    while now_ms() < wait_until && !ctx.stop.stopped() {
        // CPU of the expiry itself: from just before the first deadline.
        if cpu_before.is_none()
            && now_ms() + 500 >= sent_ms.iter().min().copied().unwrap_or(0) + timeout_ms
        {
            cpu_before = Some(Usage::read(&ctx.pids)?);
        }
        ctx.stop.sleep(Duration::from_millis(100)).await;
        progress.set_position((now_ms().saturating_sub(last_send)) / 1000);
    }
    progress.finish_and_clear();
    let cpu_after = Usage::read(&ctx.pids)?;
    let truth = crate::fanout::snapshot_view(ctx, T, "w0", users).await?;
    let _ = done_tx.send(true);
    let mut hist = crate::report::histogram();
    let (mut early, mut late, mut offline) = (0, 0, 0);
    let mut at_offset_min = i64::MAX;
    let mut integrity = Integrity::default();
    let n_boards = boards.len();
    for b in boards {
        let mut seen = b.await?;
        seen.view.settle(&truth);
        integrity.add(&seen.view.integrity);
        for (i, &sent) in sent_ms.iter().enumerate() {
            let arrival = seen.offline_arrival_ms[i];
            if arrival == 0 || sent == 0 {
                continue;
            }
            offline += 1;
            let deadline = sent + timeout_ms;
            // `at` is on the hub's clock, anchored to the wall clock once at
            // start (to the ms, rounded down): report its offset, judge on
            // arrival.
            let at = seen.offline_at_ms[i] as i64;
            at_offset_min = at_offset_min.min(at - deadline as i64);
            if arrival < deadline {
                early += 1;
            } else {
                let lateness = arrival - deadline;
                if lateness > 1000 {
                    late += 1;
                }
                hist.record((lateness * 1000).max(1))?;
            }
        }
    }
    let r = Report {
        users: writers.len(),
        dashboards: n_boards,
        idle_timeout_ms: timeout_ms,
        activity_spread_ms: spread_ms,
        lateness_ms: Latency::of(&hist),
        early,
        at_minus_deadline_min_ms: at_offset_min,
        later_than_1s: late,
        offline_deltas: offline,
        expected_offline_deltas: (writers.len() * n_boards) as u64,
        integrity,
        hub_cpu_secs_for_expiry: cpu_before.map_or(0.0, |b| cpu_after.cpu_since(&b)),
    };
    emit(
        "expiry",
        ctx.stop.stopped(),
        &[
            (
                "users",
                format!(
                    "{} interacting once within {spread_ms} ms, {} dashboards",
                    r.users, r.dashboards
                ),
            ),
            ("idle timeout", format!("{} ms", r.idle_timeout_ms)),
            (
                "offline deltas",
                format!(
                    "{} of {} expected",
                    r.offline_deltas, r.expected_offline_deltas
                ),
            ),
            ("arrival − deadline", r.lateness_ms.line()),
            (
                "early / later than 1 s",
                format!("{} / {}", r.early, r.later_than_1s),
            ),
            ("integrity", r.integrity.line()),
            (
                "hub CPU around the expiry",
                format!("{:.2} s", r.hub_cpu_secs_for_expiry),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
