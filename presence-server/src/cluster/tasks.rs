//! Cluster mode's presence I/O: runs the operations tenants queue against
//! `cluster/presence.lua`, feeds the events Redis publishes back into the
//! tenants, heartbeats this node, and sweeps the leases of dead nodes.
//!
//! Invariant: no tenant lock is held across a Redis call. Tenants only push
//! into an unbounded queue; this module's tasks do the I/O and take a tenant
//! lock only to apply an event.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::{AsyncCommands, Script};
use tokio::sync::mpsc;

use crate::cluster::link::{ClusterHandle, ClusterMsg, PresenceEvent, PresenceOp};
use crate::hub::Hub;
use crate::store::redis_conn::RedisConn;

/// Channel every transition is published on.
pub const EVENTS_CHANNEL: &str = "presence:events";
/// Sorted set: node id → last heartbeat (ms).
pub const NODES_KEY: &str = "presence:nodes";
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is dead.
const DEAD_AFTER_MS: u64 = 5_000;

/// The keys of a tenant's cluster presence, hash-tagged by tenant so the
/// script's keys share one Redis Cluster slot.
pub fn presence_keys(tenant: &str) -> [String; 4] {
    ["leases", "state", "claims", "seq"].map(|k| crate::store::redis::tenant_key(tenant, k))
}

/// A handle for the tenants and the queue the cluster task drains.
pub fn channel(
    node: &str,
    idle_timeout: Duration,
) -> (ClusterHandle, mpsc::UnboundedReceiver<ClusterMsg>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let up = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // One renewal per active user per 20 s at most, and at least three per
    // idle timeout so short test timeouts still renew in time.
    let renew_ms = (idle_timeout.as_millis() as u64 / 3).clamp(1, 20_000);
    (
        ClusterHandle {
            node: Arc::from(node),
            ops: tx,
            renew_ms,
            up,
        },
        rx,
    )
}

/// Runs the cluster duties until the node begins to stop. The operation
/// queue keeps draining after that (a duty of its own, dropped at the
/// shutdown deadline), so the shutdown hand-off reaches Redis.
pub async fn run(hub: Arc<Hub>, url: String, ops: mpsc::UnboundedReceiver<ClusterMsg>) {
    hub.spawn(run_ops(url.clone(), ops));
    // Pub/sub needs a connection of its own. In a Redis Cluster, PUBLISH
    // reaches every node, so subscribing on the node of the URL suffices.
    let client = match redis::Client::open(url.as_str()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "invalid Redis URL");
            return;
        }
    };
    tokio::select! {
        _ = run_events(hub.clone(), client, url.clone()) => {}
        _ = run_heartbeat(hub.clone(), url) => {}
        _ = hub.stopping() => {}
    }
}

/// Connects (to a single Redis or a Redis Cluster), retrying until it works.
async fn connect(url: &str) -> RedisConn {
    loop {
        match RedisConn::connect(url).await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "redis unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
}

/// Drains the queue in batches: one script call per tenant per batch.
/// A failed call is retried (every operation is idempotent), so nothing a
/// tenant queued is lost while Redis is away.
async fn run_ops(url: String, mut rx: mpsc::UnboundedReceiver<ClusterMsg>) {
    let script = Script::new(include_str!("presence.lua"));
    let mut conn = connect(&url).await;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 1_000 {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut per_tenant: Vec<(String, Vec<PresenceOp>)> = Vec::new();
        let mut flushes = Vec::new();
        for m in batch {
            match m {
                ClusterMsg::Op { tenant, op } => {
                    match per_tenant.iter_mut().find(|(t, _)| *t == tenant) {
                        Some((_, ops)) => ops.push(op),
                        None => per_tenant.push((tenant, vec![op])),
                    }
                }
                ClusterMsg::Flush(done) => flushes.push(done),
            }
        }
        for (tenant, ops) in per_tenant {
            // Serialising plain structs of strings and numbers cannot fail.
            let json = serde_json::to_string(&ops).expect("ops serialise");
            let keys = presence_keys(&tenant);
            loop {
                let mut call = script.prepare_invoke();
                for k in &keys {
                    call.key(k);
                }
                call.arg(&tenant).arg(EVENTS_CHANNEL).arg(&json);
                match call.invoke_async::<i64>(&mut conn).await {
                    Ok(_) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, tenant, "presence script failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// Follows the event channel; after every (re)subscription re-sends this
/// node's claims and reloads the global state, so nodes agree again soon
/// after Redis comes back.
async fn run_events(hub: Arc<Hub>, client: redis::Client, url: String) {
    loop {
        let mut pubsub = match client.get_async_pubsub().await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        if let Err(e) = pubsub.subscribe(EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "subscribe failed; retrying");
            continue;
        }
        if let Err(e) = resync(&hub, &url).await {
            tracing::warn!(error = %e, "resync failed; reconnecting");
            continue;
        }
        // Joined: ready from now on, also through later outages (a node that
        // lost Redis keeps serving its own tabs; a load balancer must not
        // drop it).
        hub.set_cluster_ready(true);
        set_up(&hub, true);
        let mut stream = pubsub.into_on_message();
        while let Some(msg) = stream.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<PresenceEvent>(&payload) {
                Ok(ev) => {
                    if let Some(t) = hub.tenant(&ev.t) {
                        t.lock().apply_event(&ev, hub.now_ms(), &hub.metrics);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bad presence event"),
            }
        }
        set_up(&hub, false);
        tracing::warn!("redis pub/sub connection lost; resubscribing");
    }
}

/// Flips the link state and tells every tenant: down, they show their own
/// tabs provisionally; up, they raise what they showed above Redis's `v`.
fn set_up(hub: &Hub, up: bool) {
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    handle.up.store(up, std::sync::atomic::Ordering::Relaxed);
    let now = hub.now_ms();
    for (_, t) in hub.tenants_snapshot() {
        let mut t = t.lock();
        if up {
            t.on_redis_up();
        } else {
            t.on_redis_down(now, &hub.metrics);
        }
    }
}

/// Re-claims what this node holds and catches up on every tenant's state.
async fn resync(hub: &Hub, url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut conn = RedisConn::connect(url).await?;
    let now = hub.now_ms();
    for (tid, t) in hub.tenants_snapshot() {
        t.lock().reclaim(now);
        let [_, state, _, _] = presence_keys(&tid);
        let all: HashMap<String, String> = conn.hgetall(&state).await?;
        let mut t = t.lock();
        for (u, raw) in all {
            #[derive(serde::Deserialize)]
            struct St {
                s: u8,
                since: u64,
                v: u64,
                seen: u64,
            }
            let Ok(st) = serde_json::from_str::<St>(&raw) else {
                continue;
            };
            let ev = PresenceEvent {
                t: tid.clone(),
                u,
                s: st.s,
                since: st.since,
                v: st.v,
                seen: st.seen,
                force: false,
                close: 0,
            };
            t.apply_event(&ev, now, &hub.metrics);
        }
    }
    Ok(())
}

/// Heartbeats this node and asks every tenant to sweep due and dead leases.
async fn run_heartbeat(hub: Arc<Hub>, url: String) {
    let mut conn = connect(&url).await;
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    let idle_ms = hub.config.idle_timeout.as_millis() as u64;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let now = hub.now_ms();
        let beat: redis::RedisResult<Vec<(String, f64)>> = async {
            conn.zadd::<_, _, _, ()>(NODES_KEY, &*handle.node, now)
                .await?;
            conn.zrange_withscores(NODES_KEY, 0, -1).await
        }
        .await;
        let nodes = match beat {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        };
        let mut dead = HashMap::new();
        for (node, last) in nodes {
            let last = last as u64;
            if now.saturating_sub(last) <= DEAD_AFTER_MS {
                continue;
            }
            // A dead node's users interacted at the latest one heartbeat
            // after its last one: they go offline a timeout after that.
            let cutoff = last + HEARTBEAT.as_millis() as u64 + idle_ms;
            if now > cutoff + 60_000 {
                let _: redis::RedisResult<()> = conn.zrem(NODES_KEY, &node).await;
            } else {
                dead.insert(node, cutoff);
            }
        }
        for tid in hub.tenant_ids() {
            let _ = handle.ops.send(ClusterMsg::Op {
                tenant: tid,
                op: PresenceOp::Sweep {
                    now,
                    dead: dead.clone(),
                },
            });
        }
    }
}

/// Graceful shutdown: leases cut to exact deadlines, queued operations
/// flushed, and this node removed from the heartbeat set (its claims then
/// end at their scores instead of at a dead node's cutoff).
pub async fn leave(hub: &Hub, url: &str) {
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    let now = hub.now_ms();
    for (_, t) in hub.tenants_snapshot() {
        t.lock().hand_off(now);
    }
    let (done, flushed) = tokio::sync::oneshot::channel();
    if handle.ops.send(ClusterMsg::Flush(done)).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(3), flushed).await;
    }
    if let Ok(mut conn) = RedisConn::connect(url).await {
        let _: redis::RedisResult<()> = conn.zrem(NODES_KEY, &*handle.node).await;
    }
}
