//! The presence hub as a library: `main.rs` and the integration tests start
//! it the same way, through [`server::run`].

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod directory;
// Public for the fuzz crate and `tests/fuzz_corpus.rs`; see its `//!`.
#[doc(hidden)]
pub mod fuzz_targets;
pub mod hub;
pub mod metrics;
pub mod net;
pub mod presence;
pub mod server;
pub mod store;
pub mod tasks;
