//! What `GET .../webhooks/{id}` shows: the settings without the secret and
//! the delivery state the deliverer saved (on whichever node holds the
//! lease), with the pending count and the oldest pending age taken from
//! the feed now, so a stalled deliverer does not look current.

use presence_protocol::{DeliveryState, DeliveryStatus, WebhookView};

use crate::directory::WebhookRecord;
use crate::hub::Hub;
use crate::store::{EventRead, StoreError};

/// Events read to count what is pending; beyond it `pending` counts the
/// rest of the feed unfiltered (an upper bound).
const COUNT_MAX: usize = 1_000;

/// The state of a webhook nothing was delivered for yet.
pub(crate) fn untouched(rec: &WebhookRecord) -> DeliveryState {
    DeliveryState {
        status: DeliveryStatus::Ok,
        delivered_cursor: rec.start_after,
        pending: 0,
        oldest_pending_age_ms: 0,
        last_success_at: None,
        last_error: None,
        attempts: 0,
    }
}

/// # Errors
/// The store failed.
pub(crate) async fn view(
    hub: &Hub,
    tid: &str,
    rec: &WebhookRecord,
) -> Result<WebhookView, StoreError> {
    let saved = hub
        .store()
        .webhook_progress(tid, &rec.id)
        .await?
        .filter(|p| p.generation == rec.generation);
    let cleared = saved
        .as_ref()
        .is_some_and(|p| rec.cleared_at > p.cleared_at);
    let mut state = match saved {
        Some(p) => p.state,
        None => untouched(rec),
    };
    // A `PUT` since the mark clears it; the deliverer saves that next.
    if state.status == DeliveryStatus::Failing && cleared {
        state.status = DeliveryStatus::Ok;
    }
    let events = match hub
        .store()
        .read_events(tid, state.delivered_cursor, COUNT_MAX)
        .await?
    {
        EventRead::Events(events) => events,
        // Trimmed before delivery: the deliverer marks it when it gets there.
        EventRead::Gone { .. } => {
            state.status = DeliveryStatus::Failing;
            Vec::new()
        }
    };
    let matching: Vec<_> = events
        .iter()
        .filter(|e| rec.matches(e.status, e.reason))
        .collect();
    state.pending = matching.len() as u64;
    if events.len() == COUNT_MAX {
        let tail = hub.read(tid, |t| *t.feed_watch().borrow()).unwrap_or(0);
        let last = events.last().map_or(0, |e| e.cursor);
        state.pending += tail.saturating_sub(last);
    }
    state.oldest_pending_age_ms = matching
        .first()
        .map_or(0, |e| hub.now_ms().saturating_sub(e.at));
    Ok(WebhookView {
        id: rec.id.clone(),
        url: rec.url.clone(),
        statuses: rec.statuses.clone(),
        reasons: rec.reasons.clone(),
        delivery: state,
    })
}
