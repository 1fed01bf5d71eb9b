//! The single-node store: one redb file under `PRESENCE_DATA_DIR`.
//!
//! redb commits are copy-on-write with checksummed roots and an fsync per
//! commit, so an acknowledged batch survives SIGKILL or power loss and a torn
//! commit rolls back to the previous one. Records are JSON under keys that
//! sort tenants before users, teams, memberships and presence, which is the
//! order `load` must replay them in.

use std::path::Path;

use presence_protocol::Event;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::directory::{PresenceRecord, TeamRecord, UserRecord, WebhookRecord, Write};
use crate::history::fold::Batch as HistoryBatch;
use crate::store::embedded_events as events;
use crate::store::embedded_history as history;
use crate::store::embedded_webhooks as webhooks;
use crate::store::{
    Corrupt, EventRead, HistoryRead, HistoryState, Store, StoreError, StoreFuture, Unavailable,
    WebhookProgress,
};

const RECORDS: TableDefinition<&str, &[u8]> = TableDefinition::new("records");
/// Separates key parts; ids cannot contain control characters.
const SEP: char = '\u{1f}';

pub struct EmbeddedStore {
    db: std::sync::Arc<Database>,
}

impl EmbeddedStore {
    /// Opens (or creates) `dir/presence.redb`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|error| Unavailable::CreateDir {
            path: dir.to_owned(),
            error,
        })?;
        let path = dir.join("presence.redb");
        let db = Database::create(&path).map_err(|error| Unavailable::Open { path, error })?;
        let txn = db.begin_write().map_err(unavailable)?;
        txn.open_table(RECORDS).map_err(unavailable)?;
        events::create_tables(&txn).map_err(unavailable)?;
        webhooks::create_tables(&txn).map_err(unavailable)?;
        history::create_tables(&txn).map_err(unavailable)?;
        txn.commit().map_err(unavailable)?;
        Ok(EmbeddedStore {
            db: std::sync::Arc::new(db),
        })
    }
}

pub(super) fn unavailable(e: impl Into<redb::Error>) -> StoreError {
    Unavailable::Embedded(e.into()).into()
}

fn key(parts: &[&str]) -> String {
    parts.join(&SEP.to_string())
}

/// The key of a write and its value (`None` deletes).
fn encode(w: &Write) -> (String, Option<Vec<u8>>) {
    match w {
        Write::Tenant(t) => (key(&["0", &t.id]), Some(json(t))),
        Write::Team { tenant, team } => (key(&["1", tenant, &team.id]), Some(json(team))),
        Write::DeleteTeam { tenant, team } => (key(&["1", tenant, team]), None),
        Write::User { tenant, user } => (key(&["2", tenant, &user.id]), Some(json(user))),
        Write::Member {
            tenant,
            team,
            user,
            role,
        } => (key(&["3", tenant, team, user]), Some(json(role))),
        Write::DeleteMember { tenant, team, user } => (key(&["3", tenant, team, user]), None),
        Write::Presence {
            tenant,
            user,
            presence,
        } => (key(&["4", tenant, user]), Some(json(presence))),
        Write::Webhook { tenant, webhook } => {
            (key(&["5", tenant, &webhook.id]), Some(json(webhook)))
        }
        Write::DeleteWebhook { tenant, id } => (key(&["5", tenant, id]), None),
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    // These records are plain structs of strings, numbers and enums with
    // string tags: serialising them cannot fail.
    serde_json::to_vec(v).expect("directory records always serialise")
}

fn parse<T: serde::de::DeserializeOwned>(k: &str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|error| {
        Corrupt::Record {
            key: k.to_owned(),
            error,
        }
        .into()
    })
}

fn decode(k: &str, v: &[u8]) -> Result<Write, StoreError> {
    let parts: Vec<&str> = k.split(SEP).collect();
    Ok(match parts.as_slice() {
        ["0", _] => Write::Tenant(parse(k, v)?),
        ["1", tenant, _] => {
            let team: TeamRecord = parse(k, v)?;
            Write::Team {
                tenant: tenant.to_string(),
                team,
            }
        }
        ["2", tenant, _] => {
            let user: UserRecord = parse(k, v)?;
            Write::User {
                tenant: tenant.to_string(),
                user,
            }
        }
        ["3", tenant, team, user] => Write::Member {
            tenant: tenant.to_string(),
            team: team.to_string(),
            user: user.to_string(),
            role: parse(k, v)?,
        },
        ["4", tenant, user] => {
            let presence: PresenceRecord = parse(k, v)?;
            Write::Presence {
                tenant: tenant.to_string(),
                user: user.to_string(),
                presence,
            }
        }
        ["5", tenant, _] => {
            let webhook: WebhookRecord = parse(k, v)?;
            Write::Webhook {
                tenant: tenant.to_string(),
                webhook,
            }
        }
        _ => return Err(Corrupt::UnknownKey(k.to_owned()).into()),
    })
}

impl Store for EmbeddedStore {
    fn load(&self) -> StoreFuture<'_, Vec<Write>> {
        let db = self.db.clone();
        Box::pin(blocking(move || load(&db)))
    }

    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        let db = self.db.clone();
        Box::pin(blocking(move || commit(&db, &writes, &[])))
    }

    fn append_events(&self, evs: Vec<Event>, writes: Vec<Write>) -> StoreFuture<'_, ()> {
        let db = self.db.clone();
        Box::pin(blocking(move || commit(&db, &writes, &evs)))
    }

    fn read_events(&self, tenant: &str, after: u64, limit: usize) -> StoreFuture<'_, EventRead> {
        let (db, tenant) = (self.db.clone(), tenant.to_owned());
        Box::pin(blocking(move || events::read(&db, &tenant, after, limit)))
    }

    fn trim_events(&self, tenant: &str, before_ms: u64) -> StoreFuture<'_, u64> {
        let (db, tenant) = (self.db.clone(), tenant.to_owned());
        Box::pin(blocking(move || events::trim(&db, &tenant, before_ms)))
    }

    fn feed_tails(&self) -> StoreFuture<'_, Vec<(String, u64)>> {
        let db = self.db.clone();
        Box::pin(blocking(move || events::tails(&db)))
    }

    fn webhook_progress(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<WebhookProgress>> {
        let (db, tenant, id) = (self.db.clone(), tenant.to_owned(), id.to_owned());
        Box::pin(blocking(move || webhooks::get(&db, &tenant, &id)))
    }

    fn save_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
        progress: &WebhookProgress,
    ) -> StoreFuture<'_, bool> {
        let (db, tenant, id, p) = (
            self.db.clone(),
            tenant.to_owned(),
            id.to_owned(),
            progress.clone(),
        );
        Box::pin(blocking(move || webhooks::save(&db, &tenant, &id, &p)))
    }

    fn delete_webhook_progress(&self, tenant: &str, id: &str) -> StoreFuture<'_, ()> {
        let (db, tenant, id) = (self.db.clone(), tenant.to_owned(), id.to_owned());
        Box::pin(blocking(move || webhooks::delete(&db, &tenant, &id)))
    }

    fn lease_webhooks(
        &self,
        _tenant: &str,
        _holder: &str,
        _ttl: std::time::Duration,
    ) -> StoreFuture<'_, bool> {
        Box::pin(async { Ok(true) })
    }

    fn release_webhooks(&self, _tenant: &str, _holder: &str) -> StoreFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }

    fn history_state(&self, tenant: &str) -> StoreFuture<'_, HistoryState> {
        let (db, tenant) = (self.db.clone(), tenant.to_owned());
        Box::pin(blocking(move || history::state(&db, &tenant)))
    }

    fn apply_history(
        &self,
        tenant: &str,
        expect: (u64, u64),
        batch: &HistoryBatch,
    ) -> StoreFuture<'_, bool> {
        let (db, tenant, batch) = (self.db.clone(), tenant.to_owned(), batch.clone());
        Box::pin(blocking(move || {
            history::apply(&db, &tenant, expect, &batch)
        }))
    }

    fn read_history(
        &self,
        tenant: &str,
        first: u32,
        last: u32,
        users: Option<&[String]>,
    ) -> StoreFuture<'_, HistoryRead> {
        let (db, tenant, users) = (self.db.clone(), tenant.to_owned(), users.map(<[_]>::to_vec));
        Box::pin(blocking(move || {
            history::read(&db, &tenant, first, last, users.as_deref())
        }))
    }

    fn erase_history(&self, tenant: &str, user: &str, at_ms: u64) -> StoreFuture<'_, ()> {
        let (db, tenant, user) = (self.db.clone(), tenant.to_owned(), user.to_owned());
        Box::pin(blocking(move || history::erase(&db, &tenant, &user, at_ms)))
    }

    fn trim_history(&self, tenant: &str, before_day: u32) -> StoreFuture<'_, u64> {
        let (db, tenant) = (self.db.clone(), tenant.to_owned());
        Box::pin(blocking(move || history::trim(&db, &tenant, before_day)))
    }
}

/// redb calls block on disk (fsync); they run on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::from(Unavailable::Worker(e)))?
}

fn load(db: &Database) -> Result<Vec<Write>, StoreError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let table = txn.open_table(RECORDS).map_err(unavailable)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(unavailable)? {
        let (k, v) = row.map_err(unavailable)?;
        out.push(decode(k.value(), v.value())?);
    }
    Ok(out)
}

/// Commits directory writes and feed events in one transaction.
fn commit(db: &Database, writes: &[Write], evs: &[Event]) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(unavailable)?;
    events::append(&txn, evs).map_err(unavailable)?;
    {
        let mut table = txn.open_table(RECORDS).map_err(unavailable)?;
        for w in writes {
            let (k, v) = encode(w);
            match v {
                Some(v) => {
                    table
                        .insert(k.as_str(), v.as_slice())
                        .map_err(unavailable)?;
                }
                None => {
                    table.remove(k.as_str()).map_err(unavailable)?;
                }
            }
            if let Write::DeleteTeam { tenant, team } = w {
                // Memberships of a deleted team go with it.
                let prefix = key(&["3", tenant, team, ""]);
                let doomed: Vec<String> = table
                    .range(prefix.as_str()..)
                    .map_err(unavailable)?
                    .map_while(|r| r.ok())
                    .map(|(k, _)| k.value().to_owned())
                    .take_while(|k| k.starts_with(&prefix))
                    .collect();
                for k in doomed {
                    table.remove(k.as_str()).map_err(unavailable)?;
                }
            }
        }
    }
    txn.commit().map_err(unavailable)
}

/// What every store must do is checked by the shared conformance suite
/// (`tests/it/store_conformance.rs`, run against this store, a single Redis
/// and a Redis Cluster); only durability across a reopen is tested here.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::TenantRecord;

    #[tokio::test]
    async fn acknowledged_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let batch = vec![
            Write::Tenant(TenantRecord {
                id: "acme".into(),
                user_limit: 5,
                event_retention_s: None,
                time_zone: None,
                history_retention_days: None,
            }),
            Write::Presence {
                tenant: "acme".into(),
                user: "u1".into(),
                presence: PresenceRecord {
                    last_seen: 1_767_225_600_123,
                    since: 1,
                    v: 7,
                    status: Some(presence_protocol::Status::Online),
                },
            },
        ];
        {
            let s = EmbeddedStore::open(dir.path()).unwrap();
            s.commit(batch.clone()).await.unwrap();
        }
        let s = EmbeddedStore::open(dir.path()).unwrap();
        assert_eq!(s.load().await.unwrap(), batch);
    }
}
