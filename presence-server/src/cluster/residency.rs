//! Cluster mode's tenant residency: a node holds a tenant only while
//! something needs it there, so its memory and its subscriptions grow with
//! what it serves, not with the cluster.
//!
//! - [`Loader`] loads a tenant on first use (`Hub::resident`: a tab's
//!   `hello`, an admin call, a feed reader, a webhook this node delivers):
//!   its channel is subscribed to first, then its directory snapshot and
//!   presence state are read, so nothing committed or published after the
//!   read is missed; directory sync reads its log on from the snapshot.
//! - [`evict`] drops a tenant nothing on this node used for
//!   `Config::tenant_evict_after` (no tab, watcher, feed reader or local
//!   claim; not a tenant whose webhooks this node owns): unsubscribed, and
//!   taken out of this node's lease registry once its releases are in.
//! - [`owner_duties`]: the slow duties of every tenant, held or not (the
//!   feed's and the history's retention, the history's fold of what
//!   happened while no node held it), on each tenant's owner, every
//!   `Config::cluster_duties` (an hour by default).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::cluster::directory_sync::Wake;
use crate::cluster::ops::ClusterMsg;
use crate::cluster::owner::is_owner;
use crate::cluster::tasks::{resync, stored_states, Subscription};
use crate::directory::{TenantDir, Write};
use crate::hub::{Hub, Residency};
use crate::store::redis::RedisStore;
use crate::store::redis_conn::RedisConn;
use crate::store::{StoreError, StoreFuture, Unavailable};

/// Loads tenants for `Hub::resident`.
pub(crate) struct Loader {
    store: Arc<RedisStore>,
    conn: RedisConn,
    subs: mpsc::UnboundedSender<Subscription>,
    wake: Arc<Wake>,
}

impl Loader {
    pub(crate) fn new(
        store: Arc<RedisStore>,
        conn: RedisConn,
        subs: mpsc::UnboundedSender<Subscription>,
        wake: Arc<Wake>,
    ) -> Self {
        Loader {
            store,
            conn,
            subs,
            wake,
        }
    }

    async fn load_now(&self, hub: &Hub, tid: &str) -> Result<(), StoreError> {
        let not_subscribed = || StoreError::Unavailable(Unavailable::Busy("Redis pub/sub is down"));
        let (done, confirmed) = oneshot::channel();
        self.subs
            .send(Subscription::Add(tid.to_owned(), done))
            .map_err(|_| not_subscribed())?;
        if !confirmed.await.unwrap_or(false) {
            return Err(not_subscribed());
        }
        let (writes, version) = self.store.snapshot(tid).await?;
        let Some(Write::Tenant(rec)) = writes.first() else {
            // No such tenant: nothing to hold.
            let _ = self.subs.send(Subscription::Remove(tid.to_owned()));
            return Ok(());
        };
        let mut dir = TenantDir::new(rec.clone());
        for w in &writes {
            dir.apply(w);
        }
        let redis = |e| StoreError::Unavailable(Unavailable::Redis(e));
        let mut conn = self.conn.clone();
        // Presence is in the tenant before anyone sees it (a tab joining
        // meanwhile would get a snapshot of everyone offline, then see them
        // come online).
        let states = stored_states(&mut conn, tid).await.map_err(redis)?;
        self.store.note_loaded(tid, version);
        if hub.adopt_tenant(dir, &states) {
            // Commits and transitions between the reads and now were
            // announced to a tenant that was not held yet: read on (an
            // event applies only if newer).
            self.wake.tenants(&[tid.to_owned()]);
            resync(hub, &mut conn, &[tid.to_owned()])
                .await
                .map_err(redis)?;
        }
        Ok(())
    }
}

impl Residency for Loader {
    fn load<'a>(&'a self, hub: &'a Hub, tid: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(self.load_now(hub, tid))
    }

    fn webhook_tenants(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(self.store.webhook_tenants())
    }

    fn mark_webhook_tenant<'a>(&'a self, tid: &'a str, has: bool) -> StoreFuture<'a, ()> {
        Box::pin(self.store.mark_webhook_tenant(tid, has))
    }
}

/// Evicts unused tenants until the node begins to stop.
pub(crate) async fn evict(hub: Arc<Hub>, loader: Arc<Loader>) {
    let after = hub.config.tenant_evict_after;
    let period = (after / 4).clamp(Duration::from_millis(50), Duration::from_secs(5));
    let after_ms = after.as_millis() as u64;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Since when each tenant has been unused, as this task saw it.
    let mut unused_since: HashMap<String, u64> = HashMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.stopping() => return,
        }
        let now = hub.now_ms();
        let mut still = HashMap::new();
        for (tid, t) in hub.tenants_snapshot() {
            let (busy, touched, hooks) = {
                let t = t.lock();
                // The keeper reads the feed of every held tenant.
                (t.in_use(1), t.touched, !t.dir.webhooks.is_empty())
            };
            if busy || (hooks && is_owner(&hub, &tid)) {
                continue;
            }
            let since = unused_since.get(&tid).copied().unwrap_or(now).max(touched);
            if now.saturating_sub(since) < after_ms {
                still.insert(tid, since);
                continue;
            }
            let gone = hub.evict_if(
                &tid,
                |t| !t.in_use(1) && t.touched <= since,
                || {
                    // Under the map's lock: before anything a new load of the
                    // tenant sends (see `Hub::evict_if`).
                    let _ = loader.subs.send(Subscription::Remove(tid.clone()));
                    if let Some(h) = hub.cluster_handle() {
                        let _ = h.ops.send(ClusterMsg::Unregister {
                            tenant: tid.clone(),
                        });
                    }
                },
            );
            if gone {
                hub.metrics.tenants_evicted.inc();
                tracing::debug!(tenant = %tid, "tenant evicted");
            }
        }
        unused_since = still;
    }
}

/// The slow duties of every tenant this node owns, held or not: the feed's
/// and the history's retention, and the history's fold of what happened
/// while no node held it (a dead node's users ended by the sweep).
pub(crate) async fn owner_duties(hub: Arc<Hub>, store: Arc<RedisStore>) {
    let period = hub.config.cluster_duties;
    let first = tokio::time::Instant::now() + period;
    let mut tick = tokio::time::interval_at(first, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.stopping() => return,
        }
        if let Err(e) = owner_round(&hub, &store).await {
            tracing::warn!(error = %e, "the owned tenants' retention and history duties failed; next round later");
        }
    }
}

/// One round of [`owner_duties`].
async fn owner_round(hub: &Hub, store: &RedisStore) -> Result<(), StoreError> {
    let now = hub.now_ms();
    for tid in store.tenant_ids().await? {
        if !is_owner(hub, &tid) {
            continue;
        }
        let Some(rec) = store.tenant_record(&tid).await? else {
            continue;
        };
        // The history first: the fold reads events the trim removes.
        crate::history::keeper::catch_up(hub, &tid).await?;
        crate::history::keeper::trim_one(hub, &tid, rec.history_days(), now).await?;
        crate::feed::retention::trim_tenant(hub, &tid, &rec, now).await?;
    }
    Ok(())
}
