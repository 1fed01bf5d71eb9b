//! Cluster mode's webhook delivery: each tenant's progress (hash
//! `presence:{<tid>}:webhook_state`) and the lease that makes one node the
//! tenant's deliverer (`presence:{<tid>}:webhook_lease`, a string holding
//! the node id with a TTL; keys in `cluster::keys`).
//!
//! Both writes are small scripts, so a check and its write are one step: the
//! progress is saved only when it does not move the delivered cursor back,
//! and a lease is renewed only by its holder.

use std::time::Duration;

use redis::Script;

use super::redis::{bounded, from_redis, RedisStore};
use crate::cluster::keys::WebhookKeys;
use crate::store::{Corrupt, StoreError, WebhookProgress};

/// KEYS[1] the state hash; ARGV 1 webhook id, 2 the JSON progress,
/// 3 its generation, 4 its delivered cursor. Returns 1 when saved.
const SAVE: &str = r"
local old = redis.call('HGET', KEYS[1], ARGV[1])
if old then
  local ok, p = pcall(cjson.decode, old)
  if ok and type(p) == 'table' and p.generation == ARGV[3]
      and type(p.state) == 'table'
      and tonumber(p.state.delivered_cursor or 0) > tonumber(ARGV[4]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
";

/// KEYS[1] the lease; ARGV 1 holder, 2 TTL (ms). Returns 1 when held.
const LEASE: &str = r"
local cur = redis.call('GET', KEYS[1])
if cur == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
";

/// KEYS[1] the lease; ARGV 1 holder.
const RELEASE: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
";

impl RedisStore {
    pub(super) async fn get_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<Option<WebhookProgress>, StoreError> {
        let keys = WebhookKeys::new(tenant);
        let mut conn = self.conn();
        let raw: Option<String> = bounded(
            redis::cmd("HGET")
                .arg(&keys.state)
                .arg(id)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        raw.map(|v| {
            serde_json::from_str(&v).map_err(|error| {
                Corrupt::Record {
                    key: keys.state.clone(),
                    error,
                }
                .into()
            })
        })
        .transpose()
    }

    pub(super) async fn put_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
        p: &WebhookProgress,
    ) -> Result<bool, StoreError> {
        let keys = WebhookKeys::new(tenant);
        let mut conn = self.conn();
        // A plain struct of strings, numbers and enums: cannot fail.
        let json = serde_json::to_string(p).expect("progress serialises");
        let saved: i64 = bounded(
            Script::new(SAVE)
                .key(&keys.state)
                .arg(id)
                .arg(json)
                .arg(&p.generation)
                .arg(p.state.delivered_cursor)
                .invoke_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(saved == 1)
    }

    pub(super) async fn remove_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<(), StoreError> {
        let keys = WebhookKeys::new(tenant);
        let mut conn = self.conn();
        let _: i64 = bounded(
            redis::cmd("HDEL")
                .arg(&keys.state)
                .arg(id)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(())
    }

    pub(super) async fn take_webhook_lease(
        &self,
        tenant: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let keys = WebhookKeys::new(tenant);
        let mut conn = self.conn();
        let held: i64 = bounded(
            Script::new(LEASE)
                .key(&keys.lease)
                .arg(holder)
                .arg(ttl.as_millis().max(1) as u64)
                .invoke_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(held == 1)
    }

    pub(super) async fn give_webhook_lease(
        &self,
        tenant: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        let keys = WebhookKeys::new(tenant);
        let mut conn = self.conn();
        let _: i64 = bounded(
            Script::new(RELEASE)
                .key(&keys.lease)
                .arg(holder)
                .invoke_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(())
    }
}
