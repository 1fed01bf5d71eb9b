//! `activity`: tabs of users who keep interacting, sending `activity`
//! frames at a fixed total rate — hub CPU per frame.
//!
//! Frames are written without waiting (a full socket counts as not
//! offered), spread evenly over the tabs and over time in 10 ms slices.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::common::{activity_frame, hello, Usage};
use crate::report::emit;
use crate::Ctx;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tabs: usize,
    pub target_per_sec: u64,
    pub secs: f64,
    pub frames_sent: u64,
    pub frames_not_taken: u64,
    pub frames_per_sec: f64,
    pub hub_frames_in: f64,
    pub hub_cpu_secs: f64,
    pub hub_cpu_us_per_frame: f64,
    pub hub_cpu_share: f64,
    pub error_frames: u64,
}

pub async fn run(ctx: &Ctx, tabs: usize, rate: u64, secs: u64) -> anyhow::Result<()> {
    const T: &str = "activity";
    let admin = ctx.admin();
    admin.tenant(T, tabs + 10).await?;
    let users: Vec<(String, &str)> = (0..tabs).map(|i| (format!("u{i}"), "standard")).collect();
    admin.users(T, &users).await?;
    let hellos = (0..tabs)
        .map(|i| (hello(ctx.tokens.mint(T, &format!("u{i}")), 0), Vec::new()))
        .collect();
    let opened = ctx.plan().open(hellos, &ctx.stop, "connecting").await?;
    let errors = Arc::new(AtomicU64::new(0));
    let mut writers = Vec::new();
    for tab in opened.tabs.into_iter().flatten() {
        let mut reader = tab.reader;
        let errors = errors.clone();
        tokio::spawn(async move {
            while let Ok(t) = reader.text().await {
                if t.starts_with(br#"{"type":"error""#) {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        writers.push(tab.writer);
    }
    let frame = activity_frame(0);
    let frames_in_before = admin.metric("presence_frames_in_total").await?;
    let before = Usage::read(&ctx.pids)?;
    let started = Instant::now();
    let progress = crate::control::timer(secs, "activity");
    let mut sent = 0u64;
    let mut skipped = 0u64;
    let mut next = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let end = started + Duration::from_secs(secs);
    while Instant::now() < end && !ctx.stop.stopped() && !writers.is_empty() {
        tick.tick().await;
        let due = (started.elapsed().as_secs_f64() * rate as f64) as u64;
        while sent < due {
            let w = &writers[next % writers.len()];
            next += 1;
            match w.try_write(&frame) {
                Ok(n) if n == frame.len() => {}
                // A tiny frame into a socket with room is written whole; a
                // part would corrupt the stream.
                Ok(_) => anyhow::bail!("partial write of an activity frame"),
                // Not taken now: not offered.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => skipped += 1,
                Err(e) => return Err(e.into()),
            }
            sent += 1;
        }
        progress.set_position(started.elapsed().as_secs());
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    // Frames in flight reach the hub within a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = Usage::read(&ctx.pids)?;
    let frames_in = admin.metric("presence_frames_in_total").await? - frames_in_before;
    let cpu = after.cpu_since(&before);
    let r = Report {
        tabs: writers.len(),
        target_per_sec: rate,
        secs: elapsed,
        frames_sent: sent - skipped,
        frames_not_taken: skipped,
        frames_per_sec: (sent - skipped) as f64 / elapsed,
        hub_frames_in: frames_in,
        hub_cpu_secs: cpu,
        hub_cpu_us_per_frame: cpu * 1e6 / frames_in.max(1.0),
        hub_cpu_share: cpu / (elapsed + 0.3),
        error_frames: errors.load(Ordering::Relaxed),
    };
    emit(
        "activity",
        ctx.stop.stopped(),
        &[
            ("tabs", r.tabs.to_string()),
            (
                "offered",
                format!(
                    "{:.0} frames/s for {:.1} s (target {rate})",
                    r.frames_per_sec, r.secs
                ),
            ),
            ("received by hub", format!("{:.0} frames", r.hub_frames_in)),
            (
                "hub CPU",
                format!(
                    "{:.2} s ({:.0}% of one core)",
                    r.hub_cpu_secs,
                    r.hub_cpu_share * 100.0
                ),
            ),
            (
                "hub CPU per frame",
                format!("{:.2} µs", r.hub_cpu_us_per_frame),
            ),
            (
                "error frames (e.g. rate_limited)",
                r.error_frames.to_string(),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
