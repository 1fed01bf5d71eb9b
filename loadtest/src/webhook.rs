//! `webhook`: many users interact once within the same second and then go
//! idle together, with the tenant's feed pushed to one webhook received
//! here (a real HTTP/1.1 server on 127.0.0.1). Reports, for the burst of
//! `idle` events, the time from each user's deadline (the event's `at`) to
//! its delivery, the events per second through the one webhook, the hub's
//! CPU and (with `--redis-url`) the Redis commands and bytes it took; with
//! `--no-webhook` the same burst without a webhook, for the difference.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::common::{activity_frame, hello, now_ms, Usage};
use crate::fanout::NO_PROOF_MS;
use crate::report::{emit, Latency};
use crate::Ctx;

#[derive(Debug, Serialize)]
pub struct Report {
    pub users: usize,
    pub webhook: bool,
    pub idle_timeout_ms: u64,
    pub activity_spread_ms: u64,
    /// `idle` events acknowledged by the receiver (distinct ids).
    pub idle_events_delivered: u64,
    pub duplicates: u64,
    /// Events of one user that arrived out of `v` order.
    pub out_of_order: u64,
    pub requests: u64,
    pub events_per_request: f64,
    /// Arrival minus the event's `at` (the user's deadline), every `idle` event.
    pub deadline_to_delivery_ms: Latency,
    /// `idle` events over the time from the first deadline to the last delivery.
    pub events_per_sec: f64,
    pub hub_cpu_secs_for_burst: f64,
    pub hub_cpu_us_per_event: f64,
    pub redis_commands_for_burst: Option<u64>,
    pub redis_input_bytes_for_burst: Option<u64>,
}

#[derive(Default)]
struct Got {
    requests: u64,
    /// id → (arrival ms, at, user, v); the first arrival.
    events: HashMap<String, (u64, u64, String, u64)>,
    duplicates: u64,
    out_of_order: u64,
    last_v: HashMap<String, u64>,
}

async fn receive(listener: tokio::net::TcpListener, got: Arc<Mutex<Got>>) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let got = got.clone();
        tokio::spawn(async move {
            let svc =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let got = got.clone();
                    async move {
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let arrival = now_ms();
                        let v: serde_json::Value =
                            serde_json::from_slice(&body).unwrap_or_default();
                        let mut g = got.lock().unwrap();
                        g.requests += 1;
                        for e in v["events"].as_array().into_iter().flatten() {
                            let id = e["id"].as_str().unwrap_or_default().to_owned();
                            let user = e["user"].as_str().unwrap_or_default().to_owned();
                            let ev = e["v"].as_u64().unwrap_or(0);
                            if g.events.contains_key(&id) {
                                g.duplicates += 1;
                                continue;
                            }
                            let last = g.last_v.insert(user.clone(), ev).unwrap_or(0);
                            if ev <= last {
                                g.out_of_order += 1;
                            }
                            let status = e["status"].as_str().unwrap_or_default();
                            let at = if status == "offline" {
                                e["at"].as_u64().unwrap_or(0)
                            } else {
                                0
                            };
                            g.events.insert(id, (arrival, at, user, ev));
                        }
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(String::new()))
                    }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(sock), svc)
                .await;
        });
    }
}

fn redis_stats(url: &str) -> anyhow::Result<(u64, u64)> {
    let client = redis::Client::open(url)?;
    let mut c = client.get_connection()?;
    let info: String = redis::cmd("INFO").arg("stats").query(&mut c)?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((
        field("total_commands_processed"),
        field("total_net_input_bytes"),
    ))
}

pub async fn run(
    ctx: &Ctx,
    users: usize,
    spread_ms: u64,
    webhook: bool,
    redis_url: Option<&str>,
) -> anyhow::Result<()> {
    const T: &str = "webhook";
    let admin = ctx.admin();
    admin.tenant(T, users + 10).await?;
    let rows: Vec<(String, &str)> = (0..users).map(|i| (format!("u{i}"), "standard")).collect();
    admin.users(T, &rows).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let got = Arc::new(Mutex::new(Got::default()));
    tokio::spawn(receive(listener, got.clone()));
    if webhook {
        admin
            .webhook(
                T,
                "bench",
                serde_json::json!({
                    "url": format!("http://{addr}/hook"),
                    "secret": "bench-webhook-secret-0123",
                }),
            )
            .await?;
    }
    let hellos = (0..users)
        .map(|i| {
            (
                hello(ctx.tokens.mint(T, &format!("u{i}")), NO_PROOF_MS),
                Vec::new(),
            )
        })
        .collect();
    let opened = ctx.plan().open(hellos, &ctx.stop, "tabs").await?;
    let mut timeout_ms = 0;
    let mut writers = Vec::new();
    for tab in opened.tabs.into_iter().flatten() {
        if timeout_ms == 0 {
            timeout_ms = crate::common::idle_timeout_ms(&tab.welcome)?;
        }
        let mut reader = tab.reader;
        tokio::spawn(async move { while let Ok(Some(_)) = reader.next().await {} });
        writers.push(tab.writer);
    }
    let frame = activity_frame(0);
    let start = tokio::time::Instant::now();
    let n = writers.len().max(1);
    let first_send = now_ms();
    for (k, w) in writers.iter_mut().enumerate() {
        let at = start + Duration::from_micros(spread_ms * 1000 * k as u64 / n as u64);
        if tokio::time::Instant::now() < at {
            tokio::time::sleep_until(at).await;
        }
        w.write_all(&frame).await?;
    }
    let last_send = now_ms();
    // Measure from just before the first deadline to a while after the last.
    let progress = crate::control::timer(timeout_ms / 1000 + 12, "waiting");
    while now_ms() + 500 < first_send + timeout_ms && !ctx.stop.stopped() {
        ctx.stop.sleep(Duration::from_millis(50)).await;
        progress.set_position(now_ms().saturating_sub(last_send) / 1000);
    }
    let cpu_before = Usage::read(&ctx.pids)?;
    let redis_before = redis_url.map(redis_stats).transpose()?;
    let idle_count = || {
        got.lock()
            .unwrap()
            .events
            .values()
            .filter(|(_, at, _, _)| *at > 0)
            .count()
    };
    let wait_until = last_send + timeout_ms + 10_000;
    while now_ms() < wait_until && !ctx.stop.stopped() {
        if webhook && idle_count() >= writers.len() {
            break;
        }
        ctx.stop.sleep(Duration::from_millis(20)).await;
        progress.set_position(now_ms().saturating_sub(last_send) / 1000);
    }
    {
        // One window for both runs (the last deadline plus 1 s, or longer
        // while deliveries go on), so their CPU compares.
        let until = last_send + timeout_ms + 1_000;
        while now_ms() < until && !ctx.stop.stopped() {
            ctx.stop.sleep(Duration::from_millis(20)).await;
        }
    }
    progress.finish_and_clear();
    let cpu = Usage::read(&ctx.pids)?.cpu_since(&cpu_before);
    let redis_after = redis_url.map(redis_stats).transpose()?;
    let g = got.lock().unwrap();
    let mut hist = crate::report::histogram();
    let (mut first_deadline, mut last_arrival, mut idle) = (u64::MAX, 0, 0u64);
    for (arrival, at, _, _) in g.events.values() {
        if *at == 0 {
            continue;
        }
        idle += 1;
        first_deadline = first_deadline.min(*at);
        last_arrival = last_arrival.max(*arrival);
        hist.record((arrival.saturating_sub(*at) * 1000).max(1))?;
    }
    let span_s = (last_arrival.saturating_sub(first_deadline)) as f64 / 1000.0;
    let r = Report {
        users: writers.len(),
        webhook,
        idle_timeout_ms: timeout_ms,
        activity_spread_ms: spread_ms,
        idle_events_delivered: idle,
        duplicates: g.duplicates,
        out_of_order: g.out_of_order,
        requests: g.requests,
        events_per_request: g.events.len() as f64 / g.requests.max(1) as f64,
        deadline_to_delivery_ms: Latency::of(&hist),
        events_per_sec: if span_s > 0.0 {
            idle as f64 / span_s
        } else {
            0.0
        },
        hub_cpu_secs_for_burst: cpu,
        hub_cpu_us_per_event: cpu * 1e6 / writers.len().max(1) as f64,
        redis_commands_for_burst: redis_before.zip(redis_after).map(|(b, a)| a.0 - b.0),
        redis_input_bytes_for_burst: redis_before.zip(redis_after).map(|(b, a)| a.1 - b.1),
    };
    drop(g);
    emit(
        "webhook",
        ctx.stop.stopped(),
        &[
            (
                "users",
                format!(
                    "{} interacting once within {spread_ms} ms, webhook: {webhook}",
                    r.users
                ),
            ),
            (
                "idle events delivered",
                format!(
                    "{} (duplicates {}, out of order {}) in {} requests ({:.1} events each)",
                    r.idle_events_delivered,
                    r.duplicates,
                    r.out_of_order,
                    r.requests,
                    r.events_per_request
                ),
            ),
            ("deadline → delivery", r.deadline_to_delivery_ms.line()),
            (
                "events/s through the webhook",
                format!("{:.0}", r.events_per_sec),
            ),
            (
                "hub CPU for the burst",
                format!(
                    "{:.2} s ({:.1} µs per user)",
                    r.hub_cpu_secs_for_burst, r.hub_cpu_us_per_event
                ),
            ),
            (
                "Redis for the burst",
                match (r.redis_commands_for_burst, r.redis_input_bytes_for_burst) {
                    (Some(c), Some(b)) => format!("{c} commands, {b} bytes in"),
                    _ => "not measured (no --redis-url)".into(),
                },
            ),
        ],
        &r,
        ctx.out.as_deref(),
    )
}
