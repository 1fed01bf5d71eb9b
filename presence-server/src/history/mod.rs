//! Presence history and attendance (SPEC §11): every user's online
//! periods as intervals, derived from the transition feed (one source of
//! truth for both: an interval is the span between a user's `online` event
//! and the next `offline` one, so a node's death or a restart is ended
//! where the feed ends it, e.g. `node_lost` at the cluster's cutoff).
//!
//! Pure parts: [`codec`] (the stored form of a day), [`fold`] (events into
//! intervals), [`range`] (the `from`/`to` of a request into a span and its
//! local days), [`days`] (the tenant's local days, DST included, and
//! intervals cut into per-day pieces), [`report`] (the attendance report
//! and its CSV). I/O:
//! [`keeper`] (each node folds the feed of the tenants it owns into the
//! store) and [`read`] (what the API reads: the store plus the feed's tail
//! not folded yet, so every node answers the same at once).

pub(crate) mod codec;
pub(crate) mod days;
pub(crate) mod fold;
pub(crate) mod keeper;
pub(crate) mod range;
pub(crate) mod read;
pub(crate) mod report;

use presence_protocol::Reason;

/// One online period of a user (ms since the Unix epoch). `to == None`:
/// still online now. `reason`: why it ended (None while open). Intervals
/// of one user are sorted by `from` and never overlap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Interval {
    pub from: u64,
    pub to: Option<u64>,
    pub reason: Option<Reason>,
}

/// How long history is kept when the tenant sets nothing.
pub(crate) const DEFAULT_RETENTION_DAYS: u32 = 90;
/// The longest retention a tenant may ask for (ten years).
pub(crate) const MAX_RETENTION_DAYS: u32 = 3650;
