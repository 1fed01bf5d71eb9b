//! The ERP's directory sync: many memberships in one `POST .../batch`,
//! against many one-at-a-time `PUT`s. Times the batch (one store commit),
//! the hub CPU it took, and how long until dashboards, on the first hub and
//! on the last one (another node in cluster mode), hold the new rosters.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::{SinkExt, StreamExt};
use presence_protocol::{ClientMessage, ReqId, Roster, ServerMessage};
use serde::Serialize;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::common::Usage;
use crate::tab::{self, Ws};
use crate::Ctx;

const TENANT: &str = "bulk";

#[derive(Serialize)]
struct Report {
    users: usize,
    teams: usize,
    memberships: usize,
    hubs: usize,
    batch_ms: f64,
    batch_us_per_membership: f64,
    batch_hub_cpu_ms: f64,
    /// POST sent → the fresh directory snapshot read by a dashboard on
    /// each hub (the last one is another node in cluster mode).
    directory_snapshot_ms: Vec<f64>,
    /// POST sent → a dashboard on the last hub holds the first team's new
    /// members.
    team_view_ms: f64,
    puts: usize,
    put_ms_each: Option<f64>,
    rss_kib_after: u64,
}

/// A dashboard: the tenant's administrator watching the directory and
/// the first team (subscription ids 1 and 2).
async fn dashboard(ctx: &Ctx, hub: std::net::SocketAddr) -> anyhow::Result<Ws> {
    let token = ctx.tokens.mint(TENANT, "admin");
    let mut ws = tab::open(hub, ctx.sources[0], &token).await?;
    for (id, roster) in [(1, Roster::Directory), (2, Roster::Team("t0".into()))] {
        let m = ClientMessage::Subscribe {
            id: ReqId::Num(id),
            roster,
        };
        ws.send(Message::Text(serde_json::to_string(&m)?.into()))
            .await?;
    }
    let mut snapshots = 0;
    while snapshots < 2 {
        if let ServerMessage::Snapshot { .. } = next(&mut ws).await? {
            snapshots += 1;
        }
    }
    Ok(ws)
}

async fn next(ws: &mut Ws) -> anyhow::Result<ServerMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Err(_) => bail!("the hub said nothing for 60 s"),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(serde_json::from_str(&t)?),
            Ok(Some(Ok(Message::Close(c)))) => bail!("closed: {c:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => bail!("connection ended"),
        }
    }
}

/// Waits until the dashboard holds a directory with `users` entries (a
/// fresh snapshot) and the first team with `members` (a snapshot or the
/// deltas that make it up); returns when each was reached.
async fn until_synced(
    mut ws: Ws,
    start: Instant,
    users: usize,
    members: usize,
) -> anyhow::Result<(f64, f64)> {
    let (mut dir_at, mut team_at) = (None, None);
    let mut team = std::collections::HashSet::new();
    while dir_at.is_none() || team_at.is_none() {
        match next(&mut ws).await? {
            ServerMessage::Snapshot {
                id: ReqId::Num(1),
                users: u,
                ..
            } if u.len() == users => dir_at = Some(start.elapsed()),
            ServerMessage::Snapshot {
                id: ReqId::Num(2),
                users: u,
                ..
            } => team = u.into_iter().map(|e| e.id).collect(),
            ServerMessage::User {
                roster: Roster::Team(_),
                user,
            } => {
                team.insert(user.id);
            }
            ServerMessage::User {
                roster: Roster::Directory,
                ..
            } => bail!("a `user` delta on the directory: expected one fresh snapshot"),
            _ => {}
        }
        if team_at.is_none() && team.len() >= members {
            team_at = Some(start.elapsed());
        }
    }
    let ms = |d: Option<Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    Ok((ms(dir_at), ms(team_at)))
}

pub async fn run(
    ctx: &Ctx,
    users: usize,
    teams: usize,
    memberships: usize,
    puts: usize,
) -> anyhow::Result<()> {
    if teams == 0 || memberships > users * teams {
        bail!("need at least one team, and at most users × teams memberships");
    }
    let admin = ctx.admin();
    admin.tenant(TENANT, users + 1).await?;
    let mut people: Vec<(String, &str)> = vec![("admin".into(), "admin")];
    people.extend((0..users).map(|i| (format!("u{i}"), "standard")));
    admin.users(TENANT, &people).await?;
    for t in 0..teams {
        admin.team(TENANT, &format!("t{t}"), &[]).await?;
    }
    for hub in &ctx.hubs {
        crate::common::Admin::new(*hub, &ctx.admin_key)
            .wait_user(TENANT, &format!("u{}", users - 1))
            .await?;
    }
    // Membership k: user k % users in team (k / users + k) % teams, so a
    // user's teams are distinct and every team gets its share.
    let pair = |k: usize| {
        (
            format!("t{}", (k / users + k) % teams),
            format!("u{}", k % users),
        )
    };
    let first_team = (0..memberships).filter(|&k| pair(k).0 == "t0").count();
    let mut boards = Vec::new();
    for hub in &ctx.hubs {
        boards.push(dashboard(ctx, *hub).await?);
    }
    let items: Vec<Value> = (0..memberships)
        .map(|k| {
            let (team, user) = pair(k);
            json!({"op": "upsert_member", "team": team, "user": user, "as": "member"})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "items": items }))?;
    let http = reqwest::Client::new();
    let before = Usage::read(&ctx.pids)?;
    let start = Instant::now();
    let waits: Vec<_> = boards
        .into_iter()
        .map(|ws| tokio::spawn(until_synced(ws, start, users + 1, first_team)))
        .collect();
    let r = http
        .post(format!("http://{}/v1/tenants/{TENANT}/batch", ctx.hubs[0]))
        .bearer_auth(&ctx.admin_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .context("POST batch")?;
    let batch = start.elapsed();
    let status = r.status();
    let text = r.text().await?;
    if !status.is_success() {
        bail!("batch: {status} {}", &text[..text.len().min(2_000)]);
    }
    let mut directory_snapshot_ms = Vec::new();
    let mut team_view_ms = 0.0;
    for w in waits {
        let (d, t) = w.await??;
        directory_snapshot_ms.push(d);
        team_view_ms = t;
    }
    let after = Usage::read(&ctx.pids)?;
    // The old way, for comparison: one membership per PUT, one at a time,
    // on memberships the batch did not make.
    let put_ms_each = if puts > 0 {
        let extra = admin_team(ctx, "puts").await?;
        let t = Instant::now();
        for i in 0..puts.min(users) {
            let r = http
                .put(format!(
                    "http://{}/v1/tenants/{TENANT}/teams/{extra}/members/u{i}",
                    ctx.hubs[0]
                ))
                .bearer_auth(&ctx.admin_key)
                .json(&json!({"as": "member"}))
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("PUT member: {}", r.status());
            }
        }
        Some(t.elapsed().as_secs_f64() * 1e3 / puts.min(users) as f64)
    } else {
        None
    };
    let rep = Report {
        users,
        teams,
        memberships,
        hubs: ctx.hubs.len(),
        batch_ms: batch.as_secs_f64() * 1e3,
        batch_us_per_membership: batch.as_secs_f64() * 1e6 / memberships.max(1) as f64,
        batch_hub_cpu_ms: after.cpu_since(&before) * 1e3,
        directory_snapshot_ms,
        team_view_ms,
        puts: puts.min(users),
        put_ms_each,
        rss_kib_after: Usage::read(&ctx.pids)?.rss_total_kib(),
    };
    let mut rows = vec![
        (
            "memberships in one batch",
            format!("{memberships} ({users} users, {teams} teams)"),
        ),
        (
            "batch round trip",
            format!(
                "{:.0} ms ({:.1} µs per membership)",
                rep.batch_ms, rep.batch_us_per_membership
            ),
        ),
        (
            "hub CPU during the batch",
            format!("{:.0} ms", rep.batch_hub_cpu_ms),
        ),
        (
            "fresh directory snapshot at",
            format!(
                "{:?} ms (one dashboard per hub)",
                rep.directory_snapshot_ms
                    .iter()
                    .map(|m| m.round())
                    .collect::<Vec<_>>()
            ),
        ),
        (
            "first team complete on the last hub",
            format!("{:.0} ms", rep.team_view_ms),
        ),
    ];
    if let Some(p) = rep.put_ms_each {
        rows.push((
            "one PUT at a time",
            format!(
                "{p:.2} ms each ({} PUTs): {memberships} would take {:.1} s",
                rep.puts,
                p * memberships as f64 / 1e3
            ),
        ));
    }
    crate::report::emit("bulk-sync", false, &rows, &rep, ctx.out.as_deref())
}

async fn admin_team(ctx: &Ctx, team: &str) -> anyhow::Result<String> {
    ctx.admin().team(TENANT, team, &[]).await?;
    Ok(team.to_owned())
}
