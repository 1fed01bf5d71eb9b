//! The way frames reach one tab: a bounded queue of serialised frames, a
//! slot for the latest counters, and a lane for the few control messages
//! that must not be dropped, all behind one small lock.
//!
//! Frames are serialised once per roster and shared (`Arc<str>`) between all
//! the tabs that receive them; the socket writes them straight from there.
//! The queue allocates nothing until a frame arrives and gives its memory
//! back once a burst is written, because most tabs are idle most of the time
//! and an idle tab should cost next to nothing. When a tab's queue is full
//! the tab is told to close as a slow consumer instead of letting memory
//! grow.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use presence_protocol::{ErrorCode, Roster};
use tokio::sync::Notify;

use crate::metrics::Stamp;
pub use crate::net::ws::Frame;

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

/// The hub's handle on one tab's queue; the session holds a clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub conn: u64,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the session: something was queued (it stores one permit, so a
    /// wake-up that comes while the session is busy is not lost).
    wake: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: VecDeque<Frame>,
    /// The newest `stats` frame not yet taken: counters are a state, not a
    /// history, so a burst of transitions costs a watcher one `stats` frame
    /// per write instead of one per transition.
    stats: Option<Frame>,
    ctrl: Vec<Control>,
    /// When the oldest presence delta queued and not yet taken was
    /// published: the write that takes it observes that wait in
    /// `presence_delivery_seconds`, the longest of its deltas. Only the
    /// oldest: 8 bytes per tab, where a stamp per queued frame would cost
    /// 8 bytes per slot of a queue that a subscribed tab keeps for life.
    oldest: Option<Stamp>,
    /// Set once the queue was found full: the tab is told to close (and
    /// counted as a slow consumer) once, not once per frame it misses.
    slow: bool,
    /// The session is gone: nothing more is queued.
    ended: bool,
}

/// A queue that grew past this many slots during a burst is given back
/// once drained.
const KEEP_CAPACITY: usize = 16;

impl Outbox {
    pub fn new(conn: u64, capacity: usize) -> Outbox {
        Outbox {
            conn,
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Notify::new(),
                capacity: capacity.max(1),
            }),
        }
    }

    /// Queues a frame. A frame that finds the queue full tells the tab to
    /// close as a slow consumer; it and every later frame are dropped, so a
    /// slow tab is told once.
    pub fn send(&self, frame: &Frame) {
        self.send_stamped(frame, None);
    }

    /// Queues a presence delta published at `stamp`, so the write that
    /// hands it to the socket is timed.
    pub fn send_stamped(&self, frame: &Frame, stamp: Option<Stamp>) {
        let mut s = self.shared.state.lock();
        if s.ended || s.slow {
            return;
        }
        if s.frames.len() >= self.shared.capacity {
            s.slow = true;
            s.ctrl.push(Control::Close(
                presence_protocol::close::SLOW_CONSUMER,
                "too slow to keep up",
            ));
            drop(s);
            self.shared.wake.notify_one();
            return;
        }
        let was_idle = s.frames.is_empty() && s.stats.is_none();
        s.frames.push_back(frame.clone());
        if s.oldest.is_none() {
            s.oldest = stamp;
        }
        drop(s);
        if was_idle {
            self.shared.wake.notify_one();
        }
    }

    /// Queues the directory's counters, replacing counters not yet sent.
    pub fn send_stats(&self, frame: &Frame) {
        let mut s = self.shared.state.lock();
        if s.ended || s.slow {
            return;
        }
        let was_idle = s.frames.is_empty() && s.stats.is_none();
        s.stats = Some(frame.clone());
        drop(s);
        if was_idle {
            self.shared.wake.notify_one();
        }
    }

    pub fn control(&self, c: Control) {
        let mut s = self.shared.state.lock();
        if s.ended {
            return;
        }
        s.ctrl.push(c);
        drop(s);
        self.shared.wake.notify_one();
    }

    /// Session side: moves the control messages into `ctrl` and, if
    /// `with_frames`, queued frames into `frames` (in order, the counters
    /// last) up to `max_bytes` of them (always at least one frame): what a
    /// socket has not taken waits in its write buffer, so this bounds that
    /// buffer, and the rest waits here, in the queue whose bound closes a
    /// tab that stopped reading. With frames taken, `oldest` gets the
    /// stamp of the oldest presence delta queued (deltas left behind by the
    /// budget go untimed). Returns whether frames were left.
    pub fn take_if(
        &self,
        with_frames: bool,
        max_bytes: usize,
        frames: &mut Vec<Frame>,
        oldest: &mut Option<Stamp>,
        ctrl: &mut Vec<Control>,
    ) -> bool {
        let mut s = self.shared.state.lock();
        ctrl.append(&mut s.ctrl);
        if !with_frames {
            return !s.frames.is_empty() || s.stats.is_some();
        }
        let mut bytes = 0usize;
        while let Some(f) = s.frames.front() {
            if bytes > 0 && bytes + f.len() > max_bytes {
                break;
            }
            bytes += f.len();
            frames.extend(s.frames.pop_front());
        }
        if bytes > 0 {
            *oldest = s.oldest.take();
        }
        if !s.frames.is_empty() {
            return true;
        }
        frames.extend(s.stats.take());
        if s.frames.capacity() > KEEP_CAPACITY {
            s.frames = VecDeque::new();
        }
        false
    }

    /// Session side: a handle to wait on without borrowing the outbox, so a
    /// session can keep one pending wait across many frames instead of
    /// registering a new one each time.
    pub fn wake(&self) -> Wake {
        Wake(self.shared.clone())
    }

    /// Session side: the tab is gone; what is queued is dropped and nothing
    /// more is accepted.
    pub fn end(&self) {
        let mut s = self.shared.state.lock();
        s.ended = true;
        s.frames = VecDeque::new();
        s.stats = None;
        s.oldest = None;
        s.ctrl.clear();
    }
}

/// See [`Outbox::wake`].
pub struct Wake(Arc<Shared>);

impl Wake {
    /// Resolves once something may have been queued.
    ///
    /// # Cancel safety
    /// Cancel safe: a wake-up that happens while nobody waits is kept and
    /// resolves the next wait.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.0.wake.notified()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Frame {
        Arc::from(s)
    }

    #[test]
    fn counters_are_coalesced_and_come_after_the_frames_they_count() {
        let o = Outbox::new(1, 8);
        o.send_stats(&f("s1"));
        o.send(&f("a"));
        o.send_stats(&f("s2"));
        o.send(&f("b"));
        let (mut frames, mut oldest, mut ctrl) = (Vec::new(), None, Vec::new());
        o.take_if(true, usize::MAX, &mut frames, &mut oldest, &mut ctrl);
        let got: Vec<&str> = frames.iter().map(|f| &**f).collect();
        assert_eq!(got, ["a", "b", "s2"]);
        assert!(ctrl.is_empty());
    }

    #[test]
    fn a_full_queue_tells_the_tab_to_close_once() {
        let o = Outbox::new(1, 2);
        o.send(&f("a"));
        o.send(&f("b"));
        o.send(&f("c"));
        o.send(&f("d"));
        let (mut frames, mut oldest, mut ctrl) = (Vec::new(), None, Vec::new());
        o.take_if(true, usize::MAX, &mut frames, &mut oldest, &mut ctrl);
        assert_eq!(frames.len(), 2);
        assert!(matches!(
            ctrl.as_slice(),
            [Control::Close(presence_protocol::close::SLOW_CONSUMER, _)]
        ));
    }

    #[test]
    fn frames_are_taken_up_to_a_byte_budget_and_the_counters_wait_for_the_rest() {
        let o = Outbox::new(1, 8);
        o.send(&f("aaaa"));
        o.send(&f("bbbb"));
        o.send(&f("cc"));
        o.send_stats(&f("s"));
        let (mut frames, mut oldest, mut ctrl) = (Vec::new(), None, Vec::new());
        assert!(o.take_if(true, 9, &mut frames, &mut oldest, &mut ctrl));
        assert_eq!(
            frames.iter().map(|f| &**f).collect::<Vec<_>>(),
            ["aaaa", "bbbb"]
        );
        frames.clear();
        // A frame larger than the budget still goes, alone.
        assert!(!o.take_if(true, 1, &mut frames, &mut oldest, &mut ctrl));
        assert_eq!(frames.iter().map(|f| &**f).collect::<Vec<_>>(), ["cc", "s"]);
    }

    #[test]
    fn a_write_is_timed_by_its_oldest_presence_delta() {
        use crate::metrics::{RosterKind, Since};
        let o = Outbox::new(1, 8);
        let first = Since::now().on(RosterKind::Team);
        let later = Since::now().on(RosterKind::Directory);
        o.send(&f("welcome"));
        o.send_stamped(&f("aaaa"), Some(first));
        o.send_stamped(&f("bbbb"), Some(later));
        let (mut frames, mut oldest, mut ctrl) = (Vec::new(), None, Vec::new());
        o.take_if(true, usize::MAX, &mut frames, &mut oldest, &mut ctrl);
        assert_eq!(frames.len(), 3);
        assert_eq!(oldest, Some(first), "the oldest delta's stamp, once");
        let mut again = None;
        o.send(&f("error"));
        o.take_if(true, usize::MAX, &mut frames, &mut again, &mut ctrl);
        assert_eq!(again, None, "a write without a delta is not timed");
    }

    #[test]
    fn an_ended_tab_accepts_nothing() {
        let o = Outbox::new(1, 2);
        o.end();
        o.send(&f("a"));
        o.control(Control::Close(1000, "x"));
        let (mut frames, mut oldest, mut ctrl) = (Vec::new(), None, Vec::new());
        o.take_if(true, usize::MAX, &mut frames, &mut oldest, &mut ctrl);
        assert!(frames.is_empty() && ctrl.is_empty());
    }
}
