//! Where the directory is persisted: the [`Store`] interface and its errors,
//! the embedded store of a single node ([`embedded`], redb) and the Redis
//! store of cluster mode ([`redis`], over [`redis_conn`]).
//!
//! The interface is deliberately two calls wide (load everything, commit a
//! batch atomically) so the embedded store and the Redis store of cluster
//! mode can share one conformance suite.

pub mod embedded;
pub mod redis;
pub mod redis_conn;

use std::future::Future;
use std::pin::Pin;

use crate::directory::Write;

/// What a store call returns: a boxed future, so `Store` stays usable as a
/// trait object (`Arc<dyn Store>`) with async implementations.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The store could not do what was asked. Never shown to clients verbatim.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
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
}
