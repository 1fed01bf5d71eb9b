//! The tenant's local days and the per-day pieces of a user's intervals.
//!
//! A day is computed from the time-zone database once per date (jiff finds
//! its first instant, so a 23 h or 25 h day and a day whose midnight does not
//! exist come out right); splitting intervals then only compares
//! milliseconds, so the report never converts a time zone per piece.

use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::Interval;

/// One local day: `[start_ms, end_ms)` in ms since the Unix epoch.
///
/// The days of a [`super::range::Span`] are cut to the span: an RFC 3339
/// `from` or `to` moves the first day's start or the last day's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Day {
    pub date: Date,
    pub start_ms: u64,
    pub end_ms: u64,
}

/// The first instant of `date` in `tz`, in ms since the Unix epoch (may be
/// negative).
///
/// Not always midnight: where midnight does not exist (a DST change at
/// 00:00, as in São Paulo until 2019) the day starts when the clocks resume.
///
/// # Errors
///
/// A date at the edge of jiff's range, whose start cannot be represented.
pub(crate) fn start_ms(date: Date, tz: &TimeZone) -> Result<i64, jiff::Error> {
    Ok(date
        .to_zoned(tz.clone())?
        .start_of_day()?
        .timestamp()
        .as_millisecond())
}

/// The local days from `first` to `last` (both included) in `tz`, each
/// from its first instant to the next day's.
///
/// # Errors
///
/// A date at the edge of jiff's range, or a day before the Unix epoch (the
/// history has none).
pub(crate) fn local_days(first: Date, last: Date, tz: &TimeZone) -> Result<Vec<Day>, DayError> {
    let mut days = Vec::new();
    let mut date = first;
    let mut start = epoch_ms(date, tz)?;
    while date <= last {
        let next = date.tomorrow().map_err(|_| DayError(date))?;
        let end = epoch_ms(next, tz)?;
        days.push(Day {
            date,
            start_ms: start,
            end_ms: end,
        });
        date = next;
        start = end;
    }
    Ok(days)
}

fn epoch_ms(date: Date, tz: &TimeZone) -> Result<u64, DayError> {
    let ms = start_ms(date, tz).map_err(|_| DayError(date))?;
    u64::try_from(ms).map_err(|_| DayError(date))
}

/// A day that cannot be a day of the history: outside jiff's range of
/// instants or before the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the day {0} is outside the supported range (1970 to 9999)")]
pub(crate) struct DayError(pub Date);

/// How a piece ends, for the day's `last_offline`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PieceEnd {
    /// The interval ended here.
    Ended,
    /// The interval goes on past the day's end (the piece ends with the day).
    Continues,
    /// The interval is still open and the piece ends now.
    Now,
}

/// The part of one interval that falls in one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Piece {
    /// Index of the day in the slice given to [`pieces`].
    pub day: usize,
    /// Index of the interval it comes from, so a period across midnight can
    /// be counted once.
    pub interval: usize,
    pub from_ms: u64,
    pub to_ms: u64,
    pub end: PieceEnd,
}

/// The pieces of `intervals` in `days` (contiguous, sorted), in order:
/// every interval clipped to the days and cut at each day's end. An open
/// interval ends at `now_ms`; empty pieces (an interval that ends before it
/// starts, an open one starting after now) are left out.
///
/// Lazy and allocation-free: the report walks millions of pieces.
pub(crate) fn pieces<'a>(intervals: &'a [Interval], days: &'a [Day], now_ms: u64) -> Pieces<'a> {
    Pieces {
        intervals,
        days,
        now_ms,
        next_interval: 0,
        current: None,
    }
}

/// The iterator of [`pieces`].
pub(crate) struct Pieces<'a> {
    intervals: &'a [Interval],
    days: &'a [Day],
    now_ms: u64,
    next_interval: usize,
    current: Option<Current>,
}

/// The interval being cut: its bounds and the next day to cut it in.
struct Current {
    interval: usize,
    from_ms: u64,
    end_ms: u64,
    open: bool,
    day: usize,
}

impl Iterator for Pieces<'_> {
    type Item = Piece;

    fn next(&mut self) -> Option<Piece> {
        loop {
            if let Some(cur) = &mut self.current {
                if let Some(day) = self.days.get(cur.day).filter(|d| d.start_ms < cur.end_ms) {
                    let piece = Piece {
                        day: cur.day,
                        interval: cur.interval,
                        from_ms: cur.from_ms.max(day.start_ms),
                        to_ms: cur.end_ms.min(day.end_ms),
                        end: if cur.end_ms > day.end_ms {
                            PieceEnd::Continues
                        } else if cur.open {
                            PieceEnd::Now
                        } else {
                            PieceEnd::Ended
                        },
                    };
                    cur.day += 1;
                    return Some(piece);
                }
                self.current = None;
            }
            let index = self.next_interval;
            let interval = self.intervals.get(index)?;
            self.next_interval += 1;
            let end_ms = interval.to.unwrap_or(self.now_ms);
            if end_ms <= interval.from {
                continue;
            }
            // The first day that ends after the interval starts; a binary
            // search so unsorted intervals are still cut right.
            let day = self.days.partition_point(|d| d.end_ms <= interval.from);
            self.current = Some(Current {
                interval: index,
                from_ms: interval.from,
                end_ms,
                open: interval.to.is_none(),
                day,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::test_support::{arb_intervals, ms, HOUR};
    use jiff::civil::date;
    use proptest::prelude::*;

    fn tz(name: &str) -> TimeZone {
        jiff::tz::db().get(name).unwrap()
    }

    fn closed(from: u64, to: u64) -> Interval {
        Interval {
            from,
            to: Some(to),
            reason: Some(presence_protocol::Reason::Idle),
        }
    }

    fn open(from: u64) -> Interval {
        Interval {
            from,
            to: None,
            reason: None,
        }
    }

    fn spans(pieces: Pieces<'_>) -> Vec<(usize, u64, u64, PieceEnd)> {
        pieces.map(|p| (p.day, p.from_ms, p.to_ms, p.end)).collect()
    }

    #[test]
    fn spring_forward_day_has_23_hours_and_fall_back_day_25() {
        let ny = tz("America/New_York");
        let days = local_days(date(2026, 3, 7), date(2026, 3, 9), &ny).unwrap();
        let lengths: Vec<u64> = days
            .iter()
            .map(|d| (d.end_ms - d.start_ms) / HOUR)
            .collect();
        assert_eq!(lengths, [24, 23, 24]);
        assert_eq!(days[1].start_ms, ms("2026-03-08T00:00:00-05:00"));
        assert_eq!(days[1].end_ms, ms("2026-03-09T00:00:00-04:00"));

        let days = local_days(date(2026, 11, 1), date(2026, 11, 1), &ny).unwrap();
        assert_eq!(days.len(), 1);
        assert_eq!(days[0].end_ms - days[0].start_ms, 25 * HOUR);
        assert_eq!(days[0].start_ms, ms("2026-11-01T00:00:00-04:00"));
    }

    #[test]
    fn a_day_without_midnight_starts_when_the_clocks_resume() {
        // São Paulo, 2018-11-04: 00:00 -03 became 01:00 -02.
        let sp = tz("America/Sao_Paulo");
        let days = local_days(date(2018, 11, 3), date(2018, 11, 4), &sp).unwrap();
        assert_eq!(days[1].date, date(2018, 11, 4));
        assert_eq!(days[1].start_ms, ms("2018-11-04T01:00:00-02:00"));
        assert_eq!(days[0].end_ms, days[1].start_ms);
        assert_eq!(days[0].end_ms - days[0].start_ms, 24 * HOUR);
        assert_eq!(days[1].end_ms - days[1].start_ms, 23 * HOUR);
    }

    #[test]
    fn days_before_the_epoch_are_refused() {
        let err = local_days(date(1969, 12, 31), date(1970, 1, 2), &TimeZone::UTC).unwrap_err();
        assert_eq!(err, DayError(date(1969, 12, 31)));
    }

    #[test]
    fn an_interval_across_local_midnight_is_cut_at_the_local_midnight() {
        // 22:00 to 02:00 in São Paulo (-03) is 01:00Z to 05:00Z: cut at 03:00Z.
        let sp = tz("America/Sao_Paulo");
        let days = local_days(date(2026, 11, 3), date(2026, 11, 4), &sp).unwrap();
        let iv = [closed(
            ms("2026-11-04T01:00:00Z"),
            ms("2026-11-04T05:00:00Z"),
        )];
        let midnight = ms("2026-11-04T03:00:00Z");
        assert_eq!(
            spans(pieces(&iv, &days, u64::MAX)),
            [
                (0, ms("2026-11-04T01:00:00Z"), midnight, PieceEnd::Continues),
                (1, midnight, ms("2026-11-04T05:00:00Z"), PieceEnd::Ended),
            ]
        );
    }

    #[test]
    fn a_period_across_the_fall_back_change_is_measured_in_real_time() {
        // 00:30 to 03:30 local on New York's 25 h day is 4 h online.
        let ny = tz("America/New_York");
        let days = local_days(date(2026, 11, 1), date(2026, 11, 1), &ny).unwrap();
        let iv = [closed(
            ms("2026-11-01T00:30:00-04:00"),
            ms("2026-11-01T03:30:00-05:00"),
        )];
        let p: Vec<_> = pieces(&iv, &days, u64::MAX).collect();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].to_ms - p[0].from_ms, 4 * HOUR);
    }

    #[test]
    fn an_open_interval_ends_now_and_goes_on_past_earlier_days() {
        let days = local_days(date(2026, 11, 3), date(2026, 11, 5), &TimeZone::UTC).unwrap();
        let now = ms("2026-11-04T10:00:00Z");
        let iv = [open(ms("2026-11-03T20:00:00Z"))];
        assert_eq!(
            spans(pieces(&iv, &days, now)),
            [
                (
                    0,
                    ms("2026-11-03T20:00:00Z"),
                    days[0].end_ms,
                    PieceEnd::Continues
                ),
                (1, days[1].start_ms, now, PieceEnd::Now),
            ]
        );
    }

    #[test]
    fn pieces_outside_the_days_and_empty_intervals_are_left_out() {
        let days = local_days(date(2026, 11, 3), date(2026, 11, 3), &TimeZone::UTC).unwrap();
        let iv = [
            closed(ms("2026-11-01T10:00:00Z"), ms("2026-11-01T11:00:00Z")),
            closed(ms("2026-11-03T10:00:00Z"), ms("2026-11-03T10:00:00Z")),
            closed(ms("2026-11-03T12:00:00Z"), ms("2026-11-03T11:00:00Z")),
            closed(ms("2026-11-02T23:00:00Z"), ms("2026-11-03T01:00:00Z")),
            closed(ms("2026-11-03T23:00:00Z"), ms("2026-11-04T01:00:00Z")),
            closed(ms("2026-11-05T10:00:00Z"), ms("2026-11-05T11:00:00Z")),
            open(ms("2026-11-03T20:00:00Z")),
        ];
        // `now` before the open interval started: nothing of it.
        let now = ms("2026-11-03T19:00:00Z");
        assert_eq!(
            spans(pieces(&iv, &days, now)),
            [
                (
                    0,
                    days[0].start_ms,
                    ms("2026-11-03T01:00:00Z"),
                    PieceEnd::Ended
                ),
                (
                    0,
                    ms("2026-11-03T23:00:00Z"),
                    days[0].end_ms,
                    PieceEnd::Continues
                ),
            ]
        );
    }

    proptest! {
        #[test]
        fn pieces_add_up_to_the_intervals_clipped_to_the_days(
            (intervals, now) in arb_intervals("2026-10-30T00:00:00Z", 30 * HOUR, 72 * HOUR, 12),
            zone in prop::sample::select(vec![
                "UTC", "America/Sao_Paulo", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe",
            ]),
        ) {
            let tz = tz(zone);
            let days = local_days(date(2026, 10, 31), date(2026, 11, 8), &tz).unwrap();
            let (lo, hi) = (days[0].start_ms, days[days.len() - 1].end_ms);
            let expected: u64 = intervals
                .iter()
                .map(|iv| {
                    let end = iv.to.unwrap_or(now).min(hi);
                    end.saturating_sub(iv.from.max(lo))
                })
                .sum();
            let mut total = 0;
            let mut last_end = 0;
            for p in pieces(&intervals, &days, now) {
                let day = days[p.day];
                prop_assert!(day.start_ms <= p.from_ms && p.from_ms < p.to_ms && p.to_ms <= day.end_ms);
                prop_assert!(p.from_ms >= last_end, "pieces in order, never overlapping");
                prop_assert_eq!(p.end == PieceEnd::Continues, p.to_ms == day.end_ms && intervals[p.interval].to.unwrap_or(now) > day.end_ms);
                last_end = p.to_ms;
                total += p.to_ms - p.from_ms;
            }
            prop_assert_eq!(total, expected);
        }
    }
}
