//! Cluster mode: many hubs sharing Redis.
//!
//! - [`keys`]: every Redis key and channel name, and what each holds.
//! - [`ops`]: the contract with `presence.lua` (operations, events, stored
//!   state) and the call that runs it.
//! - [`link`]: a tenant's side (local transitions become claims; published
//!   events become the global view); only queues, never does I/O.
//! - [`op_queue`]: delivers the queued operations, per tenant in order,
//!   backing off per tenant when Redis refuses one's call.
//! - [`tasks`]: [`start`] (the one wiring of cluster mode, every task it
//!   spawns) and [`leave`], the event follower, heartbeat and dead-node sweep.
//! - [`notify`]: the subscription to the held tenants' channels and the
//!   tenant-created channel (sharded pub/sub on a Redis Cluster).
//! - [`residency`]: a tenant loaded when something needs it here, evicted
//!   when nothing did for a while, and the slow duties of tenants no node
//!   holds.
//! - [`directory_sync`]: replays other nodes' directory writes through the
//!   [`directory_sync::SharedLog`] trait it owns, woken by the notices of
//!   their commits.
//!
//! May use: `hub` (to reach tenants), `presence` (the tenant's entry
//! points and the engine's types), `store::redis` and `store::redis_conn`,
//! `metrics` (the cluster's gauges and the Redis script histogram).
//! Invariant: no tenant lock is held across a Redis call.

pub mod directory_sync;
pub mod keys;
pub mod link;
pub(crate) mod notify;
pub mod op_queue;
pub mod ops;
pub(crate) mod owner;
pub(crate) mod residency;
pub mod tasks;

pub use tasks::{leave, start, StartError};
