//! The cluster-mode store: the directory in Redis (single server or Redis
//! Cluster), one atomic Lua script per tenant batch, and a per-tenant log
//! stream that other nodes tail to apply each other's writes.
//!
//! # Keys
//!
//! Every key this store writes is named in `cluster::keys`, with the table
//! of what each holds: a tenant's keys share one hash slot, so a tenant's
//! batch is one script call on one Redis Cluster node.
//!
//! # Commit
//!
//! A batch is split per tenant (in order of first appearance; writes keep
//! their order within a tenant). Each part is one call of `store/commit.lua`,
//! which checks key types before writing anything (Redis does not roll back a
//! script that fails half-way), applies the writes, drops the memberships of
//! deleted teams, `INCR`s the version, `XADD`s the log entry and announces the
//! new version on the tenant's channel (and a written tenant record on the
//! tenant-created channel), which wakes the other nodes' directory sync. So
//! a tenant's part is all-or-nothing, its log has exactly the batches that
//! happened, and none goes unannounced.
//!
//! `SADD presence:tenants` runs *before* the script of a part that writes the
//! tenant record: if the script then fails, the set names a tenant with no
//! records, which `load` skips; the other order could leave committed records
//! that `load` never finds.
//!
//! A batch of any size is one call: a bulk sync of 50,000 items is one
//! script that runs alone on its Redis node for tens of milliseconds (other
//! nodes' presence scripts wait that long), with 150,003 arguments and its
//! writes as one JSON string in the log entry (well under Redis's 512 MB
//! bulk length). Big entries trim the log harder ([`LOG_BUDGET_BYTES`]).
//! Each deleted team costs the script one pass over the tenant's
//! memberships (`unteam`), so a batch that deletes hundreds of teams of a
//! large tenant is the one shape that makes the call long.
//!
//! Limits, by construction of Redis rather than of this code:
//! - A batch spanning tenants (only presence flushes do) is atomic per
//!   tenant, not as a whole: an error after the first part leaves the earlier
//!   parts committed.
//! - A command that times out may still have run on the server. The caller
//!   sees `Unavailable` for a batch that is in Redis and in the log; nodes
//!   that tail the log converge on it all the same.
//! - Durability is the server's: acknowledged writes survive a Redis crash
//!   only with `appendonly yes` and `appendfsync always` (or replicas and
//!   `WAIT`, which this store does not issue).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::Histogram;
use redis::streams::StreamReadReply;
use redis::{RedisError, Script};

use crate::cluster::directory_sync::{LogEntry, SharedLog};
use crate::cluster::keys::{
    member_field, split_member_field, tenant_channel, DirectoryKeys, TENANTS_KEY,
    TENANT_CREATED_CHANNEL, WEBHOOK_TENANTS_KEY,
};
use crate::directory::{
    PresenceRecord, TeamRecord, TenantRecord, UserRecord, WebhookRecord, Write,
};
use crate::history::fold::Batch as HistoryBatch;
use crate::store::redis_conn::RedisConn;
use crate::store::{
    Corrupt, HistoryRead, HistoryState, LogProblem, Store, StoreError, StoreFuture, Unavailable,
};

/// The log keeps about this many batches per tenant (`MAXLEN ~`).
pub const LOG_MAXLEN: u64 = 10_000;
/// A big batch (a bulk sync: 20,000 memberships are a 1.7 MB entry) trims
/// the log to about this many bytes of such entries, and never below
/// [`LOG_MIN_ENTRIES`]: 10,000 of them would hold gigabytes in Redis and in
/// the read of a node catching up (up to [`LOG_READ_BATCH`] entries at
/// once). A node that falls behind the trim reloads the tenant
/// (`cluster::directory_sync`).
pub const LOG_BUDGET_BYTES: u64 = 64 * 1024 * 1024;
/// The fewest batches a big batch leaves in the log.
pub const LOG_MIN_ENTRIES: u64 = 16;

/// The `MAXLEN` of the `XADD` of an entry of `entry_bytes`.
fn log_maxlen(entry_bytes: usize) -> u64 {
    (LOG_BUDGET_BYTES / (entry_bytes as u64).max(1)).clamp(LOG_MIN_ENTRIES, LOG_MAXLEN)
}
/// `read_log` returns at most this many entries per call.
pub const LOG_READ_BATCH: usize = 1_000;
/// No Redis call waits longer than this, reconnects included, so the hub
/// answers 503 instead of hanging an admin request. A commit or load stops
/// at its first failed call, so against a dead Redis the whole operation
/// fails within this bound too.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(1_500);

pub struct RedisStore {
    conn: RedisConn,
    node: String,
    commit_script: Script,
    /// Per tenant, the log versions of batches this node committed and got
    /// the acknowledgement of, which `Hub::write` therefore already applied
    /// locally; `directory_sync` takes them out as it meets them in the log.
    committed_here: parking_lot::Mutex<HashMap<String, BTreeSet<u64>>>,
    /// Per tenant, the version of the snapshot `load` returned, where the
    /// log reader starts.
    loaded: parking_lot::Mutex<HashMap<String, u64>>,
    /// Cluster mode: where each successful `commit.lua` call's duration
    /// goes (`presence_redis_script_seconds`); set once the hub, and so
    /// its registry, exists.
    script_seconds: OnceLock<Histogram>,
}

impl RedisStore {
    /// A store over `conn`; `node` names this node in the log entries it
    /// writes.
    pub fn new(conn: RedisConn, node: impl Into<String>) -> Self {
        RedisStore {
            conn,
            node: node.into(),
            commit_script: Script::new(include_str!("commit.lua")),
            committed_here: parking_lot::Mutex::new(HashMap::new()),
            loaded: parking_lot::Mutex::new(HashMap::new()),
            script_seconds: OnceLock::new(),
        }
    }

    /// Times every later `commit.lua` call that succeeds into `h`.
    pub(crate) fn time_scripts(&self, h: Histogram) {
        let _ = self.script_seconds.set(h);
    }

    /// Whether this node committed log entry `v` of `tid` itself (and so
    /// applied it already); forgets it either way.
    pub fn take_committed_here(&self, tid: &str, v: u64) -> bool {
        self.committed_here
            .lock()
            .get_mut(tid)
            .is_some_and(|vs| vs.remove(&v))
    }

    /// Forgets own commits at or below `v` (a reader that skipped them by
    /// reloading a snapshot will never meet them).
    pub fn forget_committed_here(&self, tid: &str, v: u64) {
        if let Some(vs) = self.committed_here.lock().get_mut(tid) {
            vs.retain(|x| *x > v);
        }
    }

    /// A handle on the connection (cheap: it is shared).
    pub(super) fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    /// The version of the snapshot `tid` was last loaded from, if it was.
    pub fn loaded_version(&self, tid: &str) -> Option<u64> {
        self.loaded.lock().get(tid).copied()
    }

    /// `tid` is being loaded from the snapshot of version `v`
    /// (`cluster::residency`), where its log reader starts.
    pub(crate) fn note_loaded(&self, tid: &str, v: u64) {
        self.loaded.lock().insert(tid.to_owned(), v);
    }

    /// A tenant's record alone (its settings), without its directory.
    ///
    /// # Errors
    /// As [`snapshot`](Self::snapshot).
    pub(crate) async fn tenant_record(
        &self,
        tid: &str,
    ) -> Result<Option<TenantRecord>, StoreError> {
        let key = DirectoryKeys::new(tid).tenant;
        let mut conn = self.conn.clone();
        let raw: Option<String> = bounded(redis::cmd("GET").arg(&key).query_async(&mut conn))
            .await?
            .map_err(from_redis)?;
        raw.map(|r| parse::<TenantRecord>(&key, &r)).transpose()
    }

    /// The tenants that have (or had) webhooks (`keys::WEBHOOK_TENANTS_KEY`).
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time.
    pub(crate) async fn webhook_tenants(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        bounded(
            redis::cmd("SMEMBERS")
                .arg(WEBHOOK_TENANTS_KEY)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)
    }

    /// Adds `tid` to (or takes it from) the tenants with webhooks.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time.
    pub(crate) async fn mark_webhook_tenant(&self, tid: &str, has: bool) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let cmd = if has { "SADD" } else { "SREM" };
        bounded(
            redis::cmd(cmd)
                .arg(WEBHOOK_TENANTS_KEY)
                .arg(tid)
                .query_async::<i64>(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(())
    }

    /// The tenant's version: how many batches were committed for it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time.
    pub async fn version(&self, tenant: &str) -> Result<u64, StoreError> {
        let keys = DirectoryKeys::new(tenant);
        let mut conn = self.conn.clone();
        let v: Option<u64> = bounded(redis::cmd("GET").arg(&keys.version).query_async(&mut conn))
            .await?
            .map_err(from_redis)?;
        Ok(v.unwrap_or(0))
    }

    /// Log entries of a tenant after stream id `after_id` (`"0"` for the
    /// oldest kept), oldest first, at most [`LOG_READ_BATCH`]; call again
    /// with the last id returned to read on. Entries older than the log's
    /// `MAXLEN` are gone: a reader that falls that far behind reloads.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time,
    /// [`StoreError::Corrupt`] for an entry this code did not write.
    pub async fn read_log(
        &self,
        tenant: &str,
        after_id: &str,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let keys = DirectoryKeys::new(tenant);
        let mut conn = self.conn.clone();
        // XREAD (not XRANGE) because its start is exclusive on every Redis
        // version; without BLOCK it returns at once.
        let reply: Option<StreamReadReply> = bounded(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(LOG_READ_BATCH)
                .arg("STREAMS")
                .arg(&keys.log)
                .arg(after_id)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let mut out = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            let field = |field: &'static str| -> Result<String, StoreError> {
                match entry.map.get(field) {
                    Some(v) => redis::from_redis_value_ref::<String>(v)
                        .map_err(|error| LogProblem::NotText { field, error }.in_entry(&entry.id)),
                    None => Err(LogProblem::MissingField(field).in_entry(&entry.id)),
                }
            };
            let v: u64 = field("v")?
                .parse()
                .map_err(|e| LogProblem::Version(e).in_entry(&entry.id))?;
            let node = field("node")?;
            let writes: Vec<Write> = serde_json::from_str(&field("writes")?)
                .map_err(|e| LogProblem::Writes(e).in_entry(&entry.id))?;
            out.push((entry.id.clone(), v, node, writes));
        }
        Ok(out)
    }

    /// Commits one tenant's part of a batch; returns its log version.
    async fn commit_tenant(&self, tid: &str, writes: &[&Write]) -> Result<u64, StoreError> {
        let keys = DirectoryKeys::new(tid);
        let mut conn = self.conn.clone();
        if writes.iter().any(|w| matches!(w, Write::Tenant(_))) {
            let _: i64 = bounded(
                redis::cmd("SADD")
                    .arg(TENANTS_KEY)
                    .arg(tid)
                    .query_async(&mut conn),
            )
            .await?
            .map_err(from_redis)?;
        }
        let mut call = self.commit_script.prepare_invoke();
        for k in keys.in_script_order() {
            call.key(k);
        }
        let entry = json(&writes);
        let maxlen = log_maxlen(entry.len());
        call.arg(&self.node)
            .arg(entry)
            .arg(maxlen)
            .arg(tid)
            .arg(conn.publish_command())
            .arg(tenant_channel(tid))
            .arg(TENANT_CREATED_CHANNEL);
        for w in writes {
            let (op, field, value) = encode(w);
            call.arg(op).arg(field).arg(value);
        }
        let started = std::time::Instant::now();
        let (v, _id): (u64, String) = bounded(call.invoke_async(&mut conn))
            .await?
            .map_err(from_redis)?;
        if let Some(h) = self.script_seconds.get() {
            h.observe(started.elapsed().as_secs_f64());
        }
        Ok(v)
    }

    /// Every tenant id, sorted.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time.
    pub async fn tenant_ids(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn.clone();
        let mut tids: Vec<String> = bounded(
            redis::cmd("SMEMBERS")
                .arg(TENANTS_KEY)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        tids.sort();
        Ok(tids)
    }

    async fn load_all(&self) -> Result<Vec<Write>, StoreError> {
        let tids = self.tenant_ids().await?;
        let mut out = Vec::new();
        for tid in tids {
            let (writes, v) = self.snapshot(&tid).await?;
            self.loaded.lock().insert(tid, v);
            out.extend(writes);
        }
        Ok(out)
    }

    /// One tenant's records in replay order (the tenant, teams, users,
    /// memberships, presence; by id within each kind) and the version they
    /// are the state of: a log reader that starts from this snapshot skips
    /// log entries with `v` at or below it.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when Redis does not answer in time,
    /// [`StoreError::Corrupt`] for a record this code did not write.
    pub async fn snapshot(&self, tid: &str) -> Result<(Vec<Write>, u64), StoreError> {
        let keys = DirectoryKeys::new(tid);
        let mut conn = self.conn.clone();
        // MULTI/EXEC, so no commit script runs between these reads: the
        // records and the version are one state. All keys share a slot, so
        // this is one node even on a cluster.
        type Hash = BTreeMap<String, String>;
        type Reply = (Option<String>, Hash, Hash, Hash, Hash, Hash, Option<u64>);
        let (tenant, teams, users, members, presence, webhooks, version): Reply = bounded(
            redis::pipe()
                .atomic()
                .get(&keys.tenant)
                .hgetall(&keys.teams)
                .hgetall(&keys.users)
                .hgetall(&keys.members)
                .hgetall(&keys.presence)
                .hgetall(&keys.webhooks)
                .get(&keys.version)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let version = version.unwrap_or(0);
        let Some(tenant) = tenant else {
            // Named in the set by a commit whose script then failed.
            return Ok((Vec::new(), version));
        };
        let mut out = vec![Write::Tenant(parse::<TenantRecord>(&keys.tenant, &tenant)?)];
        for v in teams.values() {
            out.push(Write::Team {
                tenant: tid.to_owned(),
                team: parse::<TeamRecord>(&keys.teams, v)?,
            });
        }
        for v in users.values() {
            out.push(Write::User {
                tenant: tid.to_owned(),
                user: parse::<UserRecord>(&keys.users, v)?,
            });
        }
        for (field, v) in &members {
            let Some((team, user)) = split_member_field(field) else {
                return Err(Corrupt::MemberField {
                    key: keys.members.clone(),
                    field: field.clone(),
                }
                .into());
            };
            out.push(Write::Member {
                tenant: tid.to_owned(),
                team: team.to_owned(),
                user: user.to_owned(),
                role: parse(&keys.members, v)?,
            });
        }
        for (user, v) in &presence {
            out.push(Write::Presence {
                tenant: tid.to_owned(),
                user: user.clone(),
                presence: parse::<PresenceRecord>(&keys.presence, v)?,
            });
        }
        for v in webhooks.values() {
            out.push(Write::Webhook {
                tenant: tid.to_owned(),
                webhook: parse::<WebhookRecord>(&keys.webhooks, v)?,
            });
        }
        Ok((out, version))
    }
}

impl Store for RedisStore {
    fn load(&self) -> StoreFuture<'_, Vec<Write>> {
        Box::pin(self.load_all())
    }

    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            // Tenants in order of first appearance, writes in batch order.
            let mut parts: Vec<(&str, Vec<&Write>)> = Vec::new();
            for w in &writes {
                match parts.iter_mut().find(|(t, _)| *t == w.tenant()) {
                    Some((_, ws)) => ws.push(w),
                    None => parts.push((w.tenant(), vec![w])),
                }
            }
            let mut versions = Vec::new();
            for (tid, ws) in &parts {
                // Named before the webhook exists, so its owner always
                // finds it (a name left over costs a look, nothing else).
                if ws.iter().any(|w| matches!(w, Write::Webhook { .. })) {
                    self.mark_webhook_tenant(tid, true).await?;
                }
                versions.push((*tid, self.commit_tenant(tid, ws).await?));
            }
            // Recorded only once the whole batch is in: a caller that gets
            // `Err` applies none of it, so the sync must apply all of it.
            let mut here = self.committed_here.lock();
            for (tid, v) in versions {
                here.entry(tid.to_owned()).or_default().insert(v);
            }
            Ok(())
        })
    }

    // The feed: `store/redis_events.rs`.
    fn append_events(
        &self,
        events: Vec<presence_protocol::Event>,
        writes: Vec<Write>,
    ) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            self.commit(writes).await?;
            self.append_feed(&events).await
        })
    }

    fn read_events(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> StoreFuture<'_, crate::store::EventRead> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.read_feed(&tenant, after, limit).await })
    }

    fn trim_events(&self, tenant: &str, before_ms: u64) -> StoreFuture<'_, u64> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.trim_feed(&tenant, before_ms).await })
    }

    fn feed_tails(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        // A node of a cluster assigns no cursor: `presence.lua` does.
        Box::pin(async { Ok(Vec::new()) })
    }

    // Webhook delivery: `store/redis_webhooks.rs`.
    fn webhook_progress(
        &self,
        tenant: &str,
        id: &str,
    ) -> StoreFuture<'_, Option<crate::store::WebhookProgress>> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move { self.get_webhook_progress(&tenant, &id).await })
    }

    fn save_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
        progress: &crate::store::WebhookProgress,
    ) -> StoreFuture<'_, bool> {
        let (tenant, id, p) = (tenant.to_owned(), id.to_owned(), progress.clone());
        Box::pin(async move { self.put_webhook_progress(&tenant, &id, &p).await })
    }

    fn delete_webhook_progress(&self, tenant: &str, id: &str) -> StoreFuture<'_, ()> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        Box::pin(async move { self.remove_webhook_progress(&tenant, &id).await })
    }

    fn lease_webhooks(&self, tenant: &str, holder: &str, ttl: Duration) -> StoreFuture<'_, bool> {
        let (tenant, holder) = (tenant.to_owned(), holder.to_owned());
        Box::pin(async move { self.take_webhook_lease(&tenant, &holder, ttl).await })
    }

    // History: `store/redis_history.rs`.
    fn history_state(&self, tenant: &str) -> StoreFuture<'_, HistoryState> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.get_history_state(&tenant).await })
    }

    fn apply_history(
        &self,
        tenant: &str,
        expect: (u64, u64),
        batch: &HistoryBatch,
    ) -> StoreFuture<'_, bool> {
        let (tenant, batch) = (tenant.to_owned(), batch.clone());
        Box::pin(async move { self.store_history(&tenant, expect, &batch).await })
    }

    fn read_history(
        &self,
        tenant: &str,
        first: u32,
        last: u32,
        users: Option<&[String]>,
    ) -> StoreFuture<'_, HistoryRead> {
        let (tenant, users) = (tenant.to_owned(), users.map(<[_]>::to_vec));
        Box::pin(async move {
            self.get_history(&tenant, first, last, users.as_deref())
                .await
        })
    }

    fn erase_history(&self, tenant: &str, user: &str, at_ms: u64) -> StoreFuture<'_, ()> {
        let (tenant, user) = (tenant.to_owned(), user.to_owned());
        Box::pin(async move { self.remove_history(&tenant, &user, at_ms).await })
    }

    fn trim_history(&self, tenant: &str, before_day: u32) -> StoreFuture<'_, u64> {
        let tenant = tenant.to_owned();
        Box::pin(async move { self.cut_history(&tenant, before_day).await })
    }

    fn release_webhooks(&self, tenant: &str, holder: &str) -> StoreFuture<'_, ()> {
        let (tenant, holder) = (tenant.to_owned(), holder.to_owned());
        Box::pin(async move { self.give_webhook_lease(&tenant, &holder).await })
    }
}

/// What directory sync needs of the shared log, by forwarding to the methods
/// above (which the store's own tests call directly).
impl SharedLog for RedisStore {
    const READ_BATCH: usize = LOG_READ_BATCH;

    fn loaded_version(&self, tid: &str) -> Option<u64> {
        RedisStore::loaded_version(self, tid)
    }

    fn version<'a>(&'a self, tid: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(RedisStore::version(self, tid))
    }

    fn read_log<'a>(&'a self, tid: &'a str, after_id: &'a str) -> StoreFuture<'a, Vec<LogEntry>> {
        Box::pin(RedisStore::read_log(self, tid, after_id))
    }

    fn snapshot<'a>(&'a self, tid: &'a str) -> StoreFuture<'a, (Vec<Write>, u64)> {
        Box::pin(RedisStore::snapshot(self, tid))
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let _: String = bounded(redis::cmd("PING").query_async(&mut conn))
                .await?
                .map_err(from_redis)?;
            Ok(())
        })
    }

    fn take_committed_here(&self, tid: &str, v: u64) -> bool {
        RedisStore::take_committed_here(self, tid, v)
    }

    fn forget_committed_here(&self, tid: &str, v: u64) {
        RedisStore::forget_committed_here(self, tid, v)
    }
}

/// The script op, hash field and value of a write (see `commit.lua`).
fn encode(w: &Write) -> (&'static str, String, String) {
    match w {
        Write::Tenant(t) => ("tenant", String::new(), json(t)),
        Write::User { user, .. } => ("user", user.id.clone(), json(user)),
        Write::Team { team, .. } => ("team", team.id.clone(), json(team)),
        Write::DeleteTeam { team, .. } => ("unteam", team.clone(), String::new()),
        Write::Member {
            team, user, role, ..
        } => ("member", member_field(team, user), json(role)),
        Write::DeleteMember { team, user, .. } => {
            ("unmember", member_field(team, user), String::new())
        }
        Write::Presence { user, presence, .. } => ("presence", user.clone(), json(presence)),
        Write::Webhook { webhook, .. } => ("webhook", webhook.id.clone(), json(webhook)),
        Write::DeleteWebhook { id, .. } => ("unwebhook", id.clone(), String::new()),
    }
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    // Directory records are plain structs of strings, numbers and enums with
    // string tags: serialising them cannot fail.
    serde_json::to_string(v).expect("directory records always serialise")
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, v: &str) -> Result<T, StoreError> {
    serde_json::from_str(v).map_err(|error| {
        Corrupt::Record {
            key: key.to_owned(),
            error,
        }
        .into()
    })
}

/// Bounds a Redis call by [`CALL_TIMEOUT`]: the connection's own timeouts
/// apply per attempt, not to waiting on a reconnect in progress.
pub(super) async fn bounded<T>(
    f: impl std::future::Future<Output = Result<T, RedisError>>,
) -> Result<Result<T, RedisError>, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, f)
        .await
        .map_err(|_| Unavailable::Timeout(CALL_TIMEOUT).into())
}

/// A key of the wrong type is bad data, not an outage; everything else
/// (refused connection, timeout, cluster down, OOM) is an outage.
pub(super) fn from_redis(e: RedisError) -> StoreError {
    if e.code() == Some("WRONGTYPE") {
        Corrupt::WrongType(e).into()
    } else {
        Unavailable::Redis(e).into()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn big_entries_trim_the_log_to_a_byte_budget() {
        use super::*;
        assert_eq!(log_maxlen(200), LOG_MAXLEN);
        assert_eq!(log_maxlen(1_700_000), 39);
        assert_eq!(log_maxlen(40 * 1024 * 1024), LOG_MIN_ENTRIES);
    }
}
