//! The stored form of a user's history: one record per user per UTC day
//! (a "bucket"), the online pieces of that day packed as varints, so an
//! attendant with ten periods a day costs about 90 bytes of value.
//!
//! Buckets are UTC days, not the tenant's: a tenant may change its time
//! zone, and the report splits days in the zone it has when it is read.
//! An interval that crosses a UTC midnight is stored as pieces, each but
//! the last marked [`CONTINUES`]; [`merge`] joins them back.
//!
//! A piece: `varint(start - day start)`, `varint(length)`, one byte of
//! reason. Records are self-delimiting, so appending to a bucket is a
//! plain concatenation (`presence.lua`-style scripts and redb alike).

use presence_protocol::Reason;

use super::Interval;

pub(crate) const DAY_MS: u64 = 86_400_000;

/// The reason byte of a piece that goes on in the next day's bucket.
const CONTINUES: u8 = 0;

/// The UTC day number (days since 1970-01-01) of an instant.
pub(crate) fn day_of(ms: u64) -> u32 {
    // u32 days last 11 million years.
    (ms / DAY_MS) as u32
}

fn reason_code(r: Reason) -> u8 {
    match r {
        Reason::Activity => 1,
        Reason::Idle => 2,
        Reason::Logout => 3,
        Reason::Deactivated => 4,
        Reason::Deleted => 5,
        Reason::NodeLost => 6,
        Reason::Reconciled => 7,
    }
}

fn code_reason(c: u8) -> Option<Reason> {
    Some(match c {
        1 => Reason::Activity,
        2 => Reason::Idle,
        3 => Reason::Logout,
        4 => Reason::Deactivated,
        5 => Reason::Deleted,
        6 => Reason::NodeLost,
        7 => Reason::Reconciled,
        _ => return None,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// A closed interval cut at UTC midnights: `(day, packed piece)` per day
/// it touches, in day order.
pub(crate) fn pieces(from: u64, to: u64, reason: Reason) -> Vec<(u32, Vec<u8>)> {
    let to = to.max(from);
    let mut out = Vec::new();
    let mut start = from;
    loop {
        let day = day_of(start);
        let day_end = (u64::from(day) + 1) * DAY_MS;
        let (end, code) = if to > day_end {
            (day_end, CONTINUES)
        } else {
            (to, reason_code(reason))
        };
        let mut b = Vec::with_capacity(9);
        put_varint(&mut b, start - u64::from(day) * DAY_MS);
        put_varint(&mut b, end - start);
        b.push(code);
        out.push((day, b));
        if code != CONTINUES {
            return out;
        }
        start = day_end;
    }
}

/// One stored piece, read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    pub from: u64,
    pub to: u64,
    /// `None`: goes on in the next day's bucket.
    pub reason: Option<Reason>,
}

/// The pieces of a bucket of day `day`; `None` when the bytes are not
/// what [`pieces`] writes.
#[cfg(test)]
pub(crate) fn decode(day: u32, bytes: &[u8]) -> Option<Vec<Piece>> {
    let mut out = Vec::new();
    decode_into(day, bytes, &mut out).then_some(out)
}

/// [`decode`], appending to `out`; `false` (and `out` as it was) when the
/// bytes are not what [`pieces`] writes.
pub(crate) fn decode_into(day: u32, bytes: &[u8], out: &mut Vec<Piece>) -> bool {
    let len = out.len();
    let ok = decode_each(day, bytes, out).is_some();
    if !ok {
        out.truncate(len);
    }
    ok
}

fn decode_each(day: u32, bytes: &[u8], out: &mut Vec<Piece>) -> Option<()> {
    let base = u64::from(day) * DAY_MS;
    let mut at = 0;
    while at < bytes.len() {
        let off = get_varint(bytes, &mut at)?;
        let len = get_varint(bytes, &mut at)?;
        let code = *bytes.get(at)?;
        at += 1;
        let reason = if code == CONTINUES {
            None
        } else {
            Some(code_reason(code)?)
        };
        let from = base.checked_add(off)?;
        out.push(Piece {
            from,
            to: from.checked_add(len)?,
            reason,
        });
    }
    Some(())
}

/// A user's pieces (any order) joined into intervals: a piece marked as
/// going on is joined with the one that starts where it ends. Sorted by
/// `from`; overlaps (which the keeper never writes) are joined too, so
/// the result never overlaps.
pub(crate) fn merge(mut pieces: Vec<Piece>) -> Vec<Interval> {
    pieces.sort_by_key(|p| (p.from, p.to));
    let mut out: Vec<Interval> = Vec::with_capacity(pieces.len());
    let mut open_end = false;
    for p in pieces {
        if let Some(last) = out.last_mut() {
            let end = last.to.unwrap_or(0);
            if (open_end && p.from == end) || p.from < end {
                last.to = Some(end.max(p.to));
                last.reason = p.reason.or(last.reason);
                open_end = p.reason.is_none();
                continue;
            }
        }
        out.push(Interval {
            from: p.from,
            to: Some(p.to),
            reason: p.reason,
        });
        open_end = p.reason.is_none();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: u64 = 20_000 * DAY_MS;

    fn decoded(ps: &[(u32, Vec<u8>)]) -> Vec<Piece> {
        ps.iter()
            .flat_map(|(d, b)| decode(*d, b).expect("decodes"))
            .collect()
    }

    #[test]
    fn an_interval_within_a_day_is_one_piece_of_a_few_bytes() {
        let ps = pieces(D + 3_600_000, D + 7_200_000, Reason::Idle);
        assert_eq!(ps.len(), 1);
        assert_eq!(ps[0].0, 20_000);
        assert!(ps[0].1.len() <= 9, "{} bytes", ps[0].1.len());
        assert_eq!(
            merge(decoded(&ps)),
            vec![Interval {
                from: D + 3_600_000,
                to: Some(D + 7_200_000),
                reason: Some(Reason::Idle)
            }]
        );
    }

    #[test]
    fn an_interval_across_two_midnights_is_three_pieces_joined_back() {
        let (from, to) = (D + DAY_MS - 1000, D + 2 * DAY_MS + 500);
        let ps = pieces(from, to, Reason::Logout);
        assert_eq!(
            ps.iter().map(|p| p.0).collect::<Vec<_>>(),
            [20_000, 20_001, 20_002]
        );
        let merged = merge(decoded(&ps));
        assert_eq!(
            merged,
            vec![Interval {
                from,
                to: Some(to),
                reason: Some(Reason::Logout)
            }]
        );
    }

    #[test]
    fn an_interval_ending_at_midnight_does_not_spill_into_the_next_day() {
        let ps = pieces(D + 10, D + DAY_MS, Reason::Idle);
        assert_eq!(ps.len(), 1);
    }

    #[test]
    fn garbage_does_not_decode() {
        assert_eq!(decode(1, &[0x80]), None);
        assert_eq!(decode(1, &[1, 2, 99]), None);
        assert_eq!(decode(1, &[0xff; 12]), None);
        assert_eq!(decode(1, &[]), Some(vec![]));
    }

    proptest! {
        #[test]
        fn stored_intervals_read_back_exactly(
            gaps in proptest::collection::vec((1u64..200_000_000, 0u64..300_000_000), 1..20)
        ) {
            let mut t = D;
            let mut want = Vec::new();
            let mut bucket: std::collections::BTreeMap<u32, Vec<u8>> = Default::default();
            for (gap, len) in gaps {
                let from = t + gap;
                let to = from + len;
                t = to;
                for (day, b) in pieces(from, to, Reason::Idle) {
                    bucket.entry(day).or_default().extend(b);
                }
                // A zero-length interval reads back as one.
                want.push(Interval { from, to: Some(to), reason: Some(Reason::Idle) });
            }
            let all: Vec<Piece> = bucket.iter().flat_map(|(d, b)| decode(*d, b).unwrap()).collect();
            prop_assert_eq!(merge(all), want);
        }

        #[test]
        fn decode_never_panics(day in 0u32..100_000, bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(day, &bytes);
        }
    }
}
