//! The single node's webhook delivery progress in its redb file. One node
//! is the only deliverer, so its lease is always held.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::embedded::unavailable as u;
use crate::store::{Corrupt, StoreError, WebhookProgress};

/// (tenant, webhook id) → the JSON `WebhookProgress`.
const PROGRESS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("webhook_progress");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<(), redb::Error> {
    txn.open_table(PROGRESS)?;
    Ok(())
}

pub(super) fn get(
    db: &Database,
    tenant: &str,
    id: &str,
) -> Result<Option<WebhookProgress>, StoreError> {
    let txn = db.begin_read().map_err(u)?;
    let table = txn.open_table(PROGRESS).map_err(u)?;
    let Some(v) = table.get((tenant, id)).map_err(u)? else {
        return Ok(None);
    };
    serde_json::from_slice(v.value())
        .map(Some)
        .map_err(|error| {
            Corrupt::Record {
                key: format!("webhook_progress/{tenant}/{id}"),
                error,
            }
            .into()
        })
}

pub(super) fn save(
    db: &Database,
    tenant: &str,
    id: &str,
    p: &WebhookProgress,
) -> Result<bool, StoreError> {
    let txn = db.begin_write().map_err(u)?;
    let saved = {
        let mut table = txn.open_table(PROGRESS).map_err(u)?;
        let behind = match table.get((tenant, id)).map_err(u)? {
            Some(v) => serde_json::from_slice::<WebhookProgress>(v.value()).is_ok_and(|old| {
                old.generation == p.generation
                    && old.state.delivered_cursor > p.state.delivered_cursor
            }),
            None => false,
        };
        if !behind {
            // A plain struct of strings, numbers and enums: cannot fail.
            let json = serde_json::to_vec(p).expect("progress serialises");
            table.insert((tenant, id), json.as_slice()).map_err(u)?;
        }
        !behind
    };
    txn.commit().map_err(u)?;
    Ok(saved)
}

pub(super) fn delete(db: &Database, tenant: &str, id: &str) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(u)?;
    txn.open_table(PROGRESS)
        .map_err(u)?
        .remove((tenant, id))
        .map_err(u)?;
    txn.commit().map_err(u)
}
