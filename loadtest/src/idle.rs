//! The `idle` scenario: many authenticated tabs that then sit idle, to
//! measure what an idle tab costs the hub.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use serde::Serialize;

use crate::proc_stats;
use crate::Target;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tabs: usize,
    pub connect_secs: f64,
    pub tabs_per_sec: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_tab_kib: f64,
    pub hub_cpu_secs_connecting: f64,
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: String,
    tid: &'a str,
    exp: u64,
}

pub async fn run(
    t: &Target,
    tabs: usize,
    sources: &[IpAddr],
    hold: Duration,
) -> anyhow::Result<Report> {
    const TENANT: &str = "loadtest";
    let http = reqwest::Client::new();
    let base = format!("http://{}", t.hub);
    let put = http
        .put(format!("{base}/v1/tenants/{TENANT}"))
        .bearer_auth(&t.admin_key)
        .json(&serde_json::json!({ "user_limit": tabs.max(1) as u64 * 2 }))
        .send()
        .await?;
    if !put.status().is_success() {
        bail!("create tenant: {}", put.status());
    }
    let mut csv = String::from("id;name;email\n");
    for i in 0..tabs {
        csv.push_str(&format!("u{i};User {i};u{i}@load.test\n"));
    }
    let import = http
        .post(format!(
            "{base}/v1/tenants/{TENANT}/users/import?dry_run=false"
        ))
        .bearer_auth(&t.admin_key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    if !import.status().is_success() {
        bail!("import users: {} {}", import.status(), import.text().await?);
    }
    let pid = t.hub_pid.context("the idle scenario needs --hub-pid")?;
    let rss_before = proc_stats::rss_kib(pid)?;
    let cpu_before = proc_stats::cpu_secs(pid)?;
    let exp = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs() + 3600;
    let key = jsonwebtoken::EncodingKey::from_secret(t.jwt_secret.as_bytes());
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<anyhow::Result<()>>(1024);
    let started = Instant::now();
    let mut holders = Vec::with_capacity(tabs);
    for i in 0..tabs {
        let claims = Claims {
            sub: format!("u{i}"),
            tid: TENANT,
            exp,
        };
        let token = jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)?;
        let source = sources[i % sources.len()];
        let (hub, gate, ready) = (t.hub, gate.clone(), ready_tx.clone());
        holders.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            match crate::tab::open(hub, source, &token).await {
                Ok(mut ws) => {
                    drop(permit);
                    let _ = ready.send(Ok(())).await;
                    // Hold the tab open, reading (and discarding) what comes.
                    while let Some(Ok(_)) = ws.next().await {}
                }
                Err(e) => {
                    let _ = ready.send(Err(e)).await;
                }
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..tabs {
        match tokio::time::timeout(Duration::from_secs(60), ready_rx.recv()).await {
            Ok(Some(Ok(()))) => {}
            Ok(Some(Err(e))) => return Err(e.context("a tab was refused")),
            Ok(None) | Err(_) => bail!("tabs did not all connect within 60 s"),
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let cpu_after = proc_stats::cpu_secs(pid)?;
    // Let the hub settle (allocator, lazily allocated buffers) before reading.
    tokio::time::sleep(hold).await;
    let rss_after = proc_stats::rss_kib(pid).context("hub gone")?;
    for h in holders {
        h.abort();
    }
    Ok(Report {
        tabs,
        connect_secs,
        tabs_per_sec: tabs as f64 / connect_secs,
        rss_before_kib: rss_before,
        rss_after_kib: rss_after,
        rss_per_tab_kib: rss_after.saturating_sub(rss_before) as f64 / tabs.max(1) as f64,
        hub_cpu_secs_connecting: cpu_after - cpu_before,
    })
}
