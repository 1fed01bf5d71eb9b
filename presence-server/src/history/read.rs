//! What the API reads: a tenant's stored history plus the feed's tail the
//! keeper has not stored yet, folded the same way, so an answer reflects
//! every transition the feed holds, on whichever node is asked.

use std::collections::HashMap;

use crate::history::codec::{self, day_of, Piece};
use crate::history::fold::fold;
use crate::history::Interval;
use crate::hub::Hub;
use crate::store::{EventRead, StoreError};

/// Events of the tail read per store call, and in all: a keeper that far
/// behind is reported in its log, and the answer is what is stored.
const TAIL_BATCH: usize = 5_000;
const TAIL_MAX: usize = 100_000;

/// What a read found.
pub(crate) struct Found {
    /// User → their intervals, sorted; users without any are left out.
    pub intervals: HashMap<String, Vec<Interval>>,
    /// User → when their history was erased.
    pub erased: HashMap<String, u64>,
}

/// Every user's (or only `users'`) intervals that overlap
/// `from_ms..to_ms`, whole (an interval that began the UTC day before
/// `from_ms` is read from its start; an older one from that day), the open
/// one last.
pub(crate) async fn intervals(
    hub: &Hub,
    tid: &str,
    from_ms: u64,
    to_ms: u64,
    users: Option<&[String]>,
) -> Result<Found, StoreError> {
    let first = day_of(from_ms).saturating_sub(1);
    let last = day_of(to_ms.saturating_sub(1).max(from_ms));
    let read = hub.store().read_history(tid, first, last, users).await?;
    let wanted: Option<std::collections::HashSet<&str>> =
        users.map(|us| us.iter().map(String::as_str).collect());
    let asked = |u: &str| wanted.as_ref().is_none_or(|w| w.contains(u));
    let mut pieces: HashMap<String, Vec<Piece>> = HashMap::new();
    for (u, day, bytes) in read.buckets {
        let list = pieces.entry(u).or_default();
        if !codec::decode_into(day, &bytes, list) {
            tracing::warn!(tenant = %tid, day, "a history bucket does not decode");
        }
    }
    let mut open = read.state.open;
    let mut cursor = read.state.cursor;
    let mut folded = 0;
    while folded < TAIL_MAX {
        let evs = match hub.store().read_events(tid, cursor, TAIL_BATCH).await? {
            EventRead::Events(e) => e,
            // The keeper will skip what was trimmed; so does the reader.
            EventRead::Gone { .. } => break,
        };
        if evs.is_empty() {
            break;
        }
        folded += evs.len();
        let b = fold(&mut open, &read.state.erased, cursor, &evs);
        cursor = b.cursor;
        for c in b.closed {
            if !asked(&c.user) {
                continue;
            }
            pieces.entry(c.user).or_default().push(Piece {
                from: c.from,
                to: c.to,
                reason: Some(c.reason),
            });
        }
    }
    let mut out: HashMap<String, Vec<Interval>> = HashMap::new();
    for (u, p) in pieces {
        let merged = codec::merge(p);
        out.insert(u, merged);
    }
    for (u, from) in open {
        if !asked(&u) {
            continue;
        }
        out.entry(u).or_default().push(Interval {
            from,
            to: None,
            reason: None,
        });
    }
    for list in out.values_mut() {
        list.retain(|i| i.from < to_ms && i.to.is_none_or(|t| t > from_ms));
    }
    out.retain(|_, l| !l.is_empty());
    Ok(Found {
        intervals: out,
        erased: read.state.erased,
    })
}
