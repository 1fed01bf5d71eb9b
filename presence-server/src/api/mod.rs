//! The admin HTTP API of SPEC §6 and the transition feed of SPEC §10: routes, the extractors that authorise a
//! caller before a body is read, the JSON error shape, and the OpenAPI
//! document.
//!
//! May use: `hub` (reads and writes), `directory` (operations and import),
//! `presence::tenant` (views), `feed::reader` (the feed's reads). Errors from here never carry store or token
//! text to a client.

pub mod admin;
pub mod error;
mod events;
pub mod extract;
mod openapi;
pub(crate) mod pages;
mod routes;

pub use routes::app;
