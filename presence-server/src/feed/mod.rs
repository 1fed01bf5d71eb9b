//! The transition feed of SPEC §10, the I/O side: the single node's
//! committer (events durable before their deltas are sent), the trim of
//! events past their tenant's retention, and the reads of the pull API and
//! the event stream (both stores, through `Store`), and the single node's
//! reconciliation at start-up (users the feed still shows online).
//!
//! A tenant's own side (cursors, events waiting for the store) is
//! `presence::feed`, under the tenant lock; nothing here holds that lock
//! across an await.
//!
//! May use: `hub`, `store`, `presence::feed`.

pub mod committer;
pub mod reader;
pub mod reconcile;
pub mod retention;
