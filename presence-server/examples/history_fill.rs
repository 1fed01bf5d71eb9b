//! Fills a store with a month of presence history, for the issue #12
//! benchmarks (BENCHMARKS.md, "Issue #12: presence history"): how many
//! bytes a user-day costs in each store, and a tenant big enough to time
//! the attendance report on a hub started on the filled store.
//!
//! It writes what a hub's history keeper would have written: the tenant and
//! its users (and teams) as directory records, then the closed intervals
//! through `Store::apply_history`, in the batches a keeper folds. Nothing
//! else runs, so the store's growth over the fill is the history's size.
//!
//! ```sh
//! cargo run --release -p presence-server --example history_fill -- --data-dir /tmp/hist
//! cargo run --release -p presence-server --example history_fill -- --redis redis://127.0.0.1:6391/
//! ```
//!
//! An example rather than a `loadtest` scenario: `loadtest` talks to hubs
//! over the wire only and does not depend on the server crate.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use presence_protocol::{MembershipRole, Profile, Reason, UserState};
use presence_server::{
    ClosedInterval, EmbeddedStore, HistoryBatch, RedisConn, RedisStore, Store, TeamRecord,
    TenantRecord, UserRecord, Write,
};

#[derive(Parser)]
#[command(about = "Fills a store with presence history and prints bytes per user-day")]
struct Args {
    /// The embedded store's data directory (as PRESENCE_DATA_DIR).
    #[arg(long, conflicts_with = "redis", required_unless_present = "redis")]
    data_dir: Option<PathBuf>,
    /// A Redis URL (as PRESENCE_REDIS_URL).
    #[arg(long)]
    redis: Option<String>,
    /// The tenant to create (it must not exist yet).
    #[arg(long, default_value = "bench")]
    tenant: String,
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Teams of this many users each (0: no teams).
    #[arg(long, default_value_t = 100)]
    team_size: usize,
    /// Past days filled, ending yesterday (in the tenant's zone).
    #[arg(long, default_value_t = 31)]
    days: usize,
    /// Online periods per user per day.
    #[arg(long, default_value_t = 10)]
    periods: usize,
    /// The tenant's time zone (where its days and working hours are).
    #[arg(long, default_value = "America/Sao_Paulo")]
    time_zone: String,
    /// Users per `apply_history` call.
    #[arg(long, default_value_t = 1_000)]
    batch_users: usize,
    /// One call per period (the k-th period of every user of the batch)
    /// instead of one per day: a bucket is then appended to `periods` times,
    /// as the keeper does through the day.
    #[arg(long)]
    appends: bool,
    #[arg(long, default_value_t = 12)]
    seed: u64,
}

/// splitmix64: reproducible and dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

const MIN: u64 = 60_000;

/// One attendant's day: the start between 08:00 and 09:30 local, periods of
/// 20–50 min with gaps of 3–25 min (a long one at lunch), the time of each
/// to the millisecond; a period ends idle, by logout, or rarely by a lost
/// node or a reconciliation; the day's last one mostly by logout.
fn day_periods(rng: &mut Rng, midnight_ms: u64, periods: usize) -> Vec<(u64, u64, Reason)> {
    let mut at = midnight_ms + 8 * 60 * MIN + rng.range(0, 90 * MIN);
    let mut out = Vec::with_capacity(periods);
    for k in 0..periods {
        let len = rng.range(20 * MIN, 50 * MIN);
        let last = k + 1 == periods;
        let reason = match rng.range(0, 99) {
            _ if last && rng.range(0, 4) > 0 => Reason::Logout,
            0..=69 => Reason::Idle,
            70..=91 => Reason::Logout,
            92..=96 => Reason::NodeLost,
            _ => Reason::Reconciled,
        };
        out.push((at, at + len, reason));
        let gap = if k + 1 == periods / 2 {
            rng.range(45 * MIN, 75 * MIN)
        } else {
            rng.range(3 * MIN, 25 * MIN)
        };
        at += len + gap;
    }
    out
}

fn user_id(i: usize) -> String {
    format!("u{i:05}")
}

fn directory(a: &Args) -> Vec<Write> {
    let mut w = vec![Write::Tenant(TenantRecord {
        id: a.tenant.clone(),
        user_limit: a.users as u64 + 1_000,
        event_retention_s: None,
        time_zone: Some(a.time_zone.clone()),
        history_retention_days: None,
    })];
    for i in 0..a.users {
        // Names sort like ids, so the report's order is the ids' order.
        w.push(Write::User {
            tenant: a.tenant.clone(),
            user: UserRecord {
                id: user_id(i),
                name: format!("Attendant {i:05}"),
                nickname: String::new(),
                email: format!("attendant{i:05}@example.com"),
                phone: String::new(),
                profile: Profile::Standard,
                available: true,
                away_message: String::new(),
                state: UserState::Active,
            },
        });
    }
    if a.team_size > 0 {
        for t in 0..a.users.div_ceil(a.team_size) {
            w.push(Write::Team {
                tenant: a.tenant.clone(),
                team: TeamRecord {
                    id: format!("t{t:03}"),
                    name: format!("Team {t:03}"),
                    crm: true,
                    active: true,
                },
            });
            for i in t * a.team_size..((t + 1) * a.team_size).min(a.users) {
                w.push(Write::Member {
                    tenant: a.tenant.clone(),
                    team: format!("t{t:03}"),
                    user: user_id(i),
                    role: MembershipRole::Member,
                });
            }
        }
    }
    w
}

/// What the store occupies now: the redb file's length, or Redis's
/// `used_memory`.
async fn size(a: &Args, conn: Option<&RedisConn>) -> anyhow::Result<u64> {
    match conn {
        None => {
            let path = a.data_dir.as_deref().context("no data dir")?;
            Ok(std::fs::metadata(path.join("presence.redb"))?.len())
        }
        Some(RedisConn::Single(cm)) => {
            let mut cm = cm.clone();
            let info: String = redis::cmd("INFO")
                .arg("memory")
                .query_async(&mut cm)
                .await?;
            info.lines()
                .find_map(|l| l.strip_prefix("used_memory:"))
                .context("no used_memory in INFO memory")?
                .trim()
                .parse()
                .context("used_memory")
        }
        Some(RedisConn::Cluster(_)) => bail!("measure a single Redis, not a cluster"),
    }
}

/// The redb file compacted (the store closed first): the live pages only.
fn compacted(dir: &Path) -> anyhow::Result<u64> {
    let path = dir.join("presence.redb");
    let mut db = redb::Database::open(&path)?;
    while db.compact()? {}
    drop(db);
    Ok(std::fs::metadata(&path)?.len())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let tz = TimeZone::get(&a.time_zone).context("time zone")?;
    let (store, conn): (Box<dyn Store>, Option<RedisConn>) = match (&a.data_dir, &a.redis) {
        (Some(dir), _) => (Box::new(EmbeddedStore::open(dir)?), None),
        (None, Some(url)) => {
            let conn = RedisConn::connect(url).await?;
            (
                Box::new(RedisStore::new(conn.clone(), "history-fill")),
                Some(conn),
            )
        }
        (None, None) => bail!("--data-dir or --redis"),
    };
    if store.load().await?.iter().any(|w| match w {
        Write::Tenant(t) => t.id == a.tenant,
        _ => false,
    }) {
        bail!("tenant {} exists already: fill an empty store", a.tenant);
    }
    for chunk in directory(&a).chunks(5_000) {
        store.commit(chunk.to_vec()).await?;
    }
    // The file compacted before and after, so both sizes hold live pages only.
    let store: Box<dyn Store> = match &a.data_dir {
        Some(dir) => {
            drop(store);
            compacted(dir)?;
            Box::new(EmbeddedStore::open(dir)?)
        }
        None => store,
    };
    let before = size(&a, conn.as_ref()).await?;

    let today: Date = Timestamp::now().to_zoned(tz.clone()).date();
    let first = today - (a.days as i64).days();
    let mut rng = Rng(a.seed);
    let mut calls = 0u64;
    let mut pieces = 0u64;
    let started = Instant::now();
    for d in 0..a.days {
        let date = first + (d as i64).days();
        let midnight = date.to_zoned(tz.clone())?.timestamp().as_millisecond() as u64;
        for lo in (0..a.users).step_by(a.batch_users.max(1)) {
            let hi = (lo + a.batch_users.max(1)).min(a.users);
            let days: Vec<Vec<(u64, u64, Reason)>> = (lo..hi)
                .map(|_| day_periods(&mut rng, midnight, a.periods))
                .collect();
            let rounds: Vec<Vec<usize>> = if a.appends {
                (0..a.periods).map(|k| vec![k]).collect()
            } else {
                vec![(0..a.periods).collect()]
            };
            for round in rounds {
                let mut closed = Vec::with_capacity((hi - lo) * round.len());
                for (i, periods) in days.iter().enumerate() {
                    for &k in &round {
                        let (from, to, reason) = periods[k];
                        closed.push(ClosedInterval {
                            user: user_id(lo + i),
                            from,
                            to,
                            reason,
                        });
                    }
                }
                pieces += closed.len() as u64;
                let batch = HistoryBatch {
                    // The feed of this store is empty: a hub started on it
                    // goes on from cursor 0 and its keeper folds from there.
                    cursor: 0,
                    set_open: Vec::new(),
                    clear_open: Vec::new(),
                    closed,
                };
                if !store.apply_history(&a.tenant, (0, 0), &batch).await? {
                    bail!("the history state moved: another keeper is running on this store");
                }
                // A live hub commits its feed durably between folds; so
                // does this (redb reuses freed pages only after one).
                store.commit(Vec::new()).await?;
                calls += 1;
            }
        }
    }
    let fill_secs = started.elapsed().as_secs_f64();
    let after = size(&a, conn.as_ref()).await?;

    let last_day = first + (a.days as i64 - 1).days();
    let read = store
        .read_history(
            &a.tenant,
            (midnight_day(&first, &tz)?).saturating_sub(1),
            midnight_day(&today, &tz)?,
            None,
        )
        .await?;
    let value_bytes: usize = read.buckets.iter().map(|(_, _, b)| b.len()).sum();
    let user_days = (a.users * a.days) as f64;
    let growth = after.saturating_sub(before);
    println!(
        "filled {} users x {} days ({first} ..= {last_day}, {}), {} periods/day: {} intervals in {calls} apply_history calls, {fill_secs:.1} s",
        a.users, a.days, a.time_zone, a.periods, pieces
    );
    println!(
        "buckets read back: {} ({:.1} value bytes per user-day)",
        read.buckets.len(),
        value_bytes as f64 / user_days
    );
    let what = if conn.is_some() {
        "Redis used_memory"
    } else {
        "redb file"
    };
    println!(
        "{what}: {before} -> {after} bytes, growth {growth} = {:.1} bytes per user-day",
        growth as f64 / user_days
    );
    drop(store);
    if let Some(dir) = &a.data_dir {
        let c = compacted(dir)?;
        println!(
            "redb file compacted: {c} bytes, growth {} = {:.1} bytes per user-day",
            c.saturating_sub(before),
            c.saturating_sub(before) as f64 / user_days
        );
    }
    println!(
        "report: GET /v1/tenants/{}/reports/attendance?from={first}&to={last_day}",
        a.tenant
    );
    Ok(())
}

/// The UTC day number (as the store keys buckets) of a local date's start.
fn midnight_day(date: &Date, tz: &TimeZone) -> anyhow::Result<u32> {
    let ms = date.to_zoned(tz.clone())?.timestamp().as_millisecond();
    Ok((ms / 86_400_000) as u32)
}
