//! `tenants`: many tenants with a few users each (issue #14: a SaaS ERP
//! with 10,000 tenants), created through the admin API, then the idle
//! cost of the cluster that holds them: each hub's RSS and CPU, Redis's
//! commands per second and memory, while nothing happens.
//!
//! With `--skip-fill` it only measures (hubs restarted on a filled Redis:
//! the start-up time is the shell's, see BENCHMARKS.md). With `--serve N`
//! each hub is first made to hold N tenants of its own (an admin read of
//! each loads it there), as a node serving those tenants' tabs would.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{stream, StreamExt};
use serde::Serialize;
use serde_json::json;

use crate::cluster_cost::redis_commands;
use crate::common::Usage;
use crate::Ctx;

/// Tenant creations in flight at once.
const IN_FLIGHT: usize = 32;

#[derive(Serialize)]
struct Report {
    tenants: usize,
    users_per_tenant: usize,
    fill_secs: Option<f64>,
    idle_secs: f64,
    served_per_hub: usize,
    /// `presence_tenants_resident` of each hub during the idle window.
    hub_resident_tenants: Vec<Option<f64>>,
    hub_rss_kib: Vec<u64>,
    hub_cpu_per_sec: f64,
    redis_ops_per_sec: Option<f64>,
    redis_used_memory_bytes: Option<u64>,
}

/// The id of tenant `i`.
pub(crate) fn tenant(i: usize) -> String {
    format!("t{i:05}")
}

/// One tenant: its record, then its users in one bulk sync.
async fn fill_one(http: &reqwest::Client, ctx: &Ctx, i: usize, users: usize) -> anyhow::Result<()> {
    let tid = tenant(i);
    let base = format!("http://{}/v1/tenants/{tid}", ctx.hubs[i % ctx.hubs.len()]);
    let r = http
        .put(&base)
        .bearer_auth(&ctx.admin_key)
        .json(&json!({ "user_limit": users }))
        .send()
        .await
        .with_context(|| format!("PUT {tid}"))?;
    if !r.status().is_success() {
        bail!("PUT {tid}: {}", r.status());
    }
    let items: Vec<_> = (0..users)
        .map(|u| {
            json!({"op": "upsert_user", "id": format!("u{u}"),
                   "user": {"name": format!("User {u}"), "email": format!("u{u}@{tid}.test")}})
        })
        .collect();
    let r = http
        .post(format!("{base}/batch"))
        .bearer_auth(&ctx.admin_key)
        .json(&json!({ "items": items }))
        .send()
        .await
        .with_context(|| format!("batch {tid}"))?;
    if !r.status().is_success() {
        bail!("batch {tid}: {} {}", r.status(), r.text().await?);
    }
    Ok(())
}

async fn redis_memory(conn: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<u64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no used_memory in INFO")
}

pub async fn run(
    ctx: &Ctx,
    tenants: usize,
    users: usize,
    skip_fill: bool,
    idle_secs: u64,
    redis_url: Option<&str>,
    serve: usize,
) -> anyhow::Result<()> {
    let fill_secs = if skip_fill {
        None
    } else {
        let http = reqwest::Client::new();
        let start = Instant::now();
        let results: Vec<anyhow::Result<()>> = stream::iter(0..tenants)
            .map(|i| fill_one(&http, ctx, i, users))
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!("filled {tenants} tenants × {users} users in {secs:.1} s");
        // Every node has applied the writes before the idle window.
        for hub in &ctx.hubs {
            crate::common::Admin::new(*hub, &ctx.admin_key)
                .wait_user(&tenant(tenants - 1), &format!("u{}", users - 1))
                .await?;
        }
        Some(secs)
    };
    let mut redis = match redis_url {
        Some(url) => Some(
            redis::Client::open(url)?
                .get_multiplexed_async_connection()
                .await?,
        ),
        None => None,
    };
    // Each hub holds its own `serve` tenants.
    let http = reqwest::Client::new();
    for (h, hub) in ctx.hubs.iter().enumerate() {
        let reads: Vec<anyhow::Result<()>> = stream::iter(h * serve..(h + 1) * serve)
            .map(|i| {
                let http = &http;
                async move {
                    let url = format!("http://{hub}/v1/tenants/{}", tenant(i % tenants));
                    let r = http.get(url).bearer_auth(&ctx.admin_key).send().await?;
                    if !r.status().is_success() {
                        bail!("GET tenant {i}: {}", r.status());
                    }
                    Ok(())
                }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        if let Some(e) = reads.into_iter().find_map(Result::err) {
            return Err(e);
        }
    }
    // Let the fill's after-effects settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = Usage::read(&ctx.pids)?;
    let c0 = match redis.as_mut() {
        Some(c) => Some(redis_commands(c).await?.0),
        None => None,
    };
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let secs = t0.elapsed().as_secs_f64();
    let after = Usage::read(&ctx.pids)?;
    let (redis_ops_per_sec, redis_used_memory_bytes) = match redis.as_mut() {
        Some(c) => {
            let c1 = redis_commands(c).await?.0;
            // The two INFO calls of this measurement are not idle traffic.
            let ops = c1.saturating_sub(c0.unwrap_or(c1)).saturating_sub(1);
            (Some(ops as f64 / secs), Some(redis_memory(c).await?))
        }
        None => (None, None),
    };
    let mut hub_resident_tenants = Vec::new();
    for hub in &ctx.hubs {
        let text = http
            .get(format!("http://{hub}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        hub_resident_tenants.push(text.lines().find_map(|l| {
            l.strip_prefix("presence_tenants_resident ")
                .and_then(|v| v.trim().parse().ok())
        }));
    }
    let report = Report {
        tenants,
        users_per_tenant: users,
        fill_secs,
        idle_secs: secs,
        served_per_hub: serve,
        hub_resident_tenants,
        hub_rss_kib: ctx
            .pids
            .iter()
            .map(|p| crate::proc_stats::rss_kib(*p))
            .collect::<anyhow::Result<_>>()?,
        hub_cpu_per_sec: after.cpu_since(&before) / secs,
        redis_ops_per_sec,
        redis_used_memory_bytes,
    };
    let mut rows = vec![
        (
            "tenants",
            format!("{} × {} users", report.tenants, report.users_per_tenant),
        ),
        (
            "hub RSS",
            format!(
                "{:?} MiB",
                report
                    .hub_rss_kib
                    .iter()
                    .map(|k| k / 1024)
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "tenants held per hub",
            format!("{:?}", report.hub_resident_tenants),
        ),
        (
            "hub CPU at idle",
            format!("{:.3} s/s (all hubs)", report.hub_cpu_per_sec),
        ),
    ];
    if let Some(f) = report.fill_secs {
        rows.push(("fill", format!("{f:.1} s")));
    }
    if let (Some(ops), Some(mem)) = (report.redis_ops_per_sec, report.redis_used_memory_bytes) {
        rows.push(("Redis at idle", format!("{ops:.0} commands/s")));
        rows.push(("Redis memory", format!("{:.1} MiB", mem as f64 / 1048576.0)));
    }
    crate::report::emit("tenants", false, &rows, &report, ctx.out.as_deref())
}
