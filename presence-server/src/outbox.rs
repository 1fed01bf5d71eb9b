//! The way frames reach one tab: a bounded queue of serialised frames plus an
//! unbounded lane for the few control messages that must not be dropped.
//!
//! Frames are serialised once per roster and shared (`Arc<str>`) between all
//! the tabs that receive them. When a tab's queue is full the tab is told to
//! close as a slow consumer instead of letting memory grow.

use std::sync::Arc;

use presence_protocol::{ErrorCode, Roster};
use tokio::sync::mpsc;

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
            },
            Inbox {
                frames: frx,
                ctrl: crx,
            },
        )
    }

    /// Queues a frame. Returns false if the tab is a slow consumer (its queue
    /// is full); the tab has then been told to close.
    pub fn send(&self, frame: &Arc<str>) -> bool {
        match self.frames.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
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

    pub fn control(&self, c: Control) {
        // A closed channel means the session already ended: nothing to do.
        let _ = self.ctrl.send(c);
    }
}
