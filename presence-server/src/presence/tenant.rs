//! One tenant's live state: its directory, its presence engine, its open tabs
//! and who watches which roster. Everything that must change together (a
//! transition and the deltas it causes, a snapshot and the subscription that
//! follows it) changes under the one lock around a `Tenant`, which is what
//! keeps every watcher's view ordered.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use presence_protocol::{
    close, ErrorCode, Event, Reason, ReqId, Roster, ServerMessage, Stats, Status, UserState,
};
use uuid::Uuid;

use crate::cluster::ops::PresenceEvent;
use crate::directory::{PresenceRecord, TenantDir, Write};
use crate::metrics::{Metrics, RosterKind, Since};
use crate::net::outbox::{Control, Frame, Outbox};
use crate::presence::engine::UserPresence;
use crate::presence::feed::{Pending, TenantFeed};
use crate::presence::source::{Change, Source};
use crate::presence::visibility::{self, Denied};

struct TabHandle {
    tab: Uuid,
    out: Outbox,
    /// When it joined (ms): a forced offline asked before that (published
    /// by another node) does not close it.
    joined_at: u64,
}

struct Watcher {
    user: String,
    /// The id of the `subscribe` this watcher answers: a fresh snapshot
    /// sent after a large write (`send_diffs`) carries it, so clients take
    /// it as they took the first.
    id: ReqId,
    /// Admins see every field of an entry.
    full: bool,
    out: Outbox,
    /// The feed's last cursor when the snapshot was taken: the snapshot
    /// already shows every event up to it, so a delta of such an event,
    /// delivered once committed, is not sent to this watcher.
    seen: u64,
}

/// Why a tab may not join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinError {
    /// Unknown, inactive or deleted user: close 4003.
    Forbidden,
    /// The user has too many tabs: close 4029.
    TooManyTabs,
}

pub struct Tenant {
    pub dir: TenantDir,
    /// Where presence comes from (the local engine, or the engine and the
    /// cluster link); every transition this tenant publishes comes from it.
    source: Source,
    /// Active users who are online; kept so counters cost nothing per transition.
    online_active: u64,
    tabs: HashMap<String, Vec<TabHandle>>,
    watchers: HashMap<Roster, HashMap<u64, Watcher>>,
    /// The transition feed: cursors, and on a single node the events (and
    /// so the deltas) waiting for the store.
    feed: TenantFeed,
    /// When something from outside last used the tenant (`Hub::resident`),
    /// ms; cluster mode evicts a tenant unused for long.
    pub(crate) touched: u64,
}

fn frame(msg: &ServerMessage) -> Frame {
    Arc::from(msg.to_json())
}

impl Tenant {
    /// A tenant over its directory, with presence from `source`; what the
    /// directory holds of presence (persisted `last_seen` and `v`) seeds it.
    pub(crate) fn new(dir: TenantDir, mut source: Source, feed: TenantFeed) -> Self {
        for (uid, p) in &dir.presence {
            source.restore(uid.clone(), p.last_seen, p.since, p.v);
        }
        Tenant {
            dir,
            source,
            online_active: 0,
            tabs: HashMap::new(),
            watchers: HashMap::new(),
            feed,
            touched: 0,
        }
    }

    /// Whether anything on this node holds on to the tenant: a tab, a
    /// watcher, a local claim (a user whose local deadline is ahead), or a
    /// reader of its feed other than the history keeper (`keepers`: how
    /// many of those readers are the keeper's).
    pub(crate) fn in_use(&self, keepers: usize) -> bool {
        !self.tabs.is_empty()
            || self.watchers.values().any(|w| !w.is_empty())
            || self.source.next_deadline().is_some()
            || self.feed.readers() > keepers
    }

    /// A user's presence as rosters and the API show it: the local engine on
    /// a single node, the global view in cluster mode.
    pub fn presence(&self, user: &str) -> UserPresence {
        self.source.presence(user)
    }

    /// When the next local expiry may be due.
    pub fn next_deadline(&self) -> Option<u64> {
        self.source.next_deadline()
    }

    pub fn stats(&self) -> Stats {
        visibility::stats(&self.dir, self.online_active)
    }

    /// Tabs registered over all users.
    pub fn registered_tabs(&self) -> usize {
        self.tabs.values().map(Vec::len).sum()
    }

    /// Registers a tab. A tab id that is already open (a reload that raced
    /// its own close) replaces the old connection.
    pub fn join(
        &mut self,
        user: &str,
        tab: Uuid,
        out: Outbox,
        max_tabs: usize,
        now: u64,
    ) -> Result<(), JoinError> {
        if self
            .dir
            .users
            .get(user)
            .is_none_or(|u| u.state != UserState::Active)
        {
            return Err(JoinError::Forbidden);
        }
        let tabs = self.tabs.entry(user.to_owned()).or_default();
        if let Some(i) = tabs.iter().position(|t| t.tab == tab) {
            let old = tabs.swap_remove(i);
            old.out
                .control(Control::Close(close::REPLACED, "tab reconnected"));
        }
        if tabs.len() >= max_tabs {
            return Err(JoinError::TooManyTabs);
        }
        tabs.push(TabHandle {
            tab,
            out,
            joined_at: now,
        });
        Ok(())
    }

    /// Forgets a closed connection and its subscriptions. Presence does not
    /// change: an open tab was never proof of interaction.
    pub fn leave(&mut self, user: &str, conn: u64, rosters: &[Roster]) {
        if let Some(tabs) = self.tabs.get_mut(user) {
            tabs.retain(|t| t.out.conn != conn);
            if tabs.is_empty() {
                self.tabs.remove(user);
            }
        }
        for r in rosters {
            self.unwatch(r, conn);
        }
    }

    pub fn activity(&mut self, user: &str, now: u64, idle_ms: u64, m: &Metrics) {
        if let Some(c) = self.source.activity(user, now, idle_ms) {
            self.publish(&c, m);
        }
    }

    /// Cluster mode: Redis was lost. Users online by this node's proofs are
    /// shown online here even if the event never came back.
    pub fn on_redis_down(&mut self, now: u64, m: &Metrics) {
        for c in self.source.redis_down(now) {
            self.publish(&c, m);
        }
    }

    /// Cluster mode: Redis is back; what this node showed on its own is
    /// raised above Redis's `v` so every node converges.
    pub fn on_redis_up(&mut self) {
        self.source.redis_up();
    }

    /// Offline at once wherever the user is (logout, deactivation): the
    /// local proof is dropped and, in cluster mode, every node is told and
    /// closes the user's tabs with `close` (0: none).
    fn force_offline(&mut self, user: &str, now: u64, close: u16, reason: Reason, m: &Metrics) {
        if let Some(c) = self.source.force_offline(user, now, close, reason) {
            self.publish(&c, m);
        }
    }

    /// Logout: offline at once and every tab of the user closed with 4004.
    pub fn logout(&mut self, user: &str, now: u64, m: &Metrics) {
        self.force_offline(user, now, close::LOGGED_OUT, Reason::Logout, m);
        self.close_tabs(user, close::LOGGED_OUT, "logged out");
    }

    pub fn expire(&mut self, now: u64, m: &Metrics) {
        for c in self.source.expire(now) {
            self.publish(&c, m);
        }
    }

    /// Cluster mode: a transition (or forced offline) decided in Redis.
    pub fn apply_event(&mut self, ev: &PresenceEvent, now: u64, m: &Metrics) {
        // Whatever this node makes of it, the event is in Redis's feed.
        self.feed.visible_up_to(ev.cursor);
        let effect = self.source.apply_event(ev, now);
        if let Some(code) = effect.close {
            // Tabs that joined after the forced offline was asked stay.
            let before = if ev.at > 0 { ev.at } else { u64::MAX };
            for t in self.tabs.get(&ev.u).into_iter().flatten() {
                if t.joined_at <= before {
                    t.out
                        .control(Control::Close(code, "closed by another node"));
                }
            }
        }
        if let Some(c) = effect.change {
            self.publish(&c, m);
        }
    }

    /// Cluster mode: re-sends this node's claims (after Redis came back).
    pub fn reclaim(&mut self, now: u64) {
        self.source.raise_cursor(self.feed.last_cursor());
        self.source.reclaim(now);
    }

    /// Cluster mode, graceful shutdown: leases cut to exact deadlines.
    pub fn hand_off(&mut self, now: u64) {
        self.source.hand_off(now);
    }

    /// Every open tab of this tenant (the node is stopping).
    pub fn close_all(&self, code: u16, reason: &'static str) {
        for t in self.tabs.values().flatten() {
            t.out.control(Control::Close(code, reason));
        }
    }

    fn close_tabs(&self, user: &str, code: u16, reason: &'static str) {
        for t in self.tabs.get(user).into_iter().flatten() {
            t.out.control(Control::Close(code, reason));
        }
    }

    /// Counts a change (metrics, counters) and sends it to every roster
    /// the user is on, then the counters; on a single node its event goes
    /// to the feed first and the sending waits for the store
    /// ([`deliver`](Self::deliver)). A change that only catches up on `v`
    /// (missed events) changes no counter.
    fn publish(&mut self, t: &Change, m: &Metrics) {
        let changed = t.changed();
        if changed {
            let label = match t.to {
                Status::Online => "online",
                Status::Offline => "offline",
            };
            m.transitions.with_label_values(&[label]).inc();
            match t.to {
                Status::Online => m.online_users.inc(),
                Status::Offline => m.online_users.dec(),
            }
        }
        let active = self
            .dir
            .users
            .get(&t.user)
            .is_some_and(|u| u.state == UserState::Active);
        if active && changed {
            match t.to {
                Status::Online => self.online_active += 1,
                Status::Offline => self.online_active = self.online_active.saturating_sub(1),
            }
        }
        let counts = active && changed;
        // The cause of every frame this change sends, for
        // `presence_delivery_seconds`: taken per change, never per
        // activity frame that changes nothing.
        let since = Since::now();
        if self.feed.is_local() {
            let cursor = self.feed.next_cursor();
            let p = self.source.presence(&t.user);
            self.feed.push(Pending {
                event: Event {
                    id: Event::id_of(&self.dir.tenant.id, &t.user, t.v),
                    cursor,
                    tenant: self.dir.tenant.id.clone(),
                    user: t.user.clone(),
                    status: t.to,
                    at: t.at,
                    v: t.v,
                    reason: t.reason,
                },
                presence: PresenceRecord {
                    last_seen: p.last_seen,
                    since: p.since,
                    v: p.v,
                    status: Some(t.to),
                },
                counts,
                since,
            });
            return;
        }
        self.send_presence(&t.user, t.to, t.at, t.v, u64::MAX, since);
        if counts {
            self.publish_stats();
        }
    }

    /// Single node: the events of `batch` are committed; their deltas go
    /// out now, in order, to the rosters the users are on now (a snapshot
    /// taken meanwhile already shows the new state, and the delta with the
    /// same `v` changes nothing there), then the counters once.
    pub(crate) fn deliver(&mut self, batch: &[Pending]) {
        for p in batch {
            let e = &p.event;
            self.send_presence(&e.user, e.status, e.at, e.v, e.cursor, p.since);
        }
        if let Some(last) = batch.iter().rev().find(|p| p.counts) {
            self.send_stats(last.event.cursor);
        }
        if let Some(last) = batch.last() {
            self.feed.visible_up_to(last.event.cursor);
        }
    }

    /// Single node: the events waiting for the store, taken by the
    /// committer.
    pub(crate) fn take_pending(&mut self) -> Vec<Pending> {
        self.feed.take()
    }

    /// Single node: a batch the store refused, for the committer's next
    /// round.
    pub(crate) fn put_back(&mut self, batch: Vec<Pending>) {
        self.feed.put_back(batch);
    }

    /// A reader's handle on the feed: changes whenever more events may be
    /// read.
    pub fn feed_watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.feed.watch()
    }

    /// A presence delta to the watchers of the user's rosters whose
    /// snapshot came before feed event `cursor` (`u64::MAX`: every one),
    /// stamped with the change's publication.
    fn send_presence(
        &self,
        user: &str,
        status: Status,
        at: u64,
        v: u64,
        cursor: u64,
        since: Since,
    ) {
        for roster in visibility::rosters_of(&self.dir, user) {
            let Some(ws) = self.watchers.get(&roster).filter(|w| !w.is_empty()) else {
                continue;
            };
            let stamp = Some(since.on(RosterKind::of(&roster)));
            let f = frame(&ServerMessage::Presence {
                roster,
                user: user.to_owned(),
                status,
                at,
                v,
            });
            for w in ws.values().filter(|w| w.seen < cursor) {
                w.out.send_stamped(&f, stamp);
            }
        }
    }

    fn publish_stats(&self) {
        self.send_stats(u64::MAX);
    }

    /// The counters to the directory's watchers whose snapshot came before
    /// feed event `cursor` (`u64::MAX`: every one).
    fn send_stats(&self, cursor: u64) {
        if let Some(ws) = self
            .watchers
            .get(&Roster::Directory)
            .filter(|w| !w.is_empty())
        {
            let f = frame(&ServerMessage::Stats {
                roster: Roster::Directory,
                stats: self.stats(),
            });
            for w in ws.values().filter(|w| w.seen < cursor) {
                w.out.send_stats(&f);
            }
        }
    }

    /// Subscribes a tab: checks the rights, queues the snapshot, and from then
    /// on the deltas, all under this tenant's lock so none falls in between.
    pub fn watch(
        &mut self,
        user: &str,
        out: &Outbox,
        id: ReqId,
        roster: Roster,
    ) -> Result<(), (ErrorCode, String)> {
        match visibility::may_watch(&self.dir, user, &roster) {
            Ok(()) => {}
            Err(Denied::Forbidden) => {
                return Err((ErrorCode::Forbidden, format!("you may not watch {roster}")))
            }
            Err(Denied::NotFound) => {
                return Err((ErrorCode::NotFound, format!("no such roster: {roster}")))
            }
        }
        let full = visibility::sees_everything(&self.dir, user);
        let users = visibility::candidates(&self.dir, &roster)
            .into_iter()
            .filter_map(|uid| visibility::entry(&self.dir, &self.presence(uid), uid, &roster, full))
            .collect();
        let stats = (roster == Roster::Directory).then(|| self.stats());
        out.send(&frame(&ServerMessage::Snapshot {
            id: id.clone(),
            roster: roster.clone(),
            users,
            stats,
        }));
        self.watchers.entry(roster).or_default().insert(
            out.conn,
            Watcher {
                user: user.to_owned(),
                id,
                full,
                out: out.clone(),
                seen: self.feed.last_cursor(),
            },
        );
        Ok(())
    }

    pub fn unwatch(&mut self, roster: &Roster, conn: u64) -> bool {
        let Some(ws) = self.watchers.get_mut(roster) else {
            return false;
        };
        let had = ws.remove(&conn).is_some();
        if ws.is_empty() {
            self.watchers.remove(roster);
        }
        had
    }

    /// Applies directory writes that the store accepted and carries out
    /// their effects: forced offline and closed tabs for users who left the
    /// active state, `user`/`user_removed` deltas, counters, and the end of
    /// subscriptions that are no longer allowed.
    pub fn apply(&mut self, writes: &[Write], now: u64, m: &Metrics) {
        let mut teams = BTreeSet::new();
        let mut users = BTreeSet::new();
        for w in writes {
            match w {
                Write::User { user, .. } => {
                    users.insert(user.id.clone());
                }
                Write::Team { team, .. } => {
                    teams.insert(team.id.clone());
                }
                Write::DeleteTeam { team, .. } => {
                    teams.insert(team.clone());
                }
                Write::Member { team, user, .. } | Write::DeleteMember { team, user, .. } => {
                    teams.insert(team.clone());
                    users.insert(user.clone());
                }
                Write::Tenant(_)
                | Write::Presence { .. }
                | Write::Webhook { .. }
                | Write::DeleteWebhook { .. } => {}
            }
        }
        for t in &teams {
            users.extend(self.dir.members_of(t).map(|(u, _)| u.clone()));
        }
        let stats_before = self.stats();
        let before = self.views(&users, &teams);
        for w in writes {
            self.dir.apply(w);
        }
        self.online_active = self
            .dir
            .users
            .values()
            .filter(|u| u.state == UserState::Active)
            .filter(|u| self.presence(&u.id).status == Status::Online)
            .count() as u64;
        // Rights are settled before any effect of these writes is sent: a
        // watcher who lost a roster must get its end and no data computed
        // from the new directory (an import that demotes an admin and edits
        // others must not hand them the full entries), and one who keeps it
        // must get the variant (full or public) of their new profile.
        self.recheck_watchers();
        for uid in &users {
            let reason = match self.dir.users.get(uid).map(|u| u.state) {
                Some(UserState::Inactive) => Reason::Deactivated,
                Some(UserState::Deleted) => Reason::Deleted,
                Some(UserState::Active) | None => continue,
            };
            self.force_offline(uid, now, 0, reason, m);
            self.close_tabs(uid, close::FORBIDDEN, "user deactivated");
        }
        let after = self.views(&users, &teams);
        self.send_diffs(&before, &after);
        if self.stats() != stats_before {
            self.publish_stats();
        }
    }

    /// Every entry of the given users on every watched roster they may
    /// appear on (directory, attendants, the touched teams and their own
    /// teams), in both the full and the public variant.
    ///
    /// Only watched rosters: `send_diffs` sends nowhere else, and entries
    /// of every roster cost a 100,000-user import some 300 MB under this
    /// lock. Watchers cannot join while it is held, so a roster unwatched
    /// before the writes is unwatched after them.
    fn views(&self, users: &BTreeSet<String>, teams: &BTreeSet<String>) -> Views {
        let mut out = HashMap::new();
        let watched = |r: &Roster| self.watchers.get(r).is_some_and(|w| !w.is_empty());
        // Built once, not per user: a bulk sync touches 20 teams for
        // 20,000 users.
        let mut common = vec![Roster::Directory, Roster::Attendants];
        common.extend(teams.iter().map(|t| Roster::Team(t.clone())));
        common.retain(watched);
        for uid in users {
            let mut rosters = common.clone();
            rosters.extend(
                self.dir
                    .teams_of(uid)
                    .filter(|(t, _)| !teams.contains(*t))
                    .map(|(t, _)| Roster::Team(t.clone()))
                    .filter(watched),
            );
            if rosters.is_empty() {
                continue;
            }
            let p = self.presence(uid);
            for r in rosters {
                let full = visibility::entry(&self.dir, &p, uid, &r, true);
                let public = visibility::entry(&self.dir, &p, uid, &r, false);
                out.insert((uid.clone(), r), [full, public]);
            }
        }
        out
    }

    /// The `user` / `user_removed` deltas from `before` to `after`, per
    /// watched roster and variant (full or public). A roster whose watchers
    /// would get more than [`RESNAPSHOT_AFTER`] deltas, and more than a
    /// quarter of the roster's size, gets one fresh snapshot instead: a
    /// bulk sync of 20,000 memberships is then one frame and one render
    /// for an administrators' screen instead of 20,000 (and cannot fill
    /// its outbox). The `v` rule holds: the snapshot carries every user's
    /// current `v`, and replaces what the client held.
    fn send_diffs(&mut self, before: &Views, after: &Views) {
        let keys: BTreeSet<&(String, Roster)> = before.keys().chain(after.keys()).collect();
        let mut deltas: HashMap<(&Roster, bool), Vec<ServerMessage>> = HashMap::new();
        for key @ (uid, roster) in keys {
            if self.watchers.get(roster).is_none_or(|w| w.is_empty()) {
                continue;
            }
            let none = [None, None];
            let b = before.get(key).unwrap_or(&none);
            let a = after.get(key).unwrap_or(&none);
            for (variant, full) in [(0, true), (1, false)] {
                let msg = match (&b[variant], &a[variant]) {
                    (Some(_), None) => ServerMessage::UserRemoved {
                        roster: roster.clone(),
                        user: uid.clone(),
                    },
                    (old, Some(new)) if old.as_ref() != Some(new) => ServerMessage::User {
                        roster: roster.clone(),
                        user: new.clone(),
                    },
                    _ => continue,
                };
                deltas.entry((roster, full)).or_default().push(msg);
            }
        }
        for ((roster, full), msgs) in deltas {
            if msgs.len() > RESNAPSHOT_AFTER
                && msgs.len() * 4 > visibility::candidates(&self.dir, roster).len()
            {
                self.resnapshot(roster, full);
                continue;
            }
            let Some(ws) = self.watchers.get(roster) else {
                continue;
            };
            for msg in msgs {
                let f = frame(&msg);
                send_all(ws.values().filter(|w| w.full == full), &f);
            }
        }
    }

    /// A fresh snapshot of `roster` to its watchers of one variant, each
    /// with the id of its own subscription; like a new subscription's, it
    /// already shows every feed event so far (`seen`).
    fn resnapshot(&mut self, roster: &Roster, full: bool) {
        let users: Vec<presence_protocol::Entry> = visibility::candidates(&self.dir, roster)
            .into_iter()
            .filter_map(|uid| visibility::entry(&self.dir, &self.presence(uid), uid, roster, full))
            .collect();
        let stats = (*roster == Roster::Directory).then(|| self.stats());
        let seen = self.feed.last_cursor();
        let Some(ws) = self.watchers.get_mut(roster) else {
            return;
        };
        // Clients number their own subscriptions, so watchers share a few ids:
        // one frame per id, shared by the watchers that sent it.
        let mut frames: HashMap<ReqId, Frame> = HashMap::new();
        for w in ws.values_mut().filter(|w| w.full == full) {
            let f = frames.entry(w.id.clone()).or_insert_with(|| {
                frame(&ServerMessage::Snapshot {
                    id: w.id.clone(),
                    roster: roster.clone(),
                    users: users.clone(),
                    stats,
                })
            });
            w.out.send(f);
            w.seen = seen;
        }
    }

    /// Ends every subscription its watcher may no longer have.
    fn recheck_watchers(&mut self) {
        let dir = &self.dir;
        for (roster, ws) in self.watchers.iter_mut() {
            ws.retain(|_, w| match visibility::may_watch(dir, &w.user, roster) {
                Ok(()) => {
                    w.full = visibility::sees_everything(dir, &w.user);
                    true
                }
                Err(denied) => {
                    let (code, message) = match denied {
                        Denied::Forbidden => (
                            ErrorCode::Revoked,
                            format!("you may no longer watch {roster}"),
                        ),
                        Denied::NotFound => (ErrorCode::NotFound, format!("{roster} was deleted")),
                    };
                    w.out.control(Control::Ended {
                        roster: roster.clone(),
                        code,
                        message,
                    });
                    false
                }
            });
        }
        self.watchers.retain(|_, ws| !ws.is_empty());
    }
}

type Views = HashMap<(String, Roster), [Option<presence_protocol::Entry>; 2]>;

/// Deltas one write may send a roster's watchers before they get a fresh
/// snapshot instead (when that is also over a quarter of the roster).
const RESNAPSHOT_AFTER: usize = 64;

fn send_all<'a>(ws: impl Iterator<Item = &'a Watcher>, f: &Frame) {
    for w in ws {
        w.out.send(f);
    }
}
