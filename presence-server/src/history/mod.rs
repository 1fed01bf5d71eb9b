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

/// What the unit tests of the history share.
#[cfg(test)]
pub(crate) mod test_support {
    use proptest::prelude::*;

    use super::Interval;

    pub(crate) const HOUR: u64 = 3_600_000;

    /// An instant written in RFC 3339, in ms.
    pub(crate) fn ms(s: &str) -> u64 {
        s.parse::<jiff::Timestamp>().unwrap().as_millisecond() as u64
    }

    /// One user's intervals, sorted and non-overlapping, from `start` on:
    /// gaps of up to `max_gap` and lengths of up to `max_len` (ms), the
    /// last one possibly open; and a `now` after the last start.
    pub(crate) fn arb_intervals(
        start: &'static str,
        max_gap: u64,
        max_len: u64,
        max_count: usize,
    ) -> impl Strategy<Value = (Vec<Interval>, u64)> {
        (
            prop::collection::vec((0..max_gap, 1..max_len), 0..max_count),
            any::<bool>(),
            0u64..30 * HOUR,
        )
            .prop_map(move |(parts, last_open, after)| {
                let mut t = ms(start);
                let mut out = Vec::new();
                for (gap, len) in parts {
                    t += gap;
                    out.push(Interval {
                        from: t,
                        to: Some(t + len),
                        reason: Some(presence_protocol::Reason::Logout),
                    });
                    t += len;
                }
                if last_open {
                    if let Some(last) = out.last_mut() {
                        last.to = None;
                        last.reason = None;
                        t = last.from;
                    }
                }
                (out, t + after)
            })
    }
}
