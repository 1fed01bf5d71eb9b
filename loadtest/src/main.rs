//! `loadtest`: drives running presence hubs with real WebSocket tabs and
//! reports what it cost them. Traffic goes only to loopback (127.0.0.0/8);
//! every run is bounded in tabs and time, and Ctrl-C stops it with a
//! partial report.

mod activity;
mod bulk_sync;
mod churn;
mod cluster_cost;
mod common;
mod control;
mod dashboard;
mod deltas;
mod expiry;
mod fanout;
mod idle;
mod million;
mod proc_stats;
mod report;
mod scaleout;
mod soak;
mod tab;
mod tabs;
mod tenants;
mod webhook;
mod wire;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "loadtest", about = "Load generator for the presence hub")]
struct Cli {
    /// The hubs to load, comma-separated (on this machine: 127.0.0.0/8).
    /// Tab i goes to hub i % count.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:7700")]
    hub: Vec<SocketAddr>,
    /// PIDs of the hub processes, for RSS and CPU from /proc.
    #[arg(long, value_delimiter = ',')]
    hub_pid: Vec<u32>,
    #[arg(long, env = "PRESENCE_ADMIN_KEY", hide_env_values = true)]
    admin_key: String,
    #[arg(long, env = "PRESENCE_JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// Source addresses to spread tabs over (ephemeral ports run out near
    /// 28,000 per source address).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1")]
    sources: Vec<IpAddr>,
    /// Handshakes in flight at once.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// The whole run stops after this many seconds (partial report).
    /// Default is 900, and for `soak` its `--minutes` plus 20 minutes.
    #[arg(long)]
    max_secs: Option<u64>,
    /// Append the JSON report to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// Open N authenticated tabs and let them sit idle: memory per tab,
    /// connection rate, hub CPU per accepted tab.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        tabs: usize,
        /// Put users in teams of this size and subscribe every tab to its
        /// team (0: no teams, no subscriptions).
        #[arg(long, default_value_t = 50)]
        teams_of: usize,
        /// How long to hold the tabs before measuring memory, in seconds.
        #[arg(long, default_value_t = 3)]
        hold_secs: u64,
        /// Connect without proof of interaction (nobody turns online, so no
        /// deltas flow).
        #[arg(long)]
        no_proof: bool,
    },
    /// Tabs sending `activity` at a fixed total rate: hub CPU per frame.
    Activity {
        #[arg(long, default_value_t = 10_000)]
        tabs: usize,
        /// Frames per second, over all tabs.
        #[arg(long, default_value_t = 100_000)]
        rate: u64,
        #[arg(long, default_value_t = 20)]
        secs: u64,
    },
    /// Tabs reloading like page navigation: no transition may be seen.
    Churn {
        #[arg(long, default_value_t = 5_000)]
        users: usize,
        /// Average time between two reloads of one tab, in ms.
        #[arg(long, default_value_t = 5_000)]
        every_ms: u64,
        #[arg(long, default_value_t = 30)]
        secs: u64,
    },
    /// Dashboards watching a big directory while users go online/offline.
    Fanout {
        #[arg(long, default_value_t = 1_000)]
        dashboards: usize,
        /// Users in the directory (the dashboards' admins included).
        #[arg(long, default_value_t = 10_000)]
        users: usize,
        /// Transitions per second (half online, half offline).
        #[arg(long, default_value_t = 100)]
        rate: u64,
        #[arg(long, default_value_t = 30)]
        secs: u64,
        /// How long a driven user stays online before logging out, in ms.
        #[arg(long, default_value_t = 2_000)]
        hold_ms: u64,
    },
    /// Many users interact once within the same second, then go idle.
    Expiry {
        #[arg(long, default_value_t = 19_000)]
        users: usize,
        #[arg(long, default_value_t = 10)]
        dashboards: usize,
        /// The interactions are spread over this many ms.
        #[arg(long, default_value_t = 500)]
        spread_ms: u64,
    },
    /// Many users go idle in the same second with the feed pushed to one
    /// webhook received here: deadline → delivery, events/s, hub CPU and
    /// Redis work for the burst (`--no-webhook`: the same burst without).
    Webhook {
        #[arg(long, default_value_t = 19_000)]
        users: usize,
        /// The interactions are spread over this many ms.
        #[arg(long, default_value_t = 500)]
        spread_ms: u64,
        #[arg(long)]
        no_webhook: bool,
        /// Cluster mode: the hubs' Redis, for the commands and bytes of the burst.
        #[arg(long)]
        redis_url: Option<String>,
    },
    /// More tabs than one process may hold, over several hubs sharing
    /// Redis, opened by worker processes of this program.
    Scaleout {
        #[arg(long, default_value_t = 100_000)]
        tabs: usize,
    },
    /// A long run with reloads, activity, scheduled transitions, watchers
    /// and abusive tabs: RSS growth, leaked tabs, latency per sample,
    /// missing and spurious transitions, how abusive tabs are closed.
    Soak(soak::Args),
    #[command(hide = true)]
    SoakWorker(soak::Share),
    /// One tab per user of a filled many-tenant directory (`tenants`),
    /// tenant t's tabs on hub t % hubs, opened by worker processes: connect
    /// rate, memory per tab (hub, kernel, box), Redis and hub CPU at idle;
    /// then `--active-pct` of each tenant's users interact once while a
    /// dashboard watches each of `--sample` tenants (0 missing, 0 spurious).
    Million {
        #[arg(long, default_value_t = 10_000)]
        tenants: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        sample: usize,
        #[arg(long, default_value_t = 5)]
        active_pct: usize,
        #[arg(long, default_value_t = 30)]
        idle_secs: u64,
        #[arg(long, default_value = "redis://127.0.0.1:6379/")]
        redis_url: String,
    },
    #[command(hide = true)]
    MillionWorker {
        #[arg(long)]
        users: usize,
        #[arg(long)]
        from: usize,
        #[arg(long)]
        to: usize,
        #[arg(long)]
        active: usize,
    },
    #[command(hide = true)]
    ScaleoutWorker {
        #[arg(long)]
        from: usize,
        #[arg(long)]
        to: usize,
    },
    /// Many tenants of a few users each (through the admin API, spread
    /// over the hubs), then the idle cost: hub RSS and CPU, Redis commands
    /// per second and memory.
    Tenants {
        #[arg(long, default_value_t = 1_000)]
        tenants: usize,
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Measure only (the tenants exist already).
        #[arg(long)]
        skip_fill: bool,
        /// How long to measure the idle cluster, in seconds.
        #[arg(long, default_value_t = 10)]
        idle_secs: u64,
        /// The Redis the hubs share, for its idle commands and memory.
        #[arg(long)]
        redis_url: Option<String>,
        /// Tenants each hub is made to hold before the idle window (hub h
        /// the `h * serve ..` ones), as if it served their tabs.
        #[arg(long, default_value_t = 0)]
        serve: usize,
    },
    /// The ERP's directory sync: `--memberships` in one `POST .../batch`
    /// (users and teams made first), timed with the dashboards (one per
    /// hub) that must hold the new rosters; `--puts` times the old way.
    BulkSync {
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        teams: usize,
        #[arg(long, default_value_t = 20_000)]
        memberships: usize,
        /// Also time this many one-at-a-time membership `PUT`s.
        #[arg(long, default_value_t = 0)]
        puts: usize,
    },
    /// Two hubs sharing Redis: Redis commands per transition and per active
    /// user, and transition latency from the first hub to a watcher on the
    /// second.
    ClusterCost {
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

/// What every scenario is given.
pub struct Ctx {
    pub hubs: Vec<SocketAddr>,
    pub pids: Vec<u32>,
    pub admin_key: String,
    pub jwt_secret: String,
    pub tokens: common::Tokens,
    pub sources: Vec<IpAddr>,
    pub in_flight: usize,
    pub stop: control::Stop,
    pub out: Option<PathBuf>,
}

impl Ctx {
    pub fn admin(&self) -> common::Admin {
        common::Admin::new(self.hubs[0], &self.admin_key)
    }

    pub fn plan(&self) -> tabs::Plan {
        tabs::Plan {
            hubs: self.hubs.clone(),
            sources: self.sources.clone(),
            in_flight: self.in_flight,
        }
    }
}

/// Sockets one process may hold here (20,000 open files), with room for
/// the rest of the process.
const MAX_TABS_PER_PROCESS: usize = 19_500;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.hub.iter().any(|h| !h.ip().is_loopback()) || cli.sources.iter().any(|s| !s.is_loopback())
    {
        anyhow::bail!("loadtest only sends traffic to and from loopback addresses (127.0.0.0/8)");
    }
    let needs_pids = !matches!(
        cli.scenario,
        Scenario::ScaleoutWorker { .. }
            | Scenario::MillionWorker { .. }
            | Scenario::SoakWorker(_)
            | Scenario::ClusterCost { .. }
    );
    if needs_pids && cli.hub_pid.len() != cli.hub.len() {
        anyhow::bail!("give one --hub-pid per --hub (RSS and CPU are read from /proc)");
    }
    let max_secs = cli.max_secs.unwrap_or(match &cli.scenario {
        Scenario::Soak(a) => a.minutes * 60 + 1200,
        _ => 900,
    });
    let ctx = Ctx {
        hubs: cli.hub.clone(),
        pids: cli.hub_pid.clone(),
        admin_key: cli.admin_key.clone(),
        jwt_secret: cli.jwt_secret.clone(),
        tokens: common::Tokens::new(&cli.jwt_secret),
        sources: cli.sources.clone(),
        in_flight: cli.in_flight,
        stop: control::Stop::install(Duration::from_secs(max_secs)),
        out: cli.out.clone(),
    };
    let one_process = |n: usize| {
        if n > MAX_TABS_PER_PROCESS {
            anyhow::bail!(
                "one process holds at most {MAX_TABS_PER_PROCESS} tabs here; use scaleout"
            );
        }
        Ok(())
    };
    match cli.scenario {
        Scenario::Idle {
            tabs,
            teams_of,
            hold_secs,
            no_proof,
        } => {
            one_process(tabs)?;
            idle::run(&ctx, tabs, teams_of, hold_secs.min(600), no_proof).await
        }
        Scenario::Activity { tabs, rate, secs } => {
            one_process(tabs)?;
            activity::run(&ctx, tabs, rate, secs.min(600)).await
        }
        Scenario::Churn {
            users,
            every_ms,
            secs,
        } => {
            one_process(users + 2)?;
            churn::run(&ctx, users, every_ms.max(10), secs.min(600)).await
        }
        Scenario::Fanout {
            dashboards,
            users,
            rate,
            secs,
            hold_ms,
        } => {
            one_process(dashboards + 2000)?;
            fanout::run(&ctx, dashboards, users, rate, secs.min(600), hold_ms).await
        }
        Scenario::Expiry {
            users,
            dashboards,
            spread_ms,
        } => {
            one_process(users + dashboards + 1)?;
            expiry::run(&ctx, users, dashboards, spread_ms).await
        }
        Scenario::Webhook {
            users,
            spread_ms,
            no_webhook,
            redis_url,
        } => {
            one_process(users + 64)?;
            webhook::run(&ctx, users, spread_ms, !no_webhook, redis_url.as_deref()).await
        }
        Scenario::Scaleout { tabs } => {
            if tabs > 200_000 {
                anyhow::bail!("at most 200,000 tabs");
            }
            scaleout::run(&ctx, tabs).await
        }
        Scenario::Soak(a) => {
            if a.tabs > 200_000 {
                anyhow::bail!("at most 200,000 tabs");
            }
            one_process(a.dashboards + a.rosters + a.tabs.min(1000) + 64)?;
            soak::run(&ctx, &a).await
        }
        Scenario::SoakWorker(share) => {
            one_process(share.indices().count())?;
            soak::worker(&ctx, share).await
        }
        Scenario::Million {
            tenants: n,
            users,
            sample,
            active_pct,
            idle_secs,
            redis_url,
        } => {
            if sample == 0 || sample > n || active_pct == 0 || active_pct > 100 {
                anyhow::bail!("1 to --tenants sampled tenants, 1 to 100 % active");
            }
            million::run(&ctx, n, users, sample, active_pct, idle_secs, &redis_url).await
        }
        Scenario::MillionWorker {
            users,
            from,
            to,
            active,
        } => {
            one_process(to.saturating_sub(from))?;
            million::worker(&ctx, users, from, to, active).await
        }
        Scenario::ScaleoutWorker { from, to } => {
            one_process(to.saturating_sub(from))?;
            scaleout::worker(&ctx, from, to).await
        }
        Scenario::Tenants {
            tenants: n,
            users,
            skip_fill,
            idle_secs,
            redis_url,
            serve,
        } => {
            if n == 0 || n > 100_000 || users == 0 || users > 10_000 {
                anyhow::bail!("1 to 100,000 tenants of 1 to 10,000 users");
            }
            if serve * ctx.hubs.len() > n {
                anyhow::bail!("--serve {serve} on each hub needs more tenants than {n}");
            }
            tenants::run(
                &ctx,
                n,
                users,
                skip_fill,
                idle_secs,
                redis_url.as_deref(),
                serve,
            )
            .await
        }
        Scenario::BulkSync {
            users,
            teams,
            memberships,
            puts,
        } => {
            if users > 100_000 || memberships > 50_000 {
                anyhow::bail!("at most 100,000 users and 50,000 memberships (one batch)");
            }
            bulk_sync::run(&ctx, users, teams, memberships, puts).await
        }
        Scenario::ClusterCost {
            redis_url,
            tabs,
            steady_secs,
            activity_secs,
        } => {
            if cli.hub.len() != 2 || tabs > MAX_TABS_PER_PROCESS {
                anyhow::bail!("cluster-cost takes two hubs (--hub A,B) and at most {MAX_TABS_PER_PROCESS} tabs");
            }
            let r = cluster_cost::run(
                cli.hub[0],
                cli.hub[1],
                &redis_url,
                &cli.admin_key,
                &cli.jwt_secret,
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
            Ok(())
        }
    }
}
