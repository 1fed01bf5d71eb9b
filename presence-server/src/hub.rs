//! The hub: every tenant of this node, the token verifier, the store, the
//! node's tasks ([`Tasks`]: what `server::run` stops within its deadline),
//! and the background duties (expiring idle users, trimming the feed; the
//! feed's committer is `feed::committer`).
//!
//! Invariant: the store is written before memory. An admin write is applied
//! to a tenant only after the store acknowledged it, and admin writes are
//! serialised by one async lock, so what was validated is what gets applied.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, RwLock};
use presence_protocol::close;
use tokio_util::sync::WaitForCancellationFuture;

use crate::auth::Verifier;
use crate::clock::Clock;
use crate::cluster::link::ClusterHandle;
use crate::cluster::ops::PresenceEvent;
use crate::config::Config;
use crate::directory::DirectoryError;
use crate::directory::{TenantDir, Write};
use crate::metrics::Metrics;
use crate::net::limit::Limit;
use crate::presence::feed::{FeedQueue, TenantFeed};
use crate::presence::source::Source;
use crate::presence::tenant::Tenant;
use crate::store::{Store, StoreError};
use crate::tasks::Tasks;

pub type TenantRef = Arc<Mutex<Tenant>>;

/// Cluster mode: how a node comes to hold a tenant it does not
/// (`cluster::residency`). A single node holds every tenant from the start
/// and has none.
pub(crate) trait Residency: Send + Sync + 'static {
    /// Loads `tid` into `hub` (subscribed to its channel, its directory and
    /// presence read); nothing when the store has no such tenant.
    fn load<'a>(&'a self, hub: &'a Hub, tid: &'a str) -> crate::store::StoreFuture<'a, ()>;
    /// The tenants that have (or had) webhooks.
    fn webhook_tenants(&self) -> crate::store::StoreFuture<'_, Vec<String>>;
    /// Notes whether `tid` has webhooks (so their owner loads it).
    fn mark_webhook_tenant<'a>(
        &'a self,
        tid: &'a str,
        has: bool,
    ) -> crate::store::StoreFuture<'a, ()>;
}

/// Why an admin write did not happen. Nothing changed in either case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Hub {
    pub config: Config,
    pub verifier: Verifier,
    admin_key: Option<String>,
    store: Arc<dyn Store>,
    tenants: RwLock<HashMap<String, TenantRef>>,
    /// Cluster mode: loads tenants on demand.
    residency: OnceLock<Arc<dyn Residency>>,
    /// Tenants being loaded, one load at a time per tenant.
    loading: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    write_lock: tokio::sync::Mutex<()>,
    pub metrics: Metrics,
    pub clock: Clock,
    next_conn: AtomicU64,
    /// Every task of the node, and the tokens that stop them.
    tasks: Tasks,
    /// Cluster mode: where tenants send their presence operations.
    cluster: Option<ClusterHandle>,
    /// Cluster mode: the Redis URL, for leaving the cluster at shutdown.
    cluster_url: OnceLock<String>,
    /// Cluster mode: joined (subscribed and caught up); `/readyz` waits for it.
    cluster_ready: std::sync::atomic::AtomicBool,
    /// Cluster mode: the nodes in the heartbeat set with their last
    /// heartbeat (ms), as this node's last heartbeat read them; the status
    /// page (`GET /`) shows them without a Redis call of its own.
    cluster_nodes: Mutex<Vec<(String, u64)>>,
    /// `--dev` only: the secrets the landing page (`GET /`) hands out.
    /// Unset, the page is a status page with no secret on it.
    dev: OnceLock<crate::dev::DevSecrets>,
    /// Single node: the tenants with feed events waiting for the store.
    feed: FeedQueue,
    /// Held by whoever commits the feed (the committer, or shutdown), so
    /// batches are committed and delivered one at a time, in order.
    feed_commit: tokio::sync::Mutex<()>,
    /// Upgraded connections that have not finished `hello`: taken by the
    /// upgrade before its 101, given back when the handshake ends
    /// (`session::run`), so unauthenticated sockets are bounded.
    pub pending_hello: Limit,
    /// Poked when a webhook is configured here, so its delivery starts at
    /// once (`webhook::supervisor`; other nodes' writes are found by its scan).
    webhooks_changed: tokio::sync::Notify,
    /// Cluster mode: a tenant was created here or adopted, so the event
    /// follower subscribes to its channel.
    tenants_added: tokio::sync::Notify,
}

impl Hub {
    /// Builds the hub from what the store holds: every tenant on a single
    /// node; none in cluster mode, where tenants are loaded when needed
    /// ([`resident`](Self::resident)).
    ///
    /// # Errors
    /// The store cannot be read.
    pub async fn new(
        config: Config,
        verifier: Verifier,
        admin_key: Option<String>,
        store: Arc<dyn Store>,
        cluster: Option<ClusterHandle>,
    ) -> Result<Arc<Hub>, StoreError> {
        let mut dirs: HashMap<String, TenantDir> = HashMap::new();
        let writes = if cluster.is_none() {
            store.load().await?
        } else {
            Vec::new()
        };
        for w in writes {
            match &w {
                Write::Tenant(t) => dirs
                    .entry(t.id.clone())
                    .or_insert_with(|| TenantDir::new(t.clone()))
                    .apply(&w),
                other => {
                    if let Some(d) = dirs.get_mut(other.tenant()) {
                        d.apply(other);
                    }
                }
            }
        }
        let feed = FeedQueue::default();
        let mut tails: HashMap<String, u64> = store.feed_tails().await?.into_iter().collect();
        if cluster.is_none() {
            reconcile_feeds(&mut dirs, &mut tails, &config, &*store).await?;
        }
        let tenants = dirs
            .into_iter()
            .map(|(id, d)| {
                let cursor = tails.get(&id).copied().unwrap_or(0);
                let t = new_tenant(d, &config, cluster.as_ref(), &feed, cursor);
                (id, t)
            })
            .collect();
        let pending_hello = Limit::new(config.max_pending_hello);
        let metrics = Metrics::new(cluster.is_some());
        Ok(Arc::new(Hub {
            config,
            verifier,
            admin_key,
            store,
            tenants: RwLock::new(tenants),
            residency: OnceLock::new(),
            loading: Mutex::new(HashMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            metrics,
            clock: Clock::new(),
            next_conn: AtomicU64::new(1),
            tasks: Tasks::new(),
            pending_hello,
            feed,
            feed_commit: tokio::sync::Mutex::new(()),
            cluster,
            cluster_url: OnceLock::new(),
            cluster_ready: std::sync::atomic::AtomicBool::new(false),
            webhooks_changed: tokio::sync::Notify::new(),
            tenants_added: tokio::sync::Notify::new(),
            cluster_nodes: Mutex::new(Vec::new()),
            dev: OnceLock::new(),
        }))
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    /// The tenant if this node holds it now (see [`resident`](Self::resident)).
    pub fn tenant(&self, tid: &str) -> Option<TenantRef> {
        self.tenants.read().get(tid).cloned()
    }

    /// Cluster mode: how tenants are loaded. Set once, by `cluster::start`.
    pub(crate) fn set_residency(&self, r: Arc<dyn Residency>) {
        let _ = self.residency.set(r);
    }

    pub(crate) fn residency(&self) -> Option<&Arc<dyn Residency>> {
        self.residency.get()
    }

    /// The tenant, loaded first when this node does not hold it (cluster
    /// mode); `None` when no such tenant exists. Every use of a tenant from
    /// outside (a tab's `hello`, an admin call, a feed reader, a webhook
    /// delivery) comes through here, which marks it used now.
    ///
    /// # Errors
    /// Cluster mode: Redis did not answer the load.
    pub async fn resident(&self, tid: &str) -> Result<Option<TenantRef>, StoreError> {
        if let Some(t) = self.touch(tid) {
            return Ok(Some(t));
        }
        let Some(r) = self.residency.get().cloned() else {
            return Ok(None);
        };
        let gate = self
            .loading
            .lock()
            .entry(tid.to_owned())
            .or_default()
            .clone();
        let out = async {
            let _one = gate.lock().await;
            if let Some(t) = self.touch(tid) {
                return Ok(Some(t));
            }
            r.load(self, tid).await?;
            Ok(self.touch(tid))
        }
        .await;
        let mut loading = self.loading.lock();
        // Ours and the map's: nobody else waits on it.
        if Arc::strong_count(&gate) <= 2 {
            loading.remove(tid);
        }
        out
    }

    fn touch(&self, tid: &str) -> Option<TenantRef> {
        let t = self.tenant(tid)?;
        t.lock().touched = self.now_ms();
        Some(t)
    }

    /// Cluster mode: drops `tid` from this node if `unused` says so under
    /// its lock; `then` runs before anyone can see it gone (a load of it
    /// waits on the map lock), so what it queues comes before anything a
    /// new load queues. Returns whether it went.
    pub(crate) fn evict_if(
        &self,
        tid: &str,
        unused: impl FnOnce(&Tenant) -> bool,
        then: impl FnOnce(),
    ) -> bool {
        let mut map = self.tenants.write();
        let Some(t) = map.get(tid) else {
            return false;
        };
        if !unused(&t.lock()) {
            return false;
        }
        map.remove(tid);
        self.metrics.tenants_resident.set(map.len() as i64);
        then();
        true
    }

    /// Every tenant with its id, taken at once (no lock held afterwards).
    pub fn tenants_snapshot(&self) -> Vec<(String, TenantRef)> {
        self.tenants
            .read()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Tab handles held in every tenant's per-user lists. Counted rather
    /// than kept, so a session that never left its tenant (a crashed task)
    /// shows up here and not in `presence_open_tabs` alone.
    pub fn registered_tabs(&self) -> usize {
        self.tenants_snapshot()
            .iter()
            .map(|(_, t)| t.lock().registered_tabs())
            .sum()
    }

    pub fn tenant_ids(&self) -> Vec<String> {
        self.tenants.read().keys().cloned().collect()
    }

    pub fn cluster_handle(&self) -> Option<&ClusterHandle> {
        self.cluster.as_ref()
    }

    /// Cluster mode: where Redis is, so that shutdown can leave the cluster
    /// (`cluster::leave`). Set once, when the cluster tasks start.
    pub fn set_cluster_url(&self, url: impl Into<String>) {
        let _ = self.cluster_url.set(url.into());
    }

    pub fn cluster_url(&self) -> Option<&str> {
        self.cluster_url.get().map(String::as_str)
    }

    pub fn set_cluster_ready(&self, ready: bool) {
        self.cluster_ready.store(ready, Ordering::Relaxed);
    }

    /// Cluster mode: what the last heartbeat saw in the node set.
    pub fn set_cluster_nodes(&self, nodes: Vec<(String, u64)>) {
        *self.cluster_nodes.lock() = nodes;
    }

    /// Cluster mode: the nodes with their last heartbeat (ms), as of this
    /// node's last heartbeat; empty on a single node.
    pub fn cluster_nodes(&self) -> Vec<(String, u64)> {
        self.cluster_nodes.lock().clone()
    }

    /// `--dev`: the secrets in force, for the landing page. Set once, by
    /// `main` in `--dev` only.
    pub fn set_dev(&self, secrets: crate::dev::DevSecrets) {
        let _ = self.dev.set(secrets);
    }

    pub(crate) fn dev(&self) -> Option<&crate::dev::DevSecrets> {
        self.dev.get()
    }

    /// Ready to serve: always on a single node; in cluster mode once
    /// subscribed to the other nodes' events and caught up.
    pub fn is_ready(&self) -> bool {
        !self.is_shutting_down()
            && (self.cluster.is_none() || self.cluster_ready.load(Ordering::Relaxed))
    }

    /// Reads a tenant under its lock.
    pub fn read<R>(&self, tid: &str, f: impl FnOnce(&Tenant) -> R) -> Result<R, DirectoryError> {
        let t = self
            .tenant(tid)
            .ok_or_else(|| DirectoryError::UnknownTenant(tid.to_owned()))?;
        let guard = t.lock();
        Ok(f(&guard))
    }

    /// Validates an admin request against the tenant, stores the writes it
    /// yields, then applies them with their effects.
    ///
    /// # Errors
    /// [`WriteError::Directory`] when the request is refused,
    /// [`WriteError::Store`] when the store failed; nothing changed.
    pub async fn write<R>(
        &self,
        tid: &str,
        op: impl FnOnce(&TenantDir) -> Result<(Vec<Write>, R), DirectoryError>,
    ) -> Result<R, WriteError> {
        let _serial = self.write_lock.lock().await;
        let t = self
            .tenant(tid)
            .ok_or_else(|| DirectoryError::UnknownTenant(tid.to_owned()))?;
        let (writes, result) = op(&t.lock().dir)?;
        self.commit(writes.clone()).await?;
        t.lock().apply(&writes, self.now_ms(), &self.metrics);
        Ok(result)
    }

    /// [`write`](Self::write) for a large request (a bulk sync): `op` plans
    /// on its own copy of the directory, taken under the tenant lock and
    /// planned without it, so the tenant's tabs wait for the copy and the
    /// apply, not for checking 50,000 items. The copy cannot go stale: admin
    /// writes (and cluster mode's log replay) are serialised by the write
    /// lock held throughout.
    ///
    /// # Errors
    /// As [`write`](Self::write).
    pub async fn write_on_copy<R>(
        &self,
        tid: &str,
        op: impl FnOnce(TenantDir) -> Result<(Vec<Write>, R), DirectoryError>,
    ) -> Result<R, WriteError> {
        let _serial = self.write_lock.lock().await;
        let t = self
            .tenant(tid)
            .ok_or_else(|| DirectoryError::UnknownTenant(tid.to_owned()))?;
        let copy = t.lock().dir.clone();
        let (writes, result) = op(copy)?;
        self.commit(writes.clone()).await?;
        t.lock().apply(&writes, self.now_ms(), &self.metrics);
        Ok(result)
    }

    /// Holds off every admin write while the guard lives. Cluster mode's
    /// directory sync replays the log under it, so a write's commit and its
    /// local apply are never split by a replay (see `cluster::directory_sync`).
    pub async fn exclude_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().await
    }

    /// Creates or updates a tenant; settings left out keep the tenant's
    /// (a new one: the node's default retention, UTC).
    pub async fn put_tenant(
        &self,
        tid: &str,
        req: &presence_protocol::admin::TenantPut,
    ) -> Result<bool, WriteError> {
        let _serial = self.write_lock.lock().await;
        let current = self.tenant(tid).map(|t| t.lock().dir.tenant.clone());
        let writes = crate::directory::ops::put_tenant(tid, req, current.as_ref())?;
        self.commit(writes.clone()).await?;
        let Some(Write::Tenant(rec)) = writes.first().cloned() else {
            unreachable!("put_tenant yields the tenant's record")
        };
        let mut map = self.tenants.write();
        match map.get(tid) {
            Some(t) => {
                t.lock().apply(&writes, self.now_ms(), &self.metrics);
                Ok(false)
            }
            None => {
                self.insert_new(&mut map, TenantDir::new(rec), &[]);
                Ok(true)
            }
        }
    }

    /// Cluster mode: a tenant loaded from Redis, with the global presence
    /// `states` read for it. Kept if this node created it meanwhile (its own
    /// copy is as new). Returns whether it was adopted.
    pub(crate) fn adopt_tenant(&self, dir: TenantDir, states: &[PresenceEvent]) -> bool {
        let mut map = self.tenants.write();
        if map.contains_key(&dir.tenant.id) {
            return false;
        }
        self.insert_new(&mut map, dir, states);
        true
    }

    /// Puts a tenant this node did not hold into `map`, used now and with
    /// `states` applied before anyone can see it; the event follower
    /// subscribes to its channel unless it did already.
    fn insert_new(
        &self,
        map: &mut HashMap<String, TenantRef>,
        dir: TenantDir,
        states: &[PresenceEvent],
    ) {
        let id = dir.tenant.id.clone();
        let t = new_tenant(dir, &self.config, self.cluster.as_ref(), &self.feed, 0);
        {
            let now = self.now_ms();
            let mut t = t.lock();
            for ev in states {
                t.apply_event(ev, now, &self.metrics);
            }
            t.touched = now;
        }
        map.insert(id, t);
        self.metrics.tenants_resident.set(map.len() as i64);
        self.tenants_added.notify_one();
    }

    async fn commit(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.store.commit(writes).await?;
        self.metrics
            .store_commit_seconds
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Emits the offline transitions that are due, in every tenant.
    pub fn expire_due(&self) {
        let now = self.now_ms();
        for (_, t) in self.tenants_snapshot() {
            let mut t = t.lock();
            if t.next_deadline().is_some_and(|d| d <= now) {
                t.expire(now, &self.metrics);
            }
        }
    }

    /// The store (the feed's readers and committer use it).
    pub(crate) fn store(&self) -> &dyn Store {
        &*self.store
    }

    /// Single node: the tenants with feed events waiting for the store.
    pub(crate) fn feed_queue(&self) -> &FeedQueue {
        &self.feed
    }

    /// Taken by whoever commits the feed, so batches go one at a time.
    pub(crate) async fn feed_commit_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.feed_commit.lock().await
    }

    /// How long the feed of the tenant with record `rec` keeps events.
    pub fn event_retention_s(&self, rec: &crate::directory::TenantRecord) -> u64 {
        rec.event_retention_s
            .unwrap_or(self.config.event_retention.as_secs())
    }

    /// Commits the feed events still waiting (and the presence they leave)
    /// and sends their deltas: at shutdown, so nothing shown is lost.
    pub async fn flush_presence(&self) -> Result<(), StoreError> {
        crate::feed::committer::commit_pending(self).await
    }

    /// Removes, in every tenant's feed, the events older than the tenant's
    /// retention; returns how many went.
    ///
    /// # Errors
    /// The store failed; what was trimmed before stays trimmed.
    pub async fn trim_events(&self) -> Result<u64, StoreError> {
        crate::feed::retention::trim(self).await
    }

    /// Removes, in every tenant's history, the days older than the
    /// tenant's retention; returns how many user-days went.
    ///
    /// # Errors
    /// The store failed; what was trimmed before stays trimmed.
    pub async fn trim_history(&self) -> Result<u64, StoreError> {
        crate::history::keeper::trim(self).await
    }

    /// Runs the expiry and trim duties until the node begins to stop.
    pub async fn run_background(self: Arc<Self>) {
        // The expiry tick bounds lateness: offline arrives at most one tick
        // after the deadline (SPEC: within 1 s). The heap makes an idle tick
        // cost one peek per tenant, not a scan of users.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        // The first trim one period after start, not at once: a node that
        // restarts does not trim (and a test may trim on its own).
        let first = tokio::time::Instant::now() + self.config.event_trim;
        let mut trim = tokio::time::interval_at(first, self.config.event_trim);
        trim.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => self.expire_due(),
                // A cluster node trims in `cluster::residency::owner_duties`.
                _ = trim.tick(), if self.cluster.is_none() => {
                    if let Err(e) = self.trim_events().await {
                        tracing::warn!(error = %e, "could not trim the transition feed");
                    }
                    if let Err(e) = self.trim_history().await {
                        tracing::warn!(error = %e, "could not trim the presence history");
                    }
                }
                _ = self.stopping() => break,
            }
        }
    }

    /// Tells the webhook supervisor to look at the webhooks now.
    pub(crate) fn notify_webhooks(&self) {
        self.webhooks_changed.notify_one();
    }

    /// Resolves at the next [`notify_webhooks`](Self::notify_webhooks)
    /// (or at once when one came since the last wait).
    pub(crate) fn webhooks_changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.webhooks_changed.notified()
    }

    /// Resolves once a tenant was added (created here or adopted) since the
    /// last wait; the waiter compares [`tenant_ids`](Self::tenant_ids) with
    /// what it knows.
    pub(crate) fn tenants_added(&self) -> tokio::sync::futures::Notified<'_> {
        self.tenants_added.notified()
    }

    /// The node's tasks.
    pub fn tasks(&self) -> &Tasks {
        &self.tasks
    }

    /// Runs `fut` as a tracked duty of the node: it ends by itself, or is
    /// dropped at the shutdown deadline (see [`Tasks::spawn`]).
    pub fn spawn<F>(&self, fut: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(fut);
    }

    /// Resolves once the node begins to stop.
    pub fn stopping(&self) -> WaitForCancellationFuture<'_> {
        self.tasks.stopping()
    }

    /// Marks the node as stopping and tells every open tab to close with
    /// 1012. A tab that joins afterwards sees the mark under its tenant's
    /// lock (see `session::handshake`), so none is missed.
    pub fn begin_shutdown(&self) {
        if !self.tasks.begin_stop() {
            return;
        }
        for (_, t) in self.tenants_snapshot() {
            t.lock()
                .close_all(close::NODE_RESTARTING, "node restarting");
        }
    }

    pub fn is_shutting_down(&self) -> bool {
        self.tasks.is_stopping()
    }
}

/// Single node, before anyone is served: the users the feed still shows
/// online (the hub stopped or died while they were) get their `offline`
/// event, committed with the presence it leaves (see `feed::reconcile`);
/// `dirs` and `tails` are updated, so the tenants start from them.
async fn reconcile_feeds(
    dirs: &mut HashMap<String, TenantDir>,
    tails: &mut HashMap<String, u64>,
    config: &Config,
    store: &dyn Store,
) -> Result<(), StoreError> {
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let now = Clock::new().now_ms();
    let mut events = Vec::new();
    let mut writes = Vec::new();
    for (id, d) in dirs.iter_mut() {
        let cursor = tails.get(id).copied().unwrap_or(0);
        let out = crate::feed::reconcile::reconcile(d, cursor, idle_ms, now);
        if let Some(last) = out.last() {
            tails.insert(id.clone(), last.event.cursor);
        }
        for r in out {
            writes.push(Write::Presence {
                tenant: r.event.tenant.clone(),
                user: r.event.user.clone(),
                presence: r.presence,
            });
            events.push(r.event);
        }
    }
    if events.is_empty() {
        return Ok(());
    }
    let n = events.len();
    store.append_events(events, writes).await?;
    tracing::info!(
        users = n,
        "feed reconciled: users online when the hub stopped are offline"
    );
    Ok(())
}

/// A tenant of this node: its presence is local, or shared through the
/// cluster when the node has a cluster handle; its feed goes on after
/// `cursor`, through the committer's `queue` on a single node.
fn new_tenant(
    dir: TenantDir,
    config: &Config,
    cluster: Option<&ClusterHandle>,
    queue: &FeedQueue,
    cursor: u64,
) -> TenantRef {
    let idle_ms = config.idle_timeout.as_millis() as u64;
    let source = Source::new(&dir.tenant.id, idle_ms, cluster);
    let queue = cluster.is_none().then(|| queue.clone());
    let feed = TenantFeed::new(&dir.tenant.id, cursor, queue);
    Arc::new(Mutex::new(Tenant::new(dir, source, feed)))
}
