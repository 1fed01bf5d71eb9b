//! A watched roster as the application sees it: the entries and counters
//! kept current from the snapshot and the deltas, and the handle that
//! awaits changes.

use std::collections::BTreeMap;

use presence_protocol::{Entry, Roster, ServerMessage, Stats, Status};
use tokio::sync::{mpsc, oneshot, watch};

use crate::driver::Command;
use crate::Error;

/// The state of one roster as this client last heard it.
#[derive(Debug, Clone)]
pub struct RosterView {
    roster: Roster,
    entries: BTreeMap<String, Entry>,
    stats: Option<Stats>,
    snapshots: u64,
    live: bool,
    ended: Option<Error>,
}

impl RosterView {
    pub(crate) fn new(roster: Roster) -> RosterView {
        RosterView {
            roster,
            entries: BTreeMap::new(),
            stats: None,
            snapshots: 0,
            live: false,
            ended: None,
        }
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// Every user on the roster, ordered by id.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    pub fn get(&self, user: &str) -> Option<&Entry> {
        self.entries.get(user)
    }

    /// The status of `user`, `None` when they are not on the roster.
    pub fn status(&self, user: &str) -> Option<Status> {
        self.get(user).map(|e| e.status)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The counters; only the `directory` roster has them.
    pub fn stats(&self) -> Option<Stats> {
        self.stats
    }

    /// How many snapshots have built this view: one per (re)connection, so
    /// a caller can tell that a reconnection re-populated it.
    pub fn snapshots(&self) -> u64 {
        self.snapshots
    }

    /// False between a lost connection and the snapshot of the next one:
    /// the entries are then the last known state, not the live one.
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// Why the hub or the client ended this subscription; no change follows.
    pub fn ended(&self) -> Option<&Error> {
        self.ended.as_ref()
    }

    /// Replaces everything: after a reconnection the deltas missed while
    /// away are unknowable, so only a fresh snapshot is trustworthy.
    pub(crate) fn reset(&mut self, users: Vec<Entry>, stats: Option<Stats>) {
        self.entries = users.into_iter().map(|e| (e.id.clone(), e)).collect();
        self.stats = stats;
        self.snapshots += 1;
        self.live = true;
    }

    pub(crate) fn lost(&mut self) {
        self.live = false;
    }

    pub(crate) fn end(&mut self, why: Error) {
        self.live = false;
        self.ended.get_or_insert(why);
    }

    /// Applies a delta addressed to this roster; returns whether anything
    /// changed, so watchers are woken only for real changes.
    ///
    /// A presence delta applies only when its `v` is newer than the held
    /// one, which makes duplicates and reordering (across nodes) harmless.
    pub(crate) fn apply(&mut self, msg: ServerMessage) -> bool {
        match msg {
            ServerMessage::Presence {
                user,
                status,
                at,
                v,
                ..
            } => {
                let Some(e) = self.entries.get_mut(&user) else {
                    return false;
                };
                if v <= e.v {
                    return false;
                }
                e.status = status;
                e.since = at;
                e.v = v;
                if status == Status::Online {
                    e.last_seen = e.last_seen.max(at);
                }
                true
            }
            ServerMessage::User { mut user, .. } => {
                // A directory change carries the presence the hub had when
                // it was made; a newer transition already applied here must
                // not be rolled back by it.
                if let Some(held) = self.entries.get(&user.id).filter(|h| h.v > user.v) {
                    user.status = held.status;
                    user.since = held.since;
                    user.last_seen = held.last_seen;
                    user.v = held.v;
                }
                self.entries.insert(user.id.clone(), user);
                true
            }
            ServerMessage::UserRemoved { user, .. } => self.entries.remove(&user).is_some(),
            ServerMessage::Stats { stats, .. } => {
                let changed = self.stats != Some(stats);
                self.stats = Some(stats);
                changed
            }
            _ => false,
        }
    }
}

/// A live subscription to one roster. Dropping it unsubscribes (when no
/// other handle watches the same roster).
#[derive(Debug)]
pub struct RosterWatch {
    roster: Roster,
    view: watch::Receiver<RosterView>,
    // Weak: a forgotten roster handle must not keep the connection alive
    // after the application dropped its `Client`.
    cmds: mpsc::WeakUnboundedSender<Command>,
    watching: bool,
}

impl RosterWatch {
    pub(crate) fn new(
        roster: Roster,
        view: watch::Receiver<RosterView>,
        cmds: mpsc::WeakUnboundedSender<Command>,
    ) -> RosterWatch {
        RosterWatch {
            roster,
            view,
            cmds,
            watching: true,
        }
    }

    pub fn roster(&self) -> &Roster {
        &self.roster
    }

    /// The current state, cloned so it can be held across an await.
    pub fn current(&self) -> RosterView {
        self.view.borrow().clone()
    }

    /// Waits for the next change and returns the state after it.
    ///
    /// # Errors
    /// The subscription ended (the reason the hub or the client gave), or
    /// the client stopped.
    ///
    /// # Cancel safety
    /// Cancel safe: a change that arrives meanwhile is seen by the next call.
    pub async fn changed(&mut self) -> Result<RosterView, Error> {
        if self.view.changed().await.is_err() {
            return Err(self.ended_or_stopped());
        }
        let v = self.view.borrow_and_update().clone();
        match v.ended {
            Some(e) => Err(e),
            None => Ok(v),
        }
    }

    /// Waits until the state satisfies `pred` (checked at once, then after
    /// every change) and returns that state.
    ///
    /// # Errors
    /// The subscription ended before `pred` held, or the client stopped.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn wait_for(
        &mut self,
        mut pred: impl FnMut(&RosterView) -> bool,
    ) -> Result<RosterView, Error> {
        let res = self
            .view
            .wait_for(|v| v.ended.is_some() || pred(v))
            .await
            .map(|v| v.clone());
        match res {
            Ok(v) if v.ended.is_none() || pred(&v) => Ok(v),
            Ok(v) => Err(v.ended.unwrap_or(Error::Stopped)),
            Err(_) => Err(self.ended_or_stopped()),
        }
    }

    fn ended_or_stopped(&self) -> Error {
        self.view.borrow().ended.clone().unwrap_or(Error::Stopped)
    }

    /// Unsubscribes and waits until the request is on its way.
    ///
    /// # Errors
    /// [`Error::Stopped`] when the client is gone (there is nothing left to
    /// unsubscribe from).
    pub async fn unwatch(mut self) -> Result<(), Error> {
        self.watching = false;
        let (tx, rx) = oneshot::channel();
        let cmds = self.cmds.upgrade().ok_or(Error::Stopped)?;
        cmds.send(Command::Unwatch {
            roster: self.roster.clone(),
            reply: Some(tx),
        })
        .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)
    }
}

impl Drop for RosterWatch {
    fn drop(&mut self) {
        if !self.watching {
            return;
        }
        if let Some(cmds) = self.cmds.upgrade() {
            // The driver may be gone already; then there is nothing to undo.
            let _ = cmds.send(Command::Unwatch {
                roster: self.roster.clone(),
                reply: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, status: Status, v: u64) -> Entry {
        Entry {
            id: id.into(),
            nickname: id.into(),
            name: None,
            status,
            since: 0,
            last_seen: 0,
            v,
            available: true,
            away_message: String::new(),
            profile: None,
            teams: None,
            state: None,
        }
    }

    fn presence(user: &str, status: Status, at: u64, v: u64) -> ServerMessage {
        ServerMessage::Presence {
            roster: Roster::Directory,
            user: user.into(),
            status,
            at,
            v,
        }
    }

    fn view() -> RosterView {
        let mut v = RosterView::new(Roster::Directory);
        v.reset(vec![entry("ann", Status::Offline, 2)], None);
        v
    }

    #[test]
    fn a_presence_delta_applies_only_when_newer() {
        let mut v = view();
        assert!(v.apply(presence("ann", Status::Online, 10, 3)));
        assert_eq!(v.status("ann"), Some(Status::Online));
        assert_eq!(v.get("ann").unwrap().since, 10);
        // A duplicate and an older, reordered delta change nothing.
        assert!(!v.apply(presence("ann", Status::Online, 10, 3)));
        assert!(!v.apply(presence("ann", Status::Offline, 5, 2)));
        assert_eq!(v.status("ann"), Some(Status::Online));
        assert!(v.apply(presence("ann", Status::Offline, 20, 4)));
        assert_eq!(v.status("ann"), Some(Status::Offline));
    }

    #[test]
    fn a_directory_delta_keeps_a_newer_presence() {
        let mut v = view();
        v.apply(presence("ann", Status::Online, 10, 3));
        let mut changed = entry("ann", Status::Offline, 2);
        changed.nickname = "Annie".into();
        assert!(v.apply(ServerMessage::User {
            roster: Roster::Directory,
            user: changed,
        }));
        let e = v.get("ann").unwrap();
        assert_eq!(
            (e.nickname.as_str(), e.status, e.v),
            ("Annie", Status::Online, 3)
        );
    }

    #[test]
    fn users_come_and_go_and_stats_follow() {
        let mut v = view();
        assert!(v.apply(ServerMessage::User {
            roster: Roster::Directory,
            user: entry("bob", Status::Offline, 0),
        }));
        assert_eq!(v.len(), 2);
        assert!(v.apply(ServerMessage::UserRemoved {
            roster: Roster::Directory,
            user: "ann".into(),
        }));
        assert!(!v.apply(presence("ann", Status::Online, 1, 9)));
        assert_eq!(
            v.entries().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["bob"]
        );
        let stats = Stats {
            online: 0,
            offline: 1,
            active: 1,
            inactive: 0,
        };
        assert!(v.apply(ServerMessage::Stats {
            roster: Roster::Directory,
            stats,
        }));
        assert!(!v.apply(ServerMessage::Stats {
            roster: Roster::Directory,
            stats,
        }));
        assert_eq!(v.stats(), Some(stats));
    }

    #[test]
    fn a_fresh_snapshot_replaces_the_state() {
        let mut v = view();
        v.lost();
        assert!(!v.is_live());
        v.reset(vec![entry("bob", Status::Online, 1)], None);
        assert!(v.is_live());
        assert_eq!(v.snapshots(), 2);
        assert_eq!(v.status("ann"), None);
        assert_eq!(v.status("bob"), Some(Status::Online));
    }
}
