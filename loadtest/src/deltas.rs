//! What a watching dashboard saw, checked the way a client applies it:
//! a snapshot, then `presence` deltas whose `v` must grow by exactly one per
//! user. Anything else is counted: a gap is a missing delta, the same `v`
//! twice a duplicate, an older `v` after a newer one out of order.

use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Integrity {
    pub deltas: u64,
    pub missing: u64,
    pub duplicate: u64,
    pub out_of_order: u64,
}

impl Integrity {
    pub fn add(&mut self, o: &Integrity) {
        self.deltas += o.deltas;
        self.missing += o.missing;
        self.duplicate += o.duplicate;
        self.out_of_order += o.out_of_order;
    }

    pub fn line(&self) -> String {
        format!(
            "{} deltas: {} missing, {} duplicate, {} out of order",
            self.deltas, self.missing, self.duplicate, self.out_of_order
        )
    }
}

/// One watcher's view of users `u0..uN`, by index.
pub struct View {
    pub v: Vec<u64>,
    pub online: Vec<bool>,
    pub integrity: Integrity,
}

/// What a delta did to the view.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    Next,
    Gap,
    Stale,
}

impl View {
    pub fn new(users: usize) -> View {
        View {
            v: vec![0; users],
            online: vec![false; users],
            integrity: Integrity::default(),
        }
    }

    pub fn snapshot(&mut self, s: &Snapshot<'_>) {
        for e in &s.users {
            if let Some(i) = index(e.id).filter(|&i| i < self.v.len()) {
                self.v[i] = e.v;
                self.online[i] = e.status == "online";
            }
        }
    }

    pub fn delta(&mut self, p: &Presence<'_>) -> Option<(usize, Applied)> {
        let i = index(p.user).filter(|&i| i < self.v.len())?;
        self.integrity.deltas += 1;
        let held = self.v[i];
        let applied = if p.v == held + 1 {
            Applied::Next
        } else if p.v > held + 1 {
            self.integrity.missing += p.v - held - 1;
            Applied::Gap
        } else if p.v == held {
            self.integrity.duplicate += 1;
            return Some((i, Applied::Stale));
        } else {
            self.integrity.out_of_order += 1;
            return Some((i, Applied::Stale));
        };
        self.v[i] = p.v;
        self.online[i] = p.status == "online";
        Some((i, applied))
    }

    /// Deltas this view never got, judged against a later snapshot (the
    /// truth once traffic stopped).
    pub fn settle(&mut self, truth: &View) {
        for (held, t) in self.v.iter().zip(&truth.v) {
            if t > held {
                self.integrity.missing += t - held;
            }
        }
    }
}

/// `u123` → 123.
pub fn index(id: &str) -> Option<usize> {
    id.strip_prefix('u')?.parse().ok()
}

#[derive(Deserialize)]
pub struct Presence<'a> {
    pub user: &'a str,
    pub status: &'a str,
    pub at: u64,
    pub v: u64,
}

#[derive(Deserialize)]
pub struct Entry<'a> {
    pub id: &'a str,
    pub status: &'a str,
    pub v: u64,
}

#[derive(Deserialize)]
pub struct Snapshot<'a> {
    #[serde(borrow)]
    pub users: Vec<Entry<'a>>,
}

pub enum Msg<'a> {
    Presence(Presence<'a>),
    Snapshot(Snapshot<'a>),
    /// Anything else, or a frame that could not be read (a dashboard then
    /// misses a `v` and the gap is counted).
    Other,
}

/// Reads only what the scenarios look at.
pub fn parse(t: &[u8]) -> Msg<'_> {
    let parsed = if t.starts_with(br#"{"type":"presence""#) {
        serde_json::from_slice(t).map(Msg::Presence)
    } else if t.starts_with(br#"{"type":"snapshot""#) {
        serde_json::from_slice(t).map(Msg::Snapshot)
    } else {
        return Msg::Other;
    };
    parsed.unwrap_or(Msg::Other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(user: &str, v: u64) -> Presence<'_> {
        Presence {
            user,
            status: "online",
            at: 0,
            v,
        }
    }

    #[test]
    fn gaps_duplicates_and_reordering_are_counted() {
        let mut view = View::new(3);
        assert_eq!(view.delta(&p("u1", 1)), Some((1, Applied::Next)));
        assert_eq!(view.delta(&p("u1", 1)), Some((1, Applied::Stale)));
        assert_eq!(view.delta(&p("u1", 4)), Some((1, Applied::Gap)));
        assert_eq!(view.delta(&p("u1", 3)), Some((1, Applied::Stale)));
        assert_eq!(view.delta(&p("x", 3)), None);
        let i = view.integrity;
        assert_eq!((i.missing, i.duplicate, i.out_of_order), (2, 1, 1));
        let mut truth = View::new(3);
        truth.v = vec![0, 4, 2];
        view.settle(&truth);
        assert_eq!(view.integrity.missing, 4);
    }
}
