//! The single node's history (SPEC §11) in its redb file: the buckets
//! keyed by (tenant, UTC day, user), so a report's range of days is one
//! range read, and per tenant the keeper's state.
//!
//! A fold is committed without an fsync of its own (`Durability::None`):
//! the history is derived from the feed, which is durable, and the cursor
//! goes in the same transaction, so a crash loses a suffix of folds and the
//! keeper folds those events again. The next durable commit (the feed's
//! own) makes them durable.

use std::collections::HashMap;

use redb::{
    Database, Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};

use super::embedded::unavailable as u;
use crate::history::codec;
use crate::history::fold::Batch;
use crate::store::{HistoryRead, HistoryState, StoreError};

/// (tenant, UTC day, user) → packed pieces (`history::codec`).
const BUCKETS: TableDefinition<(&str, u32, &str), &[u8]> = TableDefinition::new("history");
/// (tenant, UTC day) → (): the days a tenant has buckets for.
const DAYS: TableDefinition<(&str, u32), ()> = TableDefinition::new("history_days");
/// (tenant, user) → start of the open interval (ms).
const OPEN: TableDefinition<(&str, &str), u64> = TableDefinition::new("history_open");
/// (tenant, user) → when the user's history was erased (ms).
const ERASED: TableDefinition<(&str, &str), u64> = TableDefinition::new("history_erased");
/// tenant → (cursor folded, generation).
const STATE: TableDefinition<&str, (u64, u64)> = TableDefinition::new("history_state");

/// Most buckets one trim removes, so a write transaction stays short.
const TRIM_BATCH: usize = 50_000;

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(BUCKETS)?;
    txn.open_table(DAYS)?;
    txn.open_table(OPEN)?;
    txn.open_table(ERASED)?;
    txn.open_table(STATE)?;
    Ok(())
}

fn pairs<T: ReadableTable<(&'static str, &'static str), u64>>(
    table: &T,
    tenant: &str,
) -> Result<HashMap<String, u64>, StoreError> {
    let mut out = HashMap::new();
    for row in table.range((tenant, "")..).map_err(u)? {
        let (k, v) = row.map_err(u)?;
        let (t, user) = k.value();
        if t != tenant {
            break;
        }
        out.insert(user.to_owned(), v.value());
    }
    Ok(out)
}

fn state_in(txn: &redb::ReadTransaction, tenant: &str) -> Result<HistoryState, StoreError> {
    let (cursor, generation) = txn
        .open_table(STATE)
        .map_err(u)?
        .get(tenant)
        .map_err(u)?
        .map_or((0, 0), |v| v.value());
    Ok(HistoryState {
        cursor,
        generation,
        open: pairs(&txn.open_table(OPEN).map_err(u)?, tenant)?,
        erased: pairs(&txn.open_table(ERASED).map_err(u)?, tenant)?,
    })
}

pub(super) fn state(db: &Database, tenant: &str) -> Result<HistoryState, StoreError> {
    let txn = db.begin_read().map_err(u)?;
    state_in(&txn, tenant)
}

pub(super) fn apply(
    db: &Database,
    tenant: &str,
    expect: (u64, u64),
    batch: &Batch,
) -> Result<bool, StoreError> {
    let mut txn = db.begin_write().map_err(u)?;
    txn.set_durability(Durability::None).map_err(u)?;
    {
        let mut st = txn.open_table(STATE).map_err(u)?;
        let now = st.get(tenant).map_err(u)?.map_or((0, 0), |v| v.value());
        if now != expect {
            return Ok(false);
        }
        st.insert(tenant, (batch.cursor.max(expect.0), expect.1))
            .map_err(u)?;
        let mut open = txn.open_table(OPEN).map_err(u)?;
        for user in &batch.clear_open {
            open.remove((tenant, user.as_str())).map_err(u)?;
        }
        for (user, from) in &batch.set_open {
            open.insert((tenant, user.as_str()), *from).map_err(u)?;
        }
        let mut buckets = txn.open_table(BUCKETS).map_err(u)?;
        let mut days = txn.open_table(DAYS).map_err(u)?;
        for c in &batch.closed {
            for (day, piece) in codec::pieces(c.from, c.to, c.reason) {
                let key = (tenant, day, c.user.as_str());
                let mut bytes = buckets
                    .get(key)
                    .map_err(u)?
                    .map(|v| v.value().to_vec())
                    .unwrap_or_default();
                bytes.extend_from_slice(&piece);
                buckets.insert(key, bytes.as_slice()).map_err(u)?;
                days.insert((tenant, day), ()).map_err(u)?;
            }
        }
    }
    txn.commit().map_err(u)?;
    Ok(true)
}

pub(super) fn read(
    db: &Database,
    tenant: &str,
    first: u32,
    last: u32,
    users: Option<&[String]>,
) -> Result<HistoryRead, StoreError> {
    let txn = db.begin_read().map_err(u)?;
    let state = state_in(&txn, tenant)?;
    let table = txn.open_table(BUCKETS).map_err(u)?;
    let mut buckets = Vec::new();
    match users {
        Some(users) => {
            for day in first..=last {
                for user in users {
                    if let Some(v) = table.get((tenant, day, user.as_str())).map_err(u)? {
                        buckets.push((user.clone(), day, v.value().to_vec()));
                    }
                }
            }
        }
        None => {
            let end = last.saturating_add(1);
            for row in table
                .range((tenant, first, "")..(tenant, end, ""))
                .map_err(u)?
            {
                let (k, v) = row.map_err(u)?;
                let (_, day, user) = k.value();
                buckets.push((user.to_owned(), day, v.value().to_vec()));
            }
        }
    }
    Ok(HistoryRead { state, buckets })
}

pub(super) fn erase(db: &Database, tenant: &str, user: &str, at_ms: u64) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(u)?;
    {
        let days: Vec<u32> = {
            let t = txn.open_table(DAYS).map_err(u)?;
            let mut out = Vec::new();
            for row in t.range((tenant, 0)..=(tenant, u32::MAX)).map_err(u)? {
                out.push(row.map_err(u)?.0.value().1);
            }
            out
        };
        let mut buckets = txn.open_table(BUCKETS).map_err(u)?;
        for day in days {
            buckets.remove((tenant, day, user)).map_err(u)?;
        }
        txn.open_table(OPEN)
            .map_err(u)?
            .remove((tenant, user))
            .map_err(u)?;
        let mut erased = txn.open_table(ERASED).map_err(u)?;
        let at = erased
            .get((tenant, user))
            .map_err(u)?
            .map_or(at_ms, |v| v.value().max(at_ms));
        erased.insert((tenant, user), at).map_err(u)?;
        let mut st = txn.open_table(STATE).map_err(u)?;
        let (cursor, generation) = st.get(tenant).map_err(u)?.map_or((0, 0), |v| v.value());
        st.insert(tenant, (cursor, generation + 1)).map_err(u)?;
    }
    txn.commit().map_err(u)
}

pub(super) fn trim(db: &Database, tenant: &str, before_day: u32) -> Result<u64, StoreError> {
    let txn = db.begin_write().map_err(u)?;
    let mut removed = 0u64;
    {
        let mut days = txn.open_table(DAYS).map_err(u)?;
        let old: Vec<u32> = {
            let mut out = Vec::new();
            for row in days.range((tenant, 0)..(tenant, before_day)).map_err(u)? {
                out.push(row.map_err(u)?.0.value().1);
            }
            out
        };
        let mut buckets = txn.open_table(BUCKETS).map_err(u)?;
        'days: for day in old {
            loop {
                let doomed: Vec<String> = buckets
                    .range((tenant, day, "")..(tenant, day + 1, ""))
                    .map_err(u)?
                    .take(TRIM_BATCH)
                    .map(|r| r.map(|(k, _)| k.value().2.to_owned()))
                    .collect::<Result<_, _>>()
                    .map_err(u)?;
                if doomed.is_empty() {
                    break;
                }
                for user in &doomed {
                    buckets.remove((tenant, day, user.as_str())).map_err(u)?;
                    removed += 1;
                }
                if removed as usize >= TRIM_BATCH {
                    // The rest of this day and the days after: next trim.
                    break 'days;
                }
            }
            days.remove((tenant, day)).map_err(u)?;
        }
    }
    txn.commit().map_err(u)?;
    Ok(removed)
}
