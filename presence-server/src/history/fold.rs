//! Transition events folded into intervals: the user's `online` event
//! opens one, the next `offline` event closes it with its `at` and its
//! reason. Pure; the keeper stores what comes out, and the API folds the
//! feed's tail the keeper has not stored yet the same way.
//!
//! A tolerant fold, because the feed is the truth and may be read twice:
//! an `online` while open, or an `offline` while closed, changes nothing
//! (a repeated or catch-up event), and an erased user's events up to the
//! erasure are skipped (their feed events outlive the history's erasure).

use std::collections::HashMap;

use presence_protocol::{Event, Reason, Status};

/// What one fold changed, for one tenant.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The cursor of the last event folded.
    pub cursor: u64,
    /// Users whose open interval is new (user, from).
    pub set_open: Vec<(String, u64)>,
    /// Users who had an open interval before the fold and have none after.
    pub clear_open: Vec<String>,
    /// Intervals closed, in feed order.
    pub closed: Vec<Closed>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub user: String,
    pub from: u64,
    pub to: u64,
    pub reason: Reason,
}

/// Folds `events` (in cursor order, after `cursor`) into `open` (user →
/// start of their open interval), skipping each user's events at or
/// before their erasure in `erased` (user → when, ms).
pub(crate) fn fold(
    open: &mut HashMap<String, u64>,
    erased: &HashMap<String, u64>,
    cursor: u64,
    events: &[Event],
) -> Batch {
    let mut before: HashMap<&str, Option<u64>> = HashMap::new();
    let mut closed = Vec::new();
    let mut last = cursor;
    for e in events {
        last = last.max(e.cursor);
        if erased.get(&e.user).is_some_and(|at| e.at <= *at) {
            continue;
        }
        before
            .entry(e.user.as_str())
            .or_insert_with(|| open.get(&e.user).copied());
        match e.status {
            Status::Online => {
                open.entry(e.user.clone()).or_insert(e.at);
            }
            Status::Offline => {
                if let Some(from) = open.remove(&e.user) {
                    closed.push(Closed {
                        user: e.user.clone(),
                        from,
                        to: e.at.max(from),
                        reason: e.reason,
                    });
                }
            }
        }
    }
    let mut set_open = Vec::new();
    let mut clear_open = Vec::new();
    for (user, was) in before {
        match (was, open.get(user)) {
            (Some(_), None) => clear_open.push(user.to_owned()),
            (w, Some(now)) if w != Some(*now) => set_open.push((user.to_owned(), *now)),
            _ => {}
        }
    }
    set_open.sort();
    clear_open.sort();
    Batch {
        cursor: last,
        set_open,
        clear_open,
        closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(cursor: u64, user: &str, status: Status, at: u64, reason: Reason) -> Event {
        Event {
            id: Event::id_of("t", user, cursor),
            cursor,
            tenant: "t".into(),
            user: user.into(),
            status,
            at,
            v: cursor,
            reason,
        }
    }

    #[test]
    fn online_then_offline_is_one_interval_with_the_offline_reason() {
        let mut open = HashMap::new();
        let b = fold(
            &mut open,
            &HashMap::new(),
            0,
            &[
                ev(1, "u", Status::Online, 100, Reason::Activity),
                ev(2, "w", Status::Online, 150, Reason::Activity),
                ev(3, "u", Status::Offline, 900, Reason::NodeLost),
            ],
        );
        assert_eq!(b.cursor, 3);
        assert_eq!(
            b.closed,
            vec![Closed {
                user: "u".into(),
                from: 100,
                to: 900,
                reason: Reason::NodeLost
            }]
        );
        assert_eq!(b.set_open, vec![("w".into(), 150)]);
        assert!(b.clear_open.is_empty(), "u was not open before the fold");
        assert_eq!(open.get("w"), Some(&150));
    }

    #[test]
    fn repeated_events_change_nothing() {
        let mut open = HashMap::from([("u".to_owned(), 100)]);
        let b = fold(
            &mut open,
            &HashMap::new(),
            5,
            &[
                ev(6, "u", Status::Online, 200, Reason::Activity),
                ev(7, "u", Status::Offline, 300, Reason::Idle),
                ev(8, "u", Status::Offline, 400, Reason::Logout),
            ],
        );
        assert_eq!(b.closed.len(), 1);
        assert_eq!((b.closed[0].from, b.closed[0].to), (100, 300));
        assert_eq!(b.clear_open, vec!["u".to_owned()]);
        assert!(b.set_open.is_empty());
    }

    #[test]
    fn an_erased_user_s_events_up_to_the_erasure_are_skipped() {
        let mut open = HashMap::new();
        let erased = HashMap::from([("u".to_owned(), 200)]);
        let b = fold(
            &mut open,
            &erased,
            0,
            &[
                ev(1, "u", Status::Online, 100, Reason::Activity),
                ev(2, "u", Status::Offline, 200, Reason::Idle),
                ev(3, "u", Status::Offline, 250, Reason::Idle),
                ev(4, "u", Status::Online, 300, Reason::Activity),
            ],
        );
        assert!(b.closed.is_empty());
        assert_eq!(b.set_open, vec![("u".into(), 300)]);
        assert_eq!(b.cursor, 4);
    }

    #[test]
    fn an_offline_before_its_online_ends_a_zero_length_interval() {
        let mut open = HashMap::from([("u".to_owned(), 500)]);
        let b = fold(
            &mut open,
            &HashMap::new(),
            0,
            &[ev(1, "u", Status::Offline, 400, Reason::Idle)],
        );
        assert_eq!((b.closed[0].from, b.closed[0].to), (500, 500));
    }
}
