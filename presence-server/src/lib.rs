//! The presence hub as a library: `main.rs` and the integration tests start
//! it the same way, through [`app::serve`].

pub mod admin_api;
pub mod admin_ops;
pub mod api_error;
pub mod app;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod cluster_link;
pub mod config;
pub mod csv_import;
pub mod dev;
pub mod directory;
pub mod directory_sync;
pub mod embedded_store;
pub mod engine;
pub mod extract;
// Public for the fuzz crate and `tests/fuzz_corpus.rs`; see its `//!`.
#[doc(hidden)]
pub mod fuzz_targets;
pub mod hub;
pub mod limit;
pub mod metrics;
pub mod outbox;
pub mod rate;
pub mod redis_conn;
pub mod redis_store;
pub mod session;
pub mod store;
pub mod tenant;
pub mod upgrade;
pub mod visibility;
pub mod ws;
