//! The presence hub as a library: `main.rs` and the integration tests start
//! it the same way, through [`run`].
//!
//! Every module is private; what the binary, the integration tests, the
//! benches, the fuzz crate and `presence-client`'s tests use is re-exported
//! below, and nothing else. So an item nothing calls is reported as dead
//! code by the compiler instead of hiding behind `pub`.

mod api;
mod auth;
mod check;
mod cli;
mod clock;
mod cluster;
mod config;
pub mod dev;
mod directory;
// Public for the fuzz crate and `tests/fuzz_corpus.rs`; see its `//!`.
mod feed;
#[doc(hidden)]
pub mod fuzz_targets;
mod history;
mod hub;
mod metrics;
mod net;
mod presence;
mod server;
mod store;
mod tasks;
mod webhook;

pub use api::app;
pub use auth::{mint_hs256, Claims, Verifier};
pub use check::{check, Report as CheckReport};
pub use cli::{Cli, Command, ServeArgs};
pub use cluster::{start as start_cluster, StartError as ClusterStartError};
pub use config::{Config, WebhookSettings};
pub use directory::ops::put_user;
pub use directory::{PresenceRecord, TeamRecord, TenantRecord, UserRecord, WebhookRecord, Write};
pub use history::fold::{Batch as HistoryBatch, Closed as ClosedInterval};
pub use hub::Hub;
pub use presence::engine::Engine;
pub use server::run;
pub use store::embedded::EmbeddedStore;
pub use store::redis::RedisStore;
pub use store::redis_conn::RedisConn;
pub use store::{EventRead, HistoryRead, HistoryState, Store, StoreError, WebhookProgress};
pub use webhook::target::Policy as WebhookPolicy;

/// Cluster mode's contract with its Lua script, for the golden tests that
/// run the script on a real Redis (`tests/it/cluster_script.rs`).
#[doc(hidden)]
pub mod cluster_wire {
    pub use crate::cluster::keys::{tenant_channel, PresenceKeys};
    pub use crate::cluster::ops::{
        run_script, script, to_json, PresenceEvent, PresenceOp, StoredState,
    };
}
