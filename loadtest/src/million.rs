//! `million`: one authenticated tab per user of a many-tenant directory
//! (issue #14: 10,000 tenants × 100 users), over as many hub processes as
//! the open-files limit needs, opened by worker processes (a process holds
//! at most ~19,900 sockets here). Tenant `t`'s tabs go to hub `t % hubs`,
//! as a load balancer hashing on the tenant would send them, so each hub
//! holds its own tenants only.
//!
//! Measured: the connect rate; each hub's RSS per tab; the kernel's memory
//! per socket (`/proc/net/sockstat`, and the slab caches a socket uses);
//! the box's memory in use; Redis's memory and commands per second while
//! the tabs sit idle; the hubs' idle CPU per tab per second. Then a share
//! of each tenant's users interact once and go idle again, while an
//! administrator of each of a sample of tenants watches its directory:
//! every dashboard must see exactly those users go online once and offline
//! once (nothing missing, nothing spurious).
//!
//! The tenants must exist (`loadtest tenants` fills them with the same
//! ids).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use tokio::sync::watch;

use crate::common::{activity_frame, hello, Usage};
use crate::dashboard::{self, Shared};
use crate::fanout::NO_PROOF_MS;
use crate::report::emit;
use crate::tenants::tenant;
use crate::Ctx;

/// Tabs per worker process: under the 20,000 open files of a process.
const PER_WORKER: usize = 18_000;
/// The slab caches a loopback TCP connection's two sockets use.
const SOCKET_SLABS: &[&str] = &[
    "TCP",
    "sock_inode_cache",
    "dentry",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "skbuff_head_cache",
    "tcp_bind_bucket",
    "ep_head",
];

#[derive(Debug, Serialize)]
pub struct Report {
    pub hubs: usize,
    pub workers: usize,
    pub tenants: usize,
    pub users_per_tenant: usize,
    pub tabs: usize,
    pub connect_secs: f64,
    pub tabs_per_sec: f64,
    /// Handshakes the hub answered with 1013 (tenant not ready in time),
    /// tried again after a backoff.
    pub handshakes_retried: u64,
    pub hub_rss_total_mib: f64,
    pub hub_rss_per_tab_kib: f64,
    pub worker_rss_total_mib: f64,
    pub sockets_in_use: i64,
    pub tcp_mem_pages: i64,
    pub slab_bytes_per_socket: f64,
    pub slab_per_cache_mib: HashMap<String, f64>,
    pub box_in_use_before_mib: f64,
    pub box_in_use_after_mib: f64,
    pub redis_used_memory_mib: f64,
    pub idle_secs: f64,
    pub redis_ops_per_sec_idle: f64,
    /// Calls per command during the idle window (`INFO commandstats`).
    pub redis_idle_calls: HashMap<String, i64>,
    pub hub_cpu_per_sec_idle: f64,
    pub hub_cpu_us_per_tab_sec_idle: f64,
    pub sampled_tenants: usize,
    pub active_per_tenant: usize,
    pub online_seen_secs: f64,
    pub offline_seen_secs: f64,
    pub missing: u64,
    pub spurious: u64,
    /// Tabs the hubs ended before the active phase (of them: active users',
    /// and those ended with a close frame rather than dropped).
    pub tabs_lost_before: u64,
    pub active_tabs_lost_before: u64,
    pub tabs_closed_before: u64,
    /// Tabs ended during the active phase (of them: active users').
    pub tabs_lost_during: u64,
    pub active_tabs_lost_during: u64,
    /// Ended tabs that could not reconnect (every other one did, as the
    /// SDK reconnects).
    pub tabs_not_reconnected: u64,
}

/// The worker side: opens the tabs of global users `from..to` (user `g` is
/// `u{g % users}` of tenant `g / users`, on hub `tenant % hubs`), says
/// `ready`, then on `go` has each user whose index is below `active` send
/// one proof of interaction; ends (closing every tab) on `close` or at the
/// end of its input. A tab the hub closes reconnects after 1–3 s with the
/// same `hello`, as the SDK does (a user who had not interacted yet still
/// does on `go`); each worker reports how many did.
pub async fn worker(
    ctx: &Ctx,
    users: usize,
    from: usize,
    to: usize,
    active: usize,
) -> anyhow::Result<()> {
    let mut hellos = Vec::with_capacity(to - from);
    let mut hubs = Vec::with_capacity(to - from);
    for g in from..to {
        let (t, u) = (g / users, g % users);
        hellos.push(hello(
            ctx.tokens.mint(&tenant(t), &format!("u{u}")),
            NO_PROOF_MS,
        ));
        hubs.push(ctx.hubs[t % ctx.hubs.len()]);
    }
    // Each tab is held (its pings answered) from the moment it is open:
    // a slice takes minutes to open, longer than the hub waits for a pong.
    let frame: &'static [u8] = Box::leak(activity_frame(0).into_boxed_slice());
    let (go_tx, go_rx) = watch::channel(false);
    let gate = std::sync::Arc::new(tokio::sync::Semaphore::new(ctx.in_flight.max(1)));
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel::<anyhow::Result<()>>();
    let started = Instant::now();
    let s = ctx.sources.len();
    let total = hellos.len();
    let holders: Vec<_> = hellos
        .into_iter()
        .zip(hubs)
        .enumerate()
        .map(|(i, (hello, hub))| {
            let source = ctx.sources[(from + i) % s];
            let gate = gate.clone();
            let done = done_tx.clone();
            let go = ((from + i) % users < active).then(|| go_rx.clone());
            tokio::spawn(async move {
                // Kept for reconnecting: a browser keeps its token and tab id.
                let hello = hello.into_boxed_slice();
                let mut go = go;
                let mut done = Some(done);
                loop {
                    let permit = gate.clone().acquire_owned().await;
                    let tab = crate::tabs::open_retrying(hub, source, &hello).await;
                    drop(permit);
                    let tab = match tab {
                        Ok(tab) => tab,
                        Err(e) => {
                            let e = e.context(format!("tab {} to {hub}", from + i));
                            match done.take() {
                                Some(done) => {
                                    let _ = done.send(Err(e));
                                }
                                None => ENDED.lost(from + i, &e),
                            }
                            return;
                        }
                    };
                    if let Some(done) = done.take() {
                        let _ = done.send(Ok(()));
                    }
                    let active = go.is_some();
                    let ended = crate::wire::hold_lean(tab, go.clone(), frame).await;
                    ENDED.note(from + i, active, ended);
                    // A user who already interacted does not again.
                    if go.as_ref().is_some_and(|g| *g.borrow()) {
                        go = None;
                    }
                    // The SDK reconnects a tab the hub closed, after a
                    // pause that spreads a wave of them out.
                    let pause = 1_000 + (from + i) as u64 % 2_000;
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
            })
        })
        .collect();
    drop((go_rx, done_tx));
    let mut n = 0;
    while n < total {
        match done.recv().await {
            Some(r) => r?,
            None => break,
        }
        n += 1;
    }
    println!(
        "ready {n} {:.3} {}",
        started.elapsed().as_secs_f64(),
        crate::tabs::RETRIED.load(std::sync::atomic::Ordering::Relaxed)
    );
    let (line_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line_tx.send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = lines.recv().await {
        match line.trim() {
            "go" => {
                let _ = go_tx.send(true);
                println!("went {}", ENDED.take());
            }
            "close" => {
                println!("closed {}", ENDED.take());
                break;
            }
            _ => {}
        }
    }
    for h in holders {
        h.abort();
    }
    Ok(())
}

/// Tabs of a worker that the hub ended while they were held: a tab lost
/// before `go` is a user who cannot interact, so a dashboard would miss her.
struct EndedTabs(std::sync::Mutex<(u64, u64, u64, u64)>);

static ENDED: EndedTabs = EndedTabs(std::sync::Mutex::new((0, 0, 0, 0)));

impl EndedTabs {
    /// Counts a tab that ended (active ones too) and names the first few.
    fn note(&self, g: usize, active: bool, ended: crate::wire::Ended) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.0 += 1;
        if active {
            c.1 += 1;
        }
        if matches!(ended, crate::wire::Ended::Closed(_)) {
            c.2 += 1;
        }
        if c.0 <= 20 || active {
            eprintln!("tab of global user {g} (active: {active}) ended: {ended:?}");
        }
    }

    /// A tab that could not reconnect (its user is gone from the run).
    fn lost(&self, g: usize, e: &anyhow::Error) {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        c.3 += 1;
        eprintln!("tab of global user {g} could not reconnect: {e:#}");
    }

    /// `ended active closed unreconnected` since the last call, as a
    /// worker reports them.
    fn take(&self) -> String {
        let mut c = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let out = format!("{} {} {} {}", c.0, c.1, c.2, c.3);
        *c = (0, 0, 0, 0);
        out
    }
}

/// `/proc/net/sockstat`'s TCP `inuse` and `mem` (pages).
fn sockstat() -> anyhow::Result<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/net/sockstat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .context("no TCP line in sockstat")?;
    let f: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| -> i64 {
        f.iter()
            .position(|x| *x == name)
            .and_then(|i| f.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok((field("inuse"), field("mem")))
}

/// Bytes held by each of [`SOCKET_SLABS`] (objects × object size).
fn slabs() -> anyhow::Result<HashMap<String, i64>> {
    let text = std::fs::read_to_string("/proc/slabinfo").context("read /proc/slabinfo (root)")?;
    let mut out = HashMap::new();
    for l in text.lines().skip(2) {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 4 || !SOCKET_SLABS.contains(&f[0]) {
            continue;
        }
        let (objs, size): (i64, i64) = (f[2].parse()?, f[3].parse()?);
        *out.entry(f[0].to_owned()).or_insert(0) += objs * size;
    }
    Ok(out)
}

/// `MemTotal - MemAvailable`, MiB.
fn box_in_use_mib() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    let kib = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no {name} in meminfo"))
    };
    Ok((kib("MemTotal:")? - kib("MemAvailable:")?) / 1024.0)
}

/// Calls per command so far (`INFO commandstats`).
async fn command_calls(
    redis: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<HashMap<String, i64>> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await?;
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, rest) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect())
}

/// Sends `line` to every worker and waits for each to answer `expect`
/// followed by its counts of ended tabs (see [`EndedTabs::take`]), which
/// are summed.
fn tell_all(
    children: &mut [std::process::Child],
    outs: &mut [BufReader<std::process::ChildStdout>],
    line: &str,
    expect: &str,
) -> anyhow::Result<[u64; 4]> {
    for c in children.iter_mut() {
        if let Some(i) = c.stdin.as_mut() {
            writeln!(i, "{line}")?;
            i.flush()?;
        }
    }
    let mut sum = [0u64; 4];
    for out in outs.iter_mut() {
        let mut l = String::new();
        out.read_line(&mut l)?;
        let counts = l
            .trim()
            .strip_prefix(expect)
            .ok_or_else(|| anyhow::anyhow!("a worker answered {l:?} to {line}"))?;
        for (s, n) in sum.iter_mut().zip(counts.split_whitespace()) {
            *s += n.parse::<u64>()?;
        }
    }
    Ok(sum)
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    ctx: &Ctx,
    tenants: usize,
    users: usize,
    sample: usize,
    active_pct: usize,
    idle_secs: u64,
    redis_url: &str,
) -> anyhow::Result<()> {
    let active = (users * active_pct).div_ceil(100);
    // Sampled tenants get an administrator (one more user than the fill's
    // limit), who watches the directory from a dashboard.
    let sampled: Vec<usize> = (0..sample).map(|i| i * tenants / sample).collect();
    let admin = ctx.admin();
    for &t in &sampled {
        admin.tenant(&tenant(t), users + 1).await?;
        admin
            .users(&tenant(t), &[("w".to_owned(), "admin")])
            .await?;
    }
    let (done_tx, done_rx) = watch::channel(false);
    let mut boards = Vec::new();
    for &t in &sampled {
        let shared = Shared::new(users);
        let b = dashboard::open_all(ctx, &tenant(t), &["w".to_owned()], users, &shared, &done_rx)
            .await?;
        boards.push((shared, b.handles));
    }
    let mut redis = redis::Client::open(redis_url)?
        .get_multiplexed_async_connection()
        .await?;
    let before = Usage::read(&ctx.pids)?;
    let (sock0, _) = sockstat()?;
    let slab0 = slabs()?;
    let box0 = box_in_use_mib()?;
    // Workers, each with its slice.
    let total = tenants * users;
    let workers = total.div_ceil(PER_WORKER);
    let exe = std::env::current_exe()?;
    let hubs: Vec<String> = ctx.hubs.iter().map(|h| h.to_string()).collect();
    let sources: Vec<String> = ctx.sources.iter().map(|s| s.to_string()).collect();
    let mut children = Vec::new();
    let started = Instant::now();
    for w in 0..workers {
        let (from, to) = (w * PER_WORKER, ((w + 1) * PER_WORKER).min(total));
        children.push(
            Command::new(&exe)
                .arg("--hub")
                .arg(hubs.join(","))
                .arg("--sources")
                .arg(sources.join(","))
                .arg("--in-flight")
                .arg(ctx.in_flight.to_string())
                .arg("million-worker")
                .args(["--users", &users.to_string()])
                .args(["--from", &from.to_string(), "--to", &to.to_string()])
                .args(["--active", &active.to_string()])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?,
        );
    }
    let mut outs = Vec::new();
    let mut opened = 0usize;
    let mut retried = 0u64;
    for c in &mut children {
        let mut out = BufReader::new(c.stdout.take().expect("piped"));
        let mut line = String::new();
        out.read_line(&mut line)?;
        let f: Vec<&str> = line
            .strip_prefix("ready ")
            .map(|r| r.split_whitespace().collect())
            .unwrap_or_default();
        let n: usize = f
            .first()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("a worker failed: {line:?}"))?;
        retried += f.get(2).and_then(|r| r.parse::<u64>().ok()).unwrap_or(0);
        opened += n;
        eprintln!(
            "{opened} tabs open after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        outs.push(out);
    }
    let connect_secs = started.elapsed().as_secs_f64();
    // Settle (the last handshakes' garbage), then the idle window.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let at_rest = Usage::read(&ctx.pids)?;
    let calls0 = command_calls(&mut redis).await?;
    let c0 = crate::cluster_cost::redis_commands(&mut redis).await?.0;
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let idle = t0.elapsed().as_secs_f64();
    let c1 = crate::cluster_cost::redis_commands(&mut redis).await?.0;
    let calls1 = command_calls(&mut redis).await?;
    let redis_idle_calls: HashMap<String, i64> = calls1
        .iter()
        .map(|(k, v)| (k.clone(), v - calls0.get(k).copied().unwrap_or(0)))
        .filter(|(k, v)| *v > 0 && k != "info")
        .collect();
    let after = Usage::read(&ctx.pids)?;
    let (sock1, tcp_mem) = sockstat()?;
    let slab1 = slabs()?;
    let box1 = box_in_use_mib()?;
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(&mut redis)
        .await?;
    let redis_mem = info
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    let worker_rss: u64 = children
        .iter()
        .filter_map(|c| crate::proc_stats::rss_kib(c.id()).ok())
        .sum();
    let sockets = sock1 - sock0;
    let slab_delta: HashMap<String, f64> = slab1
        .iter()
        .map(|(k, v)| {
            let d = v - slab0.get(k).copied().unwrap_or(0);
            (k.clone(), d as f64 / 1_048_576.0)
        })
        .collect();
    let slab_total: f64 = slab_delta.values().sum::<f64>() * 1_048_576.0;
    let hub_cpu = after.cpu_since(&at_rest) / idle;
    // The active share of every tenant interacts once.
    for (shared, _) in &boards {
        shared
            .measuring
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let went = Instant::now();
    let [lost, lost_active, lost_closed, gone] = tell_all(&mut children, &mut outs, "go", "went")?;
    let want = |online: bool| {
        boards.iter().all(|(s, _)| {
            let (on, off) = s.counts();
            if online {
                on >= active
            } else {
                off >= active
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(180);
    while !want(true) && Instant::now() < deadline && !ctx.stop.stopped() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let online_seen = went.elapsed().as_secs_f64();
    while !want(false) && Instant::now() < deadline && !ctx.stop.stopped() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let offline_seen = went.elapsed().as_secs_f64();
    // A little longer: a spurious late transition would show.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = done_tx.send(true);
    let (mut missing, mut spurious) = (0u64, 0u64);
    for (&t, (_, handles)) in sampled.iter().zip(boards) {
        for h in handles {
            let seen = h.await?;
            // Which users a dashboard missed, to look them up in the logs.
            for u in 0..active {
                let (on, off) = (seen.online_arrival_ms[u], seen.offline_arrival_ms[u]);
                if on == 0 || off == 0 {
                    eprintln!(
                        "{} u{u} (global user {}): online seen {}, offline seen {}; dashboard closed: {}, {}; user at v{} online {}",
                        tenant(t),
                        t * users + u,
                        on > 0,
                        off > 0,
                        seen.closed,
                        seen.view.integrity.line(),
                        seen.view.v[u],
                        seen.view.online[u]
                    );
                }
            }
            let (on, off) = (seen.online_deltas as i64, seen.offline_deltas as i64);
            let want = active as i64;
            missing += ((want - on).max(0) + (want - off).max(0)) as u64;
            spurious += ((on - want).max(0) + (off - want).max(0)) as u64;
            for (i, at) in seen.offline_arrival_ms.iter().enumerate() {
                if i >= active && *at > 0 {
                    spurious += 1;
                }
            }
        }
    }
    let [ended_in_phase, ended_active_in_phase, _, gone_in_phase] =
        tell_all(&mut children, &mut outs, "close", "closed")?;
    for c in &mut children {
        let _ = c.wait();
    }
    let rss_total: u64 = after.rss_total_kib();
    let rss_before: u64 = before.rss_total_kib();
    let r = Report {
        hubs: ctx.hubs.len(),
        workers,
        tenants,
        users_per_tenant: users,
        tabs: opened,
        connect_secs,
        tabs_per_sec: opened as f64 / connect_secs,
        handshakes_retried: retried,
        hub_rss_total_mib: rss_total as f64 / 1024.0,
        hub_rss_per_tab_kib: rss_total.saturating_sub(rss_before) as f64 / opened.max(1) as f64,
        worker_rss_total_mib: worker_rss as f64 / 1024.0,
        sockets_in_use: sockets,
        tcp_mem_pages: tcp_mem,
        slab_bytes_per_socket: slab_total / sockets.max(1) as f64,
        slab_per_cache_mib: slab_delta,
        box_in_use_before_mib: box0,
        box_in_use_after_mib: box1,
        redis_used_memory_mib: redis_mem / 1_048_576.0,
        idle_secs: idle,
        redis_ops_per_sec_idle: c1.saturating_sub(c0).saturating_sub(1) as f64 / idle,
        redis_idle_calls,
        hub_cpu_per_sec_idle: hub_cpu,
        hub_cpu_us_per_tab_sec_idle: hub_cpu * 1e6 / opened.max(1) as f64,
        sampled_tenants: sampled.len(),
        active_per_tenant: active,
        online_seen_secs: online_seen,
        offline_seen_secs: offline_seen,
        missing,
        spurious,
        tabs_lost_before: lost,
        active_tabs_lost_before: lost_active,
        tabs_closed_before: lost_closed,
        tabs_lost_during: ended_in_phase,
        active_tabs_lost_during: ended_active_in_phase,
        tabs_not_reconnected: gone + gone_in_phase,
    };
    emit(
        "million",
        ctx.stop.stopped() || opened < total,
        &[
            ("hubs / workers", format!("{} / {}", r.hubs, r.workers)),
            (
                "tabs",
                format!(
                    "{} in {:.1} s ({:.0}/s), {} handshakes retried after 1013",
                    r.tabs, r.connect_secs, r.tabs_per_sec, r.handshakes_retried
                ),
            ),
            (
                "hub RSS",
                format!(
                    "{:.0} MiB in all, {:.2} KiB per tab",
                    r.hub_rss_total_mib, r.hub_rss_per_tab_kib
                ),
            ),
            ("load generator RSS", format!("{:.0} MiB", r.worker_rss_total_mib)),
            (
                "kernel",
                format!(
                    "{} sockets, {:.0} B of slab per socket, TCP mem {} pages",
                    r.sockets_in_use, r.slab_bytes_per_socket, r.tcp_mem_pages
                ),
            ),
            (
                "box in use",
                format!("{:.0} → {:.0} MiB", r.box_in_use_before_mib, r.box_in_use_after_mib),
            ),
            (
                "Redis at idle",
                format!(
                    "{:.0} commands/s, {:.1} MiB",
                    r.redis_ops_per_sec_idle, r.redis_used_memory_mib
                ),
            ),
            (
                "hub CPU at idle",
                format!(
                    "{:.3} s/s, {:.3} µs per tab per s",
                    r.hub_cpu_per_sec_idle, r.hub_cpu_us_per_tab_sec_idle
                ),
            ),
            (
                "active phase",
                format!(
                    "{} users of each of {} watched tenants: online seen after {:.1} s, offline after {:.1} s; missing {}, spurious {}",
                    r.active_per_tenant,
                    r.sampled_tenants,
                    r.online_seen_secs,
                    r.offline_seen_secs,
                    r.missing,
                    r.spurious
                ),
            ),
            (
                "tabs the hubs ended",
                format!(
                    "before the phase {} ({} of active users, {} with a close frame); during it {} ({} active); {} could not reconnect",
                    r.tabs_lost_before,
                    r.active_tabs_lost_before,
                    r.tabs_closed_before,
                    r.tabs_lost_during,
                    r.active_tabs_lost_during,
                    r.tabs_not_reconnected
                ),
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
