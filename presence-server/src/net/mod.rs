//! The client edge: everything between a browser tab's TCP socket and the
//! presence state. The HTTP upgrade to a WebSocket, the RFC 6455 framing
//! ([`ws`]), the session that speaks the protocol of SPEC §4 for one tab,
//! its outbox (what the tenant queued for it), and the per-connection limits
//! (frame rate buckets, connection and pending-`hello` permits).
//!
//! May use: `presence` (join, activity, watch), `hub`, `auth`, `config`,
//! `metrics`, the protocol crate. Nothing here touches a store or Redis.

pub mod limit;
pub mod outbox;
pub mod rate;
pub mod session;
pub mod upgrade;
pub mod ws;
