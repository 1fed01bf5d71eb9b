//! The single node's transition feed in its redb file: one table of events
//! keyed by (tenant, cursor), and per tenant its last cursor and how far it
//! was trimmed, so cursors keep growing across trims and restarts.

use presence_protocol::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::embedded::unavailable as u;
use crate::store::{Corrupt, EventRead, StoreError};

/// (tenant, cursor) → the event's JSON.
pub(super) const EVENTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("events");
/// tenant → (last cursor appended, last cursor trimmed).
pub(super) const FEEDS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("feeds");

/// Most events one trim removes, so one write transaction stays short; the
/// next trim goes on.
const TRIM_BATCH: usize = 10_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(EVENTS)?;
    txn.open_table(FEEDS)?;
    Ok(())
}

/// Appends inside the caller's transaction (which also writes the presence
/// records), so both are committed together.
pub(super) fn append(txn: &WriteTransaction, events: &[Event]) -> Result<(), redb::Error> {
    let mut table = txn.open_table(EVENTS)?;
    let mut feeds = txn.open_table(FEEDS)?;
    for e in events {
        // A plain struct of strings, numbers and enums: cannot fail.
        let json = serde_json::to_vec(e).expect("events serialise");
        table.insert((e.tenant.as_str(), e.cursor), json.as_slice())?;
        let (last, trimmed) = feeds.get(e.tenant.as_str())?.map_or((0, 0), |v| v.value());
        feeds.insert(e.tenant.as_str(), (last.max(e.cursor), trimmed))?;
    }
    Ok(())
}

pub(super) fn read(
    db: &Database,
    tenant: &str,
    after: u64,
    limit: usize,
) -> Result<EventRead, StoreError> {
    let txn = db.begin_read().map_err(u)?;
    let feeds = txn.open_table(FEEDS).map_err(u)?;
    let trimmed = feeds.get(tenant).map_err(u)?.map_or(0, |v| v.value().1);
    if after < trimmed {
        return Ok(EventRead::Gone {
            oldest: trimmed + 1,
        });
    }
    let table = txn.open_table(EVENTS).map_err(u)?;
    let mut out = Vec::new();
    let rows = table
        .range((tenant, after.saturating_add(1))..=(tenant, u64::MAX))
        .map_err(u)?;
    for row in rows.take(limit) {
        let (k, v) = row.map_err(u)?;
        out.push(parse(k.value(), v.value())?);
    }
    Ok(EventRead::Events(out))
}

pub(super) fn trim(db: &Database, tenant: &str, before_ms: u64) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(u)?;
    let removed = {
        let mut table = txn.open_table(EVENTS).map_err(u)?;
        let mut doomed = Vec::new();
        for row in table
            .range((tenant, 0)..=(tenant, u64::MAX))
            .map_err(u)?
            .take(TRIM_BATCH)
        {
            let (k, v) = row.map_err(u)?;
            let (_, cursor) = k.value();
            if parse(k.value(), v.value())?.at >= before_ms {
                break;
            }
            doomed.push(cursor);
        }
        for c in &doomed {
            table.remove((tenant, *c)).map_err(u)?;
        }
        if let Some(&last_gone) = doomed.last() {
            let mut feeds = txn.open_table(FEEDS).map_err(u)?;
            let (last, _) = feeds.get(tenant).map_err(u)?.map_or((0, 0), |v| v.value());
            feeds.insert(tenant, (last, last_gone)).map_err(u)?;
        }
        doomed.len() as u64
    };
    txn.commit().map_err(u)?;
    Ok(removed)
}

pub(super) fn tails(db: &Database) -> Result<Vec<(String, u64)>, StoreError> {
    let txn = db.begin_read().map_err(u)?;
    let feeds = txn.open_table(FEEDS).map_err(u)?;
    let mut out = Vec::new();
    for row in feeds.iter().map_err(u)? {
        let (k, v) = row.map_err(u)?;
        out.push((k.value().to_owned(), v.value().0));
    }
    Ok(out)
}

fn parse(key: (&str, u64), v: &[u8]) -> Result<Event, StoreError> {
    serde_json::from_slice(v).map_err(|error| {
        Corrupt::Event {
            key: format!("{}/{}", key.0, key.1),
            error,
        }
        .into()
    })
}
