//! A tenant's side of the transition feed (SPEC §10): the cursor, and on a
//! single node the events waiting for the store.
//!
//! Durable before visible: on a single node a transition's event and its
//! deltas wait here, under the tenant lock that assigned the event its
//! `v` and its cursor, until the hub's committer (`feed::committer`) has
//! committed the event; only then are the deltas sent. In cluster mode the
//! event is already in Redis when the node learns of the transition
//! (`presence.lua` appends it in the step that assigns `v`), so nothing
//! waits and the tenant only notes the cursor.
//!
//! Pure: pushing an event only queues it and wakes the committer.

use std::sync::Arc;

use parking_lot::Mutex;
use presence_protocol::Event;
use tokio::sync::{watch, Notify};

use crate::directory::PresenceRecord;
use crate::metrics::Since;

/// A transition whose event is not committed yet.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub event: Event,
    /// The user's presence after the transition, committed with the event
    /// so that `v` and `last_seen` survive a restart exactly as far as the
    /// feed does.
    pub presence: PresenceRecord,
    /// Whether the counters changed (a `stats` frame follows the deltas).
    pub counts: bool,
    /// When the transition was published: its deltas are timed from here,
    /// so `presence_delivery_seconds` includes the wait for the commit.
    pub since: Since,
}

/// Where tenants with pending events are named for the committer: one per
/// hub.
#[derive(Debug, Default, Clone)]
pub(crate) struct FeedQueue {
    inner: Arc<QueueInner>,
}

#[derive(Debug, Default)]
struct QueueInner {
    tenants: Mutex<Vec<Arc<str>>>,
    /// `notify_one` keeps a permit when the committer is busy, so a tenant
    /// named during a commit is taken by the next round.
    wake: Notify,
}

impl FeedQueue {
    fn name(&self, tenant: &Arc<str>) {
        self.inner.tenants.lock().push(tenant.clone());
        self.inner.wake.notify_one();
    }

    /// The tenants named since the last call.
    pub fn take(&self) -> Vec<Arc<str>> {
        std::mem::take(&mut *self.inner.tenants.lock())
    }

    /// Resolves when a tenant was named.
    pub async fn named(&self) {
        self.inner.wake.notified().await;
    }
}

/// A tenant's feed state; see the module documentation.
#[derive(Debug)]
pub(crate) struct TenantFeed {
    tenant: Arc<str>,
    /// The last cursor assigned (single node) or seen (cluster mode).
    cursor: u64,
    /// Single node: the committer's queue. `None` in cluster mode.
    queue: Option<FeedQueue>,
    pending: Vec<Pending>,
    /// The last cursor a reader may read (committed, or seen in Redis);
    /// long polls and streams wait on it.
    visible: watch::Sender<u64>,
}

impl TenantFeed {
    /// The feed of `tenant`, going on after `cursor`; `queue` on a single
    /// node.
    pub fn new(tenant: &str, cursor: u64, queue: Option<FeedQueue>) -> TenantFeed {
        TenantFeed {
            tenant: Arc::from(tenant),
            cursor,
            queue,
            pending: Vec::new(),
            visible: watch::Sender::new(cursor),
        }
    }

    /// Whether events wait here for the store before their deltas go
    /// (single node).
    pub fn is_local(&self) -> bool {
        self.queue.is_some()
    }

    /// The last cursor assigned or seen: every event up to it is in the
    /// tenant's state.
    pub fn last_cursor(&self) -> u64 {
        self.cursor
    }

    /// The next cursor, taken.
    pub fn next_cursor(&mut self) -> u64 {
        self.cursor += 1;
        self.cursor
    }

    /// Queues an event (with its cursor from [`next_cursor`](Self::next_cursor))
    /// for the committer.
    pub fn push(&mut self, p: Pending) {
        let first = self.pending.is_empty();
        self.pending.push(p);
        if let (true, Some(q)) = (first, &self.queue) {
            q.name(&self.tenant);
        }
    }

    /// What the committer takes: every pending event, in cursor order.
    pub fn take(&mut self) -> Vec<Pending> {
        std::mem::take(&mut self.pending)
    }

    /// A batch the store refused goes back in front of what came since,
    /// for the next round.
    pub fn put_back(&mut self, mut batch: Vec<Pending>) {
        batch.append(&mut self.pending);
        self.pending = batch;
        if let Some(q) = &self.queue {
            q.name(&self.tenant);
        }
    }

    /// Events up to `cursor` may be read now; wakes the waiting readers.
    pub fn visible_up_to(&mut self, cursor: u64) {
        self.cursor = self.cursor.max(cursor);
        self.visible.send_if_modified(|v| {
            let newer = cursor > *v;
            if newer {
                *v = cursor;
            }
            newer
        });
    }

    /// A reader's handle: changes whenever more events may be read.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.visible.subscribe()
    }

    /// How many readers' handles are held.
    pub fn readers(&self) -> usize {
        self.visible.receiver_count()
    }
}

#[cfg(test)]
mod tests {
    use presence_protocol::{Reason, Status};

    use super::*;

    fn pending(cursor: u64) -> Pending {
        Pending {
            event: Event {
                id: Event::id_of("acme", "ann", cursor),
                cursor,
                tenant: "acme".into(),
                user: "ann".into(),
                status: Status::Online,
                at: 1,
                v: cursor,
                reason: Reason::Activity,
            },
            presence: PresenceRecord::default(),
            counts: true,
            since: Since::now(),
        }
    }

    #[test]
    fn a_tenant_is_named_once_per_batch_and_a_refused_batch_keeps_its_place() {
        let q = FeedQueue::default();
        let mut f = TenantFeed::new("acme", 7, Some(q.clone()));
        assert_eq!(f.next_cursor(), 8);
        f.push(pending(8));
        f.push(pending(9));
        assert_eq!(q.take().len(), 1, "named when the first event came");
        let batch = f.take();
        f.push(pending(10));
        f.put_back(batch);
        let cursors: Vec<u64> = f.take().iter().map(|p| p.event.cursor).collect();
        assert_eq!(cursors, [8, 9, 10]);
        assert_eq!(q.take().len(), 2);
    }

    #[test]
    fn readers_wake_only_for_newer_cursors() {
        let mut f = TenantFeed::new("acme", 3, None);
        let mut rx = f.watch();
        f.visible_up_to(3);
        assert!(!rx.has_changed().unwrap());
        f.visible_up_to(5);
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 5);
        assert_eq!(f.next_cursor(), 6, "a seen cursor is never reused");
    }
}
