//! The HTTP surface of a hub: [`app`] (`routes.rs`), the router of every
//! route, built only from routes registered with their OpenAPI operation;
//! the admin API of SPEC §6 (`admin.rs`), its bulk sync (`batch.rs`) and
//! its bulk presence query (`query.rs`);
//! the transition feed of SPEC §10 (`events.rs`: pages, long polls, SSE)
//! and its webhooks (`webhooks.rs`); the extractors that authorise a
//! caller before a body is read (`extract.rs`); the JSON error shape of the
//! whole HTTP edge (`error.rs`); what the generated OpenAPI document cannot
//! take from the types (`openapi.rs`); the embedded SDK and pages
//! (`pages.rs`); `GET /`, the `--dev` landing page or the status page
//! (`landing.rs`). No socket here: `server.rs` serves the router.
//!
//! May use: `hub` (reads and writes), `directory` (operations and import),
//! `presence::tenant` (views), `feed::reader` (the feed's reads). Errors
//! from here never carry store or token text to a client.

pub mod admin;
mod batch;
pub mod error;
mod events;
pub mod extract;
mod history;
mod landing;
mod openapi;
pub(crate) mod pages;
mod query;
mod routes;
mod webhooks;

pub use routes::app;
