//! Cluster mode's transition feed in Redis: the stream
//! `presence:{<tid>}:events` (key and layout in `cluster::keys`), whose
//! entries `presence.lua` appends in the step that assigns each event's
//! `v`, with stream id `0-<cursor>` (the cursor from the tenant's `seq`),
//! so cursors stay integers and are contiguous per tenant.
//!
//! Reads and the trim are ordinary commands from any node: a trim removes
//! a prefix of old entries (`XTRIM MINID`), so repeating it is harmless.

use presence_protocol::Event;
use redis::streams::{StreamRangeReply, StreamReadReply};

use super::redis::{bounded, from_redis, RedisStore};
use crate::cluster::keys::PresenceKeys;
use crate::store::{Corrupt, EventRead, StoreError};

/// Entries one trim looks at; the next trim goes on.
const TRIM_BATCH: usize = 1_000;

impl RedisStore {
    /// At most `limit` events after cursor `after`, or `Gone` when the
    /// oldest entry held is past it.
    pub(super) async fn read_feed(
        &self,
        tenant: &str,
        after: u64,
        limit: usize,
    ) -> Result<EventRead, StoreError> {
        let keys = PresenceKeys::new(tenant);
        let mut conn = self.conn();
        // The first entry held and the last cursor assigned, at once.
        let (first, seq): (StreamRangeReply, Option<u64>) = bounded(
            redis::pipe()
                .cmd("XRANGE")
                .arg(&keys.events)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(1)
                .cmd("GET")
                .arg(&keys.seq)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let oldest = match first.ids.first() {
            Some(e) => cursor_of(&keys.events, &e.id)?,
            // Nothing held: everything assigned was trimmed.
            None => seq.unwrap_or(0) + 1,
        };
        if after + 1 < oldest {
            return Ok(EventRead::Gone { oldest });
        }
        // XREAD's start is exclusive; without BLOCK it returns at once.
        let reply: Option<StreamReadReply> = bounded(
            redis::cmd("XREAD")
                .arg("COUNT")
                .arg(limit)
                .arg("STREAMS")
                .arg(&keys.events)
                .arg(format!("0-{after}"))
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let mut out = Vec::new();
        for entry in reply.into_iter().flat_map(|r| r.keys).flat_map(|k| k.ids) {
            out.push(parse(&keys.events, &entry.id, entry.map.get("e"))?);
        }
        Ok(EventRead::Events(out))
    }

    /// Removes the oldest events whose `at` is before `before_ms`.
    pub(super) async fn trim_feed(&self, tenant: &str, before_ms: u64) -> Result<u64, StoreError> {
        let keys = PresenceKeys::new(tenant);
        let mut conn = self.conn();
        let head: StreamRangeReply = bounded(
            redis::cmd("XRANGE")
                .arg(&keys.events)
                .arg("-")
                .arg("+")
                .arg("COUNT")
                .arg(TRIM_BATCH)
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        let mut keep_from = None;
        let mut last_old = None;
        for entry in &head.ids {
            let e = parse(&keys.events, &entry.id, entry.map.get("e"))?;
            if e.at >= before_ms {
                keep_from = Some(e.cursor);
                break;
            }
            last_old = Some(e.cursor);
        }
        let Some(last_old) = last_old else {
            return Ok(0);
        };
        let min = keep_from.unwrap_or(last_old + 1);
        let removed: u64 = bounded(
            redis::cmd("XTRIM")
                .arg(&keys.events)
                .arg("MINID")
                .arg(format!("0-{min}"))
                .query_async(&mut conn),
        )
        .await?
        .map_err(from_redis)?;
        Ok(removed)
    }

    /// Appends events outside `presence.lua` (what a `Store` must offer;
    /// cluster mode's events are appended by the script itself).
    pub(super) async fn append_feed(&self, events: &[Event]) -> Result<(), StoreError> {
        let mut conn = self.conn();
        for e in events {
            let keys = PresenceKeys::new(&e.tenant);
            // A plain struct of strings, numbers and enums: cannot fail.
            let json = serde_json::to_string(e).expect("events serialise");
            let _: () = bounded(
                redis::pipe()
                    .cmd("XADD")
                    .arg(&keys.events)
                    .arg(format!("0-{}", e.cursor))
                    .arg("e")
                    .arg(json)
                    .ignore()
                    .cmd("SET")
                    .arg(&keys.seq)
                    .arg(e.cursor)
                    .ignore()
                    .query_async(&mut conn),
            )
            .await?
            .map_err(from_redis)?;
        }
        Ok(())
    }
}

/// The cursor of stream id `0-<cursor>`.
fn cursor_of(key: &str, id: &str) -> Result<u64, StoreError> {
    id.strip_prefix("0-")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| Corrupt::UnknownKey(format!("{key} entry {id}")).into())
}

fn parse(key: &str, id: &str, v: Option<&redis::Value>) -> Result<Event, StoreError> {
    let text = v
        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
        .ok_or_else(|| StoreError::from(Corrupt::UnknownKey(format!("{key} entry {id}: no e"))))?;
    serde_json::from_str(&text).map_err(|error| {
        Corrupt::Event {
            key: format!("{key} {id}"),
            error,
        }
        .into()
    })
}
