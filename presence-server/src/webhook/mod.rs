//! Webhooks of the transition feed (SPEC §10): signed batches POSTed to
//! the ERP backend, in `v` order per user, retried while retained.
//!
//! - [`sign`]: the `Presence-Signature` header (HMAC-SHA256, Stripe's scheme).
//! - [`target`]: which URLs may be delivered to (no private addresses
//!   unless the operator allows them), checked again at connect time.
//! - [`backoff`]: when a failed delivery is retried (pure).
//! - [`deliverer`]: one webhook's delivery loop.
//! - [`supervisor`]: which webhooks this node delivers (one node per tenant,
//!   under a lease in the store).
//! - [`view`]: what `GET .../webhooks/{id}` shows.
//!
//! May use: `hub`, `store`, `directory` (the webhook records).

pub mod backoff;
pub(crate) mod deliverer;
pub mod sign;
pub(crate) mod supervisor;
pub mod target;
pub(crate) mod view;
