//! Cluster mode: many hubs sharing Redis. [`link`] is a tenant's side
//! (local transitions become claims; published events become the global
//! view); [`tasks`] runs the operations against `presence.lua`, follows the
//! events, heartbeats the node and sweeps dead nodes' leases;
//! [`directory_sync`] replays other nodes' directory writes.
//!
//! May use: `hub` (to reach tenants), `presence::engine` (transition
//! types), `store::redis` and `store::redis_conn`. Invariant: no tenant lock
//! is held across a Redis call.

pub mod directory_sync;
pub mod link;
pub mod tasks;

pub use tasks::{channel, leave, presence_keys, run, EVENTS_CHANNEL, NODES_KEY};
