//! The single node's group commit of the feed: one task per hub takes every
//! tenant's pending events, commits them (with the presence they leave) in
//! one write transaction of the embedded store, and only then sends their
//! deltas, tenant by tenant, in order.
//!
//! Why grouped: an fsync per transition would cost every activity frame
//! that makes a user online a disk round trip under load. While one commit
//! is on disk, the next transitions gather in their tenants, and the next
//! round takes them all: one fsync per round, however many transitions.

use std::sync::Arc;
use std::time::Duration;

use presence_protocol::Event;

use crate::directory::Write;
use crate::hub::{Hub, TenantRef};
use crate::presence::feed::Pending;
use crate::store::StoreError;

/// The first retry after the store refused a batch; doubled up to
/// [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Commits and delivers until the node begins to stop (shutdown commits
/// what is left itself, `Hub::flush_presence`). A store that refuses keeps
/// the batch: its deltas wait, nothing is dropped, and the round is
/// retried with a growing delay.
pub async fn run(hub: Arc<Hub>) {
    loop {
        tokio::select! {
            _ = hub.feed_queue().named() => {}
            _ = hub.stopping() => return,
        }
        let mut retry = FIRST_RETRY;
        while let Err(e) = commit_pending(&hub).await {
            tracing::warn!(error = %e, "could not commit the transition feed; deltas wait");
            tokio::select! {
                _ = tokio::time::sleep(retry) => {}
                _ = hub.stopping() => return,
            }
            retry = (retry * 2).min(MAX_RETRY);
        }
    }
}

/// One round: everything pending, committed at once, then delivered.
///
/// # Errors
/// The store failed: the batch went back to its tenants, in front of what
/// came since.
pub async fn commit_pending(hub: &Hub) -> Result<(), StoreError> {
    let _one_at_a_time = hub.feed_commit_lock().await;
    let mut batch: Vec<(TenantRef, Vec<Pending>)> = Vec::new();
    for tid in hub.feed_queue().take() {
        let Some(t) = hub.tenant(&tid) else { continue };
        let pending = t.lock().take_pending();
        if !pending.is_empty() {
            batch.push((t, pending));
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let mut events: Vec<Event> = Vec::new();
    let mut writes = Vec::new();
    for (_, ps) in &batch {
        for p in ps {
            events.push(p.event.clone());
            writes.push(Write::Presence {
                tenant: p.event.tenant.clone(),
                user: p.event.user.clone(),
                presence: p.presence,
            });
        }
    }
    let began = tokio::time::Instant::now();
    let n = events.len();
    if let Err(e) = hub.store().append_events(events, writes).await {
        for (t, ps) in batch {
            t.lock().put_back(ps);
        }
        return Err(e);
    }
    hub.metrics
        .feed_commit_seconds
        .observe(began.elapsed().as_secs_f64());
    hub.metrics.feed_events.inc_by(n as u64);
    for (t, ps) in &batch {
        t.lock().deliver(ps);
    }
    Ok(())
}
