//! `loadtest`: drives a running presence hub with real WebSocket tabs and
//! reports what it cost the hub. Traffic goes only to the hub address given
//! (use loopback); every run is bounded in tabs and time.

mod cluster_cost;
mod idle;
mod proc_stats;
mod tab;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", about = "Load generator for the presence hub")]
struct Cli {
    /// The hub to load (must be on this machine: 127.0.0.0/8).
    #[arg(long, default_value = "127.0.0.1:7700")]
    hub: SocketAddr,
    /// PID of the hub process, for RSS and CPU from /proc (idle scenario).
    #[arg(long)]
    hub_pid: Option<u32>,
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Source addresses to spread tabs over (ephemeral ports run out near
    /// 28,000 per source address).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N authenticated tabs and let them sit idle: memory per tab.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        tabs: usize,
        /// How long to hold the tabs before measuring, in seconds.
        #[arg(long, default_value_t = 3)]
        hold_secs: u64,
    },
    /// Two hubs sharing Redis: Redis commands per transition and per active
    /// user, and transition latency from node A (`--hub`) to a watcher on B.
    ClusterCost {
        /// Node B, where the watcher is.
        #[arg(long)]
        watch_hub: SocketAddr,
        #[arg(long, default_value = "redis://127.0.0.1:6379/")]
        redis_url: String,
        #[arg(long, default_value_t = 1_000)]
        tabs: usize,
        /// How long the tabs keep interacting after they are all online.
        #[arg(long, default_value_t = 60)]
        steady_secs: u64,
        /// How often each tab reports activity.
        #[arg(long, default_value_t = 10)]
        activity_secs: u64,
    },
}

pub struct Target {
    pub hub: SocketAddr,
    pub hub_pid: Option<u32>,
    pub admin_key: String,
    pub jwt_secret: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !cli.hub.ip().is_loopback() || cli.sources.iter().any(|s| !s.is_loopback()) {
        anyhow::bail!("loadtest only sends traffic to and from loopback addresses (127.0.0.0/8)");
    }
    let target = Target {
        hub: cli.hub,
        hub_pid: cli.hub_pid,
        admin_key: cli.admin_key,
        jwt_secret: cli.jwt_secret,
    };
    match cli.scenario {
        Scenario::ClusterCost {
            watch_hub,
            redis_url,
            tabs,
            steady_secs,
            activity_secs,
        } => {
            if !watch_hub.ip().is_loopback() || tabs > 19_000 {
                anyhow::bail!("watch hub must be on loopback; at most 19,000 tabs per process");
            }
            let r = cluster_cost::run(
                target.hub,
                watch_hub,
                &redis_url,
                &target.admin_key,
                &target.jwt_secret,
                tabs,
                Duration::from_secs(steady_secs.min(600)),
                Duration::from_secs(activity_secs.max(1)),
                cli.sources[0],
            )
            .await?;
            println!(
                "cluster-cost  tabs {}  per transition: {:.2} redis cmds, {:.3} script calls  per s per 1000 active: {:.1} redis cmds, {:.2} script calls  A→B latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
                r.tabs,
                r.redis_commands_per_transition,
                r.script_calls_per_transition,
                r.redis_commands_per_sec_per_1000_active,
                r.script_calls_per_sec_per_1000_active,
                r.cross_node_latency_ms.p50,
                r.cross_node_latency_ms.p90,
                r.cross_node_latency_ms.p99,
                r.cross_node_latency_ms.max
            );
            println!("{}", serde_json::to_string(&r)?);
        }
        Scenario::Idle { tabs, hold_secs } => {
            if tabs > 19_000 {
                anyhow::bail!("one loadtest process holds at most 19,000 tabs (20,000 open files)");
            }
            let r = idle::run(
                &target,
                tabs,
                &cli.sources,
                Duration::from_secs(hold_secs.min(600)),
            )
            .await?;
            println!(
                "scenario  tabs  connect/s  hub RSS before  after     per tab   hub CPU (connect)"
            );
            println!(
                "idle      {:<5} {:<10.0} {:<15} {:<9} {:<9} {:.2}s",
                r.tabs,
                r.tabs_per_sec,
                format!("{} KiB", r.rss_before_kib),
                format!("{} KiB", r.rss_after_kib),
                format!("{:.2} KiB", r.rss_per_tab_kib),
                r.hub_cpu_secs_connecting
            );
            println!("{}", serde_json::to_string(&r)?);
        }
    }
    Ok(())
}
