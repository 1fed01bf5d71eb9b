//! Where a tenant's presence comes from: the local engine alone on a single
//! node, or the local engine plus the cluster link, where the engine's
//! transitions become claims in Redis and the global view comes back as
//! events. The tenant asks its [`Source`] for transitions and gets back
//! [`Change`]s that carry the status before and after, so it publishes them
//! the same way in both modes and has no cluster branch.
//!
//! Pure: time is passed in, and the cluster variant's only effect outside
//! itself is queueing operations on the link (no I/O, no lock).

use presence_protocol::{Reason, Status};

use crate::cluster::link::{ClusterHandle, ClusterLink};
use crate::cluster::ops::PresenceEvent;
use crate::presence::engine::{Engine, Transition, UserPresence};

/// A user's status as watchers are to be told it.
///
/// `from == to` is a catch-up on `v` alone (this node missed events): the
/// delta is sent, and no counter changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Change {
    pub user: String,
    pub from: Status,
    pub to: Status,
    /// When the new status began.
    pub at: u64,
    /// The user's transition counter after this change.
    pub v: u64,
    /// Why it happened, as the transition feed tells it.
    pub reason: Reason,
}

impl Change {
    /// Whether the status itself changed (and counters with it).
    pub fn changed(&self) -> bool {
        self.from != self.to
    }

    /// A transition of the local engine, whose previous status is always
    /// the other one.
    fn of_engine(t: Transition<String>, reason: Reason) -> Change {
        let from = match t.status {
            Status::Online => Status::Offline,
            Status::Offline => Status::Online,
        };
        Change {
            user: t.user,
            from,
            to: t.status,
            at: t.at,
            v: t.v,
            reason,
        }
    }
}

/// What a cluster event asks of the tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct EventEffect {
    /// Close the user's tabs on this node with this code.
    pub close: Option<u16>,
    pub change: Option<Change>,
}

/// A tenant's presence: see the module documentation.
#[derive(Debug)]
pub(crate) enum Source {
    /// A single node: the local engine is the truth.
    Local(Local),
    /// Cluster mode: the global view is what Redis decided. Boxed: the
    /// link is most of a tenant's size, and a single node has none.
    Cluster(Box<Clustered>),
}

#[derive(Debug)]
pub(crate) struct Local {
    engine: Engine<String>,
}

pub(crate) struct Clustered {
    engine: Engine<String>,
    link: ClusterLink,
}

impl std::fmt::Debug for Clustered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clustered").finish_non_exhaustive()
    }
}

impl Source {
    /// The source of tenant `tenant`: local, or through the cluster link
    /// when the node runs in cluster mode.
    pub fn new(tenant: &str, idle_timeout_ms: u64, cluster: Option<&ClusterHandle>) -> Source {
        let engine = Engine::new(idle_timeout_ms);
        match cluster {
            None => Source::Local(Local { engine }),
            Some(h) => Source::Cluster(Box::new(Clustered {
                engine,
                link: ClusterLink::new(tenant.to_owned(), h.clone()),
            })),
        }
    }

    fn engine(&self) -> &Engine<String> {
        match self {
            Source::Local(l) => &l.engine,
            Source::Cluster(c) => &c.engine,
        }
    }

    fn engine_mut(&mut self) -> &mut Engine<String> {
        match self {
            Source::Local(l) => &mut l.engine,
            Source::Cluster(c) => &mut c.engine,
        }
    }

    /// What the store knows of a user (after a restart): `last_seen` and
    /// `v` survive, the user starts offline.
    pub fn restore(&mut self, user: String, last_seen: u64, since: u64, v: u64) {
        self.engine_mut().restore(user, last_seen, since, v);
    }

    /// A user's presence as rosters and the API show it: the local engine on
    /// a single node, the global view in cluster mode.
    pub fn presence(&self, user: &str) -> UserPresence {
        match self {
            Source::Local(l) => l.engine.get(user),
            Source::Cluster(c) => c.link.presence(user),
        }
    }

    /// When the next local expiry may be due.
    pub fn next_deadline(&self) -> Option<u64> {
        self.engine().next_deadline()
    }

    /// Proof of interaction `idle_ms` before `now`. Allocates only when the
    /// user changes or a claim is due (the path of every activity frame).
    pub fn activity(&mut self, user: &str, now: u64, idle_ms: u64) -> Option<Change> {
        match self {
            Source::Local(l) => {
                let t = l.engine.activity(user, now, idle_ms)?;
                Some(Change::of_engine(t, Reason::Activity))
            }
            Source::Cluster(c) => c.activity(user, now, idle_ms),
        }
    }

    /// Offline at once wherever the user is (logout, deactivation,
    /// deletion: `reason`): the local proof is dropped, and in cluster mode
    /// every node is told and closes the user's tabs with `close` (0: none).
    pub fn force_offline(
        &mut self,
        user: &str,
        now: u64,
        close: u16,
        reason: Reason,
    ) -> Option<Change> {
        match self {
            Source::Local(l) => {
                let t = l.engine.force_offline(user, now)?;
                Some(Change::of_engine(t, reason))
            }
            Source::Cluster(c) => c.force_offline(user, now, close, reason),
        }
    }

    /// The local deadlines that passed by `now`.
    pub fn expire(&mut self, now: u64) -> Vec<Change> {
        match self {
            Source::Local(l) => l
                .engine
                .expire(now)
                .into_iter()
                .map(|t| Change::of_engine(t, Reason::Idle))
                .collect(),
            Source::Cluster(c) => c.expire(now),
        }
    }

    /// A transition (or forced offline) decided in Redis. A single node has
    /// no events and ignores them.
    pub fn apply_event(&mut self, ev: &PresenceEvent, now: u64) -> EventEffect {
        match self {
            Source::Local(_) => EventEffect::default(),
            Source::Cluster(c) => c.apply_event(ev, now),
        }
    }

    /// Redis was lost: users online by this node's proofs are shown online
    /// here even if their event never came back.
    pub fn redis_down(&mut self, now: u64) -> Vec<Change> {
        match self {
            Source::Local(_) => Vec::new(),
            Source::Cluster(c) => c.redis_down(now),
        }
    }

    /// Redis is back: every `v` shown provisionally is raised in Redis,
    /// which republishes those users, so every node converges on Redis's
    /// state with a `v` newer than anything shown.
    pub fn redis_up(&mut self) {
        if let Source::Cluster(c) = self {
            c.link.send_floors();
        }
    }

    /// Re-sends this node's claims (after Redis came back).
    pub fn reclaim(&mut self, now: u64) {
        if let Source::Cluster(c) = self {
            c.link.reclaim(local_online(&c.engine), now);
        }
    }

    /// Cluster mode, after (re)joining: the tenant's cursor counter in Redis
    /// is raised to the highest cursor this node saw, before any claim of
    /// the resync can publish an event.
    pub fn raise_cursor(&mut self, at_least: u64) {
        if let Source::Cluster(c) = self {
            c.link.raise_cursor(at_least);
        }
    }

    /// Graceful shutdown: leases cut to the exact local deadlines.
    pub fn hand_off(&mut self, now: u64) {
        if let Source::Cluster(c) = self {
            c.link.hand_off(local_online(&c.engine), now);
        }
    }
}

impl Clustered {
    fn activity(&mut self, user: &str, now: u64, idle_ms: u64) -> Option<Change> {
        let t = self.engine.activity(user, now, idle_ms);
        let p = self.engine.get(user);
        let deadline = p.last_activity + self.engine.idle_timeout_ms();
        self.link.after_activity(user, &p, deadline, now);
        t.and_then(|_| self.provisional(user, Status::Online, now, Reason::Activity))
    }

    fn force_offline(
        &mut self,
        user: &str,
        now: u64,
        close: u16,
        reason: Reason,
    ) -> Option<Change> {
        self.engine.force_offline(user, now);
        self.link.force_offline(user, now, close, reason);
        self.provisional(user, Status::Offline, now, reason)
    }

    fn expire(&mut self, now: u64) -> Vec<Change> {
        let mut out = Vec::new();
        for t in self.engine.expire(now) {
            let seen = self.engine.get(&t.user).last_seen;
            self.link.local_offline(&t, seen);
            out.extend(self.provisional(&t.user, Status::Offline, t.at, Reason::Idle));
        }
        out
    }

    fn apply_event(&mut self, ev: &PresenceEvent, now: u64) -> EventEffect {
        if ev.force {
            // Every claim of the user is gone in Redis. Proof older than the
            // forced offline is dropped, so only new interaction brings the
            // user back; proof newer than it (a tab opened here after a
            // logout elsewhere, or after this node's own logout whose echo
            // comes late) is claimed again at once.
            self.link.forget_claim(&ev.u);
            let p = self.engine.get(ev.u.as_str());
            if ev.at > 0 && p.last_seen > ev.at && p.status == Status::Online {
                let deadline = p.last_activity + self.engine.idle_timeout_ms();
                self.link.after_activity(&ev.u, &p, deadline, now);
            } else {
                self.engine.force_offline(ev.u.as_str(), now);
            }
        }
        let from = self.link.presence(&ev.u).status;
        EventEffect {
            close: (ev.close != 0).then_some(ev.close),
            change: self.link.apply(ev).map(|t| Change {
                user: t.user,
                from,
                to: t.status,
                at: t.at,
                v: t.v,
                reason: ev.why(),
            }),
        }
    }

    fn redis_down(&mut self, now: u64) -> Vec<Change> {
        let online: Vec<String> = self.engine.online().map(|(u, _)| u.clone()).collect();
        online
            .iter()
            .filter_map(|u| self.provisional(u, Status::Online, now, Reason::Activity))
            .collect()
    }

    /// While Redis is unreachable, this node shows its own tabs' transitions
    /// at once (SPEC §8.5: local presence keeps working); the queued claims
    /// reach Redis when it returns, and the views converge.
    fn provisional(
        &mut self,
        user: &str,
        status: Status,
        at: u64,
        reason: Reason,
    ) -> Option<Change> {
        if self.link.is_up() {
            return None;
        }
        let from = self.link.presence(user).status;
        let t = self.link.provisional(user, status, at)?;
        Some(Change {
            user: t.user,
            from,
            to: t.status,
            at: t.at,
            v: t.v,
            reason,
        })
    }
}

/// Users online by this node's own proofs, with their local deadline.
fn local_online(engine: &Engine<String>) -> impl Iterator<Item = (String, UserPresence, u64)> + '_ {
    let t = engine.idle_timeout_ms();
    engine
        .online()
        .map(move |(u, p)| (u.clone(), *p, p.last_activity + t))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::UnboundedReceiver;

    use super::*;
    use crate::cluster::ops::{ClusterMsg, PresenceOp};

    const T: u64 = 60_000;

    fn change(user: &str, from: Status, to: Status, at: u64, v: u64) -> Change {
        let reason = match to {
            On => Reason::Activity,
            Off => Reason::Idle,
        };
        Change {
            user: user.into(),
            from,
            to,
            at,
            v,
            reason,
        }
    }

    fn with(c: Change, reason: Reason) -> Change {
        Change { reason, ..c }
    }

    use Status::{Offline as Off, Online as On};

    #[test]
    fn local_transitions_carry_both_statuses_and_their_reason() {
        let mut s = Source::new("acme", T, None);
        assert_eq!(
            s.activity("ann", 1_000, 0),
            Some(change("ann", Off, On, 1_000, 1))
        );
        assert_eq!(s.activity("ann", 2_000, 0), None, "already online");
        assert_eq!(s.next_deadline(), Some(1_000 + T));
        assert_eq!(s.expire(2_000 + T - 1), vec![]);
        assert_eq!(
            s.expire(2_000 + T),
            vec![change("ann", On, Off, 2_000 + T, 2)]
        );
        assert_eq!(s.presence("ann").status, Off);
    }

    #[test]
    fn a_local_forced_offline_drops_the_proof_and_ignores_cluster_calls() {
        let mut s = Source::new("acme", T, None);
        s.restore("ann".into(), 500, 400, 7);
        assert_eq!(
            s.activity("ann", 1_000, 0),
            Some(change("ann", Off, On, 1_000, 8))
        );
        assert_eq!(
            s.force_offline("ann", 2_000, 4004, Reason::Logout),
            Some(with(change("ann", On, Off, 2_000, 9), Reason::Logout))
        );
        assert_eq!(s.force_offline("ann", 2_100, 4004, Reason::Logout), None);
        assert!(s.expire(1_000 + T).is_empty(), "old proof does not count");
        // A single node has no Redis: these change nothing.
        assert!(s.redis_down(3_000).is_empty());
        s.redis_up();
        s.reclaim(3_000);
        s.hand_off(3_000);
        let ev = event("ann", 1, 3_000, 20);
        assert_eq!(s.apply_event(&ev, 3_000), EventEffect::default());
        assert_eq!(s.presence("ann").v, 9);
    }

    /// A cluster source whose Redis is up, the queue it sends to, and the
    /// handle that says whether Redis is up.
    fn clustered() -> (Source, UnboundedReceiver<ClusterMsg>, ClusterHandle) {
        // renew_ms = T / 3 = 20 s: claims reach 40 s past the local deadline.
        let (h, rx) = ClusterHandle::new("n1", Duration::from_millis(T));
        h.set_up(true);
        (Source::new("acme", T, Some(&h)), rx, h)
    }

    fn queued(rx: &mut UnboundedReceiver<ClusterMsg>) -> Vec<PresenceOp> {
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            match m {
                ClusterMsg::Op { tenant, op } => {
                    assert_eq!(tenant, "acme");
                    out.push(op);
                }
                ClusterMsg::Flush(_) | ClusterMsg::Unregister { .. } | ClusterMsg::Reregister => {
                    panic!("a tenant only queues operations")
                }
            }
        }
        out
    }

    fn event(u: &str, s: u8, since: u64, v: u64) -> PresenceEvent {
        PresenceEvent {
            t: "acme".into(),
            u: u.into(),
            s,
            since,
            v,
            seen: since,
            force: false,
            close: 0,
            cursor: 0,
            reason: None,
            at: 0,
        }
    }

    fn claim(u: &str, until: u64, seen: u64, now: u64) -> PresenceOp {
        PresenceOp::Claim {
            u: u.into(),
            n: "n1".into(),
            until,
            seen,
            now,
        }
    }

    #[test]
    fn in_a_cluster_activity_claims_and_only_events_change_the_view() {
        let (mut s, mut rx, _) = clustered();
        assert_eq!(s.activity("ann", 1_000, 0), None, "Redis decides");
        assert_eq!(
            queued(&mut rx),
            [claim("ann", 1_000 + T + 40_000, 1_000, 1_000)]
        );
        // Renewed only once the deadline moved past lease - renew.
        assert_eq!(s.activity("ann", 20_000, 0), None);
        assert!(queued(&mut rx).is_empty());
        s.activity("ann", 21_001, 0);
        assert_eq!(
            queued(&mut rx),
            [claim("ann", 21_001 + T + 40_000, 21_001, 21_001)]
        );
        assert_eq!(s.presence("ann").status, Off);

        let on = s.apply_event(&event("ann", 1, 1_000, 1), 21_500);
        assert_eq!(on.change, Some(change("ann", Off, On, 1_000, 1)));
        assert_eq!(on.close, None);
        assert_eq!(
            s.apply_event(&event("ann", 1, 1_000, 1), 21_500),
            EventEffect::default()
        );
        // A missed transition pair: same status, newer v, counters unchanged.
        let catch_up = s
            .apply_event(&event("ann", 1, 9_000, 3), 21_500)
            .change
            .unwrap();
        assert_eq!(catch_up, change("ann", On, On, 9_000, 3));
        assert!(!catch_up.changed());
    }

    #[test]
    fn in_a_cluster_expiry_releases_and_a_force_closes_with_its_code() {
        let (mut s, mut rx, _) = clustered();
        s.activity("ann", 1_000, 0);
        queued(&mut rx);
        assert!(s.expire(1_000 + T).is_empty(), "the release decides");
        assert_eq!(
            queued(&mut rx),
            [PresenceOp::Release {
                u: "ann".into(),
                n: "n1".into(),
                at: 1_000 + T,
                seen: 1_000
            }]
        );
        s.activity("bob", 2_000, 0);
        assert_eq!(s.force_offline("bob", 3_000, 4004, Reason::Logout), None);
        let ops = queued(&mut rx);
        assert_eq!(
            ops.last(),
            Some(&PresenceOp::Force {
                u: "bob".into(),
                at: 3_000,
                close: 4004,
                why: Reason::Logout,
            })
        );
        // The forced event from another node: close here too, drop the proof
        // and the claim, so the next interaction claims again.
        s.activity("cyd", 4_000, 0);
        queued(&mut rx);
        s.apply_event(&event("cyd", 1, 4_000, 1), 4_000);
        let forced = PresenceEvent {
            force: true,
            close: 4004,
            ..event("cyd", 0, 5_000, 2)
        };
        let effect = s.apply_event(&forced, 5_000);
        assert_eq!(effect.close, Some(4004));
        assert_eq!(
            effect.change,
            Some(with(change("cyd", On, Off, 5_000, 2), Reason::Logout))
        );
        assert!(
            s.expire(4_000 + T).is_empty(),
            "no local proof left to expire"
        );
        s.activity("cyd", 6_000, 0);
        assert_eq!(
            queued(&mut rx),
            [claim("cyd", 6_000 + T + 40_000, 6_000, 6_000)]
        );
    }

    #[test]
    fn without_redis_a_node_shows_its_own_transitions_and_floors_them_on_return() {
        let (mut s, mut rx, h) = clustered();
        s.activity("ann", 1_000, 0);
        h.set_up(false);
        // Already online here when Redis went away: shown online.
        assert_eq!(s.redis_down(2_000), vec![change("ann", Off, On, 2_000, 1)]);
        assert_eq!(
            s.activity("bob", 2_500, 0),
            Some(change("bob", Off, On, 2_500, 1))
        );
        assert_eq!(
            s.expire(2_500 + T),
            vec![
                change("ann", On, Off, 1_000 + T, 2),
                change("bob", On, Off, 2_500 + T, 2)
            ]
        );
        queued(&mut rx);
        h.set_up(true);
        s.redis_up();
        let mut floors = queued(&mut rx);
        floors.sort_by_key(|op| format!("{op:?}"));
        assert_eq!(
            floors,
            [
                PresenceOp::Floor {
                    u: "ann".into(),
                    v: 2
                },
                PresenceOp::Floor {
                    u: "bob".into(),
                    v: 2
                }
            ]
        );
    }

    #[test]
    fn reclaim_and_hand_off_send_the_claims_of_local_proofs() {
        let (mut s, mut rx, _) = clustered();
        s.activity("ann", 1_000, 0);
        queued(&mut rx);
        s.reclaim(5_000);
        assert_eq!(
            queued(&mut rx),
            [claim("ann", 1_000 + T + 40_000, 1_000, 5_000)]
        );
        s.hand_off(6_000);
        assert_eq!(queued(&mut rx), [claim("ann", 1_000 + T, 1_000, 6_000)]);
    }
}
