//! The soak's crowd, held by worker processes of this program (a process
//! may hold 20,000 open files here): users who keep interacting, some of
//! whom reload their page now and then, and tabs nobody touches. None of
//! them may ever show a transition after their first online.
//!
//! A worker opens its share of the crowd, prints `ready <tabs> <secs>`,
//! then a `stats <json>` line every second, until a line (or the end) of
//! its standard input tells it to close every tab; it then prints its last
//! `stats` line and `closed`. [`Crowd`] is the parent's side of it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::common::{activity_frame, hello_tab};
use crate::fanout::NO_PROOF_MS;
use crate::report::histogram;
use crate::wire::{self, Frame, Tab};
use crate::Ctx;

/// Tabs per worker process: under the 20,000 open files of a process.
pub const PER_WORKER: usize = 18_000;

/// A worker's share: every `workers`-th index of `population`, starting at
/// `worker`, and what each class does.
#[derive(Debug, Clone, clap::Args)]
pub struct Share {
    #[arg(long)]
    pub worker: usize,
    #[arg(long)]
    pub workers: usize,
    /// First index of the crowd (reloaders come first).
    #[arg(long)]
    pub from: usize,
    #[arg(long)]
    pub reloaders_end: usize,
    #[arg(long)]
    pub steady_end: usize,
    /// End of the crowd (idle tabs from `steady_end`).
    #[arg(long)]
    pub to: usize,
    /// How often an interacting tab reports activity.
    #[arg(long)]
    pub activity_ms: u64,
    /// Average time between two reloads of one reloading tab.
    #[arg(long)]
    pub reload_mean_ms: u64,
    /// The worker ends by itself after this long (its parent is gone).
    #[arg(long)]
    pub bound_secs: u64,
}

impl Share {
    pub fn indices(&self) -> impl Iterator<Item = usize> + '_ {
        (self.from..self.to).filter(|i| (i - self.from) % self.workers.max(1) == self.worker)
    }

    fn role(&self, i: usize) -> Role {
        match i {
            i if i < self.reloaders_end => Role::Reloader,
            i if i < self.steady_end => Role::Steady,
            _ => Role::Idle,
        }
    }

    /// The arguments that give a worker this share.
    pub fn to_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (k, v) in [
            ("--worker", self.worker as u64),
            ("--workers", self.workers as u64),
            ("--from", self.from as u64),
            ("--reloaders-end", self.reloaders_end as u64),
            ("--steady-end", self.steady_end as u64),
            ("--to", self.to as u64),
            ("--activity-ms", self.activity_ms),
            ("--reload-mean-ms", self.reload_mean_ms),
            ("--bound-secs", self.bound_secs),
        ] {
            a.push(k.to_owned());
            a.push(v.to_string());
        }
        a
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Reloader,
    Steady,
    Idle,
}

/// What a worker did so far (cumulative).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Stats {
    pub tabs: u64,
    pub reloads: u64,
    pub reload_failures: u64,
    pub activity_frames: u64,
    /// Close → `welcome` of a reload, ms.
    pub reload_p99_ms: f64,
    pub reload_max_ms: f64,
    /// Tabs the hub ended although nobody asked, by how.
    pub unexpected: BTreeMap<String, u64>,
}

impl Stats {
    pub fn add(&mut self, o: &Stats) {
        self.tabs += o.tabs;
        self.reloads += o.reloads;
        self.reload_failures += o.reload_failures;
        self.activity_frames += o.activity_frames;
        // Across processes only a bound is known: the worst worker's.
        self.reload_p99_ms = self.reload_p99_ms.max(o.reload_p99_ms);
        self.reload_max_ms = self.reload_max_ms.max(o.reload_max_ms);
        for (k, v) in &o.unexpected {
            *self.unexpected.entry(k.clone()).or_default() += v;
        }
    }

    pub fn unexpected_total(&self) -> u64 {
        self.unexpected.values().sum()
    }
}

struct Counters {
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    activity: AtomicU64,
    reload_us: Mutex<hdrhistogram::Histogram<u64>>,
    unexpected: Mutex<BTreeMap<String, u64>>,
}

impl Counters {
    fn stats(&self, tabs: u64) -> Stats {
        let h = self.reload_us.lock().expect("no panic while held");
        Stats {
            tabs,
            reloads: self.reloads.load(Ordering::Relaxed),
            reload_failures: self.reload_failures.load(Ordering::Relaxed),
            activity_frames: self.activity.load(Ordering::Relaxed),
            reload_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
            reload_max_ms: h.max() as f64 / 1000.0,
            unexpected: self.unexpected.lock().expect("no panic while held").clone(),
        }
    }

    fn unexpected(&self, what: String) {
        *self
            .unexpected
            .lock()
            .expect("no panic while held")
            .entry(what)
            .or_default() += 1;
    }
}

/// One crowd tab: who it is and where it connects.
struct Member {
    role: Role,
    hello: Vec<u8>,
    hub: std::net::SocketAddr,
    source: std::net::IpAddr,
}

pub async fn worker(ctx: &Ctx, share: Share) -> anyhow::Result<()> {
    const T: &str = super::TENANT;
    let members: Vec<Member> = share
        .indices()
        .enumerate()
        .map(|(k, i)| {
            let role = share.role(i);
            let proof = if role == Role::Idle { NO_PROOF_MS } else { 0 };
            Member {
                role,
                hello: hello_tab(
                    ctx.tokens.mint(T, &format!("u{i}")),
                    uuid::Uuid::new_v4(),
                    proof,
                ),
                // Where `Plan::open` puts the k-th tab.
                hub: ctx.hubs[k % ctx.hubs.len()],
                source: ctx.sources[k % ctx.sources.len()],
            }
        })
        .collect();
    let hellos = members
        .iter()
        .map(|m| (m.hello.clone(), Vec::new()))
        .collect();
    let opened = ctx.plan().open(hellos, &ctx.stop, "crowd").await?;
    let n = opened.tabs.iter().flatten().count();
    println!("ready {n} {:.3}", opened.secs);
    let counters = Arc::new(Counters {
        reloads: AtomicU64::new(0),
        reload_failures: AtomicU64::new(0),
        activity: AtomicU64::new(0),
        reload_us: Mutex::new(histogram()),
        unexpected: Mutex::new(BTreeMap::new()),
    });
    let (quit_tx, quit_rx) = watch::channel(false);
    let mut tasks = Vec::new();
    for (m, tab) in members.into_iter().zip(opened.tabs) {
        let Some(tab) = tab else { continue };
        tasks.push(tokio::spawn(live(
            m,
            tab,
            share.activity_ms,
            share.reload_mean_ms,
            counters.clone(),
            quit_rx.clone(),
        )));
    }
    let reporter = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                let s = serde_json::to_string(&counters.stats(n as u64)).expect("serialisable");
                println!("stats {s}");
            }
        })
    };
    // Until the parent says so, or is gone (end of input), or the bound.
    let told = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    });
    tokio::select! {
        _ = told => {}
        _ = tokio::time::sleep(Duration::from_secs(share.bound_secs)) => {
            eprintln!("soak worker: time bound reached, closing");
        }
    }
    reporter.abort();
    let _ = quit_tx.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(20),
        futures_util::future::join_all(tasks),
    )
    .await;
    let s = serde_json::to_string(&counters.stats(n as u64))?;
    println!("stats {s}");
    println!("closed");
    Ok(())
}

/// What woke a crowd tab.
enum Event {
    Quit,
    Activity,
    Reload,
    Lost(String),
}

/// One tab for the whole run: activity every `activity_ms` (from a random
/// phase) unless idle, reloads at exponential intervals averaging
/// `reload_mean_ms` if a reloader; a tab the hub ends is counted and
/// reopened. Closes with 1000 on `quit`.
async fn live(
    m: Member,
    mut tab: Tab,
    activity_ms: u64,
    reload_mean_ms: u64,
    counters: Arc<Counters>,
    mut quit: watch::Receiver<bool>,
) {
    let frame = activity_frame(0);
    let period = Duration::from_millis(activity_ms.max(100));
    let now = tokio::time::Instant::now;
    let far = now() + Duration::from_secs(365 * 86_400);
    let mut next_activity = if m.role == Role::Idle {
        far
    } else {
        now() + Duration::from_millis(rand::rng().random_range(0..period.as_millis() as u64))
    };
    let reload_in = || {
        let u: f64 = rand::rng().random();
        // A year stands for never (no reloads asked for).
        let ms = super::plan::reload_wait_ms(reload_mean_ms, u).min(365 * 86_400_000);
        Duration::from_millis(ms)
    };
    let mut next_reload = if m.role == Role::Reloader {
        now() + reload_in()
    } else {
        far
    };
    loop {
        let event = tokio::select! {
            _ = quit.changed() => Event::Quit,
            _ = tokio::time::sleep_until(next_activity) => Event::Activity,
            _ = tokio::time::sleep_until(next_reload) => Event::Reload,
            f = tab.reader.next() => match f {
                Ok(Some(Frame::Close(code))) => Event::Lost(format!("closed with {code}")),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => Event::Lost("connection lost".into()),
            },
        };
        match event {
            Event::Quit => {
                let _ = tab.writer.write_all(&wire::close_frame()).await;
                return;
            }
            Event::Activity => {
                next_activity += period;
                if tab.writer.write_all(&frame).await.is_ok() {
                    counters.activity.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                counters.unexpected("write failed".into());
            }
            Event::Reload => {
                next_reload = now() + reload_in();
                // The page goes away, the next one connects with the same tab.
                let t0 = Instant::now();
                let _ = tab.writer.write_all(&wire::close_frame()).await;
                drop(tab);
                tab = match reopen(&m, &counters, &mut quit).await {
                    Some(t) => t,
                    None => return,
                };
                counters.reloads.fetch_add(1, Ordering::Relaxed);
                let us = t0.elapsed().as_micros() as u64;
                let _ = counters
                    .reload_us
                    .lock()
                    .expect("no panic while held")
                    .record(us.max(1));
                continue;
            }
            Event::Lost(how) => counters.unexpected(how),
        }
        drop(tab);
        tab = match reopen(&m, &counters, &mut quit).await {
            Some(t) => t,
            None => return,
        };
    }
}

/// Connects again with the same tab id; retries each second (counting
/// failures) until it works or `quit`.
async fn reopen(m: &Member, counters: &Counters, quit: &mut watch::Receiver<bool>) -> Option<Tab> {
    loop {
        if *quit.borrow() {
            return None;
        }
        match tokio::time::timeout(
            Duration::from_secs(5),
            wire::open(m.hub, m.source, &m.hello),
        )
        .await
        {
            Ok(Ok(t)) => return Some(t),
            _ => {
                counters.reload_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = quit.changed() => return None,
        }
    }
}

/// What a worker process says on its standard output.
enum Said {
    Ready(u64),
    Closed,
    Gone,
}

/// The crowd's worker processes and what they last said.
pub struct Crowd {
    children: Vec<Child>,
    said: mpsc::Receiver<(usize, Said)>,
    stats: Arc<Mutex<Vec<Stats>>>,
}

impl Crowd {
    pub fn start(ctx: &Ctx, shares: &[Share]) -> anyhow::Result<Crowd> {
        let exe = std::env::current_exe()?;
        let list = |v: Vec<String>| v.join(",");
        let (tx, said) = mpsc::channel();
        let stats = Arc::new(Mutex::new(vec![Stats::default(); shares.len()]));
        let mut children = Vec::new();
        for (w, share) in shares.iter().enumerate() {
            let mut child = Command::new(&exe)
                .env("PRESENCE_ADMIN_KEY", &ctx.admin_key)
                .env("PRESENCE_JWT_SECRET", &ctx.jwt_secret)
                .arg("--hub")
                .arg(list(ctx.hubs.iter().map(|h| h.to_string()).collect()))
                .arg("--sources")
                .arg(list(ctx.sources.iter().map(|s| s.to_string()).collect()))
                .arg("--in-flight")
                .arg(ctx.in_flight.to_string())
                .arg("soak-worker")
                .args(share.to_args())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()?;
            let out = BufReader::new(child.stdout.take().expect("piped"));
            let (tx, stats) = (tx.clone(), stats.clone());
            std::thread::spawn(move || {
                for line in out.lines() {
                    let Ok(line) = line else { break };
                    if let Some(j) = line.strip_prefix("stats ") {
                        if let Ok(s) = serde_json::from_str::<Stats>(j) {
                            stats.lock().expect("no panic while held")[w] = s;
                        }
                    } else if let Some(r) = line.strip_prefix("ready ") {
                        let n = r.split_whitespace().next().and_then(|n| n.parse().ok());
                        let _ = tx.send((w, Said::Ready(n.unwrap_or(0))));
                    } else if line == "closed" {
                        let _ = tx.send((w, Said::Closed));
                    }
                }
                let _ = tx.send((w, Said::Gone));
            });
            children.push(child);
        }
        Ok(Crowd {
            children,
            said,
            stats,
        })
    }

    /// Waits until each worker said `what` (or is gone), at most `limit`;
    /// returns the tabs they reported ready.
    pub fn wait_all(&self, ready: bool, limit: Duration) -> anyhow::Result<u64> {
        let deadline = std::time::Instant::now() + limit;
        let mut pending = self.children.len();
        let mut tabs = 0;
        while pending > 0 {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let (w, said) = tokio::task::block_in_place(|| self.said.recv_timeout(left))
                .map_err(|_| anyhow::anyhow!("the crowd's workers did not answer in time"))?;
            match said {
                Said::Ready(n) if ready => tabs += n,
                Said::Closed if !ready => {}
                Said::Gone if ready => anyhow::bail!("crowd worker {w} failed before it was ready"),
                Said::Gone => {}
                _ => continue,
            }
            pending -= 1;
        }
        Ok(tabs)
    }

    pub fn stats(&self) -> Stats {
        let mut all = Stats::default();
        for s in self.stats.lock().expect("no panic while held").iter() {
            all.add(s);
        }
        all
    }

    /// Tells every worker to close its tabs and waits for them.
    pub fn close(mut self) -> Stats {
        for c in &mut self.children {
            if let Some(mut i) = c.stdin.take() {
                let _ = writeln!(i, "close");
            }
        }
        if let Err(e) = self.wait_all(false, Duration::from_secs(40)) {
            eprintln!("{e}");
        }
        for c in &mut self.children {
            let _ = c.wait();
        }
        self.stats()
    }
}
