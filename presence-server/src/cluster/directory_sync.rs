//! Cluster mode: applies the directory writes other nodes committed, by
//! tailing each tenant's log in Redis, and picks up tenants created
//! elsewhere.
//!
//! Every log entry is applied in log order. A node applies its own write as
//! soon as Redis acknowledges it, so its state is "the log up to the cursor,
//! then its own later entries"; the replay skips those own entries until it
//! applies one it did not have (another node's, or an own commit whose
//! acknowledgement was lost), and from then on re-applies its own too, which
//! is what makes concurrent writes to one record end the same on every node.
//! Replaying an own entry unconditionally would be wrong: after two quick
//! writes to one record, replaying the first over the second sends watchers
//! the old value again, then the new one (and briefly re-activates a user
//! who was created then deactivated). Replays run under
//! `Hub::exclude_writes`, so a commit and its local apply are never split by
//! one.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::directory::{TenantDir, Write};
use crate::hub::Hub;
use crate::store::{StoreError, StoreFuture};

/// One entry of a tenant's log: its id in the log, the tenant's version
/// after the batch, the node that committed it, and the batch.
pub type LogEntry = (String, u64, String, Vec<Write>);

/// What directory sync needs of a store shared by several nodes: a
/// per-tenant log of committed batches with versions, snapshots to start
/// from, and a record of which versions this node committed itself (and so
/// applied already). `store::redis::RedisStore` implements it; the embedded
/// store of a single node has no one to sync with and does not.
pub trait SharedLog: Send + Sync + 'static {
    /// At most this many entries come back from one [`read_log`](Self::read_log).
    const READ_BATCH: usize;

    /// The version of the snapshot the store's `load` returned for `tid`,
    /// where reading the log starts; `None` for a tenant `load` did not see.
    fn loaded_version(&self, tid: &str) -> Option<u64>;

    /// How many batches were committed for `tid`.
    fn version<'a>(&'a self, tid: &'a str) -> StoreFuture<'a, u64>;

    /// Log entries after the entry `after_id` (`"0"`: from the oldest kept),
    /// oldest first, at most [`READ_BATCH`](Self::READ_BATCH). Old entries are
    /// trimmed: a reader whose next version is gone reloads a snapshot.
    fn read_log<'a>(&'a self, tid: &'a str, after_id: &'a str) -> StoreFuture<'a, Vec<LogEntry>>;

    /// A tenant's records as writes that rebuild it, with the version they
    /// are the state of (no entry at or below it needs replaying).
    fn snapshot<'a>(&'a self, tid: &'a str) -> StoreFuture<'a, (Vec<Write>, u64)>;

    /// Every tenant id in the store.
    fn tenant_ids(&self) -> StoreFuture<'_, Vec<String>>;

    /// Whether this node committed entry `v` of `tid` itself (so applied it
    /// already); forgets it either way.
    fn take_committed_here(&self, tid: &str, v: u64) -> bool;

    /// Forgets own commits at or below `v` (skipped by reloading a snapshot).
    fn forget_committed_here(&self, tid: &str, v: u64);
}

/// How often versions are polled: a write is visible on every node within
/// this plus one round trip (SPEC §8.7 asks for 1 s).
const POLL: Duration = Duration::from_millis(200);

/// Where this node is in a tenant's log.
#[derive(Debug, Clone)]
struct Cursor {
    version: u64,
    last_id: String,
}

/// Runs until the node begins to stop.
pub(crate) async fn run<L: SharedLog>(hub: Arc<Hub>, store: Arc<L>) {
    tokio::select! {
        _ = follow(&hub, &*store) => {}
        _ = hub.stopping() => {}
    }
}

async fn follow<L: SharedLog>(hub: &Hub, store: &L) {
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        // Everything committed before this moment is applied once every
        // read below succeeds: `presence_directory_sync_lag_seconds` counts
        // from the start of the last round that read everything.
        let round = hub.now_ms();
        // A new tenant is a directory write too: looked for every poll.
        let mut complete = discover_tenants(hub, store, &mut cursors).await;
        for tid in hub.tenant_ids() {
            // A tenant loaded at start-up (or adopted) starts after the
            // snapshot it was loaded from; one created here starts at 0, and
            // its entries are all own ones, skipped.
            let cur = cursors.entry(tid.clone()).or_insert_with(|| Cursor {
                version: store.loaded_version(&tid).unwrap_or(0),
                last_id: "0".into(),
            });
            if let Err(e) = catch_up(hub, store, &tid, cur).await {
                tracing::warn!(tenant = %tid, error = %e, "directory sync failed; will retry");
                complete = false;
            }
        }
        if complete {
            hub.metrics.directory_synced(round);
        }
    }
}

async fn catch_up<L: SharedLog>(
    hub: &Hub,
    store: &L,
    tid: &str,
    cur: &mut Cursor,
) -> Result<(), StoreError> {
    if store.version(tid).await? <= cur.version {
        return Ok(());
    }
    let _writes = hub.exclude_writes().await;
    // Whether this round applied an entry this node did not have: own
    // entries after it were applied before it, and must be applied again.
    let mut out_of_order = false;
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
            store.forget_committed_here(tid, version);
            out_of_order = true;
        }
        let n = entries.len();
        for (id, v, _node, writes) in entries {
            if v > cur.version {
                let mine = store.take_committed_here(tid, v);
                if !mine || out_of_order {
                    if let Some(t) = hub.tenant(tid) {
                        t.lock().apply(&writes, hub.now_ms(), &hub.metrics);
                    }
                }
                out_of_order |= !mine;
                cur.version = v;
            }
            cur.last_id = id;
        }
        if n < L::READ_BATCH {
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
    for id in t.dir.webhooks.keys() {
        if !fresh.webhooks.contains_key(id) {
            writes.push(Write::DeleteWebhook {
                tenant: tid.to_owned(),
                id: id.clone(),
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

/// Adopts the tenants other nodes created; false when the store could not
/// list them or one could not be loaded.
async fn discover_tenants<L: SharedLog>(
    hub: &Hub,
    store: &L,
    cursors: &mut HashMap<String, Cursor>,
) -> bool {
    let Ok(ids) = store.tenant_ids().await else {
        return false;
    };
    let mut complete = true;
    for tid in ids {
        if hub.tenant(&tid).is_some() {
            continue;
        }
        match store.snapshot(&tid).await {
            Ok((writes, version)) => {
                if let Some(Write::Tenant(rec)) = writes.first() {
                    let mut dir = TenantDir::new(rec.clone());
                    for w in &writes {
                        dir.apply(w);
                    }
                    // The log is read on from the snapshot: replaying the
                    // entries it already holds would walk watchers through
                    // every older state again.
                    if hub.adopt_tenant(dir) {
                        cursors.insert(
                            tid.clone(),
                            Cursor {
                                version,
                                last_id: "0".into(),
                            },
                        );
                    }
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tid, error = %e, "cannot load a new tenant");
                complete = false;
            }
        }
    }
    complete
}
