//! What every scenario needs: the admin API to set a tenant up, tokens, the
//! frames tabs send, and the hubs' own figures (from `/proc` and `/metrics`).

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use presence_protocol::{ClientMessage, ReqId, Roster};
use serde::Serialize;

use crate::wire;

/// The admin API of one hub.
pub struct Admin {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Admin {
    pub fn new(hub: SocketAddr, key: &str) -> Admin {
        Admin {
            http: reqwest::Client::new(),
            base: format!("http://{hub}"),
            key: key.to_owned(),
        }
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<()> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req
            .send()
            .await
            .with_context(|| format!("{method} {path}"))?;
        if !r.status().is_success() {
            bail!("{method} {path}: {} {}", r.status(), r.text().await?);
        }
        Ok(())
    }

    /// `PUT /v1/tenants/{tid}/webhooks/{id}` with `body`.
    pub async fn webhook(
        &self,
        tid: &str,
        id: &str,
        body: serde_json::Value,
    ) -> anyhow::Result<()> {
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{tid}/webhooks/{id}"),
            Some(body),
        )
        .await
    }

    pub async fn tenant(&self, tid: &str, user_limit: usize) -> anyhow::Result<()> {
        let body = serde_json::json!({ "user_limit": user_limit as u64 });
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{tid}"),
            Some(body),
        )
        .await
    }

    /// Creates users `(id, profile)` through CSV imports of 10,000 rows.
    pub async fn users(&self, tid: &str, users: &[(String, &str)]) -> anyhow::Result<()> {
        for chunk in users.chunks(10_000) {
            let mut csv = String::from("id;name;email;profile\n");
            for (id, profile) in chunk {
                csv.push_str(&format!("{id};User {id};{id}@load.test;{profile}\n"));
            }
            let r = self
                .http
                .post(format!(
                    "{}/v1/tenants/{tid}/users/import?dry_run=false",
                    self.base
                ))
                .bearer_auth(&self.key)
                .header("content-type", "text/csv")
                .body(csv)
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("import users: {} {}", r.status(), r.text().await?);
            }
        }
        Ok(())
    }

    /// A non-CRM team with these members (16 requests in flight).
    pub async fn team(&self, tid: &str, team: &str, members: &[String]) -> anyhow::Result<()> {
        let body = serde_json::json!({ "name": team, "crm": false, "active": true });
        self.call(
            reqwest::Method::PUT,
            &format!("/v1/tenants/{tid}/teams/{team}"),
            Some(body),
        )
        .await?;
        for chunk in members.chunks(16) {
            let paths: Vec<String> = chunk
                .iter()
                .map(|u| format!("/v1/tenants/{tid}/teams/{team}/members/{u}"))
                .collect();
            let calls = paths.iter().map(|p| {
                self.call(
                    reqwest::Method::PUT,
                    p,
                    Some(serde_json::json!({ "as": "member" })),
                )
            });
            for r in futures_util::future::join_all(calls).await {
                r?;
            }
        }
        Ok(())
    }

    /// Waits until this hub knows the user (cluster mode: the directory
    /// reaches other nodes through Redis).
    pub async fn wait_user(&self, tid: &str, uid: &str) -> anyhow::Result<()> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let r = self
                .http
                .get(format!("{}/v1/tenants/{tid}/users/{uid}", self.base))
                .bearer_auth(&self.key)
                .send()
                .await?;
            if r.status().is_success() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!("{} never saw user {uid}", self.base);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// A counter or gauge from the hub's `/metrics` (labels summed; 0 when
    /// absent).
    pub async fn metric(&self, name: &str) -> anyhow::Result<f64> {
        Ok(metric_in(&self.metrics_text().await?, name).unwrap_or(0.0))
    }

    /// The hub's `/metrics` text.
    pub async fn metrics_text(&self) -> anyhow::Result<String> {
        Ok(self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await?
            .text()
            .await?)
    }
}

/// A counter or gauge from Prometheus text, labels summed; `None` when the
/// hub does not export it.
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for l in text.lines().filter(|l| {
        l.strip_prefix(name)
            .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
    }) {
        if let Some(v) = l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) {
            *found.get_or_insert(0.0) += v;
        }
    }
    found
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    tid: &'a str,
    exp: u64,
}

/// Mints HS256 tokens valid for two hours.
pub struct Tokens {
    key: jsonwebtoken::EncodingKey,
    exp: u64,
}

impl Tokens {
    pub fn new(secret: &str) -> Tokens {
        Tokens {
            key: jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            exp: now_ms() / 1000 + 7200,
        }
    }

    pub fn mint(&self, tid: &str, sub: &str) -> String {
        let c = Claims {
            sub,
            tid,
            exp: self.exp,
        };
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &c, &self.key)
            .expect("HS256 signing cannot fail")
    }
}

/// The `hello` payload. `idle_ms` at or beyond the idle timeout connects a
/// tab without proving interaction (a dashboard that only watches).
pub fn hello(token: String, idle_ms: u64) -> Vec<u8> {
    hello_tab(token, uuid::Uuid::new_v4(), idle_ms)
}

/// The same, for a given tab id (a reload keeps its tab).
pub fn hello_tab(token: String, tab: uuid::Uuid, idle_ms: u64) -> Vec<u8> {
    serde_json::to_vec(&ClientMessage::Hello {
        token,
        tab,
        idle_ms,
        client: Some("loadtest/0.1".into()),
    })
    .expect("serialisable")
}

pub fn subscribe_frame(id: u64, roster: Roster) -> Vec<u8> {
    wire::text_frame(
        &serde_json::to_vec(&ClientMessage::Subscribe {
            id: ReqId::Num(id),
            roster,
        })
        .expect("serialisable"),
    )
}

pub fn activity_frame(idle_ms: u64) -> Vec<u8> {
    wire::text_frame(
        &serde_json::to_vec(&ClientMessage::Activity { idle_ms }).expect("serialisable"),
    )
}

pub fn logout_frame() -> Vec<u8> {
    wire::text_frame(&serde_json::to_vec(&ClientMessage::Logout).expect("serialisable"))
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as u64
}

/// The idle timeout the hub announced in `welcome`.
pub fn idle_timeout_ms(welcome: &[u8]) -> anyhow::Result<u64> {
    let v: serde_json::Value = serde_json::from_slice(welcome)?;
    v["idle_timeout_ms"]
        .as_u64()
        .context("welcome without idle_timeout_ms")
}

/// RSS and CPU time of the hub processes.
#[derive(Debug, Clone, Serialize)]
pub struct Usage {
    pub rss_kib: Vec<u64>,
    pub cpu_secs: Vec<f64>,
}

impl Usage {
    pub fn read(pids: &[u32]) -> anyhow::Result<Usage> {
        let mut u = Usage {
            rss_kib: Vec::new(),
            cpu_secs: Vec::new(),
        };
        for &p in pids {
            u.rss_kib.push(crate::proc_stats::rss_kib(p)?);
            u.cpu_secs.push(crate::proc_stats::cpu_secs(p)?);
        }
        Ok(u)
    }

    pub fn cpu_since(&self, before: &Usage) -> f64 {
        self.cpu_secs.iter().sum::<f64>() - before.cpu_secs.iter().sum::<f64>()
    }

    pub fn rss_total_kib(&self) -> u64 {
        self.rss_kib.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_found_by_exact_name_and_summed_over_labels() {
        let text = "# HELP presence_open_tabs x\npresence_open_tabs 12\n\
                    presence_open_tabs_other 5\n\
                    presence_rejected_frames_total{reason=\"a\"} 2\n\
                    presence_rejected_frames_total{reason=\"b\"} 3\n";
        assert_eq!(metric_in(text, "presence_open_tabs"), Some(12.0));
        assert_eq!(metric_in(text, "presence_rejected_frames_total"), Some(5.0));
        assert_eq!(metric_in(text, "presence_registered_tabs"), None);
    }
}
