//! Cluster mode: applies the directory writes other nodes committed, by
//! tailing each tenant's log in Redis, and picks up tenants created
//! elsewhere.
//!
//! Every log entry is applied in log order, this node's own included: a node
//! applies its own write as soon as Redis acknowledges it, and replaying it
//! in order is what makes concurrent writes to one record end the same on
//! every node. Re-applying a write that is already in place changes nothing
//! and sends nothing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::directory::{TenantDir, Write};
use crate::hub::Hub;
use crate::redis_store::{RedisStore, LOG_READ_BATCH};

/// How often versions are polled: a write is visible on every node within
/// this plus one round trip (SPEC §8.7 asks for 1 s).
const POLL: Duration = Duration::from_millis(200);

/// Where this node is in a tenant's log.
#[derive(Debug, Clone)]
struct Cursor {
    version: u64,
    last_id: String,
}

/// Runs until the hub shuts down.
pub async fn run(hub: Arc<Hub>, store: Arc<RedisStore>) {
    let mut shutdown = hub.shutdown_signal();
    tokio::select! {
        _ = follow(&hub, &store) => {}
        _ = crate::hub::until_true(&mut shutdown) => {}
    }
}

async fn follow(hub: &Hub, store: &RedisStore) {
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // A new tenant is a directory write too: looked for every poll.
        discover_tenants(hub, store).await;
        for tid in hub.tenant_ids() {
            // Starting from the oldest kept entry converges: the loaded state
            // is at least as new as any entry, and every entry is whole
            // records, so replaying a suffix ends in the newest state.
            let cur = cursors.entry(tid.clone()).or_insert_with(|| Cursor {
                version: 0,
                last_id: "0".into(),
            });
            if let Err(e) = catch_up(hub, store, &tid, cur).await {
                tracing::warn!(tenant = %tid, error = %e, "directory sync failed; will retry");
            }
        }
    }
}

async fn catch_up(
    hub: &Hub,
    store: &RedisStore,
    tid: &str,
    cur: &mut Cursor,
) -> Result<(), crate::store::StoreError> {
    if store.version(tid).await? <= cur.version {
        return Ok(());
    }
    loop {
        let entries = store.read_log(tid, &cur.last_id).await?;
        let Some(first) = entries.first() else {
            return Ok(());
        };
        if cur.version > 0 && first.1 > cur.version + 1 {
            // The log was trimmed past this node: start again from a snapshot.
            tracing::warn!(tenant = %tid, "fell behind the directory log; reloading the tenant");
            let (writes, version) = store.snapshot(tid).await?;
            reload(hub, tid, writes);
            cur.version = version;
        }
        let n = entries.len();
        for (id, v, _node, writes) in entries {
            if v > cur.version {
                if let Some(t) = hub.tenant(tid) {
                    t.lock().apply(&writes, hub.now_ms(), &hub.metrics);
                }
                cur.version = v;
            }
            cur.last_id = id;
        }
        if n < LOG_READ_BATCH {
            return Ok(());
        }
    }
}

/// Replaces a tenant's directory with a snapshot, through `Tenant::apply` so
/// watchers get the differences: records are put again, and teams and
/// memberships missing from the snapshot are deleted.
fn reload(hub: &Hub, tid: &str, snapshot: Vec<Write>) {
    let Some(t) = hub.tenant(tid) else { return };
    let mut t = t.lock();
    let Some(Write::Tenant(rec)) = snapshot.first() else {
        return;
    };
    let mut fresh = TenantDir::new(rec.clone());
    for w in &snapshot {
        fresh.apply(w);
    }
    let mut writes = snapshot.clone();
    for team in t.dir.teams.keys() {
        if !fresh.teams.contains_key(team) {
            writes.push(Write::DeleteTeam {
                tenant: tid.to_owned(),
                team: team.clone(),
            });
        }
    }
    for team in fresh.teams.keys() {
        let keep: HashSet<&String> = fresh.members_of(team).map(|(u, _)| u).collect();
        for (user, _) in t.dir.members_of(team) {
            if !keep.contains(user) {
                writes.push(Write::DeleteMember {
                    tenant: tid.to_owned(),
                    team: team.clone(),
                    user: user.clone(),
                });
            }
        }
    }
    t.apply(&writes, hub.now_ms(), &hub.metrics);
}

async fn discover_tenants(hub: &Hub, store: &RedisStore) {
    let Ok(ids) = store.tenant_ids().await else {
        return;
    };
    for tid in ids {
        if hub.tenant(&tid).is_some() {
            continue;
        }
        match store.snapshot(&tid).await {
            Ok((writes, _)) => {
                if let Some(Write::Tenant(rec)) = writes.first() {
                    let mut dir = TenantDir::new(rec.clone());
                    for w in &writes {
                        dir.apply(w);
                    }
                    hub.adopt_tenant(dir);
                }
            }
            Err(e) => tracing::warn!(tenant = %tid, error = %e, "cannot load a new tenant"),
        }
    }
}
