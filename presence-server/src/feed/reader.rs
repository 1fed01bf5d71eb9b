//! Reading a tenant's feed for the pull API and the event stream: a page
//! now, or after waiting for the next commit (long poll), and a stream that
//! follows the feed. Both wait on the tenant's feed watch, which the commit
//! (single node) or the published event (cluster mode) moves: no polling.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use presence_protocol::{Event, EventPage};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::directory::DirectoryError;
use crate::hub::Hub;
use crate::store::{EventRead, StoreError};

/// Events of one page when the caller names no `limit`.
pub const DEFAULT_LIMIT: usize = 100;
/// The most events of one page (a larger `limit` is refused).
pub const MAX_LIMIT: usize = 1_000;
/// The longest a long poll waits (a larger `wait_ms` is refused): below
/// the idle timeouts of common proxies (60 s).
pub const MAX_WAIT_MS: u64 = 30_000;
/// Events a stream reads from the store at once.
const STREAM_BATCH: usize = 100;

/// Why a read of the feed failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// Events after the cursor were trimmed: the reader must resynchronise.
    #[error("events after this cursor are past the retention; the oldest held is {oldest}")]
    Gone { oldest: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Up to `limit` events after `after`; when there are none yet, waits up
/// to `wait` for the next ones (or until the node stops).
///
/// # Errors
/// Unknown tenant, events past retention, or the store failed.
pub async fn page(
    hub: &Hub,
    tid: &str,
    after: u64,
    limit: usize,
    wait: Duration,
) -> Result<EventPage, ReadError> {
    // Subscribed before the first read: a commit after that read moves it.
    let mut rx = hub.read(tid, |t| t.feed_watch())?;
    let deadline = Instant::now() + wait;
    loop {
        let events = read(hub, tid, after, limit).await?;
        if !events.is_empty() || Instant::now() >= deadline {
            let next = events.last().map_or(after, |e| e.cursor);
            return Ok(EventPage { events, next });
        }
        tokio::select! {
            changed = rx.changed() => {
                if changed.is_err() {
                    // The tenant is gone from this node.
                    return Ok(EventPage { events, next: after });
                }
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = hub.stopping() => return Ok(EventPage { events, next: after }),
        }
    }
}

async fn read(hub: &Hub, tid: &str, after: u64, limit: usize) -> Result<Vec<Event>, ReadError> {
    match hub.store().read_events(tid, after, limit).await? {
        EventRead::Events(e) => Ok(e),
        EventRead::Gone { oldest } => Err(ReadError::Gone { oldest }),
    }
}

/// Checks that the feed still holds what follows `after` (so a stream can
/// be refused with 410 before it starts).
///
/// # Errors
/// As [`page`].
pub async fn check(hub: &Hub, tid: &str, after: u64) -> Result<(), ReadError> {
    hub.read(tid, |_| ())?;
    read(hub, tid, after, 1).await.map(drop)
}

/// Every event after `after`, then each new one as it is committed, until
/// the node stops or the reader falls behind the retention (the stream
/// ends; reconnecting with `Last-Event-ID` answers 410).
///
/// # Errors
/// The stream's items: the store failed (the stream ends after it).
pub fn follow(
    hub: Arc<Hub>,
    tid: String,
    after: u64,
) -> Result<impl Stream<Item = Result<Event, ReadError>>, ReadError> {
    let rx = hub.read(&tid, |t| t.feed_watch())?;
    let state = Follow {
        hub,
        tid,
        after,
        rx,
        buf: VecDeque::new(),
        done: false,
    };
    Ok(futures_util::stream::unfold(state, Follow::next))
}

struct Follow {
    hub: Arc<Hub>,
    tid: String,
    after: u64,
    rx: watch::Receiver<u64>,
    buf: VecDeque<Event>,
    done: bool,
}

impl Follow {
    async fn next(mut self) -> Option<(Result<Event, ReadError>, Follow)> {
        loop {
            if let Some(e) = self.buf.pop_front() {
                self.after = e.cursor;
                return Some((Ok(e), self));
            }
            if self.done {
                return None;
            }
            // Marked seen before the read, so a commit after it wakes us.
            self.rx.borrow_and_update();
            match read(&self.hub, &self.tid, self.after, STREAM_BATCH).await {
                Ok(events) if !events.is_empty() => {
                    self.buf.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(ReadError::Gone { .. }) => return None,
                Err(e) => {
                    self.done = true;
                    return Some((Err(e), self));
                }
            }
            let hub = self.hub.clone();
            tokio::select! {
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                _ = hub.stopping() => return None,
            }
        }
    }
}
