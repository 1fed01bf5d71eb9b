//! The presence rule of SPEC §2 as a pure state machine.
//!
//! Time is passed in (milliseconds since the Unix epoch), transitions come
//! out; there is no clock read, no lock and no I/O here, so the rule can be
//! tested exhaustively and the cluster mode can drive the same code.
//!
//! Open tabs are deliberately absent: a tab is not proof of interaction, so
//! opening, closing and reloading tabs cannot change a user's status. That is
//! what makes reloads flap-free by construction.

use std::borrow::Borrow;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use presence_protocol::Status;

/// A change of a user's status, to be published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition<K> {
    pub user: K,
    pub status: Status,
    /// When the new status began: the receive time for online, the deadline
    /// (`last_activity + idle_timeout`) for an expiry, the request time for a
    /// forced offline.
    pub at: u64,
    /// The user's transition counter after this transition.
    pub v: u64,
}

/// Presence of one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserPresence {
    pub status: Status,
    /// When the current status began; 0 if the user was never seen.
    pub since: u64,
    /// Last proven interaction as far as the deadline is concerned; a
    /// forced offline lowers it so that old proof cannot count again.
    pub last_activity: u64,
    /// Last proven interaction as people are shown it (`last_seen`); never
    /// lowered, so a logout or deactivation does not rewrite history.
    /// 0 if never.
    pub last_seen: u64,
    pub v: u64,
    /// Deadline currently in the queue for this user, if any. At most one
    /// queue entry exists per user, so the queue stays as small as the number
    /// of online users however many activity frames arrive.
    queued: Option<u64>,
}

/// The presence state machine for a set of users keyed by `K`.
#[derive(Debug)]
pub struct Engine<K> {
    idle_timeout_ms: u64,
    users: HashMap<K, UserPresence>,
    /// Min-heap of (deadline, user). An entry may be stale (the user was
    /// active since); it is re-queued at its true deadline when popped.
    deadlines: BinaryHeap<Reverse<(u64, K)>>,
}

impl<K: Clone + Eq + Hash + Ord> Engine<K> {
    /// An engine where a user stays online `idle_timeout_ms` after their last
    /// interaction.
    pub fn new(idle_timeout_ms: u64) -> Self {
        Engine {
            idle_timeout_ms,
            users: HashMap::new(),
            deadlines: BinaryHeap::new(),
        }
    }

    pub fn idle_timeout_ms(&self) -> u64 {
        self.idle_timeout_ms
    }

    /// A report of interaction `idle_ms` before `now` (the receive time).
    ///
    /// `idle_ms` is clamped to the timeout; a report at or beyond it proves
    /// nothing and changes nothing. Returns the online transition if the user
    /// was offline.
    ///
    /// Takes the user by reference (`&str` for `String` keys) and clones the
    /// key only the first time or when a new deadline is queued: an
    /// activity frame of a user already online allocates nothing.
    pub fn activity<Q>(&mut self, user: &Q, now: u64, idle_ms: u64) -> Option<Transition<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if idle_ms >= self.idle_timeout_ms {
            return None;
        }
        let last = now.saturating_sub(idle_ms);
        let timeout = self.idle_timeout_ms;
        // One lookup for a user already known; the key is cloned only when
        // the user is new.
        if let Some(p) = self.users.get_mut(user) {
            return prove(p, &mut self.deadlines, timeout, user, last, now);
        }
        let p = self.users.entry(user.to_owned()).or_default();
        prove(p, &mut self.deadlines, timeout, user, last, now)
    }

    /// Offline at once (logout, deactivation, deletion). Past interaction no
    /// longer counts: the user comes back online only with new proof.
    pub fn force_offline<Q>(&mut self, user: &Q, now: u64) -> Option<Transition<K>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let p = self.users.get_mut(user)?;
        // A report received before the logout must not revive the user; the
        // stale queue entry is dropped when popped because status is offline.
        p.last_activity = p
            .last_activity
            .min(now.saturating_sub(self.idle_timeout_ms));
        if p.status == Status::Offline {
            return None;
        }
        p.status = Status::Offline;
        p.since = now;
        p.v += 1;
        Some(Transition {
            user: user.to_owned(),
            status: Status::Offline,
            at: now,
            v: p.v,
        })
    }

    /// Every user whose deadline is at or before `now` goes offline.
    pub fn expire(&mut self, now: u64) -> Vec<Transition<K>> {
        let mut out = Vec::new();
        while let Some(Reverse((deadline, _))) = self.deadlines.peek() {
            if *deadline > now {
                break;
            }
            // peek() just returned Some, so pop() does too.
            let Reverse((deadline, user)) = self.deadlines.pop().expect("peeked");
            let Some(p) = self.users.get_mut(&user) else {
                continue;
            };
            if p.queued != Some(deadline) {
                continue;
            }
            p.queued = None;
            if p.status == Status::Offline {
                continue;
            }
            let true_deadline = p.last_activity + self.idle_timeout_ms;
            if true_deadline > now {
                p.queued = Some(true_deadline);
                self.deadlines.push(Reverse((true_deadline, user)));
                continue;
            }
            p.status = Status::Offline;
            p.since = true_deadline;
            p.v += 1;
            out.push(Transition {
                user,
                status: Status::Offline,
                at: true_deadline,
                v: p.v,
            });
        }
        out
    }

    /// The earliest time at which `expire` may have work, if any.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.peek().map(|Reverse((d, _))| *d)
    }

    /// The user's presence; an unseen user is offline with `v` 0.
    pub fn get<Q>(&self, user: &Q) -> UserPresence
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.users.get(user).copied().unwrap_or_default()
    }

    /// Restores what is known of a user from the store (after a restart), so
    /// `last_seen` and `v` survive; the user starts offline.
    pub fn restore(&mut self, user: K, last_activity: u64, since: u64, v: u64) {
        let p = self.users.entry(user).or_default();
        p.last_activity = p.last_activity.max(last_activity);
        p.last_seen = p.last_seen.max(last_activity);
        p.since = p.since.max(since);
        p.v = p.v.max(v);
    }

    /// Users online by this engine's proofs.
    pub fn online(&self) -> impl Iterator<Item = (&K, &UserPresence)> {
        self.users
            .iter()
            .filter(|(_, p)| p.status == Status::Online)
    }

    /// Number of users currently online.
    pub fn online_count(&self) -> usize {
        self.users
            .values()
            .filter(|p| p.status == Status::Online)
            .count()
    }
}

/// Records proof of interaction at `last` for one user's state.
fn prove<K, Q>(
    p: &mut UserPresence,
    deadlines: &mut BinaryHeap<Reverse<(u64, K)>>,
    timeout: u64,
    user: &Q,
    last: u64,
    now: u64,
) -> Option<Transition<K>>
where
    K: Borrow<Q> + Ord,
    Q: ToOwned<Owned = K> + ?Sized,
{
    if last > p.last_activity {
        p.last_activity = last;
    }
    p.last_seen = p.last_seen.max(last);
    // A queued entry later than the true deadline (possible after a forced
    // offline lowered `last_activity`) would expire the user late.
    if p.queued.is_none_or(|q| q > p.last_activity + timeout) {
        let deadline = p.last_activity + timeout;
        p.queued = Some(deadline);
        deadlines.push(Reverse((deadline, user.to_owned())));
    }
    if p.status == Status::Online {
        return None;
    }
    p.status = Status::Online;
    p.since = now;
    p.v += 1;
    Some(Transition {
        user: user.to_owned(),
        status: Status::Online,
        at: now,
        v: p.v,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: u64 = 60_000;

    #[test]
    fn activity_makes_online_and_expiry_makes_offline_at_the_deadline() {
        let mut e = Engine::new(T);
        let t = e.activity(&"a", 1_000, 0).unwrap();
        assert_eq!((t.status, t.at, t.v), (Status::Online, 1_000, 1));
        assert!(
            e.expire(1_000 + T - 1).is_empty(),
            "never before the deadline"
        );
        let off = e.expire(1_000 + T);
        assert_eq!(
            off,
            vec![Transition {
                user: "a",
                status: Status::Offline,
                at: 1_000 + T,
                v: 2
            }]
        );
    }

    #[test]
    fn idle_ms_moves_the_deadline_back() {
        let mut e = Engine::new(T);
        e.activity(&"a", 10_000, 4_000).unwrap();
        assert!(e.expire(6_000 + T - 1).is_empty());
        assert_eq!(e.expire(6_000 + T)[0].at, 6_000 + T);
    }

    #[test]
    fn idle_ms_at_or_beyond_the_timeout_is_no_proof() {
        let mut e = Engine::new(T);
        assert_eq!(e.activity(&"a", 100_000, T), None);
        assert_eq!(e.activity(&"a", 100_000, T + 5), None);
        assert_eq!(e.activity(&"a", 100_000, u64::MAX), None);
        assert_eq!(e.get(&"a").status, Status::Offline);
        assert_eq!(e.next_deadline(), None);
    }

    #[test]
    fn later_activity_postpones_expiry_without_a_transition() {
        let mut e = Engine::new(T);
        e.activity(&"a", 0, 0).unwrap();
        assert_eq!(e.activity(&"a", 30_000, 0), None);
        assert!(e.expire(T).is_empty());
        assert_eq!(e.expire(30_000 + T).len(), 1);
    }

    #[test]
    fn an_older_report_does_not_shorten_the_deadline() {
        let mut e = Engine::new(T);
        e.activity(&"a", 10_000, 0).unwrap();
        e.activity(&"a", 11_000, 9_000);
        assert!(e.expire(10_000 + T - 1).is_empty());
        assert_eq!(e.expire(10_000 + T).len(), 1);
    }

    #[test]
    fn force_offline_is_immediate_and_old_proof_does_not_revive() {
        let mut e = Engine::new(T);
        e.activity(&"a", 0, 0).unwrap();
        let t = e.force_offline(&"a", 5_000).unwrap();
        assert_eq!((t.status, t.at, t.v), (Status::Offline, 5_000, 2));
        assert!(e.expire(T).is_empty(), "no second offline");
        assert_eq!(e.force_offline(&"a", 6_000), None);
        let t = e.activity(&"a", 7_000, 0).unwrap();
        assert_eq!((t.status, t.v), (Status::Online, 3));
    }

    #[test]
    fn force_offline_keeps_last_seen() {
        let mut e = Engine::new(T);
        e.activity(&"a", 10_000, 500).unwrap();
        e.force_offline(&"a", 12_000).unwrap();
        let p = e.get(&"a");
        assert_eq!(
            (p.status, p.last_seen, p.since),
            (Status::Offline, 9_500, 12_000)
        );
    }

    #[test]
    fn queue_holds_one_entry_per_user() {
        let mut e = Engine::new(T);
        for i in 0..1000 {
            e.activity(&"a", i * 10, 0);
        }
        assert_eq!(e.deadlines.len(), 1);
    }

    #[test]
    fn many_users_expire_in_deadline_order_each_once() {
        let mut e = Engine::new(T);
        for u in 0..1_000u64 {
            e.activity(&u, 1_000 + u, 0).unwrap();
        }
        let first = e.expire(1_000 + T + 499);
        assert_eq!(first.len(), 500);
        assert!(first.windows(2).all(|w| w[0].at <= w[1].at));
        assert_eq!(e.expire(1_000 + T + 999).len(), 500);
        assert!(e.expire(10 * T).is_empty());
        assert_eq!(e.online_count(), 0);
    }

    #[derive(Debug, Clone)]
    enum Ev {
        Activity(u8, u64),
        Force(u8),
        Advance(u64),
    }

    fn ev() -> impl Strategy<Value = Ev> {
        prop_oneof![
            (
                0u8..4,
                prop_oneof![0u64..2_000, Just(T - 1), Just(T), T..2 * T]
            )
                .prop_map(|(u, i)| Ev::Activity(u, i)),
            (0u8..4).prop_map(Ev::Force),
            prop_oneof![0u64..500, 0u64..(2 * T)].prop_map(Ev::Advance),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Random interleavings never yield two consecutive transitions of the
        /// same kind for a user, `v` grows by one per transition, and after
        /// every step the status equals the rule evaluated from scratch.
        #[test]
        fn status_matches_the_rule_from_scratch(evs in prop::collection::vec(ev(), 1..200)) {
            let mut e = Engine::new(T);
            let mut now = 1_000_000u64;
            // Model: per user, last proof and the time of the last forced offline.
            let mut last: HashMap<u8, Option<u64>> = HashMap::new();
            let mut seen: HashMap<u8, (Status, u64)> = HashMap::new();
            let record = |ts: Vec<Transition<u8>>, seen: &mut HashMap<u8, (Status, u64)>| {
                for t in ts {
                    let (prev, v) = seen.get(&t.user).copied().unwrap_or((Status::Offline, 0));
                    prop_assert_ne!(prev, t.status, "two {:?} in a row for {}", t.status, t.user);
                    prop_assert_eq!(t.v, v + 1);
                    seen.insert(t.user, (t.status, t.v));
                }
                Ok(())
            };
            for ev in evs {
                match ev {
                    Ev::Activity(u, idle) => {
                        let t = e.activity(&u, now, idle);
                        if idle < T {
                            let l = now - idle;
                            let cur = last.entry(u).or_insert(None);
                            *cur = Some(cur.map_or(l, |c: u64| c.max(l)));
                        }
                        record(t.into_iter().collect(), &mut seen)?;
                    }
                    Ev::Force(u) => {
                        let t = e.force_offline(&u, now);
                        last.insert(u, None);
                        record(t.into_iter().collect(), &mut seen)?;
                    }
                    Ev::Advance(d) => {
                        now += d;
                        let ts = e.expire(now);
                        for t in &ts {
                            prop_assert!(t.at <= now, "offline emitted before its deadline");
                        }
                        record(ts, &mut seen)?;
                    }
                }
                for u in 0u8..4 {
                    let want = match last.get(&u).copied().flatten() {
                        Some(l) if l + T > now => Status::Online,
                        _ => Status::Offline,
                    };
                    prop_assert_eq!(e.get(&u).status, want, "user {} at {}", u, now);
                    let v = seen.get(&u).map_or(0, |s| s.1);
                    prop_assert_eq!(e.get(&u).v, v);
                }
            }
        }
    }
}
