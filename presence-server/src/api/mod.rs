//! The admin HTTP API of SPEC §6: routes, the extractors that authorise a
//! caller before a body is read, the JSON error shape, and the OpenAPI
//! document.
//!
//! May use: `hub` (reads and writes), `directory` (operations and import),
//! `presence::tenant` (views). Errors from here never carry store or token
//! text to a client.

pub mod admin;
pub mod error;
pub mod extract;
mod openapi;
pub(crate) mod pages;
mod routes;

pub use routes::app;
