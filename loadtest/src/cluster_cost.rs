//! The `cluster-cost` scenario: what cluster mode costs Redis, and how fast a
//! transition crosses nodes. Tabs connect to one hub and keep interacting; an
//! administrator watches the directory on another hub.
//!
//! Measured: Redis commands per transition (while the tabs come online),
//! Redis commands per second per 1,000 active users (while they only keep
//! interacting), and the latency from a tab's `hello` on node A to the
//! `presence` online delta at the watcher on node B.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use presence_protocol::{ClientMessage, ReqId, Roster, ServerMessage, Status};
use serde::Serialize;
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tabs: usize,
    /// Commands Redis executed per transition, script internals included.
    pub redis_commands_per_transition: f64,
    /// Script calls (round trips) per transition: operations are batched.
    pub script_calls_per_transition: f64,
    pub steady_secs: f64,
    pub redis_commands_per_sec_per_1000_active: f64,
    pub script_calls_per_sec_per_1000_active: f64,
    pub cross_node_latency_ms: Latency,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub count: u64,
}

/// Commands Redis executed (those inside scripts included) and script calls
/// (the round trips that carry presence operations).
pub async fn redis_commands(
    conn: &mut redis::aio::MultiplexedConnection,
) -> anyhow::Result<(u64, u64)> {
    let info: String = redis::cmd("INFO").arg("all").query_async(conn).await?;
    let total = info
        .lines()
        .find_map(|l| l.strip_prefix("total_commands_processed:"))
        .and_then(|v| v.trim().parse().ok())
        .context("no total_commands_processed in INFO")?;
    let scripts = info
        .lines()
        .filter_map(|l| {
            l.strip_prefix("cmdstat_evalsha:calls=")
                .or_else(|| l.strip_prefix("cmdstat_eval:calls="))
        })
        .filter_map(|v| v.split(',').next()?.parse::<u64>().ok())
        .sum();
    Ok((total, scripts))
}

#[allow(clippy::too_many_arguments)]
pub async fn run(
    a: SocketAddr,
    b: SocketAddr,
    redis_url: &str,
    admin_key: &str,
    jwt_secret: &str,
    tabs: usize,
    steady: Duration,
    activity_every: Duration,
    source: IpAddr,
) -> anyhow::Result<Report> {
    const TENANT: &str = "clustercost";
    let admin = crate::common::Admin::new(a, admin_key);
    admin.tenant(TENANT, tabs + 10).await?;
    let mut rows: Vec<(String, &str)> = vec![("watcher".into(), "admin")];
    rows.extend((0..tabs).map(|i| (format!("u{i}"), "standard")));
    admin.users(TENANT, &rows).await?;
    // The directory reaches node B through Redis.
    crate::common::Admin::new(b, admin_key)
        .wait_user(TENANT, &format!("u{}", tabs - 1))
        .await?;
    let tokens = crate::common::Tokens::new(jwt_secret);

    // The watcher on B.
    let mut watcher = crate::tab::open(b, source, &tokens.mint(TENANT, "watcher")).await?;
    let sub = ClientMessage::Subscribe {
        id: ReqId::Num(1),
        roster: Roster::Directory,
    };
    watcher
        .send(Message::Text(serde_json::to_string(&sub)?.into()))
        .await?;
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (lat_tx, mut lat_rx) = tokio::sync::mpsc::unbounded_channel::<f64>();
    {
        let sent = sent.clone();
        tokio::spawn(async move {
            while let Some(Ok(Message::Text(t))) = watcher.next().await {
                if let Ok(ServerMessage::Presence {
                    user,
                    status: Status::Online,
                    ..
                }) = serde_json::from_str(&t)
                {
                    if let Some(at) = sent.lock().await.remove(&user) {
                        let _ = lat_tx.send(at.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        });
    }
    let client = redis::Client::open(redis_url)?;
    let mut rc = client.get_multiplexed_async_connection().await?;
    let c0 = redis_commands(&mut rc).await?;
    let mut holders = Vec::new();
    for i in 0..tabs {
        let user = format!("u{i}");
        let t = tokens.mint(TENANT, &user);
        sent.lock().await.insert(user, Instant::now());
        let mut ws = crate::tab::open(a, source, &t).await?;
        holders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(activity_every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let m = ClientMessage::Activity { idle_ms: 0 };
                        let Ok(text) = serde_json::to_string(&m) else { break };
                        if ws.send(Message::Text(text.into())).await.is_err() { break }
                    }
                    m = ws.next() => if !matches!(m, Some(Ok(_))) { break },
                }
            }
        }));
    }
    let mut hist = Histogram::<u64>::new(3)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while hist.len() < tabs as u64 {
        match tokio::time::timeout_at(deadline.into(), lat_rx.recv()).await {
            Ok(Some(ms)) => hist.record((ms * 1000.0) as u64)?,
            _ => bail!("only {} of {tabs} online deltas reached node B", hist.len()),
        }
    }
    let c1 = redis_commands(&mut rc).await?;
    tokio::time::sleep(steady).await;
    let c2 = redis_commands(&mut rc).await?;
    for h in holders {
        h.abort();
    }
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    Ok(Report {
        tabs,
        redis_commands_per_transition: (c1.0 - c0.0) as f64 / tabs as f64,
        script_calls_per_transition: (c1.1 - c0.1) as f64 / tabs as f64,
        steady_secs: steady.as_secs_f64(),
        redis_commands_per_sec_per_1000_active: (c2.0 - c1.0) as f64 / steady.as_secs_f64()
            * 1000.0
            / tabs as f64,
        script_calls_per_sec_per_1000_active: (c2.1 - c1.1) as f64 / steady.as_secs_f64() * 1000.0
            / tabs as f64,
        cross_node_latency_ms: Latency {
            p50: us(0.5),
            p90: us(0.9),
            p99: us(0.99),
            max: hist.max() as f64 / 1000.0,
            count: hist.len(),
        },
    })
}
