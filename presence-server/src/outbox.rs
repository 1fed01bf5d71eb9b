//! The way frames reach one tab: a bounded queue of serialised frames plus an
//! unbounded lane for the few control messages that must not be dropped.
//!
//! Frames are serialised once per roster and shared (`Arc<str>`) between all
//! the tabs that receive them. When a tab's queue is full the tab is told to
//! close as a slow consumer instead of letting memory grow.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use presence_protocol::{ErrorCode, Roster};
use tokio::sync::{mpsc, Notify};

/// Orders to a session from the hub.
#[derive(Debug)]
pub enum Control {
    /// Close the connection with this code and reason.
    Close(u16, &'static str),
    /// A subscription ended (rights changed, team deleted): tell the client.
    Ended {
        roster: Roster,
        code: ErrorCode,
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Outbox {
    pub conn: u64,
    frames: mpsc::Sender<Arc<str>>,
    ctrl: mpsc::UnboundedSender<Control>,
    /// Set once the queue was found full: the tab is told to close (and
    /// counted as a slow consumer) once, not once per frame it misses.
    slow: Arc<Overflow>,
}

#[derive(Debug, Default)]
struct Overflow {
    seen: AtomicBool,
    /// Wakes a session blocked writing to a peer that stopped reading: it
    /// would never get to its control lane otherwise.
    wake: Notify,
}

/// The session's ends of its outbox.
pub struct Inbox {
    pub frames: mpsc::Receiver<Arc<str>>,
    pub ctrl: mpsc::UnboundedReceiver<Control>,
}

impl Outbox {
    pub fn new(conn: u64, capacity: usize) -> (Outbox, Inbox) {
        let (ftx, frx) = mpsc::channel(capacity.max(1));
        let (ctx, crx) = mpsc::unbounded_channel();
        (
            Outbox {
                conn,
                frames: ftx,
                ctrl: ctx,
                slow: Arc::default(),
            },
            Inbox {
                frames: frx,
                ctrl: crx,
            },
        )
    }

    /// Queues a frame. Returns false when this frame found the queue full for
    /// the first time: the tab has then been told to close as a slow
    /// consumer. Later frames to that tab are dropped and return true, so a
    /// slow tab is counted and told once.
    pub fn send(&self, frame: &Arc<str>) -> bool {
        match self.frames.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.slow.seen.swap(true, Ordering::Relaxed) {
                    return true;
                }
                self.slow.wake.notify_one();
                self.control(Control::Close(
                    presence_protocol::close::SLOW_CONSUMER,
                    "too slow to keep up",
                ));
                false
            }
            // The session is gone; it unregisters itself.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    }

    /// Resolves once the queue was found full.
    ///
    /// # Cancel safety
    /// Cancel safe: an overflow that happens while nobody waits is kept
    /// (`Notify` stores one permit) and resolves the next call.
    pub async fn overflowed(&self) {
        self.slow.wake.notified().await;
    }

    pub fn control(&self, c: Control) {
        // A closed channel means the session already ended: nothing to do.
        let _ = self.ctrl.send(c);
    }
}
