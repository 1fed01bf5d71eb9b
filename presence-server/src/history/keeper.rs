//! Each node folds the feed of the tenants it holds into the stored history.
//!
//! A single node holds and owns every tenant. In a cluster a tenant is held
//! by the nodes that serve it (`cluster::residency`), and each has a keeper;
//! its owner (rendezvous hashing of (tenant, node) over the heartbeat's
//! members) folds after [`GATHER`], the others only [`LATE`] later, reading
//! the stored state again first, so they find the owner's fold and do
//! nothing unless the owner does not hold the tenant. When two fold the
//! same events, the store's check of the cursor makes one of them store and
//! the other reload, so that costs work, never correctness. What happens in
//! a tenant no node holds (a dead node's users ended by the sweep) is
//! folded by its owner's hourly round (`residency::owner_duties`), or at
//! the next load.
//!
//! A keeper waits on the tenant's feed watch (moved by every commit or
//! published event), then lets events gather for a second, so a busy
//! tenant costs one store write a second; the API reads through the tail
//! (`history::read`), so no reader sees that lag.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::history::codec::{day_of, DAY_MS};
use crate::history::fold::{fold, Batch};
use crate::hub::Hub;
use crate::store::{EventRead, HistoryState, StoreError};

/// How often the owned tenants are recomputed.
const SCAN: Duration = Duration::from_millis(500);
/// Events folded in one store call.
const BATCH: usize = 2_000;
/// After a failed store call.
const BACKOFF: Duration = Duration::from_millis(500);
/// How long a keeper lets events gather after a wake-up before it folds
/// them: one store write per tenant per second at most, whatever the
/// rate of transitions (on a single node each is a redb transaction on
/// the committer's disk). Readers never see the lag: they fold the tail.
const GATHER: Duration = Duration::from_secs(1);
/// How much later than the owner a keeper that does not own its tenant
/// looks at the feed.
const LATE: Duration = Duration::from_secs(5);

/// Whether this node keeps `tid`'s history now.
fn owns(hub: &Hub, tid: &str) -> bool {
    crate::cluster::owner::is_owner(hub, tid)
}

/// Runs until the node begins to stop.
pub(crate) async fn run(hub: Arc<Hub>) {
    let mut keepers: HashMap<String, CancellationToken> = HashMap::new();
    let mut tick = tokio::time::interval(SCAN);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = hub.stopping() => break,
        }
        let ids: std::collections::HashSet<String> = hub.tenant_ids().into_iter().collect();
        keepers.retain(|tid, token| {
            let keep = ids.contains(tid);
            if !keep {
                token.cancel();
            }
            keep
        });
        for tid in ids {
            if keepers.contains_key(&tid) {
                continue;
            }
            let token = CancellationToken::new();
            keepers.insert(tid.clone(), token.clone());
            hub.spawn(keep(hub.clone(), tid, token));
        }
    }
    for token in keepers.values() {
        token.cancel();
    }
}

/// One tenant's keeper: fold what the feed holds after the stored cursor,
/// store it, wait for more.
async fn keep(hub: Arc<Hub>, tid: String, stop: CancellationToken) {
    let Ok(mut rx) = hub.read(&tid, |t| t.feed_watch()) else {
        return;
    };
    let mut state: Option<HistoryState> = None;
    while !stop.is_cancelled() {
        if !owns(&hub, &tid) {
            // The owner may have folded: see what it stored.
            state = None;
        }
        let step = step(&hub, &tid, &mut state).await;
        match step {
            Ok(true) => continue,
            Ok(false) => {
                tokio::select! {
                    changed = rx.changed() => if changed.is_err() { return },
                    _ = stop.cancelled() => return,
                    _ = hub.stopping() => return,
                }
                let wait = if owns(&hub, &tid) {
                    GATHER
                } else {
                    GATHER + LATE
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                    _ = hub.stopping() => return,
                }
            }
            Err(e) => {
                tracing::warn!(tenant = %tid, error = %e, "cannot keep the presence history");
                state = None;
                tokio::select! {
                    _ = tokio::time::sleep(BACKOFF) => {}
                    _ = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Folds one batch; `Ok(true)` when there may be more to fold at once.
async fn step(hub: &Hub, tid: &str, state: &mut Option<HistoryState>) -> Result<bool, StoreError> {
    let st = match state {
        Some(st) => st,
        None => state.insert(hub.store().history_state(tid).await?),
    };
    let (batch, open) = match hub.store().read_events(tid, st.cursor, BATCH).await? {
        EventRead::Events(evs) if evs.is_empty() => return Ok(false),
        EventRead::Events(evs) => {
            let mut open = st.open.clone();
            (fold(&mut open, &st.erased, st.cursor, &evs), open)
        }
        EventRead::Gone { oldest } => {
            // Fell behind the feed's retention (a long outage): what was
            // trimmed is lost to history; go on after it.
            tracing::warn!(tenant = %tid, oldest, "history fell behind the feed's retention");
            let b = Batch {
                cursor: oldest - 1,
                ..Batch::default()
            };
            (b, st.open.clone())
        }
    };
    let expect = (st.cursor, st.generation);
    if hub.store().apply_history(tid, expect, &batch).await? {
        st.cursor = batch.cursor.max(st.cursor);
        st.open = open;
    } else {
        // Another keeper went first, or an erasure: read the state again.
        *state = None;
    }
    Ok(true)
}

/// Folds everything the feed of `tid` holds after the stored cursor (a
/// tenant no keeper runs for).
///
/// # Errors
/// The store failed; what was folded before stays folded.
pub(crate) async fn catch_up(hub: &Hub, tid: &str) -> Result<(), StoreError> {
    let mut state = None;
    while step(hub, tid, &mut state).await? {}
    Ok(())
}

/// The retention of a tenant's history, in days.
pub(crate) fn retention_days(hub: &Hub, tid: &str) -> Option<u32> {
    hub.read(tid, |t| t.dir.tenant.history_days()).ok()
}

/// Removes, in the tenants this node owns, the buckets older than the
/// tenant's retention (one more UTC day kept, so a local day at either end
/// of the world is whole); returns how many went. Idempotent, so an
/// ownership change that makes two nodes trim one tenant costs a call.
pub(crate) async fn trim(hub: &Hub) -> Result<u64, StoreError> {
    let now = hub.now_ms();
    let mut removed = 0;
    for tid in hub.tenant_ids().into_iter().filter(|t| owns(hub, t)) {
        let Some(days) = retention_days(hub, &tid) else {
            continue;
        };
        removed += trim_one(hub, &tid, days, now).await?;
    }
    Ok(removed)
}

/// Removes `tid`'s buckets older than `days` (and one more UTC day).
pub(crate) async fn trim_one(hub: &Hub, tid: &str, days: u32, now: u64) -> Result<u64, StoreError> {
    let oldest = now.saturating_sub(u64::from(days) * DAY_MS + DAY_MS);
    hub.store().trim_history(tid, day_of(oldest)).await
}
