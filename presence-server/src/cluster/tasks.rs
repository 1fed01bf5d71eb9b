//! Cluster mode's background duties and their start: [`start`] connects to
//! Redis, builds the hub over the Redis store with a cluster handle, and
//! spawns every task of cluster mode (the operation queue of
//! `cluster::op_queue`, the event follower, the heartbeat and dead-node
//! sweep, and directory sync); [`leave`] is the graceful end.
//!
//! The event follower subscribes to the channel of every tenant the node
//! holds and to the tenant-created channel (`cluster::notify`); presence
//! events it applies, directory notices and new tenants it hands to
//! directory sync (`directory_sync::Wake`).
//!
//! Invariant: no tenant lock is held across a Redis call. Tenants only push
//! into an unbounded queue; these tasks do the I/O and take a tenant lock
//! only to apply what Redis said.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use crate::auth::Verifier;
use crate::cluster::directory_sync::Wake;
use crate::cluster::keys::{node_tenants, PresenceKeys, LEFT_KEY, NODES_KEY};
use crate::cluster::link::ClusterHandle;
use crate::cluster::notify::{self, Incoming, Notice};
use crate::cluster::ops::{ClusterMsg, PresenceOp, StoredState};
use crate::cluster::owner::owner_among;
use crate::cluster::{directory_sync, op_queue, residency};
use crate::config::Config;
use crate::hub::Hub;
use crate::store::redis::RedisStore;
use crate::store::redis_conn::{RedisConn, RedisConnError};
use crate::store::StoreError;

const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node whose heartbeat is older than this is dead.
pub(crate) const DEAD_AFTER_MS: u64 = 5_000;
/// A heartbeat later than this (a fifth more than its period) marks the
/// node silent: the leases it lets end are `node_lost` in the feed.
const SILENT_AFTER_MS: u64 = 1_200;

/// Why cluster mode did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connect to Redis")]
    Connect(#[source] RedisConnError),
    #[error("load the directory from Redis")]
    Load(#[source] StoreError),
}

/// Starts a node of a cluster sharing the Redis at `url`: the directory is
/// loaded from Redis, presence goes through it, and every task of cluster
/// mode is spawned here (and only here). `node` names this process in
/// claims and log entries: unique per start, so a restarted node never
/// mistakes a predecessor's claims for its own.
///
/// # Errors
/// Redis does not answer, or the directory in it cannot be read.
pub async fn start(
    config: Config,
    verifier: Verifier,
    admin_key: Option<String>,
    url: &str,
    node: &str,
) -> Result<Arc<Hub>, StartError> {
    let conn = RedisConn::connect(url).await.map_err(StartError::Connect)?;
    let store = Arc::new(RedisStore::new(conn.clone(), node));
    let (handle, ops) = ClusterHandle::new(node, config.idle_timeout);
    let loaded_at = crate::clock::Clock::new().now_ms();
    let hub = Hub::new(config, verifier, admin_key, store.clone(), Some(handle))
        .await
        .map_err(StartError::Load)?;
    hub.set_cluster_url(url.to_owned());
    // The directory is the store's as of the load: directory sync's lag
    // counts from there until its first round.
    hub.metrics.directory_synced(loaded_at);
    store.time_scripts(
        hub.metrics
            .redis_script_seconds
            .with_label_values(&["commit"]),
    );
    // Tracked duties of the node (`tasks.rs`). The operation queue keeps
    // draining after the stop begins, so the hand-off of `leave` still
    // reaches Redis; it is dropped at the shutdown deadline.
    hub.spawn(op_queue::run(
        url.to_owned(),
        node.into(),
        ops,
        op_queue::Gauges {
            pending: hub.metrics.cluster_pending_operations.clone(),
            script_seconds: hub
                .metrics
                .redis_script_seconds
                .with_label_values(&["presence"]),
        },
    ));
    let wake = Arc::new(Wake::default());
    let (subs, subs_rx) = tokio::sync::mpsc::unbounded_channel();
    let loader = Arc::new(residency::Loader::new(
        store.clone(),
        conn.clone(),
        subs,
        wake.clone(),
    ));
    hub.set_residency(loader.clone());
    hub.spawn(follow_until_shutdown(
        hub.clone(),
        url.to_owned(),
        wake.clone(),
        subs_rx,
    ));
    hub.spawn(directory_sync::run(hub.clone(), store.clone(), wake));
    hub.spawn(residency::evict(hub.clone(), loader));
    hub.spawn(residency::owner_duties(hub.clone(), store));
    tracing::info!(%node, "cluster mode");
    Ok(hub)
}

/// Follows events and heartbeats until the node begins to stop.
async fn follow_until_shutdown(
    hub: Arc<Hub>,
    url: String,
    wake: Arc<Wake>,
    subs: tokio::sync::mpsc::UnboundedReceiver<Subscription>,
) {
    tokio::select! {
        _ = run_events(hub.clone(), url.clone(), wake, subs) => {}
        _ = run_heartbeat(hub.clone(), url) => {}
        _ = hub.stopping() => {}
    }
}

/// Connects (to a single Redis or a Redis Cluster), retrying until it works.
pub(crate) async fn connect(url: &str) -> RedisConn {
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

/// What residency asks of the event follower (`cluster::residency`).
#[derive(Debug)]
pub(crate) enum Subscription {
    /// Subscribe to the tenant's channel (before it is loaded); answers
    /// whether Redis confirmed it.
    Add(String, tokio::sync::oneshot::Sender<bool>),
    /// The tenant was evicted: unsubscribe unless it is held again.
    Remove(String),
}

/// Follows the held tenants' channels; after every (re)subscription
/// re-sends this node's claims, reloads the global state and has directory
/// sync read everything, so nodes agree again soon after Redis comes back.
/// A tenant loaded later is subscribed to before it is read
/// ([`Subscription::Add`]); one created here is subscribed to, then
/// resynced the same way on its own; an evicted one is unsubscribed from.
async fn run_events(
    hub: Arc<Hub>,
    url: String,
    wake: Arc<Wake>,
    mut subs: tokio::sync::mpsc::UnboundedReceiver<Subscription>,
) {
    // Commands (the resync's reads) on a connection of their own, which
    // reconnects by itself; pub/sub on another, rebuilt after every loss.
    let mut conn = connect(&url).await;
    loop {
        let (mut sink, mut messages) = match notify::open(&url, conn.is_cluster()).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "redis pub/sub unreachable; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        let mut held: HashSet<String> = hub.tenant_ids().into_iter().collect();
        let all: Vec<String> = held.iter().cloned().collect();
        if let Err(e) = sink.subscribe_tenants(&all).await {
            tracing::warn!(error = %e, "subscribe failed; retrying");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        // Subscribed: from here on every commit is announced, so what the
        // logs hold now is all directory sync has to read.
        wake.everything();
        if let Err(e) = resync(&hub, &mut conn, &all).await {
            tracing::warn!(error = %e, "resync failed; reconnecting");
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        after_rejoin(&hub, &all);
        wake.set_live(true);
        // Joined: ready from now on, also through later outages (a node that
        // lost Redis keeps serving its own tabs; a load balancer must not
        // drop it).
        hub.set_cluster_ready(true);
        set_up(&hub, true);
        loop {
            tokio::select! {
                incoming = messages.next() => match incoming {
                    Some(Incoming::Tenant(payload)) => on_notice(&hub, &wake, &payload),
                    // A node loads a tenant when it needs it, not when it is created.
                    Some(Incoming::Created(tid)) => {
                        tracing::trace!(tenant = %tid, "tenant created elsewhere; loaded here when needed");
                    }
                    Some(Incoming::Lost) | None => break,
                },
                Some(first) = subs.recv() => {
                    // Every request waiting now in one go: a connect storm
                    // loads hundreds of tenants at once, one subscription
                    // round trip each would queue them behind each other.
                    let mut batch = vec![first];
                    while let Ok(more) = subs.try_recv() {
                        batch.push(more);
                    }
                    if let Err(e) = apply_subscriptions(&hub, &mut sink, &mut held, batch).await {
                        tracing::warn!(error = %e, "subscription change failed; resubscribing");
                        break;
                    }
                }
                () = hub.tenants_added() => {
                    let added: Vec<String> = hub
                        .tenant_ids()
                        .into_iter()
                        .filter(|t| !held.contains(t))
                        .collect();
                    if let Err(e) = sink.subscribe_tenants(&added).await {
                        tracing::warn!(error = %e, "subscribe failed; resubscribing");
                        break;
                    }
                    held.extend(added.iter().cloned());
                    // What was committed or published before the
                    // subscription was not announced here.
                    wake.tenants(&added);
                    if let Err(e) = resync(&hub, &mut conn, &added).await {
                        tracing::warn!(error = %e, "resync failed; resubscribing");
                        break;
                    }
                }
            }
        }
        wake.set_live(false);
        set_up(&hub, false);
        tracing::warn!("redis pub/sub connection lost; resubscribing");
    }
}

/// Carries out residency's requests in order: the removals of evicted
/// tenants (unless held again) and the additions, subscribed in one go and
/// answered once Redis confirmed them (or failed: then every waiting load
/// is told, and the caller resubscribes).
async fn apply_subscriptions(
    hub: &Hub,
    sink: &mut notify::Sink,
    held: &mut HashSet<String>,
    batch: Vec<Subscription>,
) -> Result<(), notify::SubscribeError> {
    let mut adds: Vec<(String, tokio::sync::oneshot::Sender<bool>)> = Vec::new();
    for sub in batch {
        match sub {
            Subscription::Add(tid, done) => adds.push((tid, done)),
            Subscription::Remove(tid) => {
                // Removals first: a tenant both evicted and being loaded
                // again ends subscribed, by its addition below.
                if hub.tenant(&tid).is_none() && held.remove(&tid) {
                    sink.unsubscribe_tenant(&tid).await?;
                }
            }
        }
    }
    let new: Vec<String> = {
        let mut seen = HashSet::new();
        adds.iter()
            .map(|(t, _)| t.clone())
            .filter(|t| !held.contains(t) && seen.insert(t.clone()))
            .collect()
    };
    let result = sink.subscribe_tenants(&new).await;
    let ok = result.is_ok();
    if ok {
        held.extend(new);
    }
    for (_, done) in adds {
        let _ = done.send(ok);
    }
    result
}

/// After every (re)subscription: Redis may have come back without its
/// last writes (a restart that lost them), with leases that no node holds
/// any more (a release it lost). They are not in any registry the leader
/// sweeps while their nodes live, so the held tenants are swept here, now
/// and once every lease written before has run out; and the registry is
/// written again before the next claims.
fn after_rejoin(hub: &Arc<Hub>, tenants: &[String]) {
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    let _ = handle.ops.send(ClusterMsg::Reregister);
    if tenants.is_empty() {
        return;
    }
    let (dead, silent) = (HashMap::new(), BTreeSet::new());
    sweep_all(handle, hub.now_ms(), &dead, &silent, tenants);
    // The longest lease a claim sets: the local deadline plus two renewals.
    let longest = hub.config.idle_timeout + Duration::from_millis(2 * handle.renew_ms) + HEARTBEAT;
    let later = hub.clone();
    let handle = handle.clone();
    let tenants = tenants.to_vec();
    hub.spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(longest) => {
                sweep_all(&handle, later.now_ms(), &dead, &silent, &tenants);
            }
            _ = later.stopping() => {}
        }
    });
}

/// Queues a sweep in each of `tenants`: due leases end, and those of
/// `dead` nodes at their cutoffs (`PresenceOp::Sweep`).
fn sweep_all(
    handle: &ClusterHandle,
    now: u64,
    dead: &HashMap<String, u64>,
    silent: &BTreeSet<String>,
    tenants: &[String],
) {
    for tid in tenants {
        let _ = handle.ops.send(ClusterMsg::Op {
            tenant: tid.clone(),
            op: PresenceOp::Sweep {
                now,
                dead: dead.clone(),
                silent: silent.clone(),
            },
        });
    }
}

/// One payload of a tenant's channel: a presence event is applied; a
/// directory notice wakes directory sync for the tenant.
fn on_notice(hub: &Hub, wake: &Wake, payload: &str) {
    match serde_json::from_str::<Notice>(payload) {
        Ok(Notice::Presence(ev)) => {
            if let Some(t) = hub.tenant(&ev.t) {
                t.lock().apply_event(&ev, hub.now_ms(), &hub.metrics);
            }
        }
        Ok(Notice::Directory { t, .. }) => wake.tenant(&t),
        Err(e) => tracing::warn!(error = %e, "bad message on a tenant channel"),
    }
}

/// Flips the link state and tells every tenant: down, they show their own
/// tabs provisionally; up, they raise what they showed above Redis's `v`.
fn set_up(hub: &Hub, up: bool) {
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    handle.set_up(up);
    hub.metrics.redis_connected.set(i64::from(up));
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

/// Re-claims what this node holds of `tenants` and catches up on their
/// state. A tenant whose state Redis refuses to hand over (bad data) is
/// skipped: its own calls back off, and it must not keep every other tenant
/// from joining.
pub(crate) async fn resync(
    hub: &Hub,
    conn: &mut RedisConn,
    tenants: &[String],
) -> redis::RedisResult<()> {
    let now = hub.now_ms();
    for tid in tenants {
        let Some(t) = hub.tenant(tid) else { continue };
        t.lock().reclaim(now);
        let states = match stored_states(conn, tid).await {
            Ok(states) => states,
            Err(e) if op_queue::is_outage(&e) => return Err(e),
            Err(e) => {
                tracing::warn!(tenant = %tid, error = %e, "cannot read a tenant's presence state");
                continue;
            }
        };
        let mut t = t.lock();
        for ev in &states {
            t.apply_event(ev, now, &hub.metrics);
        }
    }
    Ok(())
}

/// The global presence Redis holds for `tid` (`presence:{tid}:state`), as
/// the events that bring a tenant up to it; entries that do not parse are
/// skipped.
pub(crate) async fn stored_states(
    conn: &mut RedisConn,
    tid: &str,
) -> redis::RedisResult<Vec<crate::cluster::ops::PresenceEvent>> {
    let all: HashMap<String, String> = conn.hgetall(PresenceKeys::new(tid).state).await?;
    Ok(all
        .into_iter()
        .filter_map(|(u, raw)| {
            let st = serde_json::from_str::<StoredState>(&raw).ok()?;
            Some(st.into_event(tid, u))
        })
        .collect())
}

/// Heartbeats this node; on the sweep leader, sweeps the tenants of every
/// node that is late, dead or departed.
///
/// Only those tenants can hold a lease that ends without its node saying
/// so: a live node releases its own claims at its local deadlines. Which
/// tenants they are is in each node's registry (`keys::node_tenants`, kept
/// by `op_queue`), so an idle cluster sends heartbeats and nothing else,
/// however many tenants it has. The leader is one node, chosen by
/// rendezvous hashing over the nodes whose heartbeat is on time; while two
/// nodes disagree both sweep, which is harmless (a sweep is idempotent).
async fn run_heartbeat(hub: Arc<Hub>, url: String) {
    let mut conn = connect(&url).await;
    let Some(handle) = hub.cluster_handle() else {
        return;
    };
    let idle_ms = hub.config.idle_timeout.as_millis() as u64;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut last_sweeps = LastSweeps::default();
    loop {
        tick.tick().await;
        let now = hub.now_ms();
        type Beat = (i64, Vec<(String, f64)>, Vec<(String, f64)>);
        let beat: redis::RedisResult<Beat> = async {
            let added: i64 = conn.zadd(NODES_KEY, &*handle.node, now).await?;
            let nodes = conn.zrange_withscores(NODES_KEY, 0, -1).await?;
            let left = conn.zrange_withscores(LEFT_KEY, 0, -1).await?;
            Ok((added, nodes, left))
        }
        .await;
        let (added, nodes, left) = match beat {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, "heartbeat failed");
                continue;
            }
        };
        if added > 0 {
            // Not in the set (the first beat, or the others took this node
            // for dead and removed it with its registry): the registry is
            // written again before the next claim of every tenant.
            let _ = handle.ops.send(ClusterMsg::Reregister);
        }
        hub.set_cluster_nodes(nodes.iter().map(|(n, t)| (n.clone(), *t as u64)).collect());
        let alive = nodes
            .iter()
            .filter(|(_, last)| now.saturating_sub(*last as u64) <= DEAD_AFTER_MS)
            .count();
        hub.metrics.cluster_nodes.set(alive as i64);
        let on_time = nodes
            .iter()
            .filter(|(_, last)| now.saturating_sub(*last as u64) <= SILENT_AFTER_MS)
            .map(|(n, _)| n.as_str())
            .chain([&*handle.node]);
        if owner_among(SWEEP_DUTY, on_time) != Some(&*handle.node) {
            continue;
        }
        let mut dead = HashMap::new();
        let mut silent = BTreeSet::new();
        // Nodes whose registry's tenants are swept this round.
        let mut late = Vec::new();
        for (node, last) in nodes {
            let last = last as u64;
            if now.saturating_sub(last) <= SILENT_AFTER_MS {
                continue;
            }
            if now.saturating_sub(last) <= DEAD_AFTER_MS {
                // Not dead yet, but a lease of its that ends now ends
                // because the node did not release it: the feed says so.
                silent.insert(node.clone());
                late.push(node);
                continue;
            }
            // A dead node's users interacted at the latest one heartbeat
            // after its last one: they go offline a timeout after that.
            let cutoff = last + HEARTBEAT.as_millis() as u64 + idle_ms;
            // Its leases ended at the cutoff, a minute ago.
            match last_sweeps.step(&node, now > cutoff + 60_000) {
                Last::Sweep => {
                    dead.insert(node.clone(), cutoff);
                    late.push(node);
                }
                Last::Wait => {}
                Last::Forget => forget_node(&mut conn, NODES_KEY, &node).await,
            }
        }
        for (node, until) in left {
            // Its leases end at their scores, all by `until`.
            match last_sweeps.step(&node, now > until as u64 + 5_000) {
                Last::Sweep => late.push(node),
                Last::Wait => {}
                Last::Forget => forget_node(&mut conn, LEFT_KEY, &node).await,
            }
        }
        let mut tenants = BTreeSet::new();
        for node in &late {
            match conn.smembers::<_, Vec<String>>(node_tenants(node)).await {
                Ok(ts) => tenants.extend(ts),
                Err(e) => tracing::warn!(error = %e, %node, "cannot read a node's registry"),
            }
        }
        let tenants: Vec<String> = tenants.into_iter().collect();
        sweep_all(handle, now, &dead, &silent, &tenants);
        last_sweeps.queued(handle);
    }
}

/// The last sweep of a node about to be forgotten (its registry deleted):
/// queued, then waited for until it reached Redis. Forgetting on time alone
/// would leave its leases for ever when no node ran to sweep them while
/// they ended (a whole cluster stopped, then started again): ghosts.
#[derive(Default)]
struct LastSweeps {
    /// Nodes whose last sweep is to be queued this round.
    due: Vec<String>,
    /// Nodes whose last sweep is queued: answered once it is delivered.
    queued: HashMap<String, tokio::sync::oneshot::Receiver<()>>,
}

/// What a late node gets this round.
enum Last {
    Sweep,
    /// Its last sweep is queued and not yet in Redis.
    Wait,
    Forget,
}

impl LastSweeps {
    /// A late node is swept each round until it is `over` (its leases all
    /// ended); then once more, and forgotten once that sweep is delivered
    /// (swept again if the queue dropped it).
    fn step(&mut self, node: &str, over: bool) -> Last {
        if !over {
            return Last::Sweep;
        }
        match self.queued.get_mut(node).map(|rx| rx.try_recv()) {
            Some(Ok(())) => {
                self.queued.remove(node);
                Last::Forget
            }
            Some(Err(tokio::sync::oneshot::error::TryRecvError::Empty)) => Last::Wait,
            Some(Err(tokio::sync::oneshot::error::TryRecvError::Closed)) | None => {
                self.queued.remove(node);
                self.due.push(node.to_owned());
                Last::Sweep
            }
        }
    }

    /// After the round's sweeps were queued: a flush per node swept for the
    /// last time, answered once everything queued before it is delivered.
    fn queued(&mut self, handle: &ClusterHandle) {
        for node in self.due.drain(..) {
            let (tx, rx) = tokio::sync::oneshot::channel();
            let _ = handle.ops.send(ClusterMsg::Flush(tx));
            self.queued.insert(node, rx);
        }
    }
}

/// The name the sweep leader is chosen by (`cluster::owner`).
const SWEEP_DUTY: &str = "\u{1f}sweep";

/// A node whose leases have all ended: its registry and its entry in `set`
/// go.
async fn forget_node(conn: &mut RedisConn, set: &str, node: &str) {
    let _: redis::RedisResult<()> = conn.del(node_tenants(node)).await;
    let _: redis::RedisResult<()> = conn.zrem(set, node).await;
}

/// Graceful shutdown: leases cut to exact deadlines, queued operations
/// flushed (for at most 3 s: a tenant whose calls Redis keeps refusing
/// would hold the flush), and this node moved from the heartbeat set to
/// the departed ones (its claims then end at their scores instead of at a
/// dead node's cutoff, swept by the leader).
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
        // Departed before removed, so the sweep leader always knows whose
        // registry to sweep: the handed-off leases end by then.
        let until = now + hub.config.idle_timeout.as_millis() as u64;
        let _: redis::RedisResult<()> = conn.zadd(LEFT_KEY, &*handle.node, until).await;
        let _: redis::RedisResult<()> = conn.zrem(NODES_KEY, &*handle.node).await;
    }
}
