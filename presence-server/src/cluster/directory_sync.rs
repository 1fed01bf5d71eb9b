//! Cluster mode: applies the directory writes other nodes committed, by
//! tailing the log in Redis of each tenant this node holds.
//!
//! Nothing is polled while the subscription is up: a commit announces the
//! tenant's new version on the tenant's channel (`store/commit.lua`); the
//! event follower (`cluster/tasks.rs`) hands it to [`Wake`], which wakes
//! the tail of that tenant's log. Every (re)subscription asks for every
//! held tenant's log, as does a slow safety poll (`Config::directory_poll`,
//! 30 s by default), so a lost message cannot strand a node for longer.
//! A tenant is read from the version of the snapshot it was loaded from
//! (`cluster::residency`); one evicted and loaded again starts over from
//! its new snapshot.
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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

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

    /// One cheap round trip. Sent while the subscription is down: nothing
    /// else may use the store's connection then (nothing is polled), and a
    /// connection that gave up reconnecting fails the first command after
    /// Redis returns (an admin request) instead of reconnecting for it.
    fn ping(&self) -> StoreFuture<'_, ()>;

    /// Whether this node committed entry `v` of `tid` itself (so applied it
    /// already); forgets it either way.
    fn take_committed_here(&self, tid: &str, v: u64) -> bool;

    /// Forgets own commits at or below `v` (skipped by reloading a snapshot).
    fn forget_committed_here(&self, tid: &str, v: u64);
}

/// A failed read is retried after this.
const RETRY: Duration = Duration::from_millis(200);
/// While nothing happens, the sync lag metric is brought up to date this
/// often (no Redis call: with the subscription up, nothing is pending).
const LAG_TICK: Duration = Duration::from_secs(1);

/// Where this node is in a tenant's log.
#[derive(Debug, Clone)]
struct Cursor {
    version: u64,
    last_id: String,
    /// The tenant as loaded when this cursor started: a tenant evicted and
    /// loaded again is another one, read from its own snapshot.
    of: std::sync::Weak<parking_lot::Mutex<crate::presence::tenant::Tenant>>,
}

/// What directory sync has been asked to read, filled by the event follower
/// (notices, a (re)subscription), by loads and by the safety poll.
#[derive(Debug, Default)]
pub(crate) struct Wake {
    pending: parking_lot::Mutex<Pending>,
    ready: Notify,
    /// Whether the subscription is up, so that a tenant with no pending
    /// notice has no unread commit.
    live: AtomicBool,
}

#[derive(Debug, Default)]
struct Pending {
    /// Held tenants whose log may have new entries.
    tenants: HashSet<String>,
    /// Every held tenant's log.
    everything: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.everything && self.tenants.is_empty()
    }

    fn merge(&mut self, other: Pending) {
        self.tenants.extend(other.tenants);
        self.everything |= other.everything;
    }
}

impl Wake {
    /// A commit of `tid` was announced: read its log on.
    pub(crate) fn tenant(&self, tid: &str) {
        self.pending.lock().tenants.insert(tid.to_owned());
        self.ready.notify_one();
    }

    /// `tids` were just subscribed to or loaded: read their logs on
    /// (commits made before were not announced to this node).
    pub(crate) fn tenants(&self, tids: &[String]) {
        self.pending.lock().tenants.extend(tids.iter().cloned());
        self.ready.notify_one();
    }

    /// Read every held tenant's log (after a (re)subscription, and on the
    /// safety poll).
    pub(crate) fn everything(&self) {
        self.pending.lock().everything = true;
        self.ready.notify_one();
    }

    /// The subscription went up (after [`everything`](Self::everything)
    /// was asked) or down. Down wakes the sync at once: Redis went away
    /// under every connection, and the store's is pinged from now on so
    /// that it reconnects (see [`SharedLog::ping`]).
    pub(crate) fn set_live(&self, live: bool) {
        self.live.store(live, Ordering::SeqCst);
        if !live {
            self.ready.notify_one();
        }
    }

    fn take(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock())
    }

    /// What a round failed to read, for the next one (no wake-up: the
    /// round retries after [`RETRY`]).
    fn put_back(&self, failed: Pending) {
        self.pending.lock().merge(failed);
    }
}

/// Runs until the node begins to stop.
pub(crate) async fn run<L: SharedLog>(hub: Arc<Hub>, store: Arc<L>, wake: Arc<Wake>) {
    tokio::select! {
        _ = follow(&hub, &*store, &wake) => {}
        _ = hub.stopping() => {}
    }
}

async fn follow<L: SharedLog>(hub: &Hub, store: &L, wake: &Wake) {
    let mut cursors: HashMap<String, Cursor> = HashMap::new();
    // The first tick is at once: the first round reads everything, as the
    // tenants were loaded before the subscription existed.
    let mut safety = tokio::time::interval(hub.config.directory_poll);
    safety.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut lag = tokio::time::interval(LAG_TICK);
    lag.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut retry = false;
    loop {
        let down = !wake.live.load(Ordering::SeqCst);
        tokio::select! {
            _ = safety.tick() => wake.everything(),
            () = wake.ready.notified() => {}
            _ = lag.tick() => {}
            () = tokio::time::sleep(RETRY), if retry || down => {}
        }
        // Read before taking what is pending: live means every commit
        // before this moment was announced, so it is pending now or done.
        let live = wake.live.load(Ordering::SeqCst);
        if !live {
            // Keeps the store's connection reconnecting through an outage.
            let _ = store.ping().await;
        }
        let round = hub.now_ms();
        let todo = wake.take();
        let everything = todo.everything;
        let failed = sync(hub, store, &mut cursors, todo).await;
        retry = !failed.is_empty();
        if !retry && (live || everything) {
            // `presence_directory_sync_lag_seconds` counts from the last
            // moment everything committed before it was known applied.
            hub.metrics.directory_synced(round);
        }
        if retry {
            wake.put_back(failed);
        }
    }
}

/// Reads what `todo` asks for; returns what failed.
async fn sync<L: SharedLog>(
    hub: &Hub,
    store: &L,
    cursors: &mut HashMap<String, Cursor>,
    todo: Pending,
) -> Pending {
    let mut failed = Pending::default();
    let tenants: Vec<String> = if todo.everything {
        // Evicted tenants' cursors go with them.
        cursors.retain(|tid, c| hub.tenant(tid).is_some_and(|t| is_of(c, &t)));
        hub.tenant_ids()
    } else {
        todo.tenants.into_iter().collect()
    };
    for tid in tenants {
        let Some(t) = hub.tenant(&tid) else {
            continue;
        };
        // A tenant starts after the snapshot it was loaded from; one
        // created here starts at 0, and its entries are all own ones,
        // skipped.
        let cur = cursors
            .entry(tid.clone())
            .or_insert_with(|| fresh(store, &tid, &t));
        if !is_of(cur, &t) {
            *cur = fresh(store, &tid, &t);
        }
        if let Err(e) = catch_up(hub, store, &tid, cur).await {
            tracing::warn!(tenant = %tid, error = %e, "directory sync failed; will retry");
            failed.tenants.insert(tid);
        }
    }
    failed
}

/// Whether `c` is a cursor of the tenant as held now.
fn is_of(c: &Cursor, t: &crate::hub::TenantRef) -> bool {
    c.of.upgrade().is_some_and(|held| Arc::ptr_eq(&held, t))
}

/// A cursor at the snapshot `t` was loaded from.
fn fresh<L: SharedLog>(store: &L, tid: &str, t: &crate::hub::TenantRef) -> Cursor {
    Cursor {
        version: store.loaded_version(tid).unwrap_or(0),
        last_id: "0".into(),
        of: Arc::downgrade(t),
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
