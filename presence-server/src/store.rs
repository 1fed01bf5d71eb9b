//! Where the directory is persisted: the [`Store`] interface and its errors.
//!
//! The interface is deliberately two calls wide (load everything, commit a
//! batch atomically) so the embedded store and the Redis store of cluster
//! mode can share one conformance suite.

use crate::directory::Write;

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
    fn load(&self) -> Result<Vec<Write>, StoreError>;

    /// Commits a batch atomically and durably: when this returns `Ok`, every
    /// write survives a crash; when it returns `Err`, none was applied.
    fn commit(&self, writes: &[Write]) -> Result<(), StoreError>;
}
