//! `idle`: many authenticated tabs that then sit idle — memory per tab, and
//! how fast the hub accepts them (connection rate, hub CPU per tab).
//!
//! With `--teams-of K` users are put in non-CRM teams of K and every tab
//! subscribes to its team's roster (everything a standard user may watch),
//! so the figure includes subscriptions and their snapshots.

use presence_protocol::Roster;
use serde::Serialize;

use crate::common::{hello, subscribe_frame, Usage};
use crate::report::emit;
use crate::Ctx;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tabs: usize,
    pub teams_of: usize,
    pub connect_secs: f64,
    pub tabs_per_sec: f64,
    pub hub_cpu_us_per_tab: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_tab_kib: f64,
    /// Hub CPU while the tabs sit idle (after the first 3 s of settling),
    /// per tab per second: the hub's pings to silent tabs and their pongs.
    pub idle_cpu_us_per_tab_sec: f64,
    pub idle_secs: f64,
}

pub async fn run(
    ctx: &Ctx,
    tabs: usize,
    teams_of: usize,
    hold_secs: u64,
    no_proof: bool,
) -> anyhow::Result<()> {
    const T: &str = "idle";
    let admin = ctx.admin();
    admin.tenant(T, tabs + 10).await?;
    let users: Vec<(String, &str)> = (0..tabs).map(|i| (format!("u{i}"), "standard")).collect();
    admin.users(T, &users).await?;
    if teams_of > 0 {
        let ids: Vec<String> = users.iter().map(|(id, _)| id.clone()).collect();
        let progress = crate::control::bar(tabs.div_ceil(teams_of) as u64, "teams");
        for (k, members) in ids.chunks(teams_of).enumerate() {
            admin.team(T, &format!("t{k}"), members).await?;
            progress.inc(1);
        }
        progress.finish_and_clear();
    }
    let hellos = (0..tabs)
        .map(|i| {
            let token = ctx.tokens.mint(T, &format!("u{i}"));
            let extra = match i.checked_div(teams_of) {
                Some(team) => subscribe_frame(1, Roster::Team(format!("t{team}"))),
                None => Vec::new(),
            };
            let idle_ms = if no_proof {
                crate::fanout::NO_PROOF_MS
            } else {
                0
            };
            (hello(token, idle_ms), extra)
        })
        .collect();
    let before = Usage::read(&ctx.pids)?;
    let opened = ctx.plan().open(hellos, &ctx.stop, "connecting").await?;
    let connected = Usage::read(&ctx.pids)?;
    let open: Vec<_> = opened.tabs.into_iter().flatten().collect();
    let n = open.len();
    let holders: Vec<_> = open.into_iter().map(crate::tabs::hold).collect();
    // Let snapshots and the deltas of everyone coming online drain, and the
    // allocator settle, before reading memory.
    let settle = hold_secs.min(3);
    ctx.stop.sleep(std::time::Duration::from_secs(settle)).await;
    let settled = Usage::read(&ctx.pids)?;
    let idle_from = std::time::Instant::now();
    ctx.stop
        .sleep(std::time::Duration::from_secs(hold_secs - settle))
        .await;
    let after = Usage::read(&ctx.pids)?;
    let idle_secs = idle_from.elapsed().as_secs_f64();
    for h in &holders {
        h.abort();
    }
    let r = Report {
        tabs: n,
        teams_of,
        connect_secs: opened.secs,
        tabs_per_sec: n as f64 / opened.secs,
        hub_cpu_us_per_tab: connected.cpu_since(&before) * 1e6 / n.max(1) as f64,
        rss_before_kib: before.rss_total_kib(),
        rss_after_kib: after.rss_total_kib(),
        rss_per_tab_kib: after.rss_total_kib().saturating_sub(before.rss_total_kib()) as f64
            / n.max(1) as f64,
        idle_cpu_us_per_tab_sec: after.cpu_since(&settled) * 1e6
            / n.max(1) as f64
            / idle_secs.max(1e-3),
        idle_secs,
    };
    emit(
        "idle",
        ctx.stop.stopped() || n < tabs,
        &[
            ("tabs", format!("{n} (teams of {teams_of})")),
            (
                "connect rate",
                format!("{:.0} tabs/s ({:.2} s)", r.tabs_per_sec, r.connect_secs),
            ),
            (
                "hub CPU per tab",
                format!(
                    "{:.1} µs (upgrade + hello + welcome{})",
                    r.hub_cpu_us_per_tab,
                    if teams_of > 0 { " + subscribe" } else { "" }
                ),
            ),
            (
                "hub RSS",
                format!("{} → {} KiB", r.rss_before_kib, r.rss_after_kib),
            ),
            ("RSS per tab", format!("{:.2} KiB", r.rss_per_tab_kib)),
            (
                "idle hub CPU",
                format!(
                    "{:.3} µs per tab per second (over {:.0} s)",
                    r.idle_cpu_us_per_tab_sec, r.idle_secs
                ),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
