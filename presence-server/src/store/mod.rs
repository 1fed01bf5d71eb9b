//! Where the directory is persisted: the [`Store`] interface and its errors,
//! the embedded store of a single node ([`embedded`], redb) and the Redis
//! store of cluster mode ([`redis`], over [`redis_conn`]).
//!
//! The interface is deliberately two calls wide (load everything, commit a
//! batch atomically) so the embedded store and the Redis store of cluster
//! mode can share one conformance suite.

pub mod embedded;
mod embedded_events;
mod embedded_history;
mod embedded_webhooks;
pub mod redis;
pub mod redis_conn;
mod redis_events;
mod redis_history;
mod redis_webhooks;

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use presence_protocol::{DeliveryState, Event};
use serde::{Deserialize, Serialize};

use crate::directory::Write;
use crate::history::fold::Batch as HistoryBatch;

/// What a store call returns: a boxed future, so `Store` stays usable as a
/// trait object (`Arc<dyn Store>`) with async implementations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store could not do what was asked. Never shown to clients: the admin
/// API answers `503 store_unavailable` with a fixed message
/// (`api/error.rs`), and the detail goes to the log.
///
/// Its message is the whole story, the cause and the cause's own error
/// included (`store unavailable: the Redis call failed: …`), because logs
/// print errors with `%`; so it does not also return the cause as
/// `source()`, which would make `{:#}` chains say everything twice. The
/// causes ([`Unavailable`], [`Corrupt`]) are ordinary errors whose
/// `source()` is the library's error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {}", Chain(.0))]
    Unavailable(Unavailable),
    #[error("stored record is corrupt: {}", Chain(.0))]
    Corrupt(Corrupt),
}

/// Why the store could not be reached or did not finish: nothing is known
/// to be wrong with the data.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    #[error("cannot create {}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("cannot open {}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        error: redb::DatabaseError,
    },
    #[error("the embedded database failed")]
    Embedded(#[source] redb::Error),
    #[error("the store's worker task failed")]
    Worker(#[source] tokio::task::JoinError),
    #[error("the Redis call failed")]
    Redis(#[source] ::redis::RedisError),
    #[error("Redis gave no answer within {0:?}")]
    Timeout(Duration),
    #[error("busy: {0}")]
    Busy(&'static str),
}

/// A stored record this code did not write: the store answered, but what
/// it holds cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum Corrupt {
    #[error("record {key:?} does not parse")]
    Record {
        key: String,
        #[source]
        error: serde_json::Error,
    },
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    #[error("{key}: field {field:?} is not <team>\\x1f<user>")]
    MemberField { key: String, field: String },
    #[error("a Redis key has the wrong type")]
    WrongType(#[source] ::redis::RedisError),
    #[error("log entry {entry}: {problem}")]
    LogEntry { entry: String, problem: LogProblem },
    #[error("event {key} does not parse")]
    Event {
        key: String,
        #[source]
        error: serde_json::Error,
    },
}

/// What is wrong with an entry of a tenant's Redis log.
#[derive(Debug, thiserror::Error)]
pub enum LogProblem {
    #[error("no field {0}")]
    MissingField(&'static str),
    #[error("field {field} is not text")]
    NotText {
        field: &'static str,
        #[source]
        error: ::redis::ParsingError,
    },
    #[error("field v is not a version")]
    Version(#[source] std::num::ParseIntError),
    #[error("field writes is not a list of writes")]
    Writes(#[source] serde_json::Error),
}

impl LogProblem {
    /// The error of the log entry `entry` having this problem.
    pub(crate) fn in_entry(self, entry: &str) -> StoreError {
        StoreError::Corrupt(Corrupt::LogEntry {
            entry: entry.to_owned(),
            problem: self,
        })
    }
}

impl From<Unavailable> for StoreError {
    fn from(e: Unavailable) -> Self {
        StoreError::Unavailable(e)
    }
}

impl From<Corrupt> for StoreError {
    fn from(e: Corrupt) -> Self {
        StoreError::Corrupt(e)
    }
}

/// An error and its sources, as `error: source: source's source`.
struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

/// Durable home of the directory.
pub trait Store: Send + Sync + 'static {
    /// Every stored record, as writes that rebuild the directory when applied
    /// in order (tenants before what belongs to them).
    fn load(&self) -> StoreFuture<'_, Vec<Write>>;

    /// Commits a batch atomically and durably: when this resolves `Ok`, every
    /// write survives a crash; when it resolves `Err`, none was applied.
    ///
    /// A networked store can only promise part of the `Err` side: the Redis
    /// store is atomic per tenant (a batch spanning tenants may be committed
    /// in part), and a call that timed out may still land, whole. See
    /// `store::redis`.
    fn commit(&self, writes: Vec<Write>) -> StoreFuture<'_, ()>;

    /// Appends transition events to their tenants' feeds (SPEC §10) and
    /// commits `writes` (the presence those transitions leave) in the same
    /// atomic, durable step. A single node's feed is written here; cluster
    /// mode appends each event inside `presence.lua`, in the step that
    /// assigns its `v`.
    fn append_events(&self, events: Vec<Event>, writes: Vec<Write>) -> StoreFuture<'_, ()>;

    /// At most `limit` events of `tenant`'s feed after cursor `after`, in
    /// cursor order; [`EventRead::Gone`] when events after `after` were
    /// trimmed.
    fn read_events(&self, tenant: &str, after: u64, limit: usize) -> StoreFuture<'_, EventRead>;

    /// Removes the oldest events of `tenant` whose `at` is before
    /// `before_ms` (a prefix of the feed: it stops at the first newer one);
    /// returns how many went. Idempotent.
    fn trim_events(&self, tenant: &str, before_ms: u64) -> StoreFuture<'_, u64>;

    /// The last cursor of every tenant's feed, so a restarted node goes on
    /// after it.
    fn feed_tails(&self) -> StoreFuture<'_, Vec<(String, u64)>>;

    /// A webhook's delivery progress, as its deliverer last saved it.
    fn webhook_progress(&self, tenant: &str, id: &str) -> StoreFuture<'_, Option<WebhookProgress>>;

    /// Saves a webhook's progress, unless the stored one is of the same
    /// generation and further along (a deliverer that lost its lease while
    /// a request was in flight cannot move the cursor back). Returns
    /// whether it was saved.
    fn save_webhook_progress(
        &self,
        tenant: &str,
        id: &str,
        progress: &WebhookProgress,
    ) -> StoreFuture<'_, bool>;

    /// Forgets a deleted webhook's progress.
    fn delete_webhook_progress(&self, tenant: &str, id: &str) -> StoreFuture<'_, ()>;

    /// Takes or renews, for `ttl`, the right to deliver `tenant`'s
    /// webhooks (SPEC §10: one deliverer per tenant at a time); `false`
    /// when another holder has it. A single node always has it.
    fn lease_webhooks(&self, tenant: &str, holder: &str, ttl: Duration) -> StoreFuture<'_, bool>;

    /// Gives the lease up (a node that stops), if `holder` has it.
    fn release_webhooks(&self, tenant: &str, holder: &str) -> StoreFuture<'_, ()>;

    /// Where the history keeper of `tenant` is (SPEC §11): the feed cursor
    /// folded so far, the open intervals, the erasures.
    fn history_state(&self, tenant: &str) -> StoreFuture<'_, HistoryState>;

    /// Stores a fold of the feed, unless the stored state is no longer at
    /// `expect` (`cursor`, `generation`): another keeper stored it, or an
    /// erasure happened since the state was read. Returns whether it was
    /// stored; the history and the cursor move together, so a batch is
    /// never stored twice.
    fn apply_history(
        &self,
        tenant: &str,
        expect: (u64, u64),
        batch: &HistoryBatch,
    ) -> StoreFuture<'_, bool>;

    /// The stored buckets of UTC days `first..=last` (every user's, or
    /// only `users`'), with the state they were read with.
    fn read_history(
        &self,
        tenant: &str,
        first: u32,
        last: u32,
        users: Option<&[String]>,
    ) -> StoreFuture<'_, HistoryRead>;

    /// Erases `user`'s history (an LGPD/GDPR request): every bucket and the
    /// open interval; their feed events up to `at_ms` are never folded
    /// again; the generation moves, so a keeper holding the old state
    /// reloads it.
    fn erase_history(&self, tenant: &str, user: &str, at_ms: u64) -> StoreFuture<'_, ()>;

    /// Removes every bucket of `tenant` before UTC day `before_day`;
    /// returns how many. Idempotent.
    fn trim_history(&self, tenant: &str, before_day: u32) -> StoreFuture<'_, u64>;
}

/// A tenant's history keeper state, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryState {
    /// The last feed cursor folded into the history.
    pub cursor: u64,
    /// Moves at every erasure.
    pub generation: u64,
    /// User → start of their open interval (ms).
    pub open: HashMap<String, u64>,
    /// User → when their history was erased (ms): their events until
    /// then are not folded.
    pub erased: HashMap<String, u64>,
}

/// What [`Store::read_history`] found: `(user, UTC day, packed pieces)`
/// (`history::codec`), and the state at the time of the read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryRead {
    pub state: HistoryState,
    pub buckets: Vec<(String, u32, Vec<u8>)>,
}

/// A webhook's delivery progress as stored: the state the API shows, of
/// one generation of the webhook (see `WebhookRecord::generation`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookProgress {
    pub generation: String,
    pub state: DeliveryState,
    /// When this was saved (ms since the Unix epoch), so a reader can age
    /// `oldest_pending_age_ms` from it.
    pub saved_at: u64,
    /// The `cleared_at` of the record this deliverer last saw: a `PUT`
    /// with a newer one clears `failing`.
    #[serde(default)]
    pub cleared_at: u64,
}

/// What a read of a feed found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventRead {
    Events(Vec<Event>),
    /// Events after the cursor asked for were trimmed; `oldest` is the
    /// oldest cursor the feed may still hold.
    Gone {
        oldest: u64,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_error_says_its_cause_and_the_cause_s_error_once() {
        let denied = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "denied");
        let e = StoreError::from(Unavailable::CreateDir {
            path: "/srv/presence".into(),
            error: denied,
        });
        assert_eq!(
            e.to_string(),
            "store unavailable: cannot create /srv/presence: denied"
        );
        // Printed whole by `%e`, so a `{:#}` chain must not repeat it.
        assert!(std::error::Error::source(&e).is_none());
        let StoreError::Unavailable(cause) = &e else {
            unreachable!("built as Unavailable")
        };
        assert_eq!(
            std::error::Error::source(cause).map(ToString::to_string),
            Some("denied".to_owned())
        );
        assert_eq!(
            LogProblem::MissingField("v").in_entry("1-0").to_string(),
            "stored record is corrupt: log entry 1-0: no field v"
        );
    }
}
