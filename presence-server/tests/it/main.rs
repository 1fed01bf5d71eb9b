//! Integration tests: real hubs on loopback, driven as clients drive them.

mod cluster_support;
mod harness;
mod hub_process;
mod nginx_support;
mod redis_support;
mod support;
mod webhook_support;

mod autobahn;
mod bad_input;
mod batch;
mod check;
mod cluster_backoff;
mod cluster_faults;
mod cluster_presence;
mod cluster_script;
mod dead_peers;
mod directory_api;
mod error_text;
mod feed;
mod feed_restart;
mod http_edge;
mod landing;
mod metrics;
mod openapi;
mod presence;
mod process;
mod redis_store;
mod router;
mod session_protocol;
mod shutdown_deadline;
mod store_conformance;
mod visibility;
mod webhook_faults;
mod webhooks;
mod ws_edge;
