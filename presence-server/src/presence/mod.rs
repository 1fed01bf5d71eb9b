//! Presence: who is online, who may see whom, and each tenant's live state.
//!
//! [`engine`] is the rule of SPEC §2, pure (time passed in, no I/O);
//! [`source`] is where a tenant's presence comes from (the engine alone, or
//! the engine plus the cluster link) and hands out typed changes;
//! [`visibility`] decides rosters and the entry each watcher may see;
//! [`tenant`] holds a tenant's directory, tabs and watchers under one lock
//! and turns changes and directory writes into deltas; [`feed`] is its side
//! of the transition feed (cursors, events waiting for the store).
//!
//! May use: `directory` (records), `net::outbox` (queues of the tabs it
//! sends to), `metrics`, and, in `source` only, `cluster::link` and
//! `cluster::ops` for the global view in cluster mode. No I/O: the cluster
//! link only queues operations.

pub mod engine;
pub mod feed;
pub mod source;
pub mod tenant;
pub mod visibility;
