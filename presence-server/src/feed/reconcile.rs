//! The single node's start-up reconciliation of the feed (issue #11 item 5):
//! a restarted engine starts every user offline (`Engine::restore`), so a
//! user whose latest feed event says `online` (the hub was stopped or
//! killed while they were online) gets an `offline` event with reason
//! `reconciled` before the hub serves anyone. Afterwards every user's
//! latest feed event matches their state.
//!
//! Why at start-up and not at shutdown: a SIGKILL leaves no shutdown, and
//! the same path then serves a graceful stop, a crash and a restart within
//! the idle window alike.
//!
//! Pure: the caller commits the events with the records they leave
//! (`Hub::new`), in one write of the store.

use presence_protocol::{Event, Reason, Status};

use crate::directory::{PresenceRecord, TenantDir};

/// One reconciling event and the presence record committed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reconciled {
    pub event: Event,
    pub presence: PresenceRecord,
}

/// The `offline` events that make the feed of `dir`'s tenant agree with a
/// restored engine, with cursors after `cursor`; `dir`'s presence records
/// are updated to what they leave, so the engine restored from `dir`
/// carries the new `v`.
///
/// `at` is when the user's presence ended as far as the store knows:
/// their last activity plus the idle timeout, or `now` when that is still
/// ahead (the hub stopped within the idle window; when exactly within it
/// is not recorded). `v` is one more than the online event's, so the id
/// `<tid>:<uid>:<v>` stays unique.
pub(crate) fn reconcile(
    dir: &mut TenantDir,
    cursor: u64,
    idle_ms: u64,
    now: u64,
) -> Vec<Reconciled> {
    let mut stale: Vec<&String> = dir
        .presence
        .iter()
        .filter(|(_, p)| p.feed_says_online())
        .map(|(u, _)| u)
        .collect();
    // Cursor order follows user ids, so the result does not depend on the
    // map's order.
    stale.sort();
    let mut out = Vec::with_capacity(stale.len());
    for (cursor, user) in (cursor + 1..).zip(stale) {
        let p = dir.presence[user];
        let at = p.last_seen.saturating_add(idle_ms).min(now).max(p.since);
        let v = p.v + 1;
        out.push(Reconciled {
            event: Event {
                id: Event::id_of(&dir.tenant.id, user, v),
                cursor,
                tenant: dir.tenant.id.clone(),
                user: user.clone(),
                status: Status::Offline,
                at,
                v,
                reason: Reason::Reconciled,
            },
            presence: PresenceRecord {
                last_seen: p.last_seen,
                since: at,
                v,
                status: Some(Status::Offline),
            },
        });
    }
    for r in &out {
        dir.presence.insert(r.event.user.clone(), r.presence);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::TenantRecord;

    fn dir(records: &[(&str, PresenceRecord)]) -> TenantDir {
        let mut d = TenantDir::new(TenantRecord {
            id: "acme".into(),
            user_limit: 10,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        });
        for (u, p) in records {
            d.presence.insert((*u).into(), *p);
        }
        d
    }

    fn rec(last_seen: u64, since: u64, v: u64, status: Option<Status>) -> PresenceRecord {
        PresenceRecord {
            last_seen,
            since,
            v,
            status,
        }
    }

    #[test]
    fn only_users_the_feed_shows_online_get_an_event_after_their_deadline() {
        let mut d = dir(&[
            ("bob", rec(1_000, 900, 3, Some(Status::Online))),
            ("ann", rec(5_000, 5_000, 1, Some(Status::Online))),
            ("cid", rec(1_000, 3_000, 2, Some(Status::Offline))),
        ]);
        let out = reconcile(&mut d, 40, 2_000, 6_000);
        let got: Vec<(&str, u64, u64, u64)> = out
            .iter()
            .map(|r| (r.event.user.as_str(), r.event.cursor, r.event.v, r.event.at))
            .collect();
        // ann's deadline (7,000) is after now: offline now; bob's passed.
        assert_eq!(got, [("ann", 41, 2, 6_000), ("bob", 42, 4, 3_000)]);
        assert!(out.iter().all(|r| r.event.reason == Reason::Reconciled
            && r.event.status == Status::Offline
            && r.event.id == Event::id_of("acme", &r.event.user, r.event.v)));
        assert_eq!(
            d.presence["bob"],
            rec(1_000, 3_000, 4, Some(Status::Offline))
        );
        assert_eq!(
            d.presence["cid"],
            rec(1_000, 3_000, 2, Some(Status::Offline))
        );
        assert!(reconcile(&mut d, 42, 2_000, 6_000).is_empty(), "idempotent");
    }

    #[test]
    fn records_without_a_status_are_told_by_their_times() {
        let mut d = dir(&[
            // Online since its activity.
            ("ann", rec(5_000, 4_000, 1, None)),
            // Offline at its deadline, after the last activity.
            ("bob", rec(1_000, 3_000, 2, None)),
            // Never had a transition.
            ("cid", rec(1_000, 0, 0, None)),
        ]);
        let users: Vec<String> = reconcile(&mut d, 0, 2_000, 9_000)
            .into_iter()
            .map(|r| r.event.user)
            .collect();
        assert_eq!(users, ["ann"]);
    }
}
