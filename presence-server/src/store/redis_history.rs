//! Cluster mode's history (SPEC §11), shared by every node: per tenant a
//! hash per UTC day (`history:<day>`, user → packed pieces, see
//! `history::codec`), the set of days held (`history_days`), the open
//! intervals (`history_open`), the erasures (`history_erased`) and the
//! keeper's cursor and generation (`history_state`); keys in
//! `cluster::keys`.
//!
//! A fold is one script that checks the cursor and generation and writes
//! everything or nothing, so two keepers (ownership moving between nodes)
//! never store a batch twice. Reads are plain calls, state first: a
//! fold stored between the two reads is also in the feed's tail the reader
//! folds again, and joining the same interval twice gives it once.

use std::collections::{BTreeMap, HashMap};

use redis::Script;

use super::redis::{bounded, from_redis, RedisStore};
use crate::cluster::keys::HistoryKeys;
use crate::history::codec;
use crate::history::fold::Batch;
use crate::store::{HistoryRead, HistoryState, StoreError};

/// One day's buckets: (user, packed pieces).
type Rows = Vec<(String, Vec<u8>)>;

/// Days read at once by a report.
const DAYS_IN_FLIGHT: usize = 8;

/// KEYS 1 state, 2 open, 3 days, 4.. the day hashes.
/// ARGV 1 expected cursor, 2 expected generation, 3 new cursor, then
/// `n` + n users to clear, `n` + n (user, from) to open, `n` + n
/// (key index, day, user, bytes) pieces to append. Returns 1 when stored.
const APPLY: &str = r"
local st = redis.call('HMGET', KEYS[1], 'cursor', 'generation')
if tonumber(st[1] or '0') ~= tonumber(ARGV[1]) or tonumber(st[2] or '0') ~= tonumber(ARGV[2]) then
  return 0
end
local i = 4
local n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HDEL', KEYS[2], ARGV[i]); i = i + 1 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]); i = i + 2 end
n = tonumber(ARGV[i]); i = i + 1
for _ = 1, n do
  local k = KEYS[tonumber(ARGV[i])]
  local old = redis.call('HGET', k, ARGV[i + 2]) or ''
  redis.call('HSET', k, ARGV[i + 2], old .. ARGV[i + 3])
  redis.call('SADD', KEYS[3], ARGV[i + 1])
  i = i + 4
end
redis.call('HSET', KEYS[1], 'cursor', ARGV[3])
return 1
";

/// KEYS 1 state, 2 open, 3 erased, 4 days, 5.. the day hashes the caller
/// saw in `days`. ARGV 1 user, 2 erased at (ms), 3 how many days the
/// caller saw. Returns 0 (nothing done) when days were added meanwhile.
const ERASE: &str = r"
if redis.call('SCARD', KEYS[4]) ~= tonumber(ARGV[3]) then return 0 end
for i = 5, #KEYS do redis.call('HDEL', KEYS[i], ARGV[1]) end
redis.call('HDEL', KEYS[2], ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
redis.call('HSET', KEYS[3], ARGV[1], math.max(old, tonumber(ARGV[2])))
redis.call('HINCRBY', KEYS[1], 'generation', 1)
return 1
";

impl RedisStore {
    pub(super) async fn get_history_state(&self, tenant: &str) -> Result<HistoryState, StoreError> {
        let keys = HistoryKeys::new(tenant);
        let mut conn = self.conn();
        type Reply = (
            (Option<u64>, Option<u64>),
            HashMap<String, u64>,
            HashMap<String, u64>,
        );
        let ((cursor, generation), open, erased): Reply = bounded(
            redis::pipe()
                .cmd("HMGET")
                .arg(&keys.state)
                .arg("cursor")
                .arg("generation")
                .cmd("HGETALL")
                .arg(&keys.open)
                .cmd("HGETALL")
                .arg(&keys.erased)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(HistoryState {
            cursor: cursor.unwrap_or(0),
            generation: generation.unwrap_or(0),
            open,
            erased,
        })
    }

    pub(super) async fn store_history(
        &self,
        tenant: &str,
        expect: (u64, u64),
        batch: &Batch,
    ) -> Result<bool, StoreError> {
        let keys = HistoryKeys::new(tenant);
        let mut pieces: Vec<(u32, &str, Vec<u8>)> = Vec::new();
        for c in &batch.closed {
            for (day, b) in codec::pieces(c.from, c.to, c.reason) {
                pieces.push((day, &c.user, b));
            }
        }
        // One KEYS entry per day touched.
        let mut day_index: BTreeMap<u32, usize> = BTreeMap::new();
        for (day, _, _) in &pieces {
            let next = day_index.len() + 4;
            day_index.entry(*day).or_insert(next);
        }
        let script = Script::new(APPLY);
        let mut inv = script.prepare_invoke();
        inv.key(&keys.state).key(&keys.open).key(&keys.days);
        let mut by_index: Vec<(&u32, &usize)> = day_index.iter().collect();
        by_index.sort_by_key(|(_, i)| **i);
        for (day, _) in by_index {
            inv.key(keys.day(*day));
        }
        inv.arg(expect.0)
            .arg(expect.1)
            .arg(batch.cursor.max(expect.0));
        inv.arg(batch.clear_open.len());
        for u in &batch.clear_open {
            inv.arg(u);
        }
        inv.arg(batch.set_open.len());
        for (u, from) in &batch.set_open {
            inv.arg(u).arg(*from);
        }
        inv.arg(pieces.len());
        for (day, user, bytes) in &pieces {
            inv.arg(day_index[day])
                .arg(*day)
                .arg(*user)
                .arg(bytes.as_slice());
        }
        let mut conn = self.conn();
        let stored: i64 = bounded(inv.invoke_async(&mut conn))
            .await?
            .map_err(from_redis)?;
        Ok(stored == 1)
    }

    pub(super) async fn get_history(
        &self,
        tenant: &str,
        first: u32,
        last: u32,
        users: Option<&[String]>,
    ) -> Result<HistoryRead, StoreError> {
        let state = self.get_history_state(tenant).await?;
        let keys = HistoryKeys::new(tenant);
        if users.is_some_and(<[String]>::is_empty) {
            return Ok(HistoryRead {
                state,
                buckets: Vec::new(),
            });
        }
        // One call per day, several in flight on the multiplexed
        // connection: Redis answers one while the hub parses the last, and
        // no reply holds more than a day.
        let calls = (first..=last).map(|day| {
            let mut conn = self.conn();
            let key = keys.day(day);
            async move {
                let rows: Rows = match users {
                    Some(us) => {
                        let got: Vec<Option<Vec<u8>>> =
                            bounded(redis::cmd("HMGET").arg(&key).arg(us).query_async(&mut conn))
                                .await?
                                .map_err(from_redis)?;
                        us.iter()
                            .zip(got)
                            .filter_map(|(u, b)| Some((u.clone(), b?)))
                            .collect()
                    }
                    None => bounded(redis::cmd("HGETALL").arg(&key).query_async(&mut conn))
                        .await?
                        .map_err(from_redis)?,
                };
                Ok::<_, StoreError>((day, rows))
            }
        });
        use futures_util::{StreamExt, TryStreamExt};
        let days: Vec<(u32, Rows)> = futures_util::stream::iter(calls)
            .buffered(DAYS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut buckets = Vec::new();
        for (day, rows) in days {
            buckets.extend(rows.into_iter().map(|(u, b)| (u, day, b)));
        }
        Ok(HistoryRead { state, buckets })
    }

    pub(super) async fn remove_history(
        &self,
        tenant: &str,
        user: &str,
        at_ms: u64,
    ) -> Result<(), StoreError> {
        let keys = HistoryKeys::new(tenant);
        let mut conn = self.conn();
        // A keeper may add a day between the two calls: then try again.
        for _ in 0..10 {
            let days: Vec<u32> = bounded(
                redis::cmd("SMEMBERS")
                    .arg(&keys.days)
                    .query_async(&mut conn),
            )
            .await?
            .map_err(from_redis)?;
            let script = Script::new(ERASE);
            let mut inv = script.prepare_invoke();
            inv.key(&keys.state)
                .key(&keys.open)
                .key(&keys.erased)
                .key(&keys.days);
            for d in &days {
                inv.key(keys.day(*d));
            }
            inv.arg(user).arg(at_ms).arg(days.len());
            let done: i64 = bounded(inv.invoke_async(&mut conn))
                .await?
                .map_err(from_redis)?;
            if done == 1 {
                return Ok(());
            }
        }
        Err(crate::store::Unavailable::Busy("history erasure raced the keeper").into())
    }

    pub(super) async fn cut_history(
        &self,
        tenant: &str,
        before_day: u32,
    ) -> Result<u64, StoreError> {
        let keys = HistoryKeys::new(tenant);
        let mut conn = self.conn();
        let days: Vec<u32> = bounded(
            redis::cmd("SMEMBERS")
                .arg(&keys.days)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let mut removed = 0;
        for d in days.into_iter().filter(|d| *d < before_day) {
            let (n, _): (u64, i64) = bounded(
                redis::pipe()
                    .cmd("HLEN")
                    .arg(keys.day(d))
                    .cmd("DEL")
                    .arg(keys.day(d))
                    .query_async(&mut conn),
            )
            .await?
            .map_err(from_redis)?;
            let _: i64 = bounded(
                redis::cmd("SREM")
                    .arg(&keys.days)
                    .arg(d)
                    .query_async(&mut conn),
            )
            .await?
            .map_err(from_redis)?;
            removed += n;
        }
        Ok(removed)
    }
}
