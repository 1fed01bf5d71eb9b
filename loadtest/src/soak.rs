//! `soak`: a day in the hub's life, for a bounded time. A crowd of tabs
//! (worker processes, `population.rs`) keeps interacting, reloads pages or
//! sits idle; scheduled users go online and offline a few times a second
//! (`togglers.rs`); administrators watch the directory and team rosters
//! (`watch.rs`); a handful of abusive tabs attack the hub in a loop
//! (`abuse.rs`). Every sample period the hub's RSS, its open tabs and the
//! period's cause → watcher latency are recorded; at the end every tab is
//! closed and the hub must hold none. The table and JSON are `report.rs`'s;
//! what to expect of each user, the schedule and the arithmetic are pure,
//! in `plan.rs`.
//!
//! Goals: RSS growth after warm-up under 5%, no tab leaked (neither
//! `presence_open_tabs` nor `presence_registered_tabs`), no missing,
//! duplicate or spurious transition, every abusive connection closed with
//! the code the spec gives.

mod abuse;
mod plan;
mod population;
mod report;
mod togglers;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_protocol::Roster;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

use crate::common::{hello, Admin, Usage};
use crate::control::Stop;
use crate::deltas::Integrity;
use crate::fanout::NO_PROOF_MS;
use crate::report::{emit, Latency};
use crate::Ctx;

pub use population::{worker, Share};

use plan::{allowance, growth_pct, judge, warm_sample, Class, Layout};
use population::{Crowd, PER_WORKER};
use report::{rows_of, sample_line, Classes, Report, Sample};

pub const TENANT: &str = "soak";

/// What the operator chose (see `loadtest soak --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Users with one tab each (scheduled users and the crowd).
    #[arg(long, default_value_t = 19_000)]
    pub tabs: usize,
    /// How long the soak runs once every tab is in.
    #[arg(long, default_value_t = 60)]
    pub minutes: u64,
    /// RSS growth is measured from the first sample after this.
    #[arg(long, default_value_t = 5)]
    pub warmup_minutes: u64,
    #[arg(long, default_value_t = 60)]
    pub sample_secs: u64,
    /// Administrators watching the directory.
    #[arg(long, default_value_t = 3)]
    pub dashboards: usize,
    /// Administrators watching a team roster each (one team per roster).
    #[arg(long, default_value_t = 3)]
    pub rosters: usize,
    /// Scheduled transitions per second (half by logout, half by expiry).
    #[arg(long, default_value_t = 4.0)]
    pub rate: f64,
    /// Page reloads per second over the whole crowd.
    #[arg(long, default_value_t = 20.0)]
    pub reloads_per_sec: f64,
    /// Abusive tabs of each kind.
    #[arg(long, default_value_t = 1)]
    pub abusers: usize,
    /// The kinds of abuse, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "flood,oversized,ping-storm,fragments"
    )]
    pub abuse: Vec<abuse::Kind>,
}

/// `presence_open_tabs` and `presence_registered_tabs`, summed over hubs
/// (the second is `None` on a hub that does not export it).
async fn tab_gauges(ctx: &Ctx) -> anyhow::Result<(f64, Option<f64>)> {
    let (mut open, mut registered) = (0.0, Some(0.0));
    for &h in &ctx.hubs {
        let text = Admin::new(h, &ctx.admin_key).metrics_text().await?;
        open += crate::common::metric_in(&text, "presence_open_tabs").unwrap_or(0.0);
        registered = registered
            .zip(crate::common::metric_in(&text, "presence_registered_tabs"))
            .map(|(a, b)| a + b);
    }
    Ok((open, registered))
}

pub async fn run(ctx: &Ctx, a: &Args) -> anyhow::Result<()> {
    anyhow::ensure!(a.dashboards >= 1, "at least one dashboard");
    anyhow::ensure!(
        a.minutes <= 100,
        "at most 100 minutes (tokens last two hours)"
    );
    let admin = ctx.admin();
    let abusers = a.abuse.len() * a.abusers;
    let users = a.tabs + abusers;
    admin
        .tenant(TENANT, users + a.dashboards + a.rosters + 10)
        .await?;
    let mut rows: Vec<(String, &str)> = (0..users).map(|i| (format!("u{i}"), "standard")).collect();
    rows.extend((0..a.dashboards).map(|j| (format!("w{j}"), "admin")));
    rows.extend((0..a.rosters).map(|j| (format!("r{j}"), "admin")));
    admin.users(TENANT, &rows).await?;
    let (open_base, registered_base) = tab_gauges(ctx).await?;

    // The hub's idle timeout and activity interval shape the schedule.
    let mut probe = crate::wire::open(
        ctx.hubs[0],
        ctx.sources[0],
        &hello(ctx.tokens.mint(TENANT, "w0"), NO_PROOF_MS),
    )
    .await?;
    let welcome: serde_json::Value = serde_json::from_slice(&probe.welcome)?;
    let _ = probe.writer.write_all(&crate::wire::close_frame()).await;
    drop(probe);
    let idle_timeout_ms = welcome["idle_timeout_ms"].as_u64().unwrap_or(60_000);
    let interval_ms = welcome["activity_interval_ms"].as_u64().unwrap_or(10_000);
    // Issue #9 item 7: an announced interval may exceed the timeout.
    let activity_ms = interval_ms.min(idle_timeout_ms / 3).max(100);
    let idle_timeout = Duration::from_millis(idle_timeout_ms);
    let layout = Layout::new(a.tabs, a.rate, idle_timeout, abusers)?;
    for k in 0..a.rosters {
        let members: Vec<String> = layout
            .team_members(k, a.rosters)
            .into_iter()
            .map(|i| format!("u{i}"))
            .collect();
        admin.team(TENANT, &format!("t{k}"), &members).await?;
    }

    let causes = watch::Causes::new(layout.clone());
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut watchers: Vec<(String, Roster)> = (0..a.dashboards)
        .map(|j| (format!("w{j}"), Roster::Directory))
        .collect();
    watchers.extend((0..a.rosters).map(|k| (format!("r{k}"), Roster::Team(format!("t{k}")))));
    let boards = watch::open(ctx, TENANT, &watchers, &causes, &done_rx).await?;

    // The crowd, in worker processes.
    let crowd_range = layout.population();
    let workers = crowd_range.len().div_ceil(PER_WORKER).max(1);
    let reload_mean_ms = if a.reloads_per_sec > 0.0 {
        (layout.reloaders as f64 * 1000.0 / a.reloads_per_sec) as u64
    } else {
        u64::MAX / 4
    };
    let bound_secs = a.minutes * 60 + 1200;
    let shares: Vec<Share> = (0..workers)
        .map(|w| Share {
            worker: w,
            workers,
            from: crowd_range.start,
            reloaders_end: layout.range(Class::Reloader).end,
            steady_end: layout.range(Class::Steady).end,
            to: crowd_range.end,
            activity_ms,
            reload_mean_ms,
            bound_secs,
        })
        .collect();
    let crowd = Crowd::start(ctx, &shares)?;
    let crowd_tabs = crowd.wait_all(true, Duration::from_secs(600))?;
    // Let the crowd's coming online reach the watchers.
    ctx.stop.sleep(Duration::from_secs(2)).await;

    // The run proper.
    let (phase_tx, phase) = Stop::manual();
    let origin = Instant::now();
    let end = origin + Duration::from_secs(a.minutes * 60);
    let problems: togglers::Problems = Arc::default();
    let mut scheduled = Vec::new();
    let at = |k: usize| {
        (
            ctx.hubs[k % ctx.hubs.len()],
            ctx.sources[k % ctx.sources.len()],
        )
    };
    let member = |k: usize, user: usize| {
        let (hub, source) = at(user);
        togglers::Member {
            k,
            user,
            hub,
            source,
            token: ctx.tokens.mint(TENANT, &format!("u{user}")),
        }
    };
    for k in 0..layout.logout.pool {
        let i = layout.range(Class::LogoutToggler).start + k;
        scheduled.push(tokio::spawn(togglers::logout(
            member(k, i),
            layout.logout,
            origin,
            end,
            causes.clone(),
            phase.clone(),
            problems.clone(),
        )));
    }
    for k in 0..layout.expiry.pool {
        let i = layout.range(Class::ExpiryToggler).start + k;
        scheduled.push(tokio::spawn(togglers::expiry(
            member(k, i),
            layout.expiry,
            idle_timeout,
            origin,
            end,
            causes.clone(),
            phase.clone(),
            problems.clone(),
        )));
    }
    let tally: Arc<Mutex<abuse::Tally>> = Arc::default();
    let mut abusive = Vec::new();
    for (n, i) in layout.range(Class::Abuser).enumerate() {
        let (hub, source) = at(i);
        let abuser = abuse::Abuser {
            kind: a.abuse[n / a.abusers.max(1)],
            hub,
            source,
            token: ctx.tokens.mint(TENANT, &format!("u{i}")),
            max_frame: 16 * 1024,
        };
        abusive.push(tokio::spawn(abuser.run(phase.clone(), tally.clone())));
    }

    let samples = sample_until(ctx, a, &causes, &crowd, &tally, origin, end).await?;
    let secs = origin.elapsed().as_secs_f64();

    // Wind down: the schedule ends with everyone offline by a known cause.
    let _ = phase_tx.send(true);
    let deadline = Instant::now() + Duration::from_secs(15);
    for mut t in scheduled.into_iter().chain(abusive) {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
            eprintln!("a scheduled or abusive tab did not stop in time");
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let truth = watch::truth(ctx, TENANT, "w0", layout.users()).await?;
    let _ = done_tx.send(true);
    let (mut owed, mut seen, mut missing, mut spurious) = (0, 0, 0, 0);
    let mut integrity = Integrity::default();
    let mut ended = Vec::new();
    for b in boards {
        let mut w = b.await?;
        for i in (0..layout.users()).filter(|&i| w.in_scope[i]) {
            let allowed = allowance(
                layout.class(i),
                w.online_at_snapshot[i],
                causes.caused[i].load(Ordering::Relaxed),
            );
            let (m, s) = judge(allowed, w.seen[i]);
            owed += allowed.0;
            seen += w.seen[i];
            missing += m;
            spurious += s;
        }
        w.settle(&truth);
        integrity.add(&w.view.integrity);
        if let Some(how) = &w.closed {
            ended.push(format!("{}: {how}", w.roster));
        }
    }
    let crowd_stats = crowd.close();

    // Nothing may be left: every tab closed, so the hub must hold none.
    let deadline = Instant::now() + Duration::from_secs(15);
    let (open_after, registered_after) = loop {
        let (o, r) = tab_gauges(ctx).await?;
        let settled = o == open_base && r == registered_base;
        if settled || Instant::now() > deadline {
            break (o, r);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    let rss: Vec<(f64, u64)> = samples.iter().map(|s| (s.t_secs, s.rss_kib)).collect();
    let warm = warm_sample(&rss, (a.warmup_minutes * 60) as f64);
    let last = rss.last().copied();
    let tally = tally.lock().expect("no panic while held").clone();
    let r = Report {
        tabs: a.tabs,
        crowd_tabs_open: crowd_tabs,
        workers,
        classes: Classes {
            logout_togglers: layout.logout.pool,
            expiry_togglers: layout.expiry.pool,
            reloaders: layout.reloaders,
            steady: layout.steady,
            idle: layout.idle,
            abusers,
        },
        directory_watchers: a.dashboards,
        roster_watchers: a.rosters,
        idle_timeout_ms,
        activity_ms,
        minutes: a.minutes,
        secs,
        sample_secs: a.sample_secs,
        warmup_secs: a.warmup_minutes * 60,
        rss_warmup_kib: warm.map(|w| w.1),
        rss_end_kib: last.map(|l| l.1),
        rss_growth_pct: warm.zip(last).map(|(w, l)| growth_pct(w.1, l.1)),
        samples,
        latency_ms: Latency::of(&causes.total.lock().expect("no panic while held")),
        expiry_lateness_ms: Latency::of(
            &causes.expiry_lateness.lock().expect("no panic while held"),
        ),
        expiry_early: causes.expiry_early.load(Ordering::Relaxed),
        expiry_later_than_1s: causes.expiry_late.load(Ordering::Relaxed),
        transitions_caused: causes
            .caused
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum(),
        deltas_owed: owed,
        deltas_seen: seen,
        missing,
        spurious,
        integrity,
        watchers_ended_by_hub: ended,
        crowd: crowd_stats,
        scheduled_user_problems: problems.lock().expect("no panic while held").clone(),
        abuse: tally,
        open_tabs_baseline: open_base,
        open_tabs_after_close: open_after,
        registered_tabs_baseline: registered_base,
        registered_tabs_after_close: registered_after,
        tabs_leaked: open_after - open_base,
        registered_tabs_leaked: registered_after.zip(registered_base).map(|(a, b)| a - b),
    };
    let partial = ctx.stop.stopped() || (crowd_tabs as usize) < layout.population().len();
    emit("soak", partial, &rows_of(&r), &r, ctx.out.as_deref())
}

/// Samples every `sample_secs` until `end` or the run is stopped (then once
/// more, so the end is always sampled), printing each sample as it goes.
async fn sample_until(
    ctx: &Ctx,
    a: &Args,
    causes: &watch::Causes,
    crowd: &Crowd,
    tally: &Mutex<abuse::Tally>,
    origin: Instant,
    end: Instant,
) -> anyhow::Result<Vec<Sample>> {
    let every = Duration::from_secs(a.sample_secs.max(1));
    let bar = crate::control::timer(a.minutes * 60, "soak");
    let mut samples = Vec::new();
    let mut next = origin + every;
    loop {
        let now = Instant::now();
        let wake = next.min(end).min(now + Duration::from_secs(1));
        ctx.stop.sleep(wake.saturating_duration_since(now)).await;
        bar.set_position(origin.elapsed().as_secs());
        let now = Instant::now();
        let over = now >= end || ctx.stop.stopped();
        if now >= next || over {
            let s = sample(ctx, causes, crowd, tally, origin).await?;
            let line = sample_line(&s);
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            samples.push(s);
            next += every;
        }
        if over {
            break;
        }
    }
    bar.finish_and_clear();
    Ok(samples)
}

async fn sample(
    ctx: &Ctx,
    causes: &watch::Causes,
    crowd: &Crowd,
    tally: &Mutex<abuse::Tally>,
    origin: Instant,
) -> anyhow::Result<Sample> {
    let rss_kib = Usage::read(&ctx.pids)?.rss_total_kib();
    let (open_tabs, registered_tabs) = tab_gauges(ctx).await?;
    let crowd = crowd.stats();
    let tally = tally.lock().expect("no panic while held").clone();
    Ok(Sample {
        t_secs: origin.elapsed().as_secs_f64(),
        rss_kib,
        open_tabs,
        registered_tabs,
        latency_ms: Latency::of(&causes.take_period()),
        transitions_caused: causes
            .caused
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum(),
        deltas: causes.deltas.load(Ordering::Relaxed),
        spurious: causes.spurious.load(Ordering::Relaxed),
        reloads: crowd.reloads,
        abuse_cycles: tally.total(),
        abuse_unexpected: tally.unexpected,
    })
}
